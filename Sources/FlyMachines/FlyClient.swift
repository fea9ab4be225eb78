public import AsyncHTTPClient
public import Foundation
public import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Synchronization

/// A Fly API token. Its description is redacted so that it cannot reach a log line by accident.
public struct FlyToken: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
  /// The token as issued by `fly tokens create`.
  public let value: String
  public init(_ value: String) { self.value = value.trimmingCharacters(in: .whitespacesAndNewlines) }

  /// The `Authorization` header as fly-go sends it: `FlyV1 …` for macaroon tokens (`fm1_`, `fm2_`,
  /// `fo1_`, or already prefixed), `Bearer …` for the rest.
  public var authorization: String {
    if value.hasPrefix("FlyV1 ") || value.hasPrefix("Bearer ") { return value }
    if value.hasPrefix("fm1") || value.hasPrefix("fm2_") || value.hasPrefix("fo1_") { return "FlyV1 \(value)" }
    return "Bearer \(value)"
  }

  public var description: String { "<redacted>" }
  public var debugDescription: String { "<redacted>" }
}

/// How the client reaches Fly.
public struct FlyClientConfiguration: Sendable {
  /// `https://api.machines.dev` by default; the simulator's address in tests and rehearsals.
  public var baseURL: String
  /// The Fly app that holds the users' machines.
  public var appName: String
  public var token: FlyToken
  /// The deadline of every request but `wait` (which gets its own timeout plus this margin).
  public var requestTimeout: Duration
  /// The page size for lists (Fly allows 1 to 1000).
  public var pageSize: Int
  /// The largest response body accepted.
  public var maxBodyBytes: Int
  /// The most pages one list read follows (default: enough for 1,000,000 items at the page size,
  /// `max(10, 1_000_000 / pageSize + 10)`): a `fly-next-cursor` that changes forever is an error.
  public var maxPages: Int
  /// The most items one list read holds (default: ``maxPages`` full pages): a server whose pages
  /// hold more than the `limit` asked for cannot grow a list without end either.
  public var maxItems: Int
  /// Strings (environment values of machines) to scrub from any error text, besides the token.
  public var redactions: [String]
  /// The longest one whole list read (every page) may take.
  public var listTimeout: Duration = .seconds(300)
  /// A scrubber that learns secrets as they are met (the controller's redactor): applied to a
  /// whole answer before it is cut to an excerpt, so no secret is ever printed in part.
  public var scrub: (@Sendable (String) -> String)?
  public var userAgent: String
  /// How list pages are paced (per list endpoint, as Fly's buckets are per action and app): a walk
  /// sends its pages under the bucket instead of bursting into it and being refused. Nil sends
  /// them back to back (a simulator without limits, measuring our own cost).
  public var listPacing: Pacing? = .flyDocumented

  /// A token bucket the client keeps itself, like the one Fly keeps for the same requests.
  public struct Pacing: Sendable, Equatable {
    /// Requests per second, sustained.
    public var rate: Double
    /// Requests sent at once from a full bucket.
    public var burst: Double
    public init(rate: Double, burst: Double) {
      self.rate = max(0.001, rate)
      self.burst = max(1, burst)
    }
    /// Fly's documented limit for an action: 1 request a second, bursts of 3.
    public static let flyDocumented = Pacing(rate: 1, burst: 3)
  }

  public init(
    baseURL: String = "https://api.machines.dev", appName: String, token: FlyToken,
    requestTimeout: Duration = .seconds(15), pageSize: Int = 1000, maxBodyBytes: Int = 64 << 20,
    maxPages: Int? = nil, maxItems: Int? = nil, redactions: [String] = [], userAgent: String = "fleetkeeper/0.1"
  ) {
    self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
    self.appName = appName
    self.token = token
    self.requestTimeout = requestTimeout
    self.pageSize = max(1, min(1000, pageSize))
    self.maxBodyBytes = maxBodyBytes
    self.maxPages = max(1, maxPages ?? max(10, 1_000_000 / self.pageSize + 10))
    let pagesWorth = self.maxPages.multipliedReportingOverflow(by: self.pageSize)
    self.maxItems = max(1, maxItems ?? (pagesWorth.overflow ? Int.max : pagesWorth.partialValue))
    self.redactions = redactions
    self.scrub = nil
    self.userAgent = userAgent
  }
}

/// One finished request, for metrics and benchmarks.
public struct FlyRequestRecord: Sendable {
  /// A path template, e.g. `POST /machines/{id}/start`.
  public var endpoint: String
  /// The HTTP status, or nil when no answer came.
  public var status: Int?
  public var duration: Duration
}

/// A client of the Fly Machines REST API (<https://fly.io/docs/machines/api/>).
///
/// Every call has a deadline, throws only ``FlyAPIError``, and reads lists whole by following
/// `fly-next-cursor`. The client never retries: retry policy belongs to the caller, which knows
/// whether a call is safe to repeat.
public final class FlyClient: FlyMachinesAPI {
  public let configuration: FlyClientConfiguration
  private let transport: any FlyTransport
  private let gate: RateLimitGate
  private let clock: FlyClientClock
  private let logger: Logger
  private let observer: (@Sendable (FlyRequestRecord) -> Void)?
  /// The last `Date` header Fly sent (Unix seconds) and when it came (monotonic).
  private let serverDate = Mutex<(header: String, date: Double, at: ContinuousClock.Instant)?>(nil)
  /// The app whose paths this client's machine and volume calls use (``forApp(_:)`` makes another).
  private let app: String

