public import AsyncHTTPClient
public import Foundation
public import NIOCore
import NIOFoundationCompat
public import NIOHTTP1

/// One request as the client builds it: method, absolute URL, headers, body.
public struct FlyHTTPRequest: Sendable {
  public var method: String
  /// `https://api.machines.dev/v1/apps/a/machines?limit=1000`.
  public var url: String
  public var headers: [(String, String)]
  public var body: Data?

  public init(method: String, url: String, headers: [(String, String)], body: Data?) {
    self.method = method
    self.url = url
    self.headers = headers
    self.body = body
  }

  /// The path and query, without scheme and host.
  public var target: String {
    guard let scheme = url.range(of: "://") else { return url }
    let rest = url[scheme.upperBound...]
    guard let slash = rest.firstIndex(of: "/") else { return "/" }
    return String(rest[slash...])
  }
}

/// One answer, read whole.
public struct FlyHTTPResponse: Sendable {
  public var status: Int
  public var headers: HTTPHeaders
  public var body: ByteBuffer

  public init(status: Int, headers: HTTPHeaders, body: ByteBuffer) {
    self.status = status
    self.headers = headers
    self.body = body
  }
}

/// How the client's requests reach Fly: over HTTP (``HTTPClientTransport``), or in-process to a
/// simulator's handler (tests and benchmarks, no socket). Everything else (pagination, decoding,
/// typed errors, deadlines on lists) is the client's, whichever transport carries it.
public protocol FlyTransport: Sendable {
  /// Sends `request` and reads its whole answer, at most `maxBytes` of body (else throws
  /// ``FlyBodyTooLarge``), before `deadline` (else throws ``FlyDeadlineExceeded``).
  func exchange(_ request: FlyHTTPRequest, maxBytes: Int, deadline: ContinuousClock.Instant) async throws
    -> FlyHTTPResponse
}

/// The answer's body was larger than the client accepts.
public struct FlyBodyTooLarge: Error, Sendable {
  public var status: Int
  public var requestID: String?
  public init(status: Int, requestID: String?) {
    self.status = status
    self.requestID = requestID
  }
}

/// The deadline passed before the body was read whole (the read is cancelled).
public struct FlyDeadlineExceeded: Error, Sendable, CustomStringConvertible {
  public init() {}
  public var description: String { "deadline exceeded (the whole exchange, body included)" }
}

/// Requests over HTTP with AsyncHTTPClient.
public struct HTTPClientTransport: FlyTransport {
  private let client: HTTPClient
  public init(_ client: HTTPClient = .shared) { self.client = client }

  public func exchange(_ request: FlyHTTPRequest, maxBytes: Int, deadline: ContinuousClock.Instant) async throws
    -> FlyHTTPResponse
  {
    var outgoing = HTTPClientRequest(url: request.url)
    outgoing.method = HTTPMethod(rawValue: request.method)
    for (name, value) in request.headers { outgoing.headers.add(name: name, value: value) }
    if let body = request.body { outgoing.body = .bytes(ByteBuffer(data: body)) }
    // The HTTP client's own deadline bounds connect and head (and names a refused connection as
    // such); the body read races what is left of the whole exchange's deadline.
    let left = ContinuousClock.now.duration(to: deadline)
    let response = try await client.execute(outgoing, deadline: .now() + .nanoseconds(max(0, left.nanoseconds)))
    let status = Int(response.status.code)
    do {
      let body = try await Self.collect(response.body, upTo: maxBytes, before: deadline)
      return FlyHTTPResponse(status: status, headers: response.headers, body: body)
    } catch is NIOTooManyBytesError {
      throw FlyBodyTooLarge(status: status, requestID: response.headers.first(name: "fly-request-id"))
    }
  }

  /// Reads `body` whole (at most `maxBytes`), cancelling the read and throwing
  /// ``FlyDeadlineExceeded`` when `deadline` passes first.
  static func collect(
    _ body: HTTPClientResponse.Body, upTo maxBytes: Int, before deadline: ContinuousClock.Instant
  ) async throws -> ByteBuffer {
    try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
      group.addTask { try await body.collect(upTo: maxBytes) }
      group.addTask {
        try await Task.sleep(until: deadline, clock: .continuous)
        return nil
      }
      defer { group.cancelAll() }
      guard let first = try await group.next(), let bytes = first else { throw FlyDeadlineExceeded() }
      return bytes
    }
  }
}

/// The calls the reconciler makes to Fly. ``FlyClient`` answers them over any ``FlyTransport``;
/// a test may answer them itself (a hostile or lying Fly).
public protocol FlyMachinesAPI: Sendable {
  /// What must never be printed (the token): the controller's redactor learns it.
  var credentials: [String] { get }
  /// The Fly app users' machines are made in (a template's `{{app_name}}`).
  var appName: String { get }
  /// When Fly's clock says it is now (its last `Date` header, advanced since), if it said.
  func serverNow() -> Double?

