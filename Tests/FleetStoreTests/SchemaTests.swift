import FleetCore
import FleetStore
import Foundation
import GRDB
import Testing

struct SchemaTests {
  static func columns(_ store: FleetStore, _ table: String) async throws -> [String] {
    try await store.database.read([
      SQLStatement("SELECT name, type, \"notnull\", pk FROM pragma_table_info('\(table)')")
    ])[0]
    .rows.map { "\($0[0].string!) \($0[1].string!)\($0[2].int == 1 ? " NOT NULL" : "")\($0[3].int == 1 ? " PK" : "")" }
  }

  @Test(arguments: Backend.allCases) func freshMigrateKeepsTheDashboardColumns(backend: Backend) async throws {
    let (store, _) = try await freshStore(backend)
    #expect(
      try await Self.columns(store, "users") == [
        "id TEXT PK", "email TEXT", "created_at INTEGER", "updated_at INTEGER",
      ])
    #expect(
      try await Self.columns(store, "machines") == [
        "id TEXT PK", "user_id TEXT NOT NULL", "region TEXT NOT NULL", "volume_id TEXT", "status TEXT",
        "ip_address TEXT",
        "created_at INTEGER", "updated_at INTEGER", "last_active_at INTEGER",
        // Added (nullable) for one app per user: where the dashboard connects.
        "app_name TEXT", "hostname TEXT",
      ])
    #expect(
      try await Self.columns(store, "machine_events") == [
        "id INTEGER PK", "machine_id TEXT", "event_type TEXT NOT NULL", "details TEXT", "created_at INTEGER",
        "user_id TEXT", "volume_id TEXT",
      ])
    #expect(try await store.schemaVersion() == Schema.migrations.last!.version)
    #expect(try await store.migrate() == [], "migrate is idempotent")
  }

  /// Beside the dashboard: its existing database (an SQLite file here, served over libSQL's
  /// protocol for the Turso case) gains fleetkeeper's tables and keeps every row.
  @Test(arguments: Backend.allCases)
  func migrateOverAnExistingDashboardDatabaseKeepsItsRows(backend: Backend) async throws {
    let path = temporaryDirectory().appendingPathComponent("dash.sqlite3").path
    let queue = try DatabaseQueue(path: path)
    try await queue.write { db in
      try db.execute(
        sql: """
          CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, created_at INTEGER, updated_at INTEGER);
          CREATE TABLE machines (id TEXT PRIMARY KEY, user_id TEXT NOT NULL UNIQUE, region TEXT NOT NULL, volume_id TEXT, status TEXT, ip_address TEXT, created_at INTEGER, updated_at INTEGER, last_active_at INTEGER);
          CREATE TABLE machine_events (id INTEGER PRIMARY KEY AUTOINCREMENT, machine_id TEXT, event_type TEXT NOT NULL, details TEXT, created_at INTEGER);
          INSERT INTO users VALUES ('u1', 'u1@example.com', 1, 1);
          INSERT INTO machines VALUES ('3d8d413b29d089', 'u1', 'cdg', 'vol_x', 'started', NULL, 1, 1, 1);
          INSERT INTO machine_events (machine_id, event_type, details, created_at) VALUES ('3d8d413b29d089', 'created', '{}', 1);
          """)
    }
    try await queue.close()
    let store = try await open(path, backend)
    #expect(try await store.migrate() == Schema.migrations.map(\.version))
    let rows = try await store.database.read([
      SQLStatement("SELECT email FROM users"), SQLStatement("SELECT id FROM machines"),
      SQLStatement("SELECT event_type FROM machine_events"),
    ])
    #expect(rows.map { $0.scalar?.string } == ["u1@example.com", "3d8d413b29d089", "created"])
  }

  /// Migration 5 renames the per-user column (`memory` → `state`) by rebuilding the table: the
  /// states written under version 4 are read back under version 5.
  @Test(arguments: Backend.allCases) func theStateColumnRenameKeepsEveryUsersState(backend: Backend) async throws {
    let path = temporaryDirectory().appendingPathComponent("v4.sqlite3").path
    let queue = try DatabaseQueue(path: path)
    try await queue.write { db in
      try db.execute(
        sql:
          "CREATE TABLE fleet_schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
      )
      for migration in Schema.migrations where migration.version <= 4 {
        try db.execute(sql: migration.sql)
        try db.execute(
          sql: "INSERT INTO fleet_schema_migrations VALUES (?, ?, 1)", arguments: [migration.version, migration.name])
      }
      try db.execute(
        sql: #"INSERT INTO fleet_user_state (user_id, memory) VALUES ('u1', '{"failures":2,"volumeID":"vol_1"}')"#)
    }
    try await queue.close()
    let store = try await open(path, backend)
    #expect(try await store.migrate() == Array(5...Schema.migrations.last!.version))
    let states = try await store.loadUserStates()
    #expect(states["u1"]?.volumeID == "vol_1" && states["u1"]?.failures == 2)
    #expect(try await Self.columns(store, "fleet_user_state").contains("state TEXT NOT NULL"))
    let refused = await #expect(throws: StoreError.self) {
      try await store.database.write([
        SQLStatement("INSERT INTO fleet_user_state (user_id, state) VALUES ('u2', 'not json')")
      ])
    }
    #expect(refused?.description.contains("state") == true, "the constraint names the column")
  }

  /// What SQL writes around the CLI is held to the CLI's rules (issue 13): an init_cmd element that
  /// is not a string is refused by the schema; an image the CLI refuses makes that user's row
  /// invalid (reported, never acted on) or, in the template, the desired state unreadable, with
  /// the field named. Before, both were accepted and the init_cmd silently dropped at create.
  @Test(arguments: Backend.allCases) func sqlIsHeldToTheCLIsRules(backend: Backend) async throws {
    let (store, _) = try await freshStore(backend)
    try await store.addUser(UserInput(userID: "u1", region: "cdg"))
    await #expect(throws: StoreError.self) {
      _ = try await store.database.write([SQLStatement(#"UPDATE machine_template SET init_cmd = '["serve", 1]'"#)])
    }
    _ = try await store.database.write([
      SQLStatement("UPDATE desired_machines SET image = 'registry.fly.io/Agent:1' WHERE user_id = 'u1'")
    ])
    let desired = try await store.readDesired()
    #expect(desired.machines["u1"] == nil)
    #expect(desired.invalidRows["u1"]?.contains("image") == true, "\(desired.invalidRows)")
    _ = try await store.database.write([SQLStatement("UPDATE machine_template SET image = 'registry.fly.io/Agent:1'")])
    do {
      _ = try await store.readDesired()
      Issue.record("a template image the CLI refuses was read")
    } catch {
      #expect(error.description.contains("machine_template.image"), "\(error)")
    }
  }

  @Test func schemaFileIsTheMigrations() throws {
    let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("desired-state/schema.sql")
    let text = try String(contentsOf: file, encoding: .utf8)
    #expect(text == Schema.fullText, "run `swift run fleetkeeper schema > desired-state/schema.sql`")
  }

  @Test func readingFailsTypedNeverEmpty() async throws {
    let dir = temporaryDirectory()
    #expect(throws: StoreError.self) { try FleetStore.sqlite(path: dir.appendingPathComponent("missing.sqlite3").path) }
    do {
      _ = try FleetStore.sqlite(path: dir.appendingPathComponent("missing.sqlite3").path)
    } catch {
      #expect(error.code == .unavailable)
    }

    let garbage = dir.appendingPathComponent("garbage.sqlite3")
    try Data(repeating: 0x41, count: 8192).write(to: garbage)
    await #expect { () async throws in
      _ = try await FleetStore.sqlite(path: garbage.path).readDesired()
    } throws: { ($0 as? StoreError)?.code == .malformed }

    let empty = dir.appendingPathComponent("empty.sqlite3").path
    let unmigrated = try FleetStore.sqlite(path: empty, create: true)
    await #expect { () async throws in _ = try await unmigrated.readDesired() } throws: {
      ($0 as? StoreError)?.code == .malformed && "\($0)".contains("fleetkeeper migrate")
    }
  }

  @Test func readingFailsTypedWhenLockedPastTheTimeout() async throws {
    let path = temporaryDirectory().appendingPathComponent("locked.sqlite3").path
    let setup = try SQLiteDatabase(path: path, create: true)
    try await FleetStore(database: setup).migrate()
    try setup.close()
    var unsafe = Configuration()
    unsafe.allowsUnsafeTransactions = true
    let locker = try DatabaseQueue(path: path, configuration: unsafe)
    // An exclusive lock blocks readers even in WAL mode.
    try await locker.writeWithoutTransaction { db in
      try db.execute(
        sql: "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE fleet_desired_version SET version = version + 1;"
      )
    }
    await #expect { () async throws in
      let store = FleetStore(database: try SQLiteDatabase(path: path, busyTimeout: .milliseconds(200)))
      _ = try await store.readDesired()
    } throws: {
      ($0 as? StoreError)?.code == .locked
    }
    try await locker.writeWithoutTransaction { db in try db.execute(sql: "ROLLBACK") }
  }

  @Test(arguments: Backend.allCases) func plainSQLIsHeldToTheSameRules(backend: Backend) async throws {
    let (store, _) = try await freshStore(backend)
    let bad: [(String, String)] = [
      ("INSERT INTO desired_machines (user_id, region, state) VALUES ('u', 'cdg', 'sideways')", "state"),
      ("INSERT INTO desired_machines (user_id, region) VALUES ('u', 'zzz')", "region"),
      ("INSERT INTO desired_machines (user_id, region) VALUES ('a b', 'cdg')", "user_id"),
      ("INSERT INTO desired_machines (user_id, region) VALUES ('', 'cdg')", "user_id"),
      ("INSERT INTO desired_machines (user_id, region) VALUES (char(10), 'cdg')", "user_id"),
      ("INSERT INTO desired_machines (user_id, region, memory_mb) VALUES ('u', 'cdg', 100)", "memory_mb"),
      ("INSERT INTO desired_machines (user_id, region, memory_mb) VALUES ('u', 'cdg', 4096)", "memory_mb"),
      ("INSERT INTO desired_machines (user_id, region, memory_mb) VALUES ('u', 'cdg', 'lots')", "memory_mb"),
      ("INSERT INTO desired_machines (user_id, region, volume_size_gb) VALUES ('u', 'cdg', 0)", "volume_size_gb"),
      ("INSERT INTO desired_machines (user_id, region, image) VALUES ('u', 'cdg', 'a b')", "image"),
      ("UPDATE machine_template SET memory_mb = 100", "memory_mb"),
      ("UPDATE machine_template SET env = 'not json'", "env"),
      ("INSERT INTO machine_template (id, image) VALUES (2, 'x')", "one_row"),
    ]
    for (sql, field) in bad {
      await #expect(
        performing: { () async throws in _ = try await store.database.write([SQLStatement(sql)]) },
        throws: { error in
          let message = "\(error)"
          return (error as? StoreError)?.code == .constraint && message.contains(field)
        })
    }
    #expect(try await store.readDesired().machines.isEmpty)
    _ = try await store.database.write([
      SQLStatement("INSERT INTO desired_machines (user_id, region) VALUES ('plain', 'cdg')")
    ])
    let snapshot = try await store.readDesired()
    #expect(snapshot.machines["plain"]?.state == .running)
    let users = try await store.database.read([SQLStatement("SELECT count(*) FROM users WHERE id = 'plain'")])
    #expect(users[0].scalar?.int == 1, "the trigger creates the dashboard's users row")
  }

  @Test(arguments: Backend.allCases) func everyEditBumpsTheDesiredVersion(backend: Backend) async throws {
    let (store, _) = try await freshStore(backend)
    let v0 = try await store.desiredVersion()
    try await store.addUser(UserInput(userID: "u1", region: "cdg"))
    let v1 = try await store.desiredVersion()
    try await store.setUser(UserInput(userID: "u1", state: "stopped"))
    let v2 = try await store.desiredVersion()
    var patch = TemplatePatch()
    patch.image = "nginx:2"
    try await store.setTemplate(patch)
    let v3 = try await store.desiredVersion()
    _ = try await store.database.write([SQLStatement("DELETE FROM desired_machines")])
    let v4 = try await store.desiredVersion()
    #expect(v0 < v1 && v1 < v2 && v2 < v3 && v3 < v4)
  }
}