  /// A client over HTTP.
  public convenience init(
    configuration: FlyClientConfiguration, httpClient: HTTPClient = .shared, logger: Logger = Logger(label: "fly"),
    observer: (@Sendable (FlyRequestRecord) -> Void)? = nil
  ) {
    self.init(
      configuration: configuration, transport: HTTPClientTransport(httpClient), logger: logger, observer: observer)
  }

  /// A client over any transport (in-process, for tests and benchmarks), waiting out Retry-After
  /// on `clock`.
  public init(
    configuration: FlyClientConfiguration, transport: any FlyTransport, logger: Logger = Logger(label: "fly"),
    observer: (@Sendable (FlyRequestRecord) -> Void)? = nil, clock: FlyClientClock = .continuous
  ) {
    self.configuration = configuration
    self.transport = transport
    self.logger = logger
    self.observer = observer
    self.gate = RateLimitGate(clock: clock)
    self.clock = clock
    self.app = configuration.appName
  }

  /// The same client (transport, Retry-After gate, clock, observer) for another app's machines and
  /// volumes: one app per user.
  private init(_ base: FlyClient, app: String) {
    configuration = base.configuration
    transport = base.transport
    logger = base.logger
    observer = base.observer
    gate = base.gate
    clock = base.clock
    self.app = app
  }

  public func forApp(_ name: String) -> any FlyMachinesAPI {
    name == app ? self : FlyClient(self, app: name)
  }

  public var credentials: [String] { [configuration.token.value] }
  public var appName: String { app }

  var appPath: String { "/v1/apps/\(Self.escape(app))" }

  // MARK: Machines

  /// One page of `GET /v1/apps/{app}/machines`; `next` is the `fly-next-cursor` header.
  public func listMachinesPage(
    _ query: ListMachinesQuery = .init(), limit: Int? = nil, cursor: String? = nil
  ) async throws(FlyAPIError) -> (machines: [FlyMachine], next: String?) {
    var items: [(String, String)] = []
    if query.includeDeleted { items.append(("include_deleted", "true")) }
    if let region = query.region { items.append(("region", region)) }
    if !query.states.isEmpty { items.append(("state", query.states.joined(separator: ","))) }
    for (key, value) in query.metadata.sorted(by: { $0.key < $1.key }) { items.append(("metadata.\(key)", value)) }
    if query.summary { items.append(("summary", "true")) }
    if let limit { items.append(("limit", String(limit))) }
    if let cursor { items.append(("cursor", cursor)) }
    let response = try await send(.GET, "\(appPath)/machines", query: items, endpoint: "GET /machines")
    return (try decode([FlyMachine].self, response), response.nextCursor)
  }

  /// The whole machine list, every page.
  public func listMachines(_ query: ListMachinesQuery = .init()) async throws(FlyAPIError) -> [FlyMachine] {
    try await readAll { cursor throws(FlyAPIError) in
      try await self.listMachinesPage(query, limit: self.configuration.pageSize, cursor: cursor)
    }
  }

  /// The whole machine list, every page, as listings: only the fields a controller needs
  /// (``FlyMachineListing``), scanned from the bytes without decoding configs. `ownerKey` is the
  /// `config.metadata` key whose value is returned as ``FlyMachineListing/owner``.
  public func listMachineListings(ownerKey: String, includeDeleted: Bool = false) async throws(FlyAPIError)
    -> [FlyMachineListing]
  {
    try await readAll { cursor throws(FlyAPIError) in
      var items: [(String, String)] = [("limit", String(self.configuration.pageSize))]
      if includeDeleted { items.append(("include_deleted", "true")) }
      if let cursor { items.append(("cursor", cursor)) }
      let response = try await self.send(.GET, "\(self.appPath)/machines", query: items, endpoint: "GET /machines")
      let result: Result<[FlyMachineListing], ListingScanner.Malformed> = response.body.withUnsafeReadableBytes { raw in
        do throws(ListingScanner.Malformed) {
          return .success(try ListingScanner.scan(raw, ownerKey: ownerKey))
        } catch {
          return .failure(error)
        }
      }
      switch result {
      case .success(let listings): return (listings, response.nextCursor)
      case .failure(let error):
        throw FlyAPIError(
          code: .invalidResponse, status: response.status,
          message: "\(error.reason) at byte \(error.offset): \(self.excerpt(response.body))",
          requestID: response.requestID, operation: response.operation)
      }
    }
  }

