import Foundation
import GRDB
// SQLite's C API for what GRDB does not surface (statement parameters, declared column types):
// the same system SQLite GRDB links.
import GRDBSQLite
import HTTPTypes
import Hummingbird
public import Logging
import NIOCore
import NIOFoundationCompat
import Synchronization

/// A libSQL remote-protocol server (Hrana over HTTP, `POST /v2/pipeline` and `/v3/pipeline`)
/// backed by an SQLite file: what Turso speaks, on loopback, for tests and rehearsals.
///
/// Written from the Hrana specification, sharing no code with fleetkeeper's client; the tests
/// prove it against an independent client (the PyPI package `libsql`). Each stream (a baton
/// chain) has its own SQLite connection, so a transaction can span requests as on Turso; a
/// stream idle for `streamTimeout` is closed, which rolls back what it left open.
public final class HranaServer: Sendable {
  public enum Fault: Sendable, Equatable {
    case none
    /// Every request answers 503, as a proxy in front of a down database does.
    case unavailable
    /// Every request waits this long before it is served (a client deadline fires first).
    case slow(Duration)
    /// The next `n` requests are served, then every one answers 503 (an outage mid-pass).
    case unavailableAfter(Int)
  }

  public let path: String
  private let token: String?
  private let streamTimeout: Double
  private let state = Mutex(State())
  private let faultState = Mutex(Fault.none)

  struct State {
    var streams: [String: Stream] = [:]
    var requests = 0
  }

  final class Stream: @unchecked Sendable {
    let queue: DatabaseQueue
    var lastUsed: Double
    var sql: [Int: String] = [:]
    init(queue: DatabaseQueue, now: Double) {
      self.queue = queue
      self.lastUsed = now
    }
  }

  public init(path: String, token: String?, streamTimeout: Double = 10) {
    self.path = path
    self.token = token
    self.streamTimeout = streamTimeout
  }

  /// Injects a fault into every following request (tests: a Turso outage).
  public func setFault(_ fault: Fault) { faultState.withLock { $0 = fault } }

  /// Pipeline requests served so far.
  public var requestCount: Int { state.withLock { $0.requests } }

  // MARK: HTTP

  struct Answer: Sendable {
    var status: Int
    var body: Data
  }

