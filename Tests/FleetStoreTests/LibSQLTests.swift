import FleetCore
import FleetStore
import Foundation
import HranaServer
import Testing

/// What only the libSQL (Turso) backend has: HTTP, streams, outages, and an independent client.
struct LibSQLTests {
  static let token = "libsql-test-token-9f3a"

  static func served() async throws -> (HranaServer.Running, String) {
    let path = temporaryDirectory().appendingPathComponent("turso.sqlite3").path
    let running = try await HranaServer(path: path, token: token).start()
    return (running, path)
  }

  @Test func aStreamedWriteIsAllOrNothing() async throws {
    let (running, _) = try await Self.served()
    defer { Task { await running.stop() } }
    let database = try HranaDatabase(url: running.url, token: Self.token, chunkSize: 3)
    let store = FleetStore(database: database)
    try await store.migrate()
    var statements = (0..<10).map {
      SQLStatement("INSERT INTO desired_machines (user_id, region) VALUES (?, 'cdg')", [.text("s\($0)")])
    }
    statements[8] = SQLStatement("INSERT INTO desired_machines (user_id, region, state) VALUES ('bad', 'cdg', 'on')")
    await #expect { () async throws in _ = try await database.write(statements) } throws: {
      ($0 as? StoreError)?.code == .constraint
    }
    #expect(try await store.readDesired().machines.isEmpty, "the chunks before the bad one were rolled back")
    statements[8] = SQLStatement("INSERT INTO desired_machines (user_id, region) VALUES ('s8', 'cdg')")
    _ = try await database.write(statements)
    #expect(try await store.readDesired().machines.count == 10)
    #expect(running.server.requestCount > 4, "streamed over several requests")
  }

  /// "Cannot read the desired state" is a typed error, never an empty set: down, slow, refused.
  @Test func anOutageIsUnavailableNeverEmpty() async throws {
    let (running, _) = try await Self.served()
    defer { Task { await running.stop() } }
    let store = FleetStore(database: try HranaDatabase(url: running.url, token: Self.token))
    try await store.migrate()
    try await store.addUser(UserInput(userID: "u1", region: "cdg"))

    running.server.setFault(.unavailable)
    await #expect { () async throws in _ = try await store.readDesired() } throws: {
      ($0 as? StoreError)?.code == .unavailable
    }
    let impatient = FleetStore(database: try HranaDatabase(url: running.url, token: Self.token, timeout: .seconds(1)))
    running.server.setFault(.slow(.seconds(5)))
    await #expect { () async throws in _ = try await impatient.readDesired() } throws: {
      ($0 as? StoreError)?.code == .unavailable && "\($0)".contains("timed out")
    }
    running.server.setFault(.none)
    #expect(try await store.readDesired().machines.keys.sorted() == ["u1"])

    let wrong = FleetStore(database: try HranaDatabase(url: running.url, token: "not-the-token"))
    await #expect { () async throws in _ = try await wrong.readDesired() } throws: { error in
      (error as? StoreError)?.code == .unavailable && "\(error)".contains("FLEET_DATABASE_AUTH_TOKEN")
        && !"\(error)".contains("not-the-token")
    }
  }

  @Test func urlsAndTokens() throws {
    #expect(HranaDatabase.handles("libsql://fleet-acme.turso.io"))
    #expect(HranaDatabase.handles("https://fleet-acme.turso.io"))
    #expect(HranaDatabase.handles("http://127.0.0.1:8080"))
    #expect(!HranaDatabase.handles("/data/fleet.sqlite3"))
    #expect(!HranaDatabase.handles("fleet.sqlite3"))
    let remote = try HranaDatabase(url: "libsql://fleet-acme.turso.io?authToken=eyJsecret", token: nil)
    #expect(remote.displayName == "libsql://fleet-acme.turso.io", "no token in messages")
    #expect(throws: StoreError.self) { try HranaDatabase(url: "ftp://x", token: nil) }
  }

  /// The server speaks the real protocol, not just our client's dialect: PyPI's `libsql` (a real
  /// libSQL client, Rust underneath) reads what fleetkeeper wrote, writes through the same
  /// constraints, and fleetkeeper reads what it wrote.
  @Test func anIndependentClientReadsAndWritesThroughIt() async throws {
    let (running, _) = try await Self.served()
    defer { Task { await running.stop() } }
    let store = FleetStore(database: try HranaDatabase(url: running.url, token: Self.token))
    try await store.migrate()
    try await store.addUser(UserInput(userID: "alice", email: "alice@example.com", region: "cdg"))
    try await store.addUser(UserInput(userID: "bob", state: "stopped", region: "ams"))

    let script = #"""
      import json, sys
      try:
          import libsql
      except ImportError as error:
          print(json.dumps({"import_error": str(error)})); sys.exit(0)
      c = libsql.connect(sys.argv[1], auth_token=sys.argv[2])
      out = {}
      out["desired"] = c.execute("SELECT user_id, state, region FROM desired_machines ORDER BY user_id").fetchall()
      c.execute("INSERT INTO desired_machines (user_id, region, state) VALUES (?, ?, ?)", ("carol", "ord", "running"))
      c.commit()
      try:
          c.execute("UPDATE desired_machines SET state = 'sideways' WHERE user_id = 'bob'")
          c.commit()
          out["check"] = "accepted"
      except Exception as error:
          out["check"] = str(error)
      c.rollback()
      out["users"] = [r[0] for r in c.execute("SELECT id FROM users ORDER BY id").fetchall()]
      row = c.execute("SELECT 42, 'héllo', 1.5, x'0001', NULL").fetchall()[0]
      out["values"] = [v.hex() if isinstance(v, bytes) else v for v in row]
      print(json.dumps(out))
      """#
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script, running.url, Self.token]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    try process.run()
    // python3 talks to the server in this process: wait for it off the cooperative pool.
    let text = await offload {
      let data = output.fileHandleForReading.readDataToEndOfFile()
      process.waitUntilExit()
      return String(decoding: data, as: UTF8.self)
    }
    let json = try #require(
      (try? JSONSerialization.jsonObject(with: Data(text.split(separator: "\n").last.map { Array($0.utf8) } ?? [])))
        as? [String: Any], "python said: \(text)")
    #expect(json["import_error"] == nil, "pip install libsql (.ci/run does): \(text)")
    let desired = json["desired"] as? [[Any]] ?? []
    #expect(
      desired.map { $0.compactMap { $0 as? String } } == [["alice", "running", "cdg"], ["bob", "stopped", "ams"]])
    #expect((json["check"] as? String)?.contains("CHECK constraint failed") == true, "\(json["check"] ?? "")")
    #expect(json["users"] as? [String] == ["alice", "bob", "carol"], "the trigger made carol's users row")
    let values = json["values"] as? [Any] ?? []
    #expect(values.count == 5)
    #expect((values.first as? NSNumber)?.intValue == 42)
    #expect(values.dropFirst().first as? String == "héllo")
    #expect((values.dropFirst(2).first as? NSNumber)?.doubleValue == 1.5)
    #expect(values.dropFirst(3).first as? String == "0001", "a blob, base64 on the wire")
    #expect(values.last is NSNull)
    let snapshot = try await store.readDesired()
    #expect(snapshot.machines["carol"]?.region == "ord")
    #expect(snapshot.machines["bob"]?.state == .stopped, "the refused update changed nothing")
  }
}