  /// The whole machine list as listings, read against the previous read: a page whose bytes did not
  /// change is not scanned again, and when no page changed the previous list comes back itself
  /// (``PagedList/unchanged``). The quiet pass's path: requests and a digest of the bytes, no decode.
  public func listMachineListings<Item: Sendable>(
    ownerKey: String, includeDeleted: Bool = false, previous: consuming PagedList<Item>?, expected: Int = 0,
    _ transform: @Sendable (FlyMachineListing) -> Item
  ) async throws(FlyAPIError) -> PagedList<Item> {
    try await readPages(previous: previous.take(), expected: expected) { cursor throws(FlyAPIError) in
      var items: [(String, String)] = [("limit", String(self.configuration.pageSize))]
      if includeDeleted { items.append(("include_deleted", "true")) }
      if let cursor { items.append(("cursor", cursor)) }
      return try await self.send(.GET, "\(self.appPath)/machines", query: items, endpoint: "GET /machines")
    } decode: { response, raw throws(FlyAPIError) in
      do throws(ListingScanner.Malformed) {
        return try ListingScanner.scan(raw, ownerKey: ownerKey).map(transform)
      } catch {
        throw self.malformed(error, response)
      }
    }
  }

  /// The whole volume list (summary), read against the previous read like ``listMachineListings(ownerKey:includeDeleted:previous:_:)``.
  public func listVolumes<Item: Sendable>(
    previous: consuming PagedList<Item>?, expected: Int = 0, _ transform: @Sendable (FlyVolume) -> Item
  ) async throws(FlyAPIError) -> PagedList<Item> {
    try await readPages(previous: previous.take(), expected: expected) { cursor throws(FlyAPIError) in
      var items: [(String, String)] = [("summary", "true"), ("limit", String(self.configuration.pageSize))]
      if let cursor { items.append(("cursor", cursor)) }
      return try await self.send(.GET, "\(self.appPath)/volumes", query: items, endpoint: "GET /volumes")
    } decode: { response, raw throws(FlyAPIError) in
      do throws(ListingScanner.Malformed) {
        return try ListingScanner.scanVolumes(raw).map(transform)
      } catch {
        throw self.malformed(error, response)
      }
    }
  }

  // MARK: Org-wide lists

  /// The org-wide machine list, every page (see ``FlyMachinesAPI``). Pages are paced and a 429
  /// waited out like the app's lists; a cursor that repeats, a page that does not scan, or more
  /// pages or items than the bounds are errors, never data.
  public func listOrgMachines<Item: Sendable>(
    org: String, updatedAfter: String?, includeDeleted: Bool, ownerKey: String, expected: Int = 0,
    _ transform: @Sendable (FlyMachineListing) -> Item
  ) async throws(FlyAPIError) -> OrgListPage<Item> {
    try await readOrgPages(
      org: org, noun: "machines", updatedAfter: updatedAfter, includeDeleted: includeDeleted, expected: expected
    ) {
      response, raw throws(FlyAPIError) in
      do throws(ListingScanner.Malformed) {
        let page = try ListingScanner.scanOrgMachines(raw, ownerKey: ownerKey)
        return OrgListPage(
          items: page.items.map(transform), nextCursor: page.nextCursor, lastUpdatedAt: page.lastUpdatedAt,
          errorRegions: page.errorRegions)
      } catch {
        throw self.malformed(error, response)
      }
    }
  }

  /// The org-wide volume list, every page, like ``listOrgMachines(org:updatedAfter:includeDeleted:ownerKey:_:)``.
  public func listOrgVolumes<Item: Sendable>(
    org: String, updatedAfter: String?, includeDeleted: Bool, expected: Int = 0,
    _ transform: @Sendable (FlyVolume) -> Item
  ) async throws(FlyAPIError) -> OrgListPage<Item> {
    try await readOrgPages(
      org: org, noun: "volumes", updatedAfter: updatedAfter, includeDeleted: includeDeleted, expected: expected
    ) {
      response, raw throws(FlyAPIError) in
      do throws(ListingScanner.Malformed) {
        let page = try ListingScanner.scanOrgVolumes(raw)
        return OrgListPage(
          items: page.items.map(transform), nextCursor: page.nextCursor, lastUpdatedAt: page.lastUpdatedAt,
          errorRegions: page.errorRegions)
      } catch {
        throw self.malformed(error, response)
      }
    }
  }

