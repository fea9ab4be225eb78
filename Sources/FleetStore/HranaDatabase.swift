import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// libSQL (Turso) over its HTTP protocol, Hrana 3 (`POST /v3/pipeline`), behind the same
/// ``SQLDatabase`` interface as embedded SQLite.
///
/// - A read or write batch is one request: a Hrana `batch` of `BEGIN`, the statements (each run
///   only if the one before succeeded), `COMMIT`, and a `ROLLBACK` that runs only if the commit did
///   not. So a write is all or nothing, as on SQLite, even though the server runs each step alone.
/// - Work too large for one request (an import of 100k users) holds a stream open with the baton:
///   `BEGIN IMMEDIATE`, chunks, `COMMIT`; any failure closes the stream, which rolls back.
/// - Every request has a deadline. A timeout, refused connection or 5xx is `unavailable`: to the
///   loop, "desired state unreadable" (do nothing), never an empty set.
/// - The auth token is sent as `Authorization: Bearer …` and never appears in an error.
public final class HranaDatabase: SQLDatabase {
  /// As given: may carry `?authToken=`, so never shown (see `displayName`).
  private let url: String
  private let pipelineURL: String
  private let token: String?
  private let timeout: Duration
  private let http: HTTPClient
  /// Statements per request when a write is streamed in chunks.
  let chunkSize: Int
  /// One write transaction in flight per process, as GRDB's pool gives SQLite: concurrent writers
  /// would otherwise wait on each other's locks on the server (and time out there).
  private let gate = WriteGate()

  /// Where the database is, without credentials (a `libsql://` URL may carry `?authToken=`).
  public var displayName: String { Self.display(url) }

  /// `url`: `libsql://…` (Turso; spoken as `https://`), `https://…`, or `http://…` (a server on
  /// loopback). `token`: a Turso database token (`FLEET_DATABASE_AUTH_TOKEN`).
  public init(
    url: String, token: String?, timeout: Duration = .seconds(10), chunkSize: Int = 500
  ) throws(StoreError) {
    guard let base = Self.httpBase(url) else {
      throw StoreError(
        code: .unavailable, message: "FLEET_DATABASE must be libsql://, https:// or http://",
        database: Self.display(url))
    }
    self.url = url
    self.pipelineURL = base + "/v3/pipeline"
    var token = token
    if token == nil || token?.isEmpty == true, let query = URLComponents(string: url)?.queryItems {
      token = query.first { $0.name == "authToken" }?.value
    }
    self.token = token?.isEmpty == false ? token : nil
    self.timeout = timeout
    self.chunkSize = max(1, chunkSize)
    self.http = .shared
  }

  /// True for the URLs this backend speaks.
  public static func handles(_ location: String) -> Bool {
    let lower = location.lowercased()
    return lower.hasPrefix("libsql://") || lower.hasPrefix("https://") || lower.hasPrefix("http://")
  }

  static func httpBase(_ url: String) -> String? {
    guard var components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
      components.host?.isEmpty == false
    else { return nil }
    switch scheme {
    case "libsql", "https": components.scheme = "https"
    case "http": components.scheme = "http"
    default: return nil
    }
    components.query = nil
    components.fragment = nil
    var text = components.string ?? ""
    while text.hasSuffix("/") { text.removeLast() }
    return text
  }

  static func display(_ url: String) -> String {
    guard var components = URLComponents(string: url) else { return "libsql" }
    components.query = nil
    components.user = nil
    components.password = nil
    return components.string ?? "libsql"
  }

  // MARK: SQLDatabase

  public func read(_ statements: [SQLStatement]) async throws(StoreError) -> [SQLRows] {
    try await transaction(statements, begin: "BEGIN")
  }

  public func write(_ statements: [SQLStatement]) async throws(StoreError) -> [SQLRows] {
    try await gate.serialized { () async throws(StoreError) in
      if statements.count > chunkSize {
        try await streamed(statements)
        return Array(repeating: SQLRows(), count: statements.count)
      }
      return try await transaction(statements, begin: "BEGIN IMMEDIATE")
    }
  }

  public func writeMany(_ sql: [String], arguments: [[[SQLValue]]]) async throws(StoreError) {
    var statements: [SQLStatement] = []
    for (index, text) in sql.enumerated() {
      for args in arguments[index] { statements.append(SQLStatement(text, args)) }
    }
    _ = try await write(statements)
  }

  public func executeScript(_ sql: String) async throws(StoreError) {
    try await gate.serialized { () async throws(StoreError) in try await script(sql) }
  }

