public import Foundation
import Synchronization

/// One HTTP request as the simulator handles it, independent of any server framework.
public struct SimulatorRequest: Sendable {
  public var method: String
  /// The path without the query.
  public var path: String
  /// Query items in order (a key may repeat).
  public var query: [(String, String)]
  /// Header names in lowercase.
  public var headers: [String: String]
  public var body: Data

  public init(
    method: String, path: String, query: [(String, String)] = [], headers: [String: String] = [:], body: Data = Data()
  ) {
    self.method = method
    self.path = path
    self.query = query
    self.headers = headers
    self.body = body
  }

  /// Parses `path?query` as it arrives on the wire.
  public init(method: String, target: String, headers: [String: String] = [:], body: Data = Data()) {
    let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
    let query =
      parts.count > 1
      ? parts[1].split(separator: "&").map { item -> (String, String) in
        let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        func decode(_ s: Substring) -> String {
          String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s)
        }
        return (decode(pair[0]), pair.count > 1 ? decode(pair[1]) : "")
      } : []
    self.init(method: method, path: String(parts[0]), query: query, headers: headers, body: body)
  }
}

/// One HTTP answer of the simulator.
public struct SimulatorResponse: Sendable {
  public var status: Int
  public var headers: [(String, String)]
  public var body: Data
  /// A list page's rendered items: joined into `body` after the model's lock is released, so two
  /// list walks (machines and volumes) are served side by side.
  var listItems: [String]? = nil
  var listWrap: (prefix: String, suffix: String)? = nil

  init(
    status: Int, headers: [(String, String)], body: Data, listItems: [String]? = nil,
    listWrap: (prefix: String, suffix: String)? = nil
  ) {
    self.status = status
    self.headers = headers
    self.body = body
    self.listItems = listItems
    self.listWrap = listWrap
  }

  /// `[item,item,…]` (inside `wrap`, when given) in one buffer sized up front.
  static func joinList(_ items: [String], wrap: (prefix: String, suffix: String)? = nil) -> Data {
    var size = 2 + max(0, items.count - 1) + (wrap.map { $0.prefix.utf8.count + $0.suffix.utf8.count } ?? 0)
    for item in items { size += item.utf8.count }
    var data = Data(capacity: size)
    if let wrap { data.append(contentsOf: wrap.prefix.utf8) }
    data.append(UInt8(ascii: "["))
    for (index, item) in items.enumerated() {
      if index > 0 { data.append(UInt8(ascii: ",")) }
      data.append(contentsOf: item.utf8)
    }
    data.append(UInt8(ascii: "]"))
    if let wrap { data.append(contentsOf: wrap.suffix.utf8) }
    return data
  }
}

/// One entry of the simulator's request log (`GET /_sim/requests`).
public struct SimulatorLogEntry: Sendable, Codable {
  public var seq: Int
  public var time: Double
  public var method: String
  public var path: String
  public var query: String
  /// A path template, e.g. `POST /machines/{id}/start`.
  public var endpoint: String
  public var status: Int
  public var requestID: String
  /// Fields of the body that Fly's schema does not define (Fly ignores them; a test asserts there are none).
  public var unknownFields: [String]
  /// The fault injected, if any (`error`, `rate_limit`, `timeout`, `lost_response`, `empty_list`).
  public var fault: String?
  /// The guards an update sent (`current_version`, `skip_launch`): what a test checks without the
  /// body (which may hold secrets) being kept.
  public var guards: [String] = []

  enum CodingKeys: String, CodingKey {
    case seq, time, method, path, query, endpoint, status, fault, guards
    case requestID = "request_id", unknownFields = "unknown_fields"
  }
}

/// The built-in Fly Machines API simulator: Fly's behaviour (states, timings, rate limits, leases,
/// quirks) plus fault injection, drift injection and inspection over `/_sim/*`.
///
/// It is a value-level handler (``handle(_:)``) that any HTTP server can front; ``SimulatorServer``
/// serves it over loopback.
public final class FlySimulator: Sendable {
  private struct State: Sendable {
    var model: SimulatorModel
    var faults: SimulatorFaults
    var buckets: [String: (tokens: Double, at: Double)] = [:]
    var log: [SimulatorLogEntry] = []
    var logSeq = 0
    var emptyMachineListPending = false
    var emptyVolumeListPending = false
  }

  public let configuration: SimulatorConfiguration
  public let clock: any SimulatorClock
  private let state: Mutex<State>
  private let validator: SpecValidator
  /// The most log entries kept (oldest dropped first).
  public let logCapacity: Int

  public init(
    configuration: SimulatorConfiguration, faults: SimulatorFaults = .init(),
    clock: any SimulatorClock = WallSimulatorClock(), logCapacity: Int = 200_000
  ) {
    self.configuration = configuration
    self.clock = clock
    self.logCapacity = logCapacity
    validator = SpecValidator.bundled
    var initial = State(model: SimulatorModel(configuration: configuration), faults: faults)
    initial.emptyMachineListPending = faults.emptyListOnce
    initial.emptyVolumeListPending = faults.emptyListOnce
    state = Mutex(initial)
  }

  /// Whether the shipped OpenAPI spec was found (create bodies are checked against it).
  public var validatesAgainstSpec: Bool { validator.isLoaded }

  /// The current faults.
  public var faults: SimulatorFaults {
    get { state.withLock { $0.faults } }
  }

  /// Replaces the faults (what `POST /_sim/faults` does).
  public func setFaults(_ faults: SimulatorFaults) {
    state.withLock {
      $0.faults = faults
      if faults.emptyListOnce {
        $0.emptyMachineListPending = true
        $0.emptyVolumeListPending = true
      }
    }
  }

  /// The request log from `since` (a `seq`) on.
  public func requestLog(since: Int = 0) -> [SimulatorLogEntry] {
    state.withLock { state in state.log.filter { $0.seq >= since } }
  }