  private func readOrgPages<Item: Sendable>(
    org: String, noun: String, updatedAfter: String?, includeDeleted: Bool, expected: Int,
    decode: (Response, UnsafeRawBufferPointer) throws(FlyAPIError) -> OrgListPage<Item>
  ) async throws(FlyAPIError) -> OrgListPage<Item> {
    var all = OrgListPage<Item>(items: [], nextCursor: nil, lastUpdatedAt: nil, errorRegions: [])
    if updatedAfter == nil, expected > 0 {
      all.items.reserveCapacity(min(expected, configuration.maxItems) + expected / 64 + 16)
    }
    var regions: Set<String> = []
    var cursor: String?
    var seen: Set<String> = []
    var pages = 0
    let listStarted = ContinuousClock.now
    let path = "/v1/orgs/\(Self.escape(org))/\(noun)"
    let endpoint = "GET /orgs/\(noun)"
    repeat {
      try countPage(&pages, since: listStarted)
      let response = try await page(cursor, since: listStarted) { cursor throws(FlyAPIError) in
        var query: [(String, String)] = [("limit", String(self.configuration.pageSize))]
        if includeDeleted { query.append(("include_deleted", "true")) }
        if let cursor {
          query.append(("cursor", cursor))
        } else if let updatedAfter {
          query.append(("updated_after", updatedAfter))
        }
        return try await self.send(.GET, path, query: query, endpoint: endpoint)
      }
      let decoded: Result<OrgListPage<Item>, FlyAPIError> = response.body.withUnsafeReadableBytes { raw in
        do throws(FlyAPIError) {
          return .success(try decode(response, raw))
        } catch {
          return .failure(error)
        }
      }
      let page = try decoded.get()
      all.items.append(contentsOf: page.items)
      try countItems(all.items.count)
      regions.formUnion(page.errorRegions)
      if let last = page.lastUpdatedAt { all.lastUpdatedAt = last }
      if let next = page.nextCursor, !seen.insert(next).inserted {
        throw FlyAPIError(
          code: .invalidResponse, message: "next_cursor repeated a cursor already followed", operation: "list")
      }
      cursor = page.nextCursor
    } while cursor != nil
    all.errorRegions = regions.sorted()
    return all
  }

  /// A list page the scanner refused, as the client's error.
  private func malformed(_ error: ListingScanner.Malformed, _ response: Response) -> FlyAPIError {
    FlyAPIError(
      code: .invalidResponse, status: response.status,
      message: "\(error.reason) at byte \(error.offset): \(excerpt(response.body))", requestID: response.requestID,
      operation: response.operation)
  }

  private func readPages<Item: Sendable>(
    previous: consuming PagedList<Item>?, expected: Int, _ fetch: (String?) async throws(FlyAPIError) -> Response,
    decode: (Response, UnsafeRawBufferPointer) throws(FlyAPIError) -> [Item]
  ) async throws(FlyAPIError) -> PagedList<Item> {
    var builder = PagedListBuilder(previous: previous.take(), expected: expected)
    var cursor: String?
    var seen: Set<String> = []
    var pages = 0
    let listStarted = ContinuousClock.now
    repeat {
      try countPage(&pages, since: listStarted)
      let response = try await page(cursor, since: listStarted, fetch)
      let added: Result<Void, FlyAPIError> = response.body.withUnsafeReadableBytes { raw in
        do throws(FlyAPIError) {
          try builder.add(raw) { raw throws(FlyAPIError) in try decode(response, raw) }
          return .success(())
        } catch {
          return .failure(error)
        }
      }
      try added.get()
      try countItems(builder.count)
      let next = response.nextCursor
      if let next, !seen.insert(next).inserted {
        throw FlyAPIError(
          code: .invalidResponse, message: "fly-next-cursor repeated a cursor already followed", operation: "list")
      }
      cursor = next
    } while cursor != nil
    return builder.finish()
  }

  /// `GET /v1/apps/{app}/machines/{id}`.
  public func getMachine(_ id: String) async throws(FlyAPIError) -> FlyMachine {
    try decode(FlyMachine.self, try await send(.GET, machinePath(id), endpoint: "GET /machines/{id}"))
  }

  /// `POST /v1/apps/{app}/machines`. Not idempotent: after an error whose
  /// ``FlyAPIError/outcomeUnknown`` is true, look the machine up before creating it again.
  public func createMachine(_ request: CreateMachineRequest) async throws(FlyAPIError) -> FlyMachine {
    try decode(
      FlyMachine.self, try await send(.POST, "\(appPath)/machines", body: request, endpoint: "POST /machines"))
  }

  /// `POST /v1/apps/{app}/machines/{id}`: replaces the machine's config (a new version). With
  /// `currentVersion`, a machine changed since answers 409 (``FlyAPIError/Code/conflict``) and
  /// nothing changes.
  public func updateMachine(_ id: String, _ request: UpdateMachineRequest) async throws(FlyAPIError) -> FlyMachine {
    try decode(FlyMachine.self, try await send(.POST, machinePath(id), body: request, endpoint: "POST /machines/{id}"))
  }

  /// `POST …/machines/{id}/start`.
  @discardableResult
  public func startMachine(_ id: String, leaseNonce: String? = nil) async throws(FlyAPIError) -> StartMachineResponse {
    let response = try await send(
      .POST, machinePath(id) + "/start", nonce: leaseNonce, endpoint: "POST /machines/{id}/start")
    return (try? decode(StartMachineResponse.self, response)) ?? StartMachineResponse()
  }

  /// `POST …/machines/{id}/stop`.
  public func stopMachine(
    _ id: String, _ request: StopMachineRequest? = nil, leaseNonce: String? = nil
  ) async throws(FlyAPIError) {
    _ = try await send(
      .POST, machinePath(id) + "/stop", body: request, nonce: leaseNonce, endpoint: "POST /machines/{id}/stop")
  }

  /// `DELETE …/machines/{id}`; `force` kills a running machine.
  public func destroyMachine(_ id: String, force: Bool = false, leaseNonce: String? = nil) async throws(FlyAPIError) {
    _ = try await send(
      .DELETE, machinePath(id), query: [("force", force ? "true" : "false")], nonce: leaseNonce,
      endpoint: "DELETE /machines/{id}")
  }