  /// The whole machine list as listings, re-using the pages of `previous` that did not change.
  func listMachineListings<Item: Sendable>(
    ownerKey: String, includeDeleted: Bool, previous: consuming PagedList<Item>?, expected: Int,
    _ transform: @Sendable (FlyMachineListing) -> Item
  ) async throws(FlyAPIError) -> PagedList<Item>
  /// The whole volume list, likewise.
  func listVolumes<Item: Sendable>(
    previous: consuming PagedList<Item>?, expected: Int, _ transform: @Sendable (FlyVolume) -> Item
  ) async throws(FlyAPIError) -> PagedList<Item>

  /// The org-wide lists, every page (`GET /v1/orgs/{org}/machines|volumes`), from `updatedAfter`
  /// (RFC 3339) on when given, destroyed items included when `includeDeleted`; each item mapped by
  /// `transform` as its page is scanned. `expected`: about how many items a full read holds (the
  /// result's storage is allocated once at that size instead of grown by doubling).
  func listOrgMachines<Item: Sendable>(
    org: String, updatedAfter: String?, includeDeleted: Bool, ownerKey: String, expected: Int,
    _ transform: @Sendable (FlyMachineListing) -> Item
  ) async throws(FlyAPIError) -> OrgListPage<Item>
  func listOrgVolumes<Item: Sendable>(
    org: String, updatedAfter: String?, includeDeleted: Bool, expected: Int,
    _ transform: @Sendable (FlyVolume) -> Item
  ) async throws(FlyAPIError) -> OrgListPage<Item>

  /// Look-ups before a create again.
  func listMachines(_ query: ListMachinesQuery) async throws(FlyAPIError) -> [FlyMachine]
  func listVolumes(summary: Bool) async throws(FlyAPIError) -> [FlyVolume]
  /// Reads by id.
  func getMachine(_ id: String) async throws(FlyAPIError) -> FlyMachine
  func getVolume(_ id: String) async throws(FlyAPIError) -> FlyVolume

  func createVolume(_ request: CreateVolumeRequest) async throws(FlyAPIError) -> FlyVolume
  func createMachine(_ request: CreateMachineRequest) async throws(FlyAPIError) -> FlyMachine
  func startMachine(_ id: String, leaseNonce: String?) async throws(FlyAPIError) -> StartMachineResponse
  func stopMachine(_ id: String, _ request: StopMachineRequest?, leaseNonce: String?) async throws(FlyAPIError)
  func destroyMachine(_ id: String, force: Bool, leaseNonce: String?) async throws(FlyAPIError)
  func deleteVolume(_ id: String) async throws(FlyAPIError) -> FlyVolume?
  func updateMachine(_ id: String, _ request: UpdateMachineRequest) async throws(FlyAPIError) -> FlyMachine
  func extendVolume(_ id: String, sizeGB: Int) async throws(FlyAPIError) -> ExtendVolumeResponse
  /// Snapshots of a volume, and one taken now (Fly answers no id: list to find it).
  func listSnapshots(volumeID: String) async throws(FlyAPIError) -> [FlySnapshot]
  func createSnapshot(volumeID: String) async throws(FlyAPIError)
  /// Waits (at most 60 s, Fly's bound) for the machine to reach `state`.
  func waitMachine(_ id: String, state: String, timeout: Duration, instanceID: String?) async throws(FlyAPIError)
    -> WaitMachineResponse
  /// A machine's recent events (exits, with exit codes and OOM kills).
  func machineEvents(_ id: String, limit: Int) async throws(FlyAPIError) -> [FlyMachineEvent]

  /// This API for another app's machines and volumes (one app per user); the same app: itself.
  func forApp(_ name: String) -> any FlyMachinesAPI
  /// Apps of the org, every one.
  func listApps(org: String) async throws(FlyAPIError) -> [FlyApp]
  func createApp(_ request: CreateAppRequest) async throws(FlyAPIError) -> FlyApp
  /// This API's app.
  func getApp() async throws(FlyAPIError) -> FlyApp
  func deleteApp() async throws(FlyAPIError)
  func assignIP(_ request: AssignIPRequest) async throws(FlyAPIError) -> FlyIPAssignment
  func listIPs() async throws(FlyAPIError) -> [FlyIPAssignment]
  func setSecrets(_ values: [String: String?]) async throws(FlyAPIError) -> Int
  func listSecrets() async throws(FlyAPIError) -> [FlyAppSecret]
  func setMetadata(machineID: String, key: String, value: String) async throws(FlyAPIError)
}