  /// Serves one HTTP request (method, path, Authorization header, body).
  func handle(method: String, path: String, authorization: String?, body: Data) async -> Answer {
    let fault = faultState.withLock { fault -> Fault in
      guard case .unavailableAfter(let n) = fault else { return fault }
      fault = n > 0 ? .unavailableAfter(n - 1) : .unavailable
      return n > 0 ? .none : .unavailable
    }
    switch fault {
    case .none, .unavailableAfter: break
    case .unavailable: return Answer(status: 503, body: Data("service unavailable".utf8))
    case .slow(let delay): try? await Task.sleep(for: delay)
    }
    let route = path.split(separator: "?").first.map(String.init) ?? path
    if method == "GET" && (route == "/v2" || route == "/v3" || route == "/health") {
      return Answer(status: 200, body: Data())
    }
    guard method == "POST", route == "/v2/pipeline" || route == "/v3/pipeline" || route == "/v3/cursor" else {
      return Answer(status: 404, body: Data("not found: \(method) \(route)".utf8))
    }
    if let token, authorization != "Bearer \(token)" {
      return Self.error(401, "Unauthorized: missing or invalid token")
    }
    state.withLock { $0.requests += 1 }
    guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
      return Self.error(400, "invalid request body")
    }
    let requests: [[String: Any]]
    let cursor = route == "/v3/cursor"
    if cursor {
      // A cursor runs one batch and streams its rows: the same batch, answered as entries.
      guard let batch = object["batch"] as? [String: Any] else { return Self.error(400, "no batch") }
      requests = [["type": "batch", "batch": batch, "as_cursor": true]]
    } else {
      guard let list = object["requests"] as? [[String: Any]] else { return Self.error(400, "no requests") }
      requests = list
    }
    let baton = object["baton"] as? String
    let stream: Stream
    do {
      stream = try openStream(baton: baton)
    } catch let failure as Failure {
      return Self.error(failure.status, failure.message)
    } catch {
      return Self.error(500, "\(error)")
    }
    let (results, closed) = await run(requests, on: stream)
    var next: String? = nil
    if !closed {
      next = UUID().uuidString
      state.withLock {
        $0.streams[next!] = stream
        stream.lastUsed = Date().timeIntervalSince1970
      }
    }
    var data = Data(#"{"baton":"#.utf8)
    data.append(Data((next.map { "\"\($0)\"" } ?? "null").utf8))
    data.append(Data(#","base_url":null"#.utf8))
    if cursor {
      // The head line, then one JSON entry per line (`results` holds the entries' lines).
      data.append(Data("}\n".utf8))
      data.append(results)
    } else {
      data.append(Data(#","results":"#.utf8))
      data.append(results)
      data.append(Data("}".utf8))
    }
    return Answer(status: 200, body: data)
  }

  struct Failure: Error {
    var status: Int
    var message: String
  }

  private static func error(_ status: Int, _ message: String) -> Answer {
    let data = (try? JSONSerialization.data(withJSONObject: ["message": message])) ?? Data()
    return Answer(status: status, body: data)
  }

  private func openStream(baton: String?) throws -> Stream {
    let now = Date().timeIntervalSince1970
    // Streams idle too long are closed (their connection, and any open transaction, dropped).
    state.withLock { state in
      state.streams = state.streams.filter { now - $0.value.lastUsed < streamTimeout }
    }
    if let baton {
      guard let stream = state.withLock({ $0.streams.removeValue(forKey: baton) }) else {
        throw Failure(status: 400, message: "stream expired or unknown baton")
      }
      return stream
    }
    var configuration = Configuration()
    configuration.busyMode = .timeout(5)
    configuration.foreignKeysEnabled = true
    configuration.label = "hrana"
    // A Hrana stream may leave a transaction open between requests (BEGIN in one, COMMIT in a later one).
    configuration.allowsUnsafeTransactions = true
    return Stream(queue: try DatabaseQueue(path: path, configuration: configuration), now: now)
  }

  // MARK: Requests

  /// Runs the requests on the stream's connection; returns the results array as JSON.
  private func run(_ requests: [[String: Any]], on stream: Stream) async -> (results: Data, closed: Bool) {
    nonisolated(unsafe) let requests = requests
    let outcome: (results: Data, closed: Bool)? = try? await stream.queue.writeWithoutTransaction { db in
      var results: [Any] = []
      var closed = false
      for request in requests {
        if closed {
          results.append(Self.failure("the stream is closed", code: "STREAM_CLOSED"))
          continue
        }
        let type = request["type"] as? String ?? ""
        do {
          switch type {
          case "execute":
            guard let stmt = request["stmt"] as? [String: Any] else { throw Failure(status: 400, message: "no stmt") }
            let result = try Self.execute(stmt, db: db, stored: stream.sql)
            results.append(["type": "ok", "response": ["type": "execute", "result": result]])
          case "batch":
            guard let batch = request["batch"] as? [String: Any], let steps = batch["steps"] as? [[String: Any]] else {
              throw Failure(status: 400, message: "no batch")
            }
            if request["as_cursor"] as? Bool == true {
              let lines = Self.cursorEntries(Self.runSteps(steps, db: db, stored: stream.sql))
              return (lines, false)
            }
            let result = Self.batch(steps, db: db, stored: stream.sql)
            results.append(["type": "ok", "response": ["type": "batch", "result": result]])
          case "sequence":
            let sql = try Self.sqlText(request, stored: stream.sql)
            try db.execute(sql: sql)
            results.append(["type": "ok", "response": ["type": "sequence"]])
          case "describe":
            let sql = try Self.sqlText(request, stored: stream.sql)
            results.append(["type": "ok", "response": ["type": "describe", "result": try Self.describe(sql, db: db)]])
          case "store_sql":
            guard let id = request["sql_id"] as? Int, let sql = request["sql"] as? String else {
              throw Failure(status: 400, message: "store_sql needs sql_id and sql")
            }
            stream.sql[id] = sql
            results.append(["type": "ok", "response": ["type": "store_sql"]])
          case "close_sql":
            if let id = request["sql_id"] as? Int { stream.sql[id] = nil }
            results.append(["type": "ok", "response": ["type": "close_sql"]])
          case "get_autocommit":
            results.append(
              ["type": "ok", "response": ["type": "get_autocommit", "is_autocommit": !db.isInsideTransaction]])
          case "close":
            if db.isInsideTransaction { try? db.execute(sql: "ROLLBACK") }
            closed = true
            results.append(["type": "ok", "response": ["type": "close"]])
          default:
            results.append(Self.failure("unknown request type \(type)", code: "UNKNOWN_REQUEST"))
          }
        } catch {
          results.append(Self.failure(error))
        }
      }
      return ((try? JSONSerialization.data(withJSONObject: results)) ?? Data("[]".utf8), closed)
    }
    if outcome?.closed ?? true { try? stream.queue.close() }
    if let outcome { return outcome }
    let failed = [Self.failure("the stream's connection failed", code: "INTERNAL")]
    return ((try? JSONSerialization.data(withJSONObject: failed)) ?? Data("[]".utf8), true)
  }

  private static func sqlText(_ request: [String: Any], stored: [Int: String]) throws -> String {
    if let sql = request["sql"] as? String { return sql }
    if let id = request["sql_id"] as? Int, let sql = stored[id] { return sql }
    throw Failure(status: 400, message: "no sql and no known sql_id")
  }

  static func failure(_ message: String, code: String) -> [String: Any] {
    ["type": "error", "error": ["message": message, "code": code]]
  }

  static func failure(_ error: any Error) -> [String: Any] {
    if let error = error as? DatabaseError {
      return failure(
        error.message ?? "\(error.resultCode)", code: Self.codeName(error.extendedResultCode.rawValue))
    }
    if let error = error as? Failure { return failure(error.message, code: "PROTOCOL_ERROR") }
    return failure("\(error)", code: "SQLITE_ERROR")
  }

  /// SQLite's result code names, as libSQL servers report them.
  static func codeName(_ code: Int32) -> String {
    switch code {
    case 275: "SQLITE_CONSTRAINT_CHECK"
    case 787: "SQLITE_CONSTRAINT_FOREIGNKEY"
    case 1299: "SQLITE_CONSTRAINT_NOTNULL"
    case 1555: "SQLITE_CONSTRAINT_PRIMARYKEY"
    case 1811: "SQLITE_CONSTRAINT_TRIGGER"
    case 2067: "SQLITE_CONSTRAINT_UNIQUE"
    default:
      switch code & 0xff {
      case 5: "SQLITE_BUSY"
      case 6: "SQLITE_LOCKED"
      case 11: "SQLITE_CORRUPT"
      case 14: "SQLITE_CANTOPEN"
      case 19: "SQLITE_CONSTRAINT"
      case 26: "SQLITE_NOTADB"
      default: "SQLITE_ERROR"
      }
    }
  }

  // MARK: Statements

  static func execute(_ stmt: [String: Any], db: Database, stored: [Int: String]) throws -> [String: Any] {
    let sql = try sqlText(stmt, stored: stored)
    let statement = try db.makeStatement(sql: sql)
    let positional = try (stmt["args"] as? [[String: Any]] ?? []).map(value)
    var named: [String: (any DatabaseValueConvertible)?] = [:]
    for item in stmt["named_args"] as? [[String: Any]] ?? [] {
      guard var name = item["name"] as? String, let raw = item["value"] as? [String: Any] else { continue }
      if let first = name.first, ":@$".contains(first) { name.removeFirst() }
      named[name] = try value(raw)
    }
    if !named.isEmpty {
      statement.arguments = StatementArguments(named)
    } else {
      statement.arguments = StatementArguments(positional)
    }
    let wantRows = stmt["want_rows"] as? Bool ?? true
    var cols: [[String: Any]] = []
    var rows: [[Any]] = []
    let before = db.totalChangesCount
    if statement.columnCount > 0 {
      for index in 0..<statement.columnCount {
        var column: [String: Any] = ["name": statement.columnNames[index]]
        column["decltype"] = sqlite3_column_decltype(statement.sqliteStatement, Int32(index)).map {
          String(cString: $0)
        }
        cols.append(column)
      }
      let cursor = try Row.fetchCursor(statement)
      while let row = try cursor.next() {
        guard wantRows else { continue }
        rows.append((0..<statement.columnCount).map { encode(row[$0] as DatabaseValue) })
      }
    } else {
      try statement.execute()
    }
    let changed = db.totalChangesCount - before
    return [
      "cols": cols, "rows": rows, "affected_row_count": changed > 0 ? db.changesCount : 0,
      "last_insert_rowid": String(db.lastInsertedRowID), "rows_read": rows.count, "rows_written": max(0, changed),
      "query_duration_ms": 0,
    ]
  }

  /// Each step's result or error (both nil: skipped by its condition).
  typealias StepOutcome = (result: [String: Any]?, error: Any?)

  static func runSteps(_ steps: [[String: Any]], db: Database, stored: [Int: String]) -> [StepOutcome] {
    var outcomes: [StepOutcome] = []
    var passed: [Bool?] = []  // per step: true ok, false error, nil skipped
    for step in steps {
      let run = (step["condition"] as? [String: Any]).map { holds($0, outcomes: passed, db: db) } ?? true
      guard run else {
        outcomes.append((nil, nil))
        passed.append(nil)
        continue
      }
      do {
        guard let stmt = step["stmt"] as? [String: Any] else { throw Failure(status: 400, message: "no stmt") }
        outcomes.append((try execute(stmt, db: db, stored: stored), nil))
        passed.append(true)
      } catch {
        outcomes.append((nil, failure(error)["error"] as Any))
        passed.append(false)
      }
    }
    return outcomes
  }

  static func batch(_ steps: [[String: Any]], db: Database, stored: [Int: String]) -> [String: Any] {
    let outcomes = runSteps(steps, db: db, stored: stored)
    return [
      "step_results": outcomes.map { $0.result as Any? ?? NSNull() },
      "step_errors": outcomes.map { $0.error ?? NSNull() },
    ]
  }

  /// A cursor's entries, one JSON object per line: step_begin, rows, step_end (or step_error).
  static func cursorEntries(_ outcomes: [StepOutcome]) -> Data {
    var lines = Data()
    func line(_ object: [String: Any]) {
      lines.append((try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8))
      lines.append(0x0A)
    }
    for (step, outcome) in outcomes.enumerated() {
      if let error = outcome.error {
        line(["type": "step_error", "step": step, "error": error])
      } else if let result = outcome.result {
        line(["type": "step_begin", "step": step, "cols": result["cols"] ?? []])
        for row in result["rows"] as? [Any] ?? [] { line(["type": "row", "row": row]) }
        line([
          "type": "step_end", "affected_row_count": result["affected_row_count"] ?? 0,
          "last_insert_rowid": result["last_insert_rowid"] ?? NSNull(),
        ])
      }
    }
    return lines
  }

  static func holds(_ condition: [String: Any], outcomes: [Bool?], db: Database) -> Bool {
    switch condition["type"] as? String {
    case "ok":
      guard let step = condition["step"] as? Int, step < outcomes.count else { return false }
      return outcomes[step] == true
    case "error":
      guard let step = condition["step"] as? Int, step < outcomes.count else { return false }
      return outcomes[step] == false
    case "not":
      guard let inner = condition["cond"] as? [String: Any] else { return false }
      return !holds(inner, outcomes: outcomes, db: db)
    case "and":
      return (condition["conds"] as? [[String: Any]] ?? []).allSatisfy { holds($0, outcomes: outcomes, db: db) }
    case "or":
      return (condition["conds"] as? [[String: Any]] ?? []).contains { holds($0, outcomes: outcomes, db: db) }
    case "is_autocommit":
      return !db.isInsideTransaction
    default:
      return false
    }
  }

  static func describe(_ sql: String, db: Database) throws -> [String: Any] {
    let statement = try db.makeStatement(sql: sql)
    let count = sqlite3_bind_parameter_count(statement.sqliteStatement)
    var params: [[String: Any]] = []
    if count > 0 {
      for index in 1...count {
        params.append([
          "name": sqlite3_bind_parameter_name(statement.sqliteStatement, index).map { String(cString: $0) } as Any
        ])
      }
    }
    let cols = (0..<statement.columnCount).map { index -> [String: Any] in
      [
        "name": statement.columnNames[index],
        "decltype": sqlite3_column_decltype(statement.sqliteStatement, Int32(index)).map { String(cString: $0) } as Any,
      ]
    }
    return ["params": params, "cols": cols, "is_explain": false, "is_readonly": statement.isReadonly]
  }

  static func value(_ raw: [String: Any]) throws -> (any DatabaseValueConvertible)? {
    switch raw["type"] as? String {
    case "null": return nil
    case "integer":
      if let text = raw["value"] as? String, let v = Int64(text) { return v }
      if let number = raw["value"] as? NSNumber { return number.int64Value }
      throw Failure(status: 400, message: "bad integer value")
    case "float":
      if let number = raw["value"] as? NSNumber { return number.doubleValue }
      throw Failure(status: 400, message: "bad float value")
    case "text":
      if let text = raw["value"] as? String { return text }
      throw Failure(status: 400, message: "bad text value")
    case "blob":
      if let text = raw["base64"] as? String, let data = Data(base64Encoded: Self.padded(text)) { return data }
      throw Failure(status: 400, message: "bad blob value")
    default:
      throw Failure(status: 400, message: "unknown value type")
    }
  }

  private static func padded(_ base64: String) -> String {
    let rest = base64.count % 4
    return rest == 0 ? base64 : base64 + String(repeating: "=", count: 4 - rest)
  }

  static func encode(_ value: DatabaseValue) -> [String: Any] {
    switch value.storage {
    case .null: ["type": "null"]
    case .int64(let v): ["type": "integer", "value": String(v)]
    case .double(let v): ["type": "float", "value": v]
    case .string(let v): ["type": "text", "value": v]
    case .blob(let v): ["type": "blob", "base64": v.base64EncodedString()]
    }
  }
}

// MARK: Serving

extension HranaServer {
  /// A running server; ``stop()`` shuts it down.
  public struct Running: Sendable {
    public let server: HranaServer
    public let port: Int
    private let task: Task<Void, any Error>
    init(server: HranaServer, port: Int, task: Task<Void, any Error>) {
      self.server = server
      self.port = port
      self.task = task
    }
    /// `http://127.0.0.1:port`, a `FLEET_DATABASE` value.
    public var url: String { "http://127.0.0.1:\(port)" }
    public func stop() async {
      task.cancel()
      _ = await task.result
    }
  }

  func application(
    host: String, port: Int, onServerRunning: @escaping @Sendable (any Channel) async -> Void
  ) -> some ApplicationProtocol {
    let responder = CallbackResponder<BasicRequestContext> { [self] request, context in
      var request = request
      let body = try await request.collectBody(upTo: 256 << 20)
      let answer = await self.handle(
        method: request.method.rawValue, path: request.uri.path, authorization: request.headers[.authorization],
        body: Data(buffer: body))
      var fields = HTTPFields()
      fields[.contentType] = "application/json"
      return Response(
        status: HTTPResponse.Status(code: answer.status), headers: fields,
        body: ResponseBody(byteBuffer: ByteBuffer(data: answer.body)))
    }
    var quiet = Logger(label: "hrana")
    quiet.logLevel = .critical
    return Application(
      responder: responder, configuration: .init(address: .hostname(host, port: port), serverName: "hrana-sqlite"),
      onServerRunning: onServerRunning, logger: quiet)
  }

  /// Starts serving in a background task; returns once it listens.
  public func start(host: String = "127.0.0.1", port: Int = 0) async throws -> Running {
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let app = application(host: host, port: port) { channel in
      continuation.yield(channel.localAddress?.port ?? port)
      continuation.finish()
    }
    let task = Task {
      defer { continuation.finish() }
      try await app.runService()
    }
    var iterator = ports.makeAsyncIterator()
    guard let bound = await iterator.next() else {
      if case .failure(let error) = await task.result { throw error }
      throw CancellationError()
    }
    return Running(server: self, port: bound, task: task)
  }

  /// Serves until SIGINT or SIGTERM; `onListening` gets the bound port.
  public func run(host: String = "127.0.0.1", port: Int = 0, onListening: @escaping @Sendable (Int) -> Void)
    async throws
  {
    let app = application(host: host, port: port) { channel in onListening(channel.localAddress?.port ?? port) }
    try await app.run()
  }
}