  /// `GET …/machines/{id}/wait`: blocks until the machine reaches `state` or `timeout` (1 to 60 s)
  /// passes, which Fly answers with 408 (``FlyAPIError/Code/timeout``).
  @discardableResult
  public func waitMachine(
    _ id: String, state: String = "started", timeout: Duration = .seconds(60), instanceID: String? = nil
  ) async throws(FlyAPIError) -> WaitMachineResponse {
    let seconds = max(1, min(60, Int(timeout.components.seconds)))
    var items = [("state", state), ("timeout", String(seconds))]
    if let instanceID { items.append(("instance_id", instanceID)) }
    let response = try await send(
      .GET, machinePath(id) + "/wait", query: items, timeout: .seconds(seconds) + configuration.requestTimeout,
      endpoint: "GET /machines/{id}/wait")
    return (try? decode(WaitMachineResponse.self, response)) ?? WaitMachineResponse()
  }

  /// `POST …/machines/{id}/lease`: 409 when someone else holds it.
  public func acquireLease(
    _ id: String, ttl: Int, description: String? = nil, refreshing nonce: String? = nil
  ) async throws(FlyAPIError) -> FlyLease {
    struct Body: Encodable {
      var ttl: Int
      var description: String?
    }
    let response = try await send(
      .POST, machinePath(id) + "/lease", body: Body(ttl: ttl, description: description), nonce: nonce,
      endpoint: "POST /machines/{id}/lease")
    return try decodeEnveloped(FlyLease.self, response)
  }

  /// `DELETE …/machines/{id}/lease` with the lease's nonce.
  public func releaseLease(_ id: String, nonce: String) async throws(FlyAPIError) {
    _ = try await send(.DELETE, machinePath(id) + "/lease", nonce: nonce, endpoint: "DELETE /machines/{id}/lease")
  }

  // MARK: Volumes

  /// One page of `GET /v1/apps/{app}/volumes`.
  public func listVolumesPage(
    summary: Bool = true, limit: Int? = nil, cursor: String? = nil
  ) async throws(FlyAPIError) -> (volumes: [FlyVolume], next: String?) {
    var items: [(String, String)] = []
    if summary { items.append(("summary", "true")) }
    if let limit { items.append(("limit", String(limit))) }
    if let cursor { items.append(("cursor", cursor)) }
    let response = try await send(.GET, "\(appPath)/volumes", query: items, endpoint: "GET /volumes")
    return (try decode([FlyVolume].self, response), response.nextCursor)
  }

  /// The whole volume list, every page (volumes in destroy states included, as Fly returns them).
  public func listVolumes(summary: Bool = true) async throws(FlyAPIError) -> [FlyVolume] {
    try await readAll { cursor throws(FlyAPIError) in
      try await self.listVolumesPage(summary: summary, limit: self.configuration.pageSize, cursor: cursor)
    }
  }

  /// `POST /v1/apps/{app}/volumes`. Not idempotent; volume names are not unique on Fly.
  public func createVolume(_ request: CreateVolumeRequest) async throws(FlyAPIError) -> FlyVolume {
    try decode(FlyVolume.self, try await send(.POST, "\(appPath)/volumes", body: request, endpoint: "POST /volumes"))
  }

  /// `GET /v1/apps/{app}/volumes/{id}`.
  public func getVolume(_ id: String) async throws(FlyAPIError) -> FlyVolume {
    try decode(FlyVolume.self, try await send(.GET, volumePath(id), endpoint: "GET /volumes/{id}"))
  }

  /// `PUT /v1/apps/{app}/volumes/{id}/extend`: grow only.
  public func extendVolume(_ id: String, sizeGB: Int) async throws(FlyAPIError) -> ExtendVolumeResponse {
    struct Body: Encodable {
      var size_gb: Int
    }
    return try decode(
      ExtendVolumeResponse.self,
      try await send(
        .PUT, volumePath(id) + "/extend", body: Body(size_gb: sizeGB), endpoint: "PUT /volumes/{id}/extend"))
  }

  /// `DELETE /v1/apps/{app}/volumes/{id}`: refused (412) while a machine holds the volume.
  @discardableResult
  public func deleteVolume(_ id: String) async throws(FlyAPIError) -> FlyVolume? {
    let response = try await send(.DELETE, volumePath(id), endpoint: "DELETE /volumes/{id}")
    return try? decode(FlyVolume.self, response)
  }

  /// `GET …/volumes/{id}/snapshots`: the volume's snapshots, daily and on demand.
  public func listSnapshots(volumeID: String) async throws(FlyAPIError) -> [FlySnapshot] {
    try decode(
      [FlySnapshot].self,
      try await send(.GET, volumePath(volumeID) + "/snapshots", endpoint: "GET /volumes/{id}/snapshots"))
  }