  private func script(_ sql: String) async throws(StoreError) {
    // Two round trips on one stream: the script, then COMMIT only if it all ran.
    let first = try await pipeline(
      baton: nil, [.execute(SQLStatement("BEGIN IMMEDIATE")), .sequence(sql)])
    guard let baton = first.baton else {
      throw StoreError(code: .failed, message: "the server closed the stream", database: displayName)
    }
    for result in first.results {
      if let error = result.error {
        _ = try? await pipeline(baton: baton, [.close])
        throw Self.map(error, database: displayName)
      }
    }
    let second = try await pipeline(baton: baton, [.execute(SQLStatement("COMMIT")), .close])
    if let error = second.results.first?.error { throw Self.map(error, database: displayName) }
  }

  // MARK: Batches

  /// BEGIN; each statement if the previous step succeeded; COMMIT if all did; ROLLBACK otherwise.
  private func transaction(_ statements: [SQLStatement], begin: String) async throws(StoreError) -> [SQLRows] {
    var steps: [HranaWire.Step] = [.init(stmt: .init(SQLStatement(begin)), condition: nil)]
    for (index, statement) in statements.enumerated() {
      steps.append(.init(stmt: .init(statement), condition: .ok(index)))
    }
    let commit = steps.count
    steps.append(.init(stmt: .init(SQLStatement("COMMIT")), condition: .ok(commit - 1)))
    steps.append(.init(stmt: .init(SQLStatement("ROLLBACK")), condition: .not(.ok(commit))))
    let response = try await pipeline(baton: nil, [.batch(steps), .close])
    guard let first = response.results.first else {
      throw StoreError(code: .failed, message: "empty pipeline answer", database: displayName)
    }
    if let error = first.error { throw Self.map(error, database: displayName) }
    guard let batch = first.response?.result?.batch else {
      throw StoreError(code: .failed, message: "the answer is not a batch result", database: displayName)
    }
    // The first error in step order is the cause (later steps were skipped or rolled back).
    for index in 0..<min(batch.stepErrors.count, commit + 1) {
      if let error = batch.stepErrors[index] { throw Self.map(error, database: displayName) }
    }
    var rows: [SQLRows] = []
    rows.reserveCapacity(statements.count)
    for index in stride(from: 1, through: statements.count, by: 1) {
      guard index < batch.stepResults.count, let result = batch.stepResults[index] else {
        throw StoreError(code: .failed, message: "step \(index) has no result", database: displayName)
      }
      rows.append(try result.rows(database: displayName))
    }
    if commit < batch.stepResults.count, batch.stepResults[commit] == nil {
      throw StoreError(code: .failed, message: "the transaction did not commit", database: displayName)
    }
    return rows
  }

  /// A write too large for one request: one stream, `BEGIN IMMEDIATE`, chunks, `COMMIT`.
  private func streamed(_ statements: [SQLStatement]) async throws(StoreError) {
    var baton = try await open(begin: "BEGIN IMMEDIATE")
    do throws(StoreError) {
      var start = 0
      while start < statements.count {
        let chunk = statements[start..<min(statements.count, start + chunkSize)]
        var steps: [HranaWire.Step] = []
        for (offset, statement) in chunk.enumerated() {
          steps.append(.init(stmt: .init(statement), condition: offset == 0 ? nil : .ok(offset - 1)))
        }
        let response = try await pipeline(baton: baton, [.batch(steps)])
        guard let next = response.baton else {
          throw StoreError(code: .failed, message: "the server closed the stream", database: displayName)
        }
        baton = next
        if let error = response.results.first?.error { throw Self.map(error, database: displayName) }
        for error in response.results.first?.response?.result?.batch?.stepErrors ?? [] {
          if let error { throw Self.map(error, database: displayName) }
        }
        start += chunkSize
      }
      let done = try await pipeline(baton: baton, [.execute(SQLStatement("COMMIT")), .close])
      if let error = done.results.first?.error { throw Self.map(error, database: displayName) }
    } catch {
      // Closing the stream without COMMIT rolls the transaction back.
      _ = try? await pipeline(baton: baton, [.close])
      throw error
    }
  }

  private func open(begin: String) async throws(StoreError) -> String {
    let response = try await pipeline(baton: nil, [.execute(SQLStatement(begin))])
    if let error = response.results.first?.error { throw Self.map(error, database: displayName) }
    guard let baton = response.baton else {
      throw StoreError(code: .failed, message: "the server gave no baton", database: displayName)
    }
    return baton
  }

  // MARK: Transport