  /// The app secrets a machine's environment holds, when it is on its app's latest secrets version
  /// (nil otherwise): what a test checks instead of reading values off any answer.
  public func machineSecrets(_ id: String) -> [String: String]? {
    state.withLock { $0.model.machineSecrets(id) }
  }

  /// The whole state as JSON (what `GET /_sim/state` answers).
  public func stateJSON() -> Data {
    let now = clock.now()
    return Data(state.withLock { $0.model.snapshot(now: now) }.utf8)
  }

  // MARK: Handling

  public func handle(_ request: SimulatorRequest) async -> SimulatorResponse {
    if request.path.hasPrefix("/_sim/") { return control(request) }
    let latency = state.withLock { $0.faults.latencyMs }
    if latency > 0 { try? await clock.sleep(seconds: Double(latency) / 1000) }
    if request.method == "GET", request.path.hasSuffix("/wait") { return await wait(request) }
    let now = clock.now()
    var (response, hold) = state.withLock { state in
      let response = respond(request, now: now, state: &state)
      // A held answer: done at Fly, never answered while the caller lives (a crash test's moment).
      let held =
        response.status < 300 && state.log.last.map { state.faults.holdAnswers.contains($0.endpoint) } == true
      return (response, held ? state.faults.holdSeconds : 0)
    }
    if hold > 0 {
      try? await clock.sleep(seconds: hold)
      hold = 0
    }
    if let items = response.listItems {
      response.body = SimulatorResponse.joinList(items, wrap: response.listWrap)
      response.listItems = nil
    }
    return response
  }

  private func finish(
    _ answer: SimAnswer, request: SimulatorRequest, endpoint: String, unknown: [String] = [], fault: String? = nil,
    now: Double, state: inout State
  ) -> SimulatorResponse {
    let requestID = state.model.newRequestID()
    state.logSeq += 1
    state.log.append(
      SimulatorLogEntry(
        seq: state.logSeq, time: now, method: request.method, path: request.path,
        query: request.query.map { "\($0.0)=\($0.1)" }.joined(separator: "&"), endpoint: endpoint,
        status: answer.status, requestID: requestID, unknownFields: unknown, fault: fault,
        guards: request.method == "POST" && (endpoint == "POST /machines/{id}" || endpoint == "POST /machines")
          ? Self.guards(request.body) : []))
    if state.log.count > logCapacity { state.log.removeFirst(state.log.count - logCapacity) }
    var headers = answer.headers
    headers.append(("fly-request-id", requestID))
    headers.append(("server", "Fly/sim"))
    headers.append(("via", "1.1 fly.io"))
    if !headers.contains(where: { $0.0 == "content-type" }) {
      headers.append(("content-type", "application/json; charset=utf-8"))
    }
    return SimulatorResponse(
      status: answer.status, headers: headers, body: answer.items == nil ? Data(answer.body.utf8) : Data(),
      listItems: answer.items, listWrap: answer.wrap)
  }

  /// Which guards an update body carries.
  private static func guards(_ body: Data) -> [String] {
    guard let object = SimJSON.parse(body)?.object else { return [] }
    var guards: [String] = []
    if object["current_version"]?.string != nil { guards.append("current_version") }
    if object["skip_launch"]?.bool == true { guards.append("skip_launch") }
    if object["min_secrets_version"]?.int != nil { guards.append("min_secrets_version") }
    return guards
  }

  /// Route: (method, path pieces after `/v1/apps/{app}`) → endpoint template.
  private static func endpoint(method: String, rest: [Substring]) -> String? {
    switch (method, rest.count) {
    case ("GET", 1) where rest[0] == "machines": "GET /machines"
    case ("POST", 1) where rest[0] == "machines": "POST /machines"
    case ("GET", 2) where rest[0] == "machines": "GET /machines/{id}"
    case ("POST", 2) where rest[0] == "machines": "POST /machines/{id}"
    case ("GET", 3) where rest[0] == "machines" && rest[2] == "versions": "GET /machines/{id}/versions"
    case ("GET", 3) where rest[0] == "machines" && rest[2] == "events": "GET /machines/{id}/events"
    case ("PUT", 3) where rest[0] == "volumes" && rest[2] == "extend": "PUT /volumes/{id}/extend"
    case ("DELETE", 2) where rest[0] == "machines": "DELETE /machines/{id}"
    case ("POST", 3) where rest[0] == "machines" && rest[2] == "start": "POST /machines/{id}/start"
    case ("POST", 3) where rest[0] == "machines" && rest[2] == "stop": "POST /machines/{id}/stop"
    case ("GET", 3) where rest[0] == "machines" && rest[2] == "wait": "GET /machines/{id}/wait"
    case ("POST", 3) where rest[0] == "machines" && rest[2] == "lease": "POST /machines/{id}/lease"
    case ("DELETE", 3) where rest[0] == "machines" && rest[2] == "lease": "DELETE /machines/{id}/lease"
    case ("GET", 1) where rest[0] == "volumes": "GET /volumes"
    case ("POST", 1) where rest[0] == "volumes": "POST /volumes"
    case ("GET", 2) where rest[0] == "volumes": "GET /volumes/{id}"
    case ("DELETE", 2) where rest[0] == "volumes": "DELETE /volumes/{id}"
    case ("GET", 3) where rest[0] == "volumes" && rest[2] == "snapshots": "GET /volumes/{id}/snapshots"
    case ("POST", 3) where rest[0] == "volumes" && rest[2] == "snapshots": "POST /volumes/{id}/snapshots"
    case ("GET", 1) where rest[0] == "ip_assignments": "GET /ip_assignments"
    case ("POST", 1) where rest[0] == "ip_assignments": "POST /ip_assignments"
    case ("GET", 1) where rest[0] == "secrets": "GET /secrets"
    case ("POST", 1) where rest[0] == "secrets": "POST /secrets"
    case ("GET", 3) where rest[0] == "machines" && rest[2] == "metadata": "GET /machines/{id}/metadata"
    case ("POST", 4) where rest[0] == "machines" && rest[2] == "metadata": "POST /machines/{id}/metadata/{key}"
    case ("DELETE", 4) where rest[0] == "machines" && rest[2] == "metadata": "DELETE /machines/{id}/metadata/{key}"
    default: nil
    }
  }