  /// `POST …/volumes/{id}/snapshots`: takes one now. Fly's answer carries no snapshot (the spec
  /// documents no body): the new one is found by listing.
  public func createSnapshot(volumeID: String) async throws(FlyAPIError) {
    _ = try await send(.POST, volumePath(volumeID) + "/snapshots", endpoint: "POST /volumes/{id}/snapshots")
  }

  /// `GET …/machines/{id}/events?limit=` (at most 50, newest first).
  public func machineEvents(_ id: String, limit: Int = 50) async throws(FlyAPIError) -> [FlyMachineEvent] {
    try decode(
      [FlyMachineEvent].self,
      try await send(
        .GET, machinePath(id) + "/events", query: [("limit", String(min(50, max(1, limit))))],
        endpoint: "GET /machines/{id}/events"))
  }

  // MARK: Plumbing

  func machinePath(_ id: String) -> String { "\(appPath)/machines/\(Self.escape(id))" }
  private func volumePath(_ id: String) -> String { "\(appPath)/volumes/\(Self.escape(id))" }

  private func readAll<Item>(
    _ page: (String?) async throws(FlyAPIError) -> ([Item], String?)
  ) async throws(FlyAPIError) -> [Item] {
    var all: [Item] = []
    var cursor: String?
    var seen: Set<String> = []
    var pages = 0
    let listStarted = ContinuousClock.now
    repeat {
      try countPage(&pages, since: listStarted)
      let (items, next) = try await self.page(cursor, since: listStarted, page)
      all.append(contentsOf: items)
      try countItems(all.count)
      if let next, !seen.insert(next).inserted {
        throw FlyAPIError(
          code: .invalidResponse, message: "fly-next-cursor repeated a cursor already followed", operation: "list")
      }
      cursor = next
    } while cursor != nil
    return all
  }

  /// One page of a walk. A 429 is not the end of the walk: the page is asked again once the wait
  /// Fly announced (or the bucket's refill) is over, the pages already read are kept, and the walk
  /// goes on. Restarting it from page 1 would spend the bucket on pages already read; at 10k users
  /// under Fly's limits such a walk never finished. The list's own deadline still bounds the wait.
  private func page<Answer>(
    _ cursor: String?, since started: ContinuousClock.Instant,
    _ fetch: (String?) async throws(FlyAPIError) -> Answer
  ) async throws(FlyAPIError) -> Answer {
    // The waits are on the client's clock (a test's virtual one), so the bound is measured there too.
    let firstRefused = clock.now()
    let limit = Double(configuration.listTimeout.components.seconds)
    var refusals = 0
    while true {
      do {
        return try await fetch(cursor)
      } catch  where error.status == 429 {
        // The gate now holds this bucket until the Retry-After; the next attempt waits there.
        // A page refused 30 times in a row (a bucket someone else keeps empty) ends the walk.
        refusals += 1
        guard refusals < Self.maxRefusalsPerPage, ContinuousClock.now - started <= configuration.listTimeout,
          clock.now() - firstRefused < limit
        else {
          throw error
        }
        logger.debug(
          "fly list page rate limited; waiting and going on",
          metadata: ["op": "\(error.operation)", "retry_after": "\(error.retryAfter ?? 1)"])
      }
    }
  }

  /// How many 429s in a row one list page may get before the walk gives up.
  static let maxRefusalsPerPage = 30

  /// A list is read in at most ``FlyClientConfiguration/maxPages`` pages: a server whose
  /// `fly-next-cursor` changes forever ends the read with an error instead of growing memory forever.
  private func countPage(_ pages: inout Int, since started: ContinuousClock.Instant) throws(FlyAPIError) {
    pages += 1
    // And in time: pages each answered just inside the request deadline must not hold a pass for hours.
    guard ContinuousClock.now - started <= configuration.listTimeout else {
      throw FlyAPIError(
        code: .transport, message: "list read exceeded \(configuration.listTimeout) in all", transportKind: .deadline,
        operation: "list")
    }
    guard pages <= configuration.maxPages else {
      throw FlyAPIError(
        code: .invalidResponse,
        message: "list exceeded \(configuration.maxPages) pages (fly-next-cursor never ended)", operation: "list")
    }
  }

  /// A list holds at most ``FlyClientConfiguration/maxItems`` items, however many each page holds.
  private func countItems(_ count: Int) throws(FlyAPIError) {
    guard count <= configuration.maxItems else {
      throw FlyAPIError(
        code: .invalidResponse,
        message: "list exceeded \(configuration.maxItems) items (pages hold more than their limit)", operation: "list")
    }
  }

  struct Response {
    var status: Int
    var headers: HTTPHeaders
    var body: ByteBuffer
    var operation: String
    var requestID: String? { headers.first(name: "fly-request-id") }
    var nextCursor: String? {
      guard let value = headers.first(name: "fly-next-cursor"), !value.isEmpty else { return nil }
      return value
    }
  }

  static let noBody: String? = nil
  /// The list endpoints, paced by ``FlyClientConfiguration/listPacing``.
  static let pacedEndpoints: Set<String> = ["GET /machines", "GET /volumes", "GET /orgs/machines", "GET /orgs/volumes"]