  func pipeline(baton: String?, _ requests: [HranaWire.Request]) async throws(StoreError) -> HranaWire.PipelineResponse
  {
    let body: Data
    do {
      body = try JSONEncoder().encode(HranaWire.PipelineRequest(baton: baton, requests: requests))
    } catch {
      throw StoreError(code: .failed, message: "cannot encode the request", database: displayName)
    }
    var request = HTTPClientRequest(url: pipelineURL)
    request.method = .POST
    request.headers.add(name: "content-type", value: "application/json")
    if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
    request.body = .bytes(ByteBuffer(data: body))
    let status: HTTPResponseStatus
    let bytes: ByteBuffer
    do {
      let response = try await http.execute(request, timeout: .init(timeout))
      status = response.status
      bytes = try await response.body.collect(upTo: 256 << 20)
    } catch {
      throw StoreError(
        code: .unavailable, message: "cannot reach the database: \(Self.describe(error))", database: displayName)
    }
    switch status.code {
    case 200: break
    case 401, 403:
      throw StoreError(
        code: .unavailable, message: "HTTP \(status.code): check FLEET_DATABASE_AUTH_TOKEN", database: displayName)
    case 404 where baton != nil, 400 where baton != nil:
      throw StoreError(code: .failed, message: "HTTP \(status.code): the stream expired", database: displayName)
    case 500...:
      throw StoreError(code: .unavailable, message: "HTTP \(status.code) from the database", database: displayName)
    default:
      throw StoreError(
        code: .failed, message: "HTTP \(status.code): \(Self.excerpt(bytes))", database: displayName)
    }
    do {
      return try JSONDecoder().decode(HranaWire.PipelineResponse.self, from: Data(buffer: bytes))
    } catch {
      throw StoreError(code: .failed, message: "not a Hrana answer: \(Self.excerpt(bytes))", database: displayName)
    }
  }

  private static func describe(_ error: any Error) -> String {
    if let error = error as? HTTPClientError {
      if error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout { return "timed out" }
      return "\(error)"
    }
    return String(describing: error).prefix(200).description
  }

  private static func excerpt(_ bytes: ByteBuffer) -> String {
    String(decoding: bytes.readableBytesView.prefix(200), as: UTF8.self)
  }

  static func map(_ error: HranaWire.WireError, database: String) -> StoreError {
    let code = error.code ?? ""
    let message = error.message
    if code.contains("CONSTRAINT") || message.contains("constraint failed") || message.contains("CHECK") {
      return StoreError(code: .constraint, message: message, database: database)
    }
    if code.contains("BUSY") || code.contains("LOCKED") {
      return StoreError(code: .locked, message: "locked: \(message)", database: database)
    }
    if message.contains("no such table") || message.contains("no such column") {
      return StoreError(code: .malformed, message: "\(message) (run `fleetkeeper migrate`)", database: database)
    }
    if code.contains("NOTADB") || code.contains("CORRUPT") {
      return StoreError(code: .malformed, message: message, database: database)
    }
    return StoreError(code: .failed, message: message, database: database)
  }
}

/// A FIFO lock for async code: one holder at a time.
actor WriteGate {
  private var held = false
  private var waiters: [CheckedContinuation<Void, Never>] = []

  func serialized<T: Sendable>(_ body: () async throws(StoreError) -> T) async throws(StoreError) -> T {
    if held {
      await withCheckedContinuation { waiters.append($0) }
    } else {
      held = true
    }
    defer {
      if waiters.isEmpty { held = false } else { waiters.removeFirst().resume() }
    }
    return try await body()
  }
}

/// Hrana 3 over HTTP, the JSON encoding: only what ``HranaDatabase`` sends and reads.
enum HranaWire {
  struct PipelineRequest: Encodable {
    var baton: String?
    var requests: [Request]
    func encode(to encoder: any Encoder) throws {
      var container = encoder.container(keyedBy: CodingKeys.self)
      try container.encode(baton, forKey: .baton)  // null, not absent: a new stream
      try container.encode(requests, forKey: .requests)
    }
    enum CodingKeys: String, CodingKey { case baton, requests }
  }

  enum Request: Encodable {
    case execute(SQLStatement)
    case batch([Step])
    case sequence(String)
    case close

    enum CodingKeys: String, CodingKey { case type, stmt, batch, sql }
    struct Batch: Encodable { var steps: [Step] }