  private func authorized(_ request: SimulatorRequest) -> Bool {
    guard let header = request.headers["authorization"] else { return false }
    return header == "Bearer \(configuration.token)" || header == "FlyV1 \(configuration.token)"
  }

  /// Token buckets per (action, machine or app), as Fly documents its limits.
  private func takeToken(endpoint: String, key: String, now: Double, state: inout State) -> Bool {
    guard configuration.rateLimitsEnabled else { return true }
    let (rate, burst): (Double, Double) =
      switch endpoint {
      case "GET /machines", "GET /volumes", "GET /orgs/machines", "GET /orgs/volumes":
        (configuration.listRate, configuration.listBurst)
      case "GET /machines/{id}", "GET /volumes/{id}", "GET /machines/{id}/wait", "GET /machines/{id}/versions",
        "GET /machines/{id}/events", "GET /volumes/{id}/snapshots", "GET /apps/{app}", "GET /ip_assignments",
        "GET /secrets", "GET /machines/{id}/metadata", "GET /apps":
        (configuration.getRate, configuration.getBurst)
      default: (configuration.mutationRate, configuration.mutationBurst)
      }
    let bucketKey = "\(endpoint)|\(key)"
    var bucket = state.buckets[bucketKey] ?? (burst, now)
    bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
    bucket.at = now
    guard bucket.tokens >= 1 else {
      state.buckets[bucketKey] = bucket
      return false
    }
    bucket.tokens -= 1
    state.buckets[bucketKey] = bucket
    return true
  }

  private func respond(_ request: SimulatorRequest, now: Double, state: inout State) -> SimulatorResponse {
    let pieces = request.path.split(separator: "/")
    if pieces.count == 4, pieces[0] == "v1", pieces[1] == "orgs", request.method == "GET",
      pieces[3] == "machines" || pieces[3] == "volumes"
    {
      return respondOrg(request, org: String(pieces[2]), machines: pieces[3] == "machines", now: now, state: &state)
    }
    var endpoint: String?
    if pieces.count >= 2, pieces[0] == "v1", pieces[1] == "apps" {
      switch (request.method, pieces.count) {
      case ("GET", 2): endpoint = "GET /apps"
      case ("POST", 2): endpoint = "POST /apps"
      case ("GET", 3): endpoint = "GET /apps/{app}"
      case ("DELETE", 3): endpoint = "DELETE /apps/{app}"
      default: endpoint = Self.endpoint(method: request.method, rest: Array(pieces.dropFirst(3)))
      }
    }
    guard let endpoint else {
      return finish(.error(404, "not found"), request: request, endpoint: "unknown", now: now, state: &state)
    }
    guard authorized(request) else {
      return finish(
        .error(401, "Authenticate: token validation error"), request: request, endpoint: endpoint, now: now,
        state: &state)
    }
    let app = pieces.count >= 3 ? String(pieces[2]) : nil
    if let app, state.model.ownApp(app) == nil {
      return finish(.error(404, "app not found"), request: request, endpoint: endpoint, now: now, state: &state)
    }
    let id = pieces.count >= 5 ? String(pieces[4]) : nil
    // Ids answer only under their own app's path.
    if let id, let app, Self.belongsElsewhere(id, app: app, machines: pieces[3] == "machines", model: state.model) {
      let noun = pieces[3] == "machines" ? "machine" : "volume"
      return finish(.error(404, "\(noun) not found"), request: request, endpoint: endpoint, now: now, state: &state)
    }
    let isMutation = request.method != "GET"

    // Rate limits first: Fly's limiter answers before anything else is looked at.
    if !takeToken(endpoint: endpoint, key: id ?? app ?? configuration.orgSlug, now: now, state: &state) {
      var answer = SimAnswer.error(429, "rate limit exceeded")
      if configuration.rateLimitRetryAfter { answer.headers.append(("Retry-After", "1")) }
      return finish(answer, request: request, endpoint: endpoint, fault: "bucket", now: now, state: &state)
    }
    // Injected faults.
    let faults = state.faults
    if faults.failEndpoints.contains(endpoint) {
      return finish(
        .error(503, "internal: injected outage of \(endpoint)"), request: request, endpoint: endpoint,
        fault: "fail_endpoint", now: now, state: &state)
    }
    let faultable = isMutation || !faults.mutationsOnly
    if faultable {
      if faults.rateLimitRate > 0, state.model.draw() < faults.rateLimitRate {
        var answer = SimAnswer.error(429, "rate limit exceeded")
        if let seconds = faults.retryAfterSeconds { answer.headers.append(("Retry-After", String(seconds))) }
        return finish(answer, request: request, endpoint: endpoint, fault: "rate_limit", now: now, state: &state)
      }
      if faults.errorRate > 0, state.model.draw() < faults.errorRate {
        return finish(
          .error(faults.errorStatus, "internal: injected error"), request: request, endpoint: endpoint,
          fault: "error", now: now, state: &state)
      }
      if faults.timeoutRate > 0, state.model.draw() < faults.timeoutRate {
        return finish(
          .error(408, "deadline_exceeded: request timed out"), request: request, endpoint: endpoint, fault: "timeout",
          now: now, state: &state)
      }
    }
    if state.faults.notFoundGets > 0, endpoint == "GET /machines/{id}" || endpoint == "GET /volumes/{id}" {
      state.faults.notFoundGets -= 1
      let noun = endpoint == "GET /machines/{id}" ? "machine" : "volume"
      return finish(
        .error(404, "\(noun) not found"), request: request, endpoint: endpoint, fault: "not_found", now: now,
        state: &state)
    }
    var unknown: [String] = []
    var answer = route(
      endpoint: endpoint, app: app ?? configuration.appName, id: id, request: request, now: now, state: &state,
      unknown: &unknown)
    var fault: String?
    if isMutation, answer.status < 300,
      faults.loseAnswers.contains(endpoint)
        || (faultable && faults.lostResponseRate > 0 && state.model.draw() < faults.lostResponseRate)
    {
      answer = SimAnswer(
        status: 502, body: "<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>",
        headers: [("content-type", "text/html")])
      fault = "lost_response"
    }
    if let marked = answer.headers.first(where: { $0.0 == "x-sim-fault" }) {
      answer.headers.removeAll { $0.0 == "x-sim-fault" }
      fault = marked.1
    }
    return finish(answer, request: request, endpoint: endpoint, unknown: unknown, fault: fault, now: now, state: &state)
  }