  func send(
    _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: (some Encodable & Sendable)? = noBody,
    nonce: String? = nil, timeout: Duration? = nil, endpoint: String
  ) async throws(FlyAPIError) -> Response {
    let operation = "\(method.rawValue) \(path)"
    var url = configuration.baseURL + path
    if !query.isEmpty {
      url += "?" + query.map { "\(Self.escape($0.0))=\(Self.escape($0.1))" }.joined(separator: "&")
    }
    var headers = [
      ("Authorization", configuration.token.authorization), ("User-Agent", configuration.userAgent),
      ("Accept", "application/json"),
    ]
    if let nonce { headers.append(("fly-machine-lease-nonce", nonce)) }
    var data: Data?
    if let body {
      do { data = try JSONEncoder().encode(body) } catch {
        throw FlyAPIError(code: .badRequest, message: "could not encode the request body", operation: operation)
      }
      headers.append(("Content-Type", "application/json"))
    }
    let request = FlyHTTPRequest(method: method.rawValue, url: url, headers: headers, body: data)
    // A 429 announced a wait for this kind of request: it is waited out before sending, not after.
    let bucket = RateLimitGate.key(endpoint: endpoint, operation: operation)
    do {
      if let pacing = configuration.listPacing, Self.pacedEndpoints.contains(endpoint) {
        try await gate.pace(bucket, rate: pacing.rate, burst: pacing.burst)
      }
      try await gate.wait(bucket)
    } catch {
      throw FlyAPIError(
        code: .transport, message: "cancelled while waiting out a Retry-After", transportKind: .deadline,
        operation: operation)
    }
    let started = ContinuousClock.now
    // One deadline for the whole exchange, fixed before anything is sent: a server that drips its
    // answer (50 bytes a second) is cut off at the deadline like one that never answers.
    let deadline = started.advanced(by: timeout ?? configuration.requestTimeout)
    do {
      let response = try await transport.exchange(request, maxBytes: configuration.maxBodyBytes, deadline: deadline)
      let result = Response(
        status: response.status, headers: response.headers, body: response.body, operation: operation)
      if let header = response.headers.first(name: "Date"), header != serverDate.withLock({ $0?.header }),
        let date = Self.httpDate(header)
      {
        // Parsed once per distinct header (once a second at most), not once per page.
        serverDate.withLock { $0 = (header, date, .now) }
      }
      observer?(FlyRequestRecord(endpoint: endpoint, status: result.status, duration: .now - started))
      logger.trace(
        "fly request",
        metadata: ["op": "\(operation)", "status": "\(result.status)", "fly_request_id": "\(result.requestID ?? "")"])
      if result.status >= 300 {
        let error = httpError(result)
        if result.status == 429 { gate.pause(bucket, seconds: error.retryAfter ?? 1) }
        throw error
      }
      return result
    } catch let error as FlyAPIError {
      throw error
    } catch let error as FlyBodyTooLarge {
      observer?(FlyRequestRecord(endpoint: endpoint, status: error.status, duration: .now - started))
      throw FlyAPIError(
        code: .invalidResponse, status: error.status, message: "body larger than \(configuration.maxBodyBytes) bytes",
        requestID: error.requestID, operation: operation)
    } catch {
      observer?(FlyRequestRecord(endpoint: endpoint, status: nil, duration: .now - started))
      throw transportError(error, operation: operation)
    }
  }

  private func httpError(_ response: Response) -> FlyAPIError {
    struct ErrorBody: Decodable {
      var error: String?
      var message: String?
      var status: String?
    }
    let parsed = try? JSONDecoder().decode(ErrorBody.self, from: Data(buffer: response.body))
    let text = parsed?.message ?? parsed?.error ?? excerpt(response.body)
    let flyStatus = parsed?.status.flatMap { ["error", "success"].contains($0) ? nil : $0 }
    var retryAfter: Double?
    if let header = response.headers.first(name: "Retry-After") { retryAfter = Self.parseRetryAfter(header) }
    return FlyAPIError(
      code: FlyAPIError.code(forStatus: response.status, flyStatus: flyStatus), status: response.status,
      message: redact(text), flyStatus: flyStatus, requestID: response.requestID, retryAfter: retryAfter,
      operation: response.operation)
  }

  private func transportError(_ error: any Error, operation: String) -> FlyAPIError {
    let kind: FlyAPIError.TransportKind
    let text = String(describing: error)
    if let error = error as? HTTPClientError {
      switch error {
      case .deadlineExceeded, .readTimeout, .writeTimeout: kind = .deadline
      case .connectTimeout: kind = .connect
      default: kind = text.contains("onnect") && !text.contains("Closed") ? .connect : .reset
      }
    } else if error is FlyDeadlineExceeded {
      kind = .deadline
    } else if text.contains("refused") || text.contains("NIOConnectionError") || text.contains("connectTimeout") {
      kind = .connect
    } else if error is CancellationError {
      kind = .deadline
    } else {
      kind = .reset
    }
    return FlyAPIError(
      code: .transport, message: String(redact(text).prefix(200)), transportKind: kind, operation: operation)
  }

