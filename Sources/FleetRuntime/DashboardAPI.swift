public import FleetCore
public import FleetStore
public import FlyMachines
public import Foundation
import Synchronization

/// The users not in sync after the last pass, for the dashboard API and the pages: a user absent
/// here is in sync (or unknown). Replaced whole after each pass that planned anything.
public final class StatusBoard: Sendable {
  private struct State {
    var users: [String: UserStatus] = [:]
    var summary: [UserCondition: Int] = [:]
    var at: Double?
  }
  private let state = Mutex(State())
  public init() {}

  public func update(_ statuses: [UserStatus], at now: Double) {
    update((statuses, FleetStatus.summary(statuses)), at: now)
  }

  /// What ``FleetStatus/board(plan:desired:observation:states:alertsSince:retryBudget:now:includeInSync:)`` answered.
  public func update(_ board: (users: [UserStatus], summary: [UserCondition: Int]), at now: Double) {
    var users: [String: UserStatus] = [:]
    for status in board.users where status.condition != .inSync { users[status.userID] = status }
    state.withLock { $0 = State(users: users, summary: board.summary, at: now) }
  }

  public func status(of user: String) -> UserStatus? { state.withLock { $0.users[user] } }
  public var summary: [UserCondition: Int] { state.withLock { $0.summary } }
  /// When the last pass that filled it ran (nil: none yet).
  public var updatedAt: Double? { state.withLock { $0.at } }
  public var notInSync: [UserStatus] { state.withLock { Array($0.users.values) } }
}

/// The product dashboard's API (issue 18): JSON over HTTP beside the ops endpoints, behind a bearer
/// token (`FLEET_API_TOKEN`, compared in constant time). `GET /v1/users/{id}`, `PUT
/// /v1/users/{id}`, `POST /v1/users/{id}/ensure?wait=S`; `GET /v1/openapi.json` documents them.
/// Everything it writes goes through the store's checks, as the CLI's edits do; the loop remains
/// the only writer to Fly (an `ensure` wakes it and waits on Fly's own `wait`).
public struct DashboardAPI: Sendable {
  public let store: FleetStore
  public let board: StatusBoard
  public let waker: LoopWaker
  /// The users' app's API (a user's own app's, one app per user, from the `machines` row).
  public let client: any FlyMachinesAPI
  let token: [UInt8]
  let clock: any FleetClock

  public init(
    store: FleetStore, board: StatusBoard, waker: LoopWaker, client: any FlyMachinesAPI, token: String,
    clock: any FleetClock = SystemFleetClock()
  ) {
    self.store = store
    self.board = board
    self.waker = waker
    self.client = client
    self.token = Array(token.utf8)
    self.clock = clock
  }

  public struct Answer: Sendable, Error {
    public var status: Int
    public var body: String
  }

  /// Bearer token, compared in constant time (the whole of the longer one is always walked).
  func authorized(_ header: String?) -> Bool {
    guard let header, header.hasPrefix("Bearer ") else { return false }
    return Self.sameToken(header.utf8.dropFirst(7), token)
  }

  /// Whether `given` is `token`, in constant time (the whole of the longer one is always walked);
  /// an empty `token` matches nothing. The API's and the pages' one check.
  static func sameToken(_ given: some Collection<UInt8>, _ token: [UInt8]) -> Bool {
    guard !token.isEmpty else { return false }
    let bytes = Array(given)
    var difference = UInt8(bytes.count == token.count ? 0 : 1)
    for index in 0..<max(bytes.count, token.count) {
      difference |= (index < bytes.count ? bytes[index] : 0) ^ (index < token.count ? token[index] : 0)
    }
    return difference == 0
  }

  static func json(_ status: Int, _ value: JSONValue) -> Answer {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
    return Answer(status: status, body: String(decoding: data, as: UTF8.self) + "\n")
  }

  static func problem(_ status: Int, _ message: String, errors: [FieldError] = []) -> Answer {
    var body: [String: JSONValue] = ["error": .string(message)]
    if !errors.isEmpty {
      body["errors"] = .array(
        errors.map {
          .object(["field": .string($0.field), "value": .string($0.value), "reason": .string($0.reason)])
        })
    }
    return json(status, .object(body))
  }