  /// Whether a machine or volume id is another app's (answered 404 under this one).
  private static func belongsElsewhere(_ id: String, app: String, machines: Bool, model: SimulatorModel) -> Bool {
    if machines { return model.machines[id].map { $0.app != app } ?? false }
    return model.volumes[id].map { $0.app != app } ?? false
  }

  /// `GET /v1/orgs/{org}/machines|volumes`: rate-limited, faulted and logged like the app's lists.
  private func respondOrg(
    _ request: SimulatorRequest, org: String, machines: Bool, now: Double, state: inout State
  ) -> SimulatorResponse {
    let endpoint = machines ? "GET /orgs/machines" : "GET /orgs/volumes"
    func done(_ answer: SimAnswer, fault: String? = nil) -> SimulatorResponse {
      finish(answer, request: request, endpoint: endpoint, fault: fault, now: now, state: &state)
    }
    guard authorized(request) else { return done(.error(401, "Authenticate: token validation error")) }
    guard org == configuration.orgSlug else { return done(.error(404, "organization not found")) }
    if !takeToken(endpoint: endpoint, key: org, now: now, state: &state) {
      var answer = SimAnswer.error(429, "rate limit exceeded")
      if configuration.rateLimitRetryAfter { answer.headers.append(("Retry-After", "1")) }
      return done(answer, fault: "bucket")
    }
    let faults = state.faults
    if !faults.mutationsOnly {
      if faults.rateLimitRate > 0, state.model.draw() < faults.rateLimitRate {
        var answer = SimAnswer.error(429, "rate limit exceeded")
        if let seconds = faults.retryAfterSeconds { answer.headers.append(("Retry-After", String(seconds))) }
        return done(answer, fault: "rate_limit")
      }
      if faults.errorRate > 0, state.model.draw() < faults.errorRate {
        return done(.error(faults.errorStatus, "internal: injected error"), fault: "error")
      }
    }
    var query = SimulatorModel.OrgQuery()
    query.includeDeleted = queryValue(request, "include_deleted") == "true"
    query.region = queryValue(request, "region")
    if let text = queryValue(request, "limit") {
      guard let value = Int(text), value >= 1 else { return done(.error(400, "invalid limit: \(text)")) }
      query.limit = min(value, configuration.maxPageSize)
    }
    var page = 0
    if let cursor = queryValue(request, "cursor"), !cursor.isEmpty {
      // The cursor takes precedence over updated_after.
      guard let parsed = SimulatorModel.parseOrgCursor(cursor) else { return done(.error(400, "invalid cursor")) }
      query.after = parsed.position
      page = parsed.page + 1
    } else if let text = queryValue(request, "updated_after") {
      guard let after = parseISOTimestamp(text) else {
        return done(.error(400, "invalid updated_after: must be RFC 3339"))
      }
      query.updatedAfter = faults.ignoreUpdatedAfter ? nil : after
    }
    if faults.shortPageRate > 0, state.model.draw() < faults.shortPageRate {
      query.shortTo = state.model.draw() < 0.5 ? 0 : max(1, query.limit / 3)
    }
    query.unreadableRegions = Set(faults.errorRegions)
    query.lateRate = faults.lateRate
    query.lateSeconds = faults.lateSeconds
    var result =
      machines
      ? state.model.orgListMachines(now: now, query: query, page: page)
      : state.model.orgListVolumes(now: now, query: query, page: page)
    if machines ? faults.emptyMachineLists : faults.emptyVolumeLists {
      // The lists lying, as for the app's lists: nothing, and nothing more.
      result = SimulatorModel.OrgPage(items: [], next: nil, lastID: nil, lastUpdatedAt: nil, errorRegions: [])
    }
    var tail = JSONWriter()
    tail.add("next_cursor", result.next)
    tail.add(machines ? "last_machine_id" : "last_volume_id", result.lastID)
    tail.add("last_updated_at", result.lastUpdatedAt.map(isoTimestamp))
    if machines || !result.errorRegions.isEmpty {
      tail.add("error_regions", raw: SimJSON.array(result.errorRegions.map { .string($0) }).text)
    }
    var suffix = tail.finished()
    suffix.removeFirst()
    var answer = SimAnswer(status: 200, body: "", items: result.items)
    answer.wrap = (#"{"\#(machines ? "machines" : "volumes")":"#, "," + suffix)
    return done(answer, fault: query.shortTo != nil ? "short_page" : nil)
  }

  private func queryValue(_ request: SimulatorRequest, _ name: String) -> String? {
    request.query.first { $0.0 == name }?.1
  }

  private func route(
    endpoint: String, app: String, id: String?, request: SimulatorRequest, now: Double, state: inout State,
    unknown: inout [String]
  ) -> SimAnswer {
    let nonce = request.headers["fly-machine-lease-nonce"]
    switch endpoint {
    case "GET /apps":
      guard let org = queryValue(request, "org_slug") else {
        return .error(400, "invalid_argument: org_slug is required")
      }
      var limit: Int?
      if let text = queryValue(request, "limit") {
        guard let value = Int(text), value >= 1, value <= 5000 else { return .error(400, "invalid limit: \(text)") }
        limit = value
      }
      return state.model.listApps(org: org, limit: limit, cursor: queryValue(request, "cursor"))

    case "POST /apps":
      guard let body = SimJSON.parse(request.body), let object = body.object else {
        return .error(400, "invalid character in request body: not a JSON object")
      }
      let outcome = validator.validate(body, against: "CreateAppRequest")
      unknown = outcome.unknownFields
      if let error = outcome.error { return .error(400, error) }
      return state.model.createApp(
        name: object["name"]?.string, org: object["org_slug"]?.string, network: object["network"]?.string,
        idempotencyKey: object["idempotency_key"]?.string, now: now)

    case "GET /apps/{app}":
      let counts = state.model.counts(app: app)
      return .json(state.model.render(app: state.model.ownApp(app)!, machineCount: counts.0, volumeCount: counts.1))

    case "DELETE /apps/{app}":
      return state.model.deleteApp(app, now: now)

    case "GET /ip_assignments":
      return state.model.listIPs(app: app)

    case "GET /volumes/{id}/snapshots":
      return state.model.listSnapshots(volume: id!, now: now)

    case "POST /volumes/{id}/snapshots":
      // Fly's spec documents no body for this answer: the snapshot is found by listing.
      let answer = state.model.createSnapshot(volume: id!, now: now)
      return answer.status == 200 ? SimAnswer(status: 200, body: "") : answer

    case "POST /ip_assignments":
      guard let body = SimJSON.parse(request.body), let object = body.object else {
        return .error(400, "invalid character in request body: not a JSON object")
      }
      let outcome = validator.validate(body, against: "assignIPRequest")
      unknown = outcome.unknownFields
      if let error = outcome.error { return .error(400, error) }
      return state.model.assignIP(
        app: app, type: object["type"]?.string, region: object["region"]?.string, now: now)

    case "GET /secrets":
      return state.model.listSecrets(app: app)

    case "POST /secrets":
      guard let body = SimJSON.parse(request.body), let values = body.object?["values"]?.object else {
        return .error(400, "invalid_argument: body must be {\"values\": {NAME: value or null}}")
      }
      return state.model.setSecrets(app: app, values: values, now: now)

    case "GET /machines/{id}/metadata":
      return state.model.metadata(machine: id!, now: now)

    case "POST /machines/{id}/metadata/{key}":
      guard let body = SimJSON.parse(request.body), let value = body.object?["value"]?.string else {
        return .error(400, "invalid_argument: body must be {\"value\": \"…\"}")
      }
      let key = String(request.path.split(separator: "/")[6])
      return state.model.writeMetadata(machine: id!, key: key, value: value, now: now)

    case "DELETE /machines/{id}/metadata/{key}":
      let key = String(request.path.split(separator: "/")[6])
      return state.model.writeMetadata(machine: id!, key: key, value: nil, now: now)

    case "GET /machines", "GET /volumes":
      var limit: Int?
      if let text = queryValue(request, "limit") {
        guard let value = Int(text), value >= 1, value <= configuration.maxPageSize else {
          return .error(400, "invalid limit: \(text)")
        }
        limit = value
      }
      let cursor = queryValue(request, "cursor")
      if let cursor, !cursor.hasPrefix("c_") || Int(cursor.dropFirst(2)) == nil {
        return .error(400, "invalid cursor")
      }
      // A Fly that does not page this list answers every item at once, whatever `limit` says.
      if !configuration.paginatesAppLists { limit = nil }
      let shortPage = limit != nil && state.faults.shortPageRate > 0 && state.model.draw() < state.faults.shortPageRate
      let isMachines = endpoint == "GET /machines"
      if isMachines ? state.emptyMachineListPending : state.emptyVolumeListPending {
        if isMachines { state.emptyMachineListPending = false } else { state.emptyVolumeListPending = false }
        if !state.emptyMachineListPending && !state.emptyVolumeListPending { state.faults.emptyListOnce = false }
        return SimAnswer(status: 200, body: "[]", headers: [("x-sim-fault", "empty_list")])
      }
      if isMachines ? state.faults.emptyMachineLists : state.faults.emptyVolumeLists {
        return SimAnswer(status: 200, body: "[]", headers: [("x-sim-fault", "empty_list")])
      }
      let page: SimulatorModel.Page
      if isMachines {
        var metadata: [String: String] = [:]
        for (key, value) in request.query where key.hasPrefix("metadata.") && !state.faults.ignoreMetadataFilter {
          metadata[String(key.dropFirst("metadata.".count))] = value
        }
        let states = Set((queryValue(request, "state") ?? "").split(separator: ",").map(String.init))
        page = state.model.listMachines(
          app: app, now: now, includeDeleted: queryValue(request, "include_deleted") == "true",
          region: queryValue(request, "region"),
          states: states, metadata: metadata, summary: queryValue(request, "summary") == "true", limit: limit,
          cursor: cursor, shortPage: shortPage)
      } else {
        page = state.model.listVolumes(app: app, now: now, limit: limit, cursor: cursor, shortPage: shortPage)
      }
      var answer = SimAnswer(status: 200, body: "", items: page.items)
      if let next = page.next { answer.headers.append(("fly-next-cursor", next)) }
      return answer

    case "GET /machines/{id}":
      if let version = queryValue(request, "version") { return state.model.machine(id!, version: version, now: now) }
      guard let machine = state.model.visibleMachine(id!, now: now) else { return .error(404, "machine not found") }
      return .json(state.model.render(machine: machine))

    case "GET /machines/{id}/versions":
      return state.model.machineVersions(id!, now: now)

    case "GET /machines/{id}/events":
      return state.model.machineEvents(id!, limit: queryValue(request, "limit"), now: now)

    case "POST /machines/{id}":
      guard let body = SimJSON.parse(request.body), let object = body.object else {
        return .error(400, "invalid character in request body: not a JSON object")
      }
      let outcome = validator.validate(body, against: "UpdateMachineRequest")
      unknown = outcome.unknownFields
      if let error = outcome.error { return .error(400, error) }
      if let conflict = state.model.leaseBlocks(id!, nonce: nonce, now: now) { return conflict }
      if let refused = state.model.checkSecretsVersion(app: app, object["min_secrets_version"]?.int) {
        return refused
      }
      let config = object["config"]?.object ?? [:]
      let image = config["image"]?.string ?? ""
      let faults = state.faults
      let reverts =
        faults.badImages.contains(image) || faults.revertImages.contains(image)
        || (faults.revertRate > 0 && state.model.draw() < faults.revertRate)
      var answer = state.model.updateMachine(
        id!,
        .init(
          config: config, region: object["region"]?.string, name: object["name"]?.string,
          currentVersion: object["current_version"]?.string, skipLaunch: object["skip_launch"]?.bool ?? false,
          reverts: reverts, crashes: faults.crashImages.contains(image)), now: now)
      // Logged (never answered) as a fault: a benchmark counts the reverts it must find.
      if reverts && answer.status == 200 { answer.headers.append(("x-sim-fault", "silent_revert")) }
      return answer

    case "PUT /volumes/{id}/extend":
      guard let body = SimJSON.parse(request.body), let object = body.object else {
        return .error(400, "invalid character in request body: not a JSON object")
      }
      let outcome = validator.validate(body, against: "ExtendVolumeRequest")
      unknown = outcome.unknownFields
      if let error = outcome.error { return .error(400, error) }
      return state.model.extendVolume(id!, sizeGB: object["size_gb"]?.int.map { Int($0) }, now: now)

    case "POST /machines":
      guard let body = SimJSON.parse(request.body), body.object != nil else {
        return .error(400, "invalid character in request body: not a JSON object")
      }
      let outcome = validator.validate(body, against: "CreateMachineRequest")
      unknown = outcome.unknownFields
      if let error = outcome.error { return .error(400, error) }
      let object = body.object!
      if let refused = state.model.checkSecretsVersion(app: app, object["min_secrets_version"]?.int) {
        return refused
      }
      let config = object["config"]?.object ?? [:]
      let region = object["region"]?.string ?? "ord"
      if state.faults.capacityExhaustedRegions.contains(region) {
        return .error(412, "insufficient capacity in region \(region)", flyStatus: "insufficient_capacity")
      }
      if let image = config["image"]?.string, state.faults.badImages.contains(image) {
        return .error(400, "invalid_argument: failed to resolve image \(image): manifest unknown")
      }
      return state.model.createMachine(
        .init(
          app: app, name: object["name"]?.string, region: object["region"]?.string, config: config,
          skipLaunch: object["skip_launch"]?.bool ?? false,
          crashes: state.faults.crashImages.contains(config["image"]?.string ?? "")), now: now)

    case "POST /machines/{id}/start":
      if let conflict = state.model.leaseBlocks(id!, nonce: nonce, now: now) { return conflict }
      return state.model.startMachine(id!, now: now)

    case "POST /machines/{id}/stop":
      if !request.body.isEmpty {
        guard let body = SimJSON.parse(request.body) else { return .error(400, "invalid stop body") }
        let outcome = validator.validate(body, against: "StopRequest")
        unknown = outcome.unknownFields
        if let error = outcome.error { return .error(400, error) }
      }
      if let conflict = state.model.leaseBlocks(id!, nonce: nonce, now: now) { return conflict }
      return state.model.stopMachine(id!, now: now)

    case "DELETE /machines/{id}":
      if let conflict = state.model.leaseBlocks(id!, nonce: nonce, now: now) { return conflict }
      let force = queryValue(request, "force") == "true" || queryValue(request, "kill") == "true"
      return state.model.destroyMachine(id!, force: force, now: now)

    case "POST /machines/{id}/lease":
      let body = SimJSON.parse(request.body)
      if let body {
        let outcome = validator.validate(body, against: "CreateLeaseRequest")
        unknown = outcome.unknownFields
        if let error = outcome.error { return .error(400, error) }
      }
      let ttl = Int(body?.object?["ttl"]?.int ?? Int64(queryValue(request, "ttl") ?? "") ?? 30)
      return state.model.acquireLease(
        id!, ttl: ttl, description: body?.object?["description"]?.string ?? "", nonce: nonce, now: now)

    case "DELETE /machines/{id}/lease":
      return state.model.releaseLease(id!, nonce: nonce, now: now)

    case "POST /volumes":
      guard let body = SimJSON.parse(request.body), let object = body.object else {
        return .error(400, "invalid character in request body: not a JSON object")
      }
      let outcome = validator.validate(body, against: "CreateVolumeRequest")
      unknown = outcome.unknownFields
      if let error = outcome.error { return .error(400, error) }
      let region = object["region"]?.string ?? "ord"
      if state.faults.capacityExhaustedRegions.contains(region) {
        return .error(412, "no capacity for volumes in region \(region)", flyStatus: "volume_placement_capacity")
      }
      return state.model.createVolume(
        app: app, name: object["name"]?.string ?? "", region: region, sizeGB: Int(object["size_gb"]?.int ?? 3),
        encrypted: object["encrypted"]?.bool ?? true, now: now,
        options: .init(
          snapshotRetention: object["snapshot_retention"]?.int.map { Int($0) },
          autoBackup: object["auto_backup_enabled"]?.bool, snapshotID: object["snapshot_id"]?.string))

    case "GET /volumes/{id}":
      guard let volume = state.model.visibleVolume(id!, now: now) else { return .error(404, "volume not found") }
      return .json(state.model.render(volume: volume))

    case "DELETE /volumes/{id}":
      return state.model.deleteVolume(id!, now: now)

    default:
      return .error(404, "not found")
    }
  }

  /// `GET …/wait`: blocks on the simulator's clock until the state is reached (200) or the timeout
  /// passes (408), as Fly does.
  private func wait(_ request: SimulatorRequest) async -> SimulatorResponse {
    let now = clock.now()
    let wanted = Set((request.query.first { $0.0 == "state" }?.1 ?? "started").split(separator: ",").map(String.init))
    let timeoutText = request.query.first { $0.0 == "timeout" }?.1 ?? "60"
    let pieces = request.path.split(separator: "/")
    let early: SimulatorResponse? = state.withLock { state in
      let preflight = respondPreflight(request, endpoint: "GET /machines/{id}/wait", now: now, state: &state)
      if let preflight { return preflight }
      guard let timeout = Double(timeoutText.replacingOccurrences(of: "s", with: "")), timeout >= 1, timeout <= 60
      else {
        return finish(
          .error(400, "invalid timeout: \(timeoutText) (1 to 60 seconds)"), request: request,
          endpoint: "GET /machines/{id}/wait", now: now, state: &state)
      }
      let valid: Set = ["started", "stopped", "suspended", "destroyed", "failed", "settled"]
      guard wanted.isSubset(of: valid) else {
        return finish(
          .error(400, "invalid state: \(wanted.sorted().joined(separator: ","))"), request: request,
          endpoint: "GET /machines/{id}/wait", now: now, state: &state)
      }
      return nil
    }
    if let early { return early }
    let timeout = Double(timeoutText.replacingOccurrences(of: "s", with: "")) ?? 60
    let id = String(pieces[4])
    let deadline = now + timeout
    while true {
      let current = clock.now()
      let step: (SimulatorResponse?, Double) = state.withLock { state in
        state.model.advance(machine: id, now: current)
        guard let machine = state.model.machines[id] else {
          return (
            finish(
              .error(404, "machine not found"), request: request, endpoint: "GET /machines/{id}/wait", now: current,
              state: &state),
            0
          )
        }
        let settled: Set = ["started", "stopped", "suspended", "failed", "destroyed", "created"]
        if wanted.contains(machine.state) || (wanted.contains("settled") && settled.contains(machine.state)) {
          return (
            finish(
              .json(#"{"ok":true,"state":"\#(machine.state)","version":"\#(machine.instanceID)"}"#), request: request,
              endpoint: "GET /machines/{id}/wait", now: current, state: &state),
            0
          )
        }
        if current >= deadline {
          return (
            finish(
              .error(
                408,
                "deadline_exceeded: machine failed to reach desired state, \(wanted.sorted().joined(separator: ",")), currently \(machine.state)"
              ),
              request: request, endpoint: "GET /machines/{id}/wait", now: current, state: &state),
            0
          )
        }
        let nextAt = machine.next?.at ?? deadline
        return (nil, max(0.001, min(nextAt, deadline) - current))
      }
      if let response = step.0 { return response }
      do { try await clock.sleep(seconds: min(step.1, 0.25)) } catch {
        return SimulatorResponse(status: 499, headers: [], body: Data())
      }
    }
  }

  /// Auth, app and rate limit checks for handlers that answer outside ``respond(_:now:state:)``.
  private func respondPreflight(
    _ request: SimulatorRequest, endpoint: String, now: Double, state: inout State
  ) -> SimulatorResponse? {
    let pieces = request.path.split(separator: "/")
    guard authorized(request) else {
      return finish(
        .error(401, "Authenticate: token validation error"), request: request, endpoint: endpoint, now: now,
        state: &state)
    }
    guard pieces.count >= 5, state.model.ownApp(String(pieces[2])) != nil else {
      return finish(.error(404, "app not found"), request: request, endpoint: endpoint, now: now, state: &state)
    }
    if Self.belongsElsewhere(String(pieces[4]), app: String(pieces[2]), machines: true, model: state.model) {
      return finish(.error(404, "machine not found"), request: request, endpoint: endpoint, now: now, state: &state)
    }
    if !takeToken(endpoint: endpoint, key: String(pieces[4]), now: now, state: &state) {
      return finish(
        .error(429, "rate limit exceeded"), request: request, endpoint: endpoint, fault: "bucket", now: now,
        state: &state)
    }
    return nil
  }

  // MARK: Control

  private func control(_ request: SimulatorRequest) -> SimulatorResponse {
    func answer(_ status: Int, _ body: Data) -> SimulatorResponse {
      SimulatorResponse(status: status, headers: [("content-type", "application/json")], body: body)
    }
    func text(_ status: Int, _ body: String) -> SimulatorResponse { answer(status, Data(body.utf8)) }
    let now = clock.now()
    switch (request.method, request.path) {
    case ("GET", "/_sim/state"):
      return answer(200, stateJSON())
    case ("GET", "/_sim/requests"):
      let since = Int(request.query.first { $0.0 == "since" }?.1 ?? "0") ?? 0
      let data = (try? JSONEncoder().encode(requestLog(since: since))) ?? Data("[]".utf8)
      return answer(200, data)
    case ("GET", "/_sim/faults"):
      return answer(200, (try? JSONEncoder().encode(faults)) ?? Data())
    case ("POST", "/_sim/faults"), ("PUT", "/_sim/faults"):
      do {
        let faults = try JSONDecoder().decode(
          SimulatorFaults.self, from: request.body.isEmpty ? Data("{}".utf8) : request.body)
        setFaults(faults)
        return answer(200, (try? JSONEncoder().encode(faults)) ?? Data())
      } catch {
        return text(400, #"{"error":"invalid faults body: \#(String(describing: error).prefix(120))"}"#)
      }
    case ("POST", "/_sim/seed"):
      guard let body = SimJSON.parse(request.body)?.object, let count = body["users"]?.int, count >= 0,
        count <= 1_000_000
      else {
        return text(
          400,
          #"{"error":"body must be {\"users\": N, \"prefix\": \"u\", \"volume_prefix\": \"fk_\", \"region\": \"ord\"}"}"#
        )
      }
      if body["topology"]?.string == "app-per-user" {
        state.withLock {
          $0.model.seedApps(
            count: Int(count), appPrefix: body["app_prefix"]?.string ?? "agents",
            userPrefix: body["prefix"]?.string ?? "u", region: body["region"]?.string ?? "ord",
            image: body["image"]?.string ?? "registry.fly.io/agent:1",
            volumeName: body["volume_name"]?.string ?? "data",
            tagged: body["tagged"]?.bool ?? false, now: now,
            spread: max(0, min(365 * 86_400, body["spread"]?.double ?? 0)))
        }
        return text(200, #"{"ok":true}"#)
      }
      state.withLock {
        $0.model.seed(
          count: Int(count), prefix: body["prefix"]?.string ?? "u",
          volumePrefix: body["volume_prefix"]?.string ?? "fk_",
          region: body["region"]?.string ?? "ord", image: body["image"]?.string ?? "registry.fly.io/agent:1",
          now: now, spread: max(0, min(365 * 86_400, body["spread"]?.double ?? 0)))
      }
      return text(200, #"{"ok":true}"#)
    case ("POST", "/_sim/drift"):
      guard let body = SimJSON.parse(request.body)?.object, let op = body["op"]?.string else {
        return text(400, #"{"error":"body must be {\"op\": …}"}"#)
      }
      let machineID = body["machine_id"]?.string ?? ""
      let volumeID = body["volume_id"]?.string ?? ""
      return state.withLock { state -> SimulatorResponse in
        switch op {
        case "stop_machine":
          return state.model.driftStop(machineID, now: now)
            ? text(200, #"{"ok":true}"#) : text(404, #"{"error":"machine not found"}"#)
        case "fail_machine":
          return state.model.driftFail(machineID, now: now)
            ? text(200, #"{"ok":true}"#) : text(404, #"{"error":"machine not found"}"#)
        case "destroy_machine":
          return state.model.driftDestroy(machineID, now: now)
            ? text(200, #"{"ok":true}"#) : text(404, #"{"error":"machine not found"}"#)
        case "migrate_machine":
          return state.model.driftMigrate(machineID, now: now)
            ? text(200, #"{"ok":true}"#) : text(404, #"{"error":"machine not found or without a volume"}"#)
        case "lease_machine":
          return state.model.driftLease(
            machineID, owner: body["owner"]?.string ?? "someone@example.com",
            seconds: body["seconds"]?.double ?? 60, now: now)
            ? text(200, #"{"ok":true}"#) : text(404, #"{"error":"machine not found"}"#)
        case "update_machine":
          return state.model.driftUpdate(machineID, image: body["image"]?.string, env: body["env"]?.object, now: now)
            ? text(200, #"{"ok":true}"#) : text(404, #"{"error":"machine not found"}"#)
        case "detach_volume":
          return state.model.driftDetach(volumeID, now: now)
            ? text(200, #"{"ok":true}"#) : text(404, #"{"error":"volume not found"}"#)
        case "delete_volume":
          return state.model.driftDeleteVolume(volumeID, now: now)
            ? text(200, #"{"ok":true}"#) : text(404, #"{"error":"volume not found"}"#)
        case "crash_loop":
          return state.model.driftCrashLoop(
            machineID, every: body["every"]?.double ?? 10, exitCode: Int(body["exit_code"]?.int ?? 1),
            oomKilled: body["oom_killed"]?.bool ?? false, times: body["times"]?.int.map { Int($0) }, now: now)
            ? text(200, #"{"ok":true}"#) : text(404, #"{"error":"machine not found"}"#)
        case "heal_machine":
          return state.model.driftHeal(machineID, now: now)
            ? text(200, #"{"ok":true}"#) : text(404, #"{"error":"machine not found"}"#)
        case "fill_volume":
          return state.model.driftFill(volumeID, bytesUsed: Int(body["bytes_used"]?.int ?? 0), now: now)
            ? text(200, #"{"ok":true}"#) : text(404, #"{"error":"volume not found"}"#)
        case "create_foreign_app":
          return state.model.createForeignApp(
            name: body["app"]?.string ?? "", org: body["org"]?.string ?? "someone-else", now: now)
            ? text(200, #"{"ok":true}"#) : text(409, #"{"error":"app name invalid or taken"}"#)
        case "create_foreign_machine":
          let region = body["region"]?.string ?? "ord"
          var config: [String: SimJSON] = ["image": .string(body["image"]?.string ?? "nginx:latest")]
          if let metadata = body["metadata"] { config["metadata"] = metadata }
          let created = state.model.createMachine(
            .init(
              app: body["app"]?.string ?? configuration.appName, name: body["name"]?.string, region: region,
              config: config, skipLaunch: false), now: now,
            foreign: true)
          return text(created.status, created.body)
        default:
          return text(400, #"{"error":"unknown op \#(op)"}"#)
        }
      }
    default:
      return text(404, #"{"error":"no such control endpoint"}"#)
    }
  }
}