  func decode<T: Decodable>(_ type: T.Type, _ response: Response) throws(FlyAPIError) -> T {
    try checkNesting(response)
    do {
      return try JSONDecoder().decode(T.self, from: Data(buffer: response.body, byteTransferStrategy: .noCopy))
    } catch {
      throw invalid(response, because: error)
    }
  }

  /// Lease answers come as `{"status":"success","data":{…}}` (docs) or flat (spec): accept both.
  private func decodeEnveloped<T: Decodable>(_ type: T.Type, _ response: Response) throws(FlyAPIError) -> T {
    try checkNesting(response)
    if let envelope = try? JSONDecoder().decode(Envelope<T>.self, from: Data(buffer: response.body)) {
      return envelope.data
    }
    return try decode(T.self, response)
  }

  /// A body nested deeper than ``JSONValue/maxDepth`` is refused before any parser recurses into it.
  private func checkNesting(_ response: Response) throws(FlyAPIError) {
    guard let offset = response.body.withUnsafeReadableBytes({ JSONNesting.tooDeep($0) }) else { return }
    throw FlyAPIError(
      code: .invalidResponse, status: response.status,
      message: "nesting deeper than \(JSONValue.maxDepth) at byte \(offset): \(excerpt(response.body))",
      requestID: response.requestID, operation: response.operation)
  }

  private func invalid(_ response: Response, because error: any Error) -> FlyAPIError {
    var reason = "unexpected body"
    if let error = error as? DecodingError {
      switch error {
      case .keyNotFound(let key, _): reason = "missing field \(key.stringValue)"
      case .typeMismatch(_, let context), .valueNotFound(_, let context):
        reason = "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
      case .dataCorrupted(let context):
        reason = context.debugDescription.hasPrefix("nesting deeper than") ? context.debugDescription : "not JSON"
      @unknown default: break
      }
    }
    return FlyAPIError(
      code: .invalidResponse, status: response.status, message: "\(reason): \(excerpt(response.body))",
      requestID: response.requestID, operation: response.operation)
  }

  fileprivate func excerpt(_ body: ByteBuffer) -> String {
    // Scrubbed whole (a first part of the body, generously), then cut: a secret straddling the cut
    // is never printed in part.
    let text = redact(String(decoding: body.readableBytesView.prefix(64 << 10), as: UTF8.self))
    let cleaned = String(
      text.unicodeScalars.prefix(160).map { $0.properties.generalCategory == .control ? " " : Character($0) })
    return text.unicodeScalars.count > 160 || body.readableBytes > 64 << 10 ? cleaned + "…" : cleaned
  }

  private func redact(_ text: String) -> String {
    var result = text
    for secret in [configuration.token.value] + configuration.redactions where secret.count >= 4 {
      result = result.replacingOccurrences(of: secret, with: "<redacted>")
    }
    return configuration.scrub?(result) ?? result
  }

  /// Fly's clock now, as its last `Date` header said (advanced by the time since), when one came:
  /// a check of the controller's own clock, which retention deletes depend on.
  public func serverNow() -> Double? {
    serverDate.withLock { value in
      value.map { $0.date + Double((ContinuousClock.now - $0.at).components.seconds) }
    }
  }

  /// An HTTP-date in any of its three forms (RFC 9110 §5.6.7), as Unix seconds.
  static func httpDate(_ text: String) -> Double? {
    // asctime pads a one-digit day with a space: "Sun Nov  6 08:49:37 1994".
    let single = text.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "GMT")
    for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
      formatter.dateFormat = format
      if let date = formatter.date(from: single) { return date.timeIntervalSince1970 }
    }
    return nil
  }

  /// `Retry-After` as seconds from now: delta-seconds (digits, read as a `Double`, never an `Int`)
  /// or an HTTP-date in any of RFC 9110's three formats, relative to `now`, clamped to
  /// 0…``FlyAPIError/maxRetryAfter`` whatever was sent (a date in year 9999 or twenty digits must
  /// neither pause every writer forever nor overflow an integer); nil when unreadable (a sign, an
  /// exponent, hex, `inf`, `nan`).
  static func parseRetryAfter(_ header: String, now: Date = Date()) -> Double? {
    let text = header.trimmingCharacters(in: .whitespaces)
    guard !text.isEmpty, text.utf8.count <= 64 else { return nil }
    var seconds: Double?
    if text.utf8.allSatisfy({ (0x30...0x39).contains($0) || $0 == UInt8(ascii: ".") }) {
      seconds = Double(text)
    } else {
      // A date already past: retry now.
      seconds = httpDate(text).map { max(0, $0 - now.timeIntervalSince1970) }
    }
    return seconds.flatMap(FlyAPIError.boundedRetryAfter)
  }

  static func escape(_ text: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
  }
}

private struct Envelope<T: Decodable>: Decodable { var data: T }

extension Duration {
  /// The duration in nanoseconds, saturated at `Int64.max` (a timeout of centuries must not trap).
  var nanoseconds: Int64 {
    let (seconds, attoseconds) = components
    let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    if overflow { return seconds < 0 ? .min : .max }
    let (total, overflowAgain) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
    return overflowAgain ? (seconds < 0 ? .min : .max) : total
  }
}
