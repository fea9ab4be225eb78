import Foundation
import GRDB

/// Embedded SQLite through GRDB: WAL, a busy timeout, foreign keys on.
public final class SQLiteDatabase: SQLDatabase {
  private let pool: DatabasePool
  public let path: String
  public var displayName: String { path }

  /// Opens `path`. Unless `create` is true, a missing file is an error: "cannot read the desired
  /// state" must never become an empty new database.
  public init(path: String, create: Bool = false, busyTimeout: Duration = .seconds(5)) throws(StoreError) {
    self.path = path
    if !create && !FileManager.default.fileExists(atPath: path) {
      throw StoreError(
        code: .unavailable, message: "no database file; run `fleetkeeper migrate` to create it", database: path)
    }
    var configuration = Configuration()
    configuration.busyMode = .timeout(
      TimeInterval(busyTimeout.components.seconds) + Double(busyTimeout.components.attoseconds) / 1e18)
    configuration.foreignKeysEnabled = true
    configuration.label = "fleetkeeper"
    do {
      pool = try DatabasePool(path: path, configuration: configuration)
    } catch {
      throw Self.map(error, database: path)
    }
  }

  static func map(_ error: any Error, database: String) -> StoreError {
    guard let error = error as? DatabaseError else {
      return StoreError(code: .failed, message: String(describing: error).prefix(300).description, database: database)
    }
    let message = error.message ?? "\(error.resultCode)"
    switch error.resultCode {
    case .SQLITE_BUSY, .SQLITE_LOCKED:
      return StoreError(code: .locked, message: "locked past the busy timeout: \(message)", database: database)
    case .SQLITE_CORRUPT, .SQLITE_NOTADB:
      return StoreError(code: .malformed, message: message, database: database)
    case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_IOERR, .SQLITE_READONLY:
      return StoreError(code: .unavailable, message: message, database: database)
    case .SQLITE_CONSTRAINT:
      return StoreError(code: .constraint, message: message, database: database)
    default:
      if message.hasPrefix("no such table") || message.hasPrefix("no such column") {
        return StoreError(code: .malformed, message: "\(message) (run `fleetkeeper migrate`)", database: database)
      }
      return StoreError(code: .failed, message: message, database: database)
    }
  }

  private static func bind(_ values: [SQLValue]) -> StatementArguments {
    StatementArguments(
      values.map { value -> (any DatabaseValueConvertible)? in
        switch value {
        case .null: nil
        case .integer(let v): v
        case .real(let v): v
        case .text(let v): v
        case .blob(let v): Data(v)
        }
      })
  }

  private static func run(_ db: Database, _ statement: SQLStatement) throws -> SQLRows {
    let prepared = try db.cachedStatement(sql: statement.sql)
    prepared.arguments = bind(statement.arguments)
    if prepared.columnCount == 0 {
      try prepared.execute()
      return SQLRows()
    }
    let columns = prepared.columnNames
    var rows: [[SQLValue]] = []
    let cursor = try Row.fetchCursor(prepared)
    while let row = try cursor.next() {
      var values: [SQLValue] = []
      values.reserveCapacity(columns.count)
      for index in 0..<columns.count {
        let dbValue: DatabaseValue = row[index]
        switch dbValue.storage {
        case .null: values.append(.null)
        case .int64(let v): values.append(.integer(v))
        case .double(let v): values.append(.real(v))
        case .string(let v): values.append(.text(v))
        case .blob(let v): values.append(.blob(Array(v)))
        }
      }
      rows.append(values)
    }
    return SQLRows(columns: columns, rows: rows)
  }

  public func read(_ statements: [SQLStatement]) async throws(StoreError) -> [SQLRows] {
    do {
      return try await pool.read { db in try statements.map { try Self.run(db, $0) } }
    } catch {
      throw Self.map(error, database: path)
    }
  }

  public func write(_ statements: [SQLStatement]) async throws(StoreError) -> [SQLRows] {
    do {
      return try await pool.write { db in try statements.map { try Self.run(db, $0) } }
    } catch {
      throw Self.map(error, database: path)
    }
  }

  public func writeMany(_ sql: [String], arguments: [[[SQLValue]]]) async throws(StoreError) {
    do {
      try await pool.write { db in
        let prepared = try sql.map { try db.makeStatement(sql: $0) }
        for (index, statement) in prepared.enumerated() {
          for args in arguments[index] {
            try statement.execute(arguments: Self.bind(args))
          }
        }
      }
    } catch {
      throw Self.map(error, database: path)
    }
  }

  /// Closes every connection (the pool cannot be used afterwards).
  public func close() throws(StoreError) {
    do { try pool.close() } catch { throw Self.map(error, database: path) }
  }

  public func executeScript(_ sql: String) async throws(StoreError) {
    do {
      try await pool.write { db in try db.execute(sql: sql) }
    } catch {
      throw Self.map(error, database: path)
    }
  }
}
