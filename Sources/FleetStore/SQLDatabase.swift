/// A value in a SQL statement or result (SQLite's storage classes).
public enum SQLValue: Sendable, Hashable {
  case null
  case integer(Int64)
  case real(Double)
  case text(String)
  case blob([UInt8])

  public var int: Int64? {
    switch self {
    case .integer(let v): v
    case .real(let v): Int64(exactly: v)
    default: nil
    }
  }
  public var string: String? { if case .text(let v) = self { v } else { nil } }
  public var double: Double? {
    switch self {
    case .integer(let v): Double(v)
    case .real(let v): v
    default: nil
    }
  }
  public var isNull: Bool { self == .null }
}

extension SQLValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByNilLiteral {
  public init(stringLiteral value: String) { self = .text(value) }
  public init(integerLiteral value: Int64) { self = .integer(value) }
  public init(nilLiteral: ()) { self = .null }
  public init(_ value: String?) { self = value.map(SQLValue.text) ?? .null }
  public init(_ value: Int?) { self = value.map { .integer(Int64($0)) } ?? .null }
  public init(_ value: Int64?) { self = value.map(SQLValue.integer) ?? .null }
}

/// One statement with its positional arguments (`?`).
public struct SQLStatement: Sendable, Hashable {
  public var sql: String
  public var arguments: [SQLValue]
  public init(_ sql: String, _ arguments: [SQLValue] = []) {
    self.sql = sql
    self.arguments = arguments
  }
}

/// The rows one statement returned: column names once, values by position.
public struct SQLRows: Sendable, Hashable {
  public var columns: [String]
  public var rows: [[SQLValue]]
  public init(columns: [String] = [], rows: [[SQLValue]] = []) {
    self.columns = columns
    self.rows = rows
  }
  /// The first row's first value.
  public var scalar: SQLValue? { rows.first?.first }
}

/// A SQL database fleetkeeper's store runs on: embedded SQLite, or libSQL over HTTP.
///
/// Work is expressed as batches of statements rather than closures, so that a remote backend can
/// ship a batch in one request: a read batch sees one consistent snapshot; a write batch is atomic.
public protocol SQLDatabase: Sendable {
  /// Runs `statements` in one read transaction (one consistent snapshot).
  func read(_ statements: [SQLStatement]) async throws(StoreError) -> [SQLRows]
  /// Runs `statements` in one write transaction: all apply, or none.
  func write(_ statements: [SQLStatement]) async throws(StoreError) -> [SQLRows]
  /// Runs one statement many times with different arguments, in one write transaction (imports).
  func writeMany(_ sql: [String], arguments: [[[SQLValue]]]) async throws(StoreError)
  /// Runs a script of several statements without arguments, in one transaction (migrations).
  func executeScript(_ sql: String) async throws(StoreError)
  /// Where the database is, for messages (never with credentials).
  var displayName: String { get }
}

/// A store failure, with a stable code. Never carries an argument value that could be a secret.
public struct StoreError: Error, Sendable, CustomStringConvertible, Hashable {
  public enum Code: String, Sendable, Hashable {
    /// The database file is missing or cannot be opened.
    case unavailable
    /// Locked past the busy timeout.
    case locked
    /// Not a database, corrupt, or missing fleetkeeper's schema (run `fleetkeeper migrate`).
    case malformed
    /// A value refused by a CHECK constraint or trigger.
    case constraint
    /// Any other SQL failure.
    case failed
  }
  public var code: Code
  public var message: String
  public var database: String

  public init(code: Code, message: String, database: String) {
    self.code = code
    self.message = message
    self.database = database
  }

  public var description: String { "database \(code.rawValue) (\(database)): \(message)" }
}