  /// One request. `path` is the request's path (percent-encoded), `query` its parameters.
  public func handle(
    method: String, path: String, query: [String: String], authorization: String?, body: Data
  ) async -> Answer {
    if method == "GET" && path == "/v1/openapi.json" { return Answer(status: 200, body: Self.openAPI) }
    guard authorized(authorization) else { return Self.problem(401, "a valid bearer token is required") }
    let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    // "", "v1", "users", id[, "ensure"]
    guard parts.count == 4 || parts.count == 5, parts[1] == "v1", parts[2] == "users" else {
      return Self.problem(404, "no such endpoint")
    }
    let raw = parts[3]
    guard let id = raw.removingPercentEncoding else {
      return Self.problem(
        400, "user_id: not percent-encoded correctly",
        errors: [FieldError(field: "user_id", value: raw, reason: "bad percent-encoding")])
    }
    do throws(FieldError) {
      _ = try FleetValidation.userID(id)
    } catch {
      return Self.problem(400, "\(error)", errors: [error])
    }
    switch (method, parts.count == 5 ? parts[4] : nil) {
    case ("GET", nil): return await user(id)
    case ("PUT", nil): return await put(id, body: body)
    case ("POST", "ensure"): return await ensure(id, query: query, body: body)
    default: return Self.problem(404, "no such endpoint: \(method) \(path)")
    }
  }

  // MARK: GET

  func user(_ id: String) async -> Answer {
    do {
      guard let desired = try await store.desiredMachine(id) else {
        return Self.problem(404, "user_id \"\(id)\": no such user")
      }
      let row = try await store.machineRow(id)
      return Self.json(200, .object(view(id, desired: desired, row: row)))
    } catch {
      return Self.problem(503, "the desired state cannot be read: \(error.code.rawValue)")
    }
  }

  func view(_ id: String, desired: DesiredMachine?, row: MachineRow?, started: Bool = false) -> [String: JSONValue] {
    let status = board.status(of: id)
    var condition = status?.condition.rawValue ?? (board.updatedAt == nil ? "unknown" : "in_sync")
    // Not on the board but wanted with no machine on record: edited since the last pass.
    if status == nil, row == nil, let desired, desired.state != .absent, board.updatedAt != nil {
      condition = "pending"
    }
    if started, condition == "pending" { condition = "in_sync" }
    var overrides: [String: JSONValue] = [:]
    if let o = desired?.overrides {
      if let image = o.image { overrides["image"] = .string(image) }
      if let cpus = o.cpus { overrides["cpus"] = .int(Int64(cpus)) }
      if let memory = o.memoryMB { overrides["memory_mb"] = .int(Int64(memory)) }
      if let size = o.volumeSizeGB { overrides["volume_size_gb"] = .int(Int64(size)) }
      // The names only: an env value may be a secret of the user's (the pages and describe do the same).
      if let env = o.env { overrides["env_names"] = .array(env.keys.sorted().map { .string($0) }) }
    }
    return [
      "user_id": .string(id),
      "desired": desired.map {
        .object([
          "state": .string($0.state.rawValue), "region": .string($0.region), "paused": .bool($0.paused),
          "overrides": .object(overrides),
        ])
      } ?? .null,
      "condition": .string(condition),
      "machine_id": row.map { .string($0.id) } ?? .null,
      "state": started ? .string("started") : row?.status.map { .string($0) } ?? .null,
      "region": row.map { .string($0.region) } ?? desired.map { .string($0.region) } ?? .null,
      "app": row?.appName.map { .string($0) } ?? .null,
      "hostname": row?.hostname.map { .string($0) } ?? .null,
      "private_ip": row?.ipAddress.map { .string($0) } ?? .null,
      "volume_id": row?.volumeID.map { .string($0) } ?? .null,
      "why": .array((status?.findings ?? []).map { .string("\($0.kind.rawValue): \($0.message)") }),
      "as_of": board.updatedAt.map { .string(rfc3339($0)) } ?? .null,
    ]
  }

  // MARK: PUT

