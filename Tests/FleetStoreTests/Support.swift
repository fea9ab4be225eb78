import FleetStore
import Foundation
import HranaServer
import Testing

/// The store's two backends: every suite that takes one runs on both.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
  /// Embedded SQLite.
  case sqlite
  /// libSQL over HTTP (Hrana), the Turso backend, against the local server on the same kind of file.
  case libsql
  var testDescription: String { rawValue }
}

/// Opens the SQLite file at `path` through `backend`. For libSQL a server is started on loopback
/// for the file (one per store; it lives until the test process ends). A small chunk size makes
/// even a short import take the streamed (baton) path.
func open(_ path: String, _ backend: Backend) async throws -> FleetStore {
  switch backend {
  case .sqlite:
    return try FleetStore.sqlite(path: path, create: true)
  case .libsql:
    let running = try await HranaServer(path: path, token: "store-test-token").start()
    return FleetStore(database: try HranaDatabase(url: running.url, token: "store-test-token", chunkSize: 3))
  }
}

/// A fresh temporary folder per test.
func temporaryDirectory() -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("fk-\(UUID().uuidString)")
  try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

/// A migrated store in a fresh SQLite file, through `backend`.
func freshStore(_ backend: Backend = .sqlite) async throws -> (FleetStore, String) {
  let path = temporaryDirectory().appendingPathComponent("fleet.sqlite3").path
  let store = try await open(path, backend)
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

/// Runs a blocking call (a child process's pipes and exit) on its own thread, so that it never
/// holds one of the cooperative pool's few threads that in-process servers need.
func offload<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
  await withCheckedContinuation { continuation in
    Thread { continuation.resume(returning: body()) }.start()
  }
}
