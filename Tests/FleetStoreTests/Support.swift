import FleetStore
import Foundation

/// A fresh temporary folder per test.
func temporaryDirectory() -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("fk-\(UUID().uuidString)")
  try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

/// A migrated store in a fresh SQLite file.
func freshStore() async throws -> (FleetStore, String) {
  let path = temporaryDirectory().appendingPathComponent("fleet.sqlite3").path
  let store = try FleetStore.sqlite(path: path, create: true)
  try await store.migrate()
  return (store, path)
}

/// Every row of every table, to prove a refused command changed nothing.
func dump(_ store: FleetStore) async throws -> [SQLRows] {
  let tables = try await store.database.read([
    SQLStatement("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
  ])[0].rows.compactMap { $0[0].string }
  return try await store.database.read(tables.map { SQLStatement("SELECT * FROM \"\($0)\" ORDER BY 1") })
}