    func encode(to encoder: any Encoder) throws {
      var container = encoder.container(keyedBy: CodingKeys.self)
      switch self {
      case .execute(let statement):
        try container.encode("execute", forKey: .type)
        try container.encode(Stmt(statement), forKey: .stmt)
      case .batch(let steps):
        try container.encode("batch", forKey: .type)
        try container.encode(Batch(steps: steps), forKey: .batch)
      case .sequence(let sql):
        try container.encode("sequence", forKey: .type)
        try container.encode(sql, forKey: .sql)
      case .close:
        try container.encode("close", forKey: .type)
      }
    }
  }

  struct Step: Encodable {
    var stmt: Stmt
    var condition: Condition?
  }

  indirect enum Condition: Encodable {
    case ok(Int)
    case not(Condition)
    enum CodingKeys: String, CodingKey { case type, step, cond }
    func encode(to encoder: any Encoder) throws {
      var container = encoder.container(keyedBy: CodingKeys.self)
      switch self {
      case .ok(let step):
        try container.encode("ok", forKey: .type)
        try container.encode(step, forKey: .step)
      case .not(let inner):
        try container.encode("not", forKey: .type)
        try container.encode(inner, forKey: .cond)
      }
    }
  }

  struct Stmt: Encodable {
    var sql: String
    var args: [Value]
    var wantRows = true
    init(_ statement: SQLStatement) {
      sql = statement.sql
      args = statement.arguments.map(Value.init)
    }
    enum CodingKeys: String, CodingKey {
      case sql, args
      case wantRows = "want_rows"
    }
  }

  /// A Hrana value: integers travel as strings (64 bits survive JSON), blobs as base64.
  struct Value: Codable {
    var value: SQLValue
    init(_ value: SQLValue) { self.value = value }

    enum CodingKeys: String, CodingKey { case type, value, base64 }

    func encode(to encoder: any Encoder) throws {
      var container = encoder.container(keyedBy: CodingKeys.self)
      switch value {
      case .null: try container.encode("null", forKey: .type)
      case .integer(let v):
        try container.encode("integer", forKey: .type)
        try container.encode(String(v), forKey: .value)
      case .real(let v):
        try container.encode("float", forKey: .type)
        try container.encode(v, forKey: .value)
      case .text(let v):
        try container.encode("text", forKey: .type)
        try container.encode(v, forKey: .value)
      case .blob(let v):
        try container.encode("blob", forKey: .type)
        try container.encode(Data(v).base64EncodedString(), forKey: .base64)
      }
    }

    init(from decoder: any Decoder) throws {
      let container = try decoder.container(keyedBy: CodingKeys.self)
      switch try container.decode(String.self, forKey: .type) {
      case "null": value = .null
      case "integer":
        let text = try container.decode(String.self, forKey: .value)
        guard let v = Int64(text) else {
          throw DecodingError.dataCorruptedError(forKey: .value, in: container, debugDescription: "integer")
        }
        value = .integer(v)
      case "float": value = .real(try container.decode(Double.self, forKey: .value))
      case "text": value = .text(try container.decode(String.self, forKey: .value))
      case "blob":
        let text = try container.decode(String.self, forKey: .base64)
        value = .blob(Array(Data(base64Encoded: text) ?? Data()))
      case let other:
        throw DecodingError.dataCorruptedError(forKey: .type, in: container, debugDescription: "type \(other)")
      }
    }
  }

  struct PipelineResponse: Decodable {
    var baton: String?
    var results: [StreamResult]
  }

  struct StreamResult: Decodable {
    var type: String
    var response: StreamResponse?
    var error: WireError?
  }

  struct StreamResponse: Decodable {
    var type: String
    var result: AnyResult?
  }

  /// `execute` answers a statement result, `batch` a batch result: decoded by shape.
  struct AnyResult: Decodable {
    var statement: StmtResult?
    var batch: BatchResult?
    init(from decoder: any Decoder) throws {
      batch = try? BatchResult(from: decoder)
      if batch == nil { statement = try? StmtResult(from: decoder) }
    }
  }

  struct BatchResult: Decodable {
    var stepResults: [StmtResult?]
    var stepErrors: [WireError?]
    enum CodingKeys: String, CodingKey {
      case stepResults = "step_results"
      case stepErrors = "step_errors"
    }
  }

  struct Column: Decodable { var name: String? }

  struct StmtResult: Decodable {
    var cols: [Column]
    var rows: [[Value]]
    func rows(database: String) throws(StoreError) -> SQLRows {
      SQLRows(columns: cols.map { $0.name ?? "" }, rows: rows.map { $0.map(\.value) })
    }
  }

  struct WireError: Decodable, Error {
    var message: String
    var code: String?
  }
}