  /// The body's fields, typed and checked; unknown fields are refused by name.
  static func input(_ id: String, body: Data) -> Result<UserInput, Answer> {
    guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: body) else {
      return .failure(problem(400, "the body must be a JSON object"))
    }
    var input = UserInput(userID: id)
    var errors: [FieldError] = []
    let known: Set = ["state", "region", "email", "image", "cpu_kind", "cpus", "memory_mb", "volume_size_gb", "env"]
    for key in object.keys.sorted() where !known.contains(key) {
      errors.append(FieldError(field: key, value: Self.shown(object[key]!), reason: "unknown field"))
    }
    func text(_ key: String) -> String? {
      switch object[key] {
      case nil, .null?: return nil
      case .string(let value)?: return value
      case let other?:
        errors.append(FieldError(field: key, value: Self.shown(other), reason: "must be a string"))
        return nil
      }
    }
    func integer(_ key: String) -> Int? {
      switch object[key] {
      case nil, .null?: return nil
      case .int(let value)?: return Int(exactly: value)
      case .double(let value)? where value.rounded() == value && abs(value) < 1e9: return Int(value)
      case let other?:
        errors.append(FieldError(field: key, value: Self.shown(other), reason: "must be a whole number"))
        return nil
      }
    }
    input.state = text("state")
    input.region = text("region")
    input.email = text("email")
    input.image = text("image")
    input.cpuKind = text("cpu_kind")
    input.cpus = integer("cpus")
    input.memoryMB = integer("memory_mb")
    input.volumeSizeGB = integer("volume_size_gb")
    switch object["env"] {
    case nil, .null?: break
    case .object(let map)?:
      var env: [String: String] = [:]
      for (name, value) in map {
        if case .string(let text) = value {
          env[name] = text
        } else {
          errors.append(FieldError(field: "env.\(name)", value: Self.shown(value), reason: "must be a string"))
        }
      }
      input.env = env
    case let other?:
      errors.append(FieldError(field: "env", value: Self.shown(other), reason: "must be an object of strings"))
    }
    return errors.isEmpty ? .success(input) : .failure(problem(400, "refused", errors: errors))
  }

  /// A value as an error message shows it (short).
  static func shown(_ value: JSONValue) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let text = (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "?"
    return text.count > 80 ? String(text.prefix(77)) + "..." : text
  }

  func put(_ id: String, body: Data) async -> Answer {
    let input: UserInput
    switch Self.input(id, body: body) {
    case .success(let value): input = value
    case .failure(let answer): return answer
    }
    do {
      let exists = try await store.desiredMachine(id) != nil
      do throws(InputErrorOrStore) {
        if exists { try await store.setUser(input) } else { try await store.addUser(input) }
      } catch {
        switch error {
        case .input(let refusal): return Self.problem(400, "refused", errors: refusal.errors)
        case .store(let failure):
          return Self.problem(503, "the desired state cannot be written: \(failure.code.rawValue)")
        }
      }
      waker.wake()
      let desired = try await store.desiredMachine(id)
      return Self.json(exists ? 200 : 201, .object(view(id, desired: desired, row: try await store.machineRow(id))))
    } catch {
      return Self.problem(503, "the desired state cannot be read: \(error.code.rawValue)")
    }
  }

  // MARK: ensure

  /// Makes the user desired running (a new user needs `region`, in the query or the body), wakes the
  /// loop, and answers once the machine is started (Fly's `wait`) or after `wait` seconds (≤ 60)
  /// with the condition so far. Concurrent ensures of one user write the same row: the loop, the
  /// only writer to Fly, makes one machine.
  func ensure(_ id: String, query: [String: String], body: Data) async -> Answer {
    var wait = 0.0
    if let text = query["wait"] {
      guard let seconds = Double(text), seconds.isFinite, (0...60).contains(seconds) else {
        return Self.problem(
          400, "wait: must be 0 to 60 seconds",
          errors: [FieldError(field: "wait", value: text, reason: "must be 0 to 60 seconds")])
      }
      wait = seconds
    }
    var region = query["region"]
    if region == nil, !body.isEmpty,
      let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
    {
      region = object["region"] as? String
    }
    let started = clock.now()
    do {
      let existing = try await store.desiredMachine(id)
      let fleetPaused = try await store.fleetPausedOrThrow()
      if existing?.paused == true || fleetPaused {
        return Self.problem(409, "paused: nothing is changed for this user until it is resumed")
      }
      if existing?.state != .running || existing == nil {
        var input = UserInput(userID: id, state: "running", region: existing == nil ? region : nil)
        do throws(InputErrorOrStore) {
          if existing == nil {
            guard region != nil else {
              return Self.problem(
                400, "region: required to ensure a new user",
                errors: [FieldError(field: "region", value: "", reason: "required for a new user")])
            }
            do {
              try await store.addUser(input)
            } catch {
              // Another ensure added it first: the row exists now; make it running.
              guard (try? await store.desiredMachine(id)) != nil else { throw error }
              input.region = nil
              try await store.setUser(input)
            }
          } else {
            try await store.setUser(input)
          }
        } catch {
          switch error {
          case .input(let refusal): return Self.problem(400, "refused", errors: refusal.errors)
          case .store(let failure):
            return Self.problem(503, "the desired state cannot be written: \(failure.code.rawValue)")
          }
        }
      }
      waker.wake()
      let deadline = started + wait
      // The machine's id comes from the loop's record; Fly's own `wait` says when it is started.
      while true {
        let row = try await store.machineRow(id)
        if let row, row.status == "started" {
          return Self.json(200, .object(view(id, desired: try await store.desiredMachine(id), row: row, ready: true)))
        }
        let left = deadline - clock.now()
        var pause = 0.2
        if let row, left >= 1 {
          let scoped = row.appName.map { client.forApp($0) } ?? client
          if (try? await scoped.waitMachine(row.id, state: "started", timeout: .seconds(Int(left)), instanceID: nil))
            != nil
          {
            return Self.json(
              200, .object(view(id, desired: try await store.desiredMachine(id), row: row, ready: true, started: true)))
          }
          pause = 1  // Fly's wait failed (a stale id, an error): not again at once
        }
        if clock.now() >= deadline {
          return Self.json(202, .object(view(id, desired: try await store.desiredMachine(id), row: row, ready: false)))
        }
        // Woken once above; the loop, busy with the user, passes every couple of seconds on its own.
        try? await clock.sleep(seconds: min(pause, max(0, deadline - clock.now())))
      }
    } catch {
      return Self.problem(503, "the desired state cannot be read: \(error.code.rawValue)")
    }
  }

  func view(_ id: String, desired: DesiredMachine?, row: MachineRow?, ready: Bool, started: Bool = false)
    -> [String: JSONValue]
  {
    var fields = view(id, desired: desired, row: row, started: started || ready)
    fields["ready"] = .bool(ready)
    return fields
  }

  /// The API's description, served at `/v1/openapi.json` (docs/dashboard-api.md says the same).
  public static let openAPI = """
    {"openapi":"3.0.3","info":{"title":"fleetkeeper dashboard API","version":"1"},
    "components":{"securitySchemes":{"bearer":{"type":"http","scheme":"bearer"}},
    "schemas":{"User":{"type":"object","properties":{"user_id":{"type":"string"},
    "desired":{"type":"object","nullable":true,"properties":{"state":{"type":"string","enum":["running","stopped","absent"]},
    "region":{"type":"string"},"paused":{"type":"boolean"},"overrides":{"type":"object"}}},
    "condition":{"type":"string","enum":["in_sync","pending","failing","paused","rolling_out","unknown"]},
    "machine_id":{"type":"string","nullable":true},"state":{"type":"string","nullable":true},
    "region":{"type":"string","nullable":true},"app":{"type":"string","nullable":true},
    "hostname":{"type":"string","nullable":true},"private_ip":{"type":"string","nullable":true},
    "volume_id":{"type":"string","nullable":true},"why":{"type":"array","items":{"type":"string"}},
    "ready":{"type":"boolean","description":"ensure only: the machine is started"}}},
    "UserEdit":{"type":"object","additionalProperties":false,"properties":{
    "state":{"type":"string","enum":["running","stopped","absent"]},"region":{"type":"string"},"email":{"type":"string"},
    "image":{"type":"string"},"cpu_kind":{"type":"string"},"cpus":{"type":"integer"},"memory_mb":{"type":"integer"},
    "volume_size_gb":{"type":"integer"},"env":{"type":"object","additionalProperties":{"type":"string"}}}},
    "Problem":{"type":"object","properties":{"error":{"type":"string"},"errors":{"type":"array","items":{"type":"object",
    "properties":{"field":{"type":"string"},"value":{"type":"string"},"reason":{"type":"string"}}}}}}}},
    "security":[{"bearer":[]}],
    "paths":{
    "/v1/users/{id}":{"parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string"}}],
    "get":{"summary":"A user: desired state, condition, machine, address","responses":{
    "200":{"description":"the user","content":{"application/json":{"schema":{"$ref":"#/components/schemas/User"}}}},
    "401":{"description":"no or wrong token"},"404":{"description":"no such user"}}},
    "put":{"summary":"Create or change a user's desired state (the CLI's checks and messages)",
    "requestBody":{"required":true,"content":{"application/json":{"schema":{"$ref":"#/components/schemas/UserEdit"}}}},
    "responses":{"200":{"description":"changed"},"201":{"description":"created"},
    "400":{"description":"refused, every bad field named","content":{"application/json":{"schema":{"$ref":"#/components/schemas/Problem"}}}},
    "401":{"description":"no or wrong token"}}}},
    "/v1/users/{id}/ensure":{"parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string"}},
    {"name":"wait","in":"query","schema":{"type":"number","minimum":0,"maximum":60}},
    {"name":"region","in":"query","schema":{"type":"string"},"description":"for a new user"}],
    "post":{"summary":"Make the user desired running, wake the loop, answer when its machine is started or after wait seconds",
    "responses":{"200":{"description":"started","content":{"application/json":{"schema":{"$ref":"#/components/schemas/User"}}}},
    "202":{"description":"not started yet: the condition so far"},"400":{"description":"refused"},
    "401":{"description":"no or wrong token"}}}},
    "/v1/openapi.json":{"get":{"security":[],"summary":"This document","responses":{"200":{"description":"OpenAPI 3"}}}}}}

    """
}
