import Foundation
import Testing

/// The operator CLI as a real process on a real SQLite file.
struct StoreCLITests {
  let dir = temporaryDirectory()
  var db: String { dir.appendingPathComponent("fleet.sqlite3").path }

  /// `alerts test` names the users' app as `run` does (FLEET_FLY_APP first); before, it read only
  /// FLY_APP_NAME and sent an empty `fly_app` where FLEET_FLY_APP named it.
  @Test func alertsTestNamesTheUsersApp() async throws {
    let dir = temporaryDirectory()
    let db = dir.appendingPathComponent("fleet.sqlite3").path
    try await fleetkeeper(["migrate", "--database", db])
    let out = dir.appendingPathComponent("notice.json").path
    let script = dir.appendingPathComponent("receive.sh")
    try "#!/bin/sh\ncat > \(out)\n".write(to: script, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
    let result = try await fleetkeeper(
      ["alerts", "test", "--database", db],
      env: ["FLEET_FLY_APP": "users-app", "FLEET_ALERT_WEBHOOK_URLS": "command:\(script.path)"])
    #expect(result.status == 0, "\(result.stderr)")
    let notice = try String(contentsOfFile: out, encoding: .utf8)
    #expect(notice.contains(#""fly_app":"users-app""#), "\(notice)")
  }

  /// `--version` says which build runs (before, there was no such flag).
  @Test func versionNamesTheBuild() async throws {
    let result = try await fleetkeeper(["--version"])
    #expect(result.status == 0)
    #expect(result.stdout.hasPrefix("fleetkeeper 0."), "\(result.stdout)")
  }

  @Test func migrateCreatesAndIsIdempotent() async throws {
    let first = try await fleetkeeper(["migrate", "--database", db])
    #expect(first.status == 0)
    #expect(first.stdout.contains("applied migrations 1, 2"))
    let second = try await fleetkeeper(["migrate"], env: ["FLEET_DATABASE": db])
    #expect(second.stdout.contains("schema is current"))
  }

  @Test func defaultDatabaseIsInTheWorkingDirectory() async throws {
    #expect(try await fleetkeeper(["migrate"], directory: dir).status == 0)
    #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("fleet.sqlite3").path))
  }

  @Test func commandsOtherThanMigrateRefuseAMissingDatabase() async throws {
    let result = try await fleetkeeper(["users", "list", "--database", db])
    #expect(result.status == 1)
    #expect(result.stderr.contains("unavailable"))
    #expect(!FileManager.default.fileExists(atPath: db))
  }

  @Test func usersLifecycle() async throws {
    try await fleetkeeper(["migrate", "--database", db])
    await #expect(
      try fleetkeeper(["users", "add", "u1", "--region", "cdg", "--email", "u1@example.com", "--database", db]).status
        == 0)
    await #expect(
      try fleetkeeper([
        "users", "add", "u2", "--region", "ams", "--state", "stopped", "--memory-mb", "512", "--database", db,
      ]).status == 0)
    #expect(try await fleetkeeper(["users", "set", "u1", "--image", "nginx:1.25", "--database", db]).status == 0)
    #expect(try await fleetkeeper(["users", "remove", "u2", "--database", db]).status == 0)
    let list = try await fleetkeeper(["users", "list", "--json", "--database", db])
    let lines = list.stdout.split(separator: "\n").map(String.init)
    #expect(lines.count == 2)
    #expect(lines[0].contains(#""image":"nginx:1.25""#) && lines[0].contains(#""user_id":"u1""#))
    #expect(lines[1].contains(#""state":"absent""#) && lines[1].contains(#""memory_mb":512"#))
    let table = try await fleetkeeper(["users", "list", "--database", db])
    #expect(table.stdout.hasPrefix("USER"))
  }

  @Test(arguments: [
    (["users", "add", "", "--region", "cdg"], "user_id"),
    (["users", "add", "u1", "--region", "mars"], "region \"mars\""),
    (["users", "add", "u1", "--region", "cdg", "--state", "on"], "state \"on\""),
    (["users", "add", "u1", "--region", "cdg", "--memory-mb=-256"], "memory_mb \"-256\""),
    (["users", "add", "u1", "--region", "cdg", "--image", "Not/An Image"], "image \"Not/An Image\""),
    (["users", "add", "u1;drop table users", "--region", "cdg"], "user_id \"u1;drop table users\""),
    (["users", "set", "nobody", "--state", "stopped"], "no such user"),
    (["template", "set", "--memory-mb", "100"], "memory_mb \"100\""),
    (["template", "set", "--env", "NOEQUALS"], "env"),
    (["regions", "add", "TOOLONG"], "region"),
  ])
  func badCommandsExitOneNamingTheField(args: [String], fragment: String) async throws {
    try await fleetkeeper(["migrate", "--database", db])
    let result = try await fleetkeeper(args + ["--database", db])
    #expect(result.status == 1)
    #expect(result.stderr.contains(fragment), "\(result.stderr)")
    #expect(try await fleetkeeper(["users", "list", "--json", "--database", db]).stdout.isEmpty)
  }

  @Test func importTemplateRegionsEvents() async throws {
    try await fleetkeeper(["migrate", "--database", db])
    let file = dir.appendingPathComponent("users.csv")
    try "user_id,email,region,state,image\nu1,u1@example.com,cdg,running,\nu2,,,stopped,nginx:1\n".write(
      to: file, atomically: true, encoding: .utf8)
    let imported = try await fleetkeeper(["users", "import", file.path, "--region", "ams", "--database", db])
    #expect(imported.status == 0, "\(imported.stderr)")
    #expect(imported.stdout.contains("imported 2 users"))
    let again = try await fleetkeeper(["users", "import", file.path, "--region", "ams", "--database", db])
    #expect(again.status == 1)
    #expect(again.stderr.contains("line 2: user_id \"u1\": already exists"))

    let set = try await fleetkeeper([
      "template", "set", "--image", "registry.fly.io/agent:v2", "--memory-mb", "512", "--env", "KEY=$ANTHROPIC_API_KEY",
      "--init-cmd", #"["/bin/agent","serve"]"#, "--database", db,
    ])
    #expect(set.status == 0, "\(set.stderr)")
    let shown = try await fleetkeeper(["template", "show", "--database", db])
    #expect(shown.stdout.contains(#""image" : "registry.fly.io/agent:v2""#))
    #expect(shown.stdout.contains(#""KEY" : "$ANTHROPIC_API_KEY""#))

    #expect(try await fleetkeeper(["regions", "add", "qqq", "--database", db]).status == 0)
    #expect(try await fleetkeeper(["regions", "list", "--database", db]).stdout.contains("qqq"))
    #expect(try await fleetkeeper(["users", "add", "u3", "--region", "qqq", "--database", db]).status == 0)

    let events = try await fleetkeeper(["events", "--json", "--database", db])
    #expect(events.status == 0)
    #expect(events.stdout.isEmpty, "no action yet, no event")

    // A row the dashboard wrote, with details that are not JSON, and an old one: `--json` stays
    // valid JSON (before: the text was pasted in as is), `--since` takes a time or a duration
    // (before: an event id, now `--after-id`).
    let sql = Process()
    sql.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    sql.arguments = [
      db,
      "INSERT INTO machine_events (event_type, details, created_at, user_id) VALUES ('note', 'not json', unixepoch(), 'u3'), ('old', '{}', 1000, 'u3');",
    ]
    try sql.run()
    sql.waitUntilExit()
    #expect(sql.terminationStatus == 0)
    let all = try await fleetkeeper(["events", "--json", "--database", db])
    let lines = all.stdout.split(separator: "\n")
    #expect(lines.count == 2)
    for line in lines {
      #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "not JSON: \(line)")
    }
    #expect(all.stdout.contains(#""details":"not json""#))
    let recent = try await fleetkeeper(["events", "--since", "1h", "--database", db])
    #expect(recent.status == 0 && recent.stdout.contains("note") && !recent.stdout.contains("old"), "\(recent.stdout)")
    let fromTime = try await fleetkeeper(["events", "--since", "1970-01-01T00:10:00Z", "--database", db])
    #expect(fromTime.stdout.contains("old") && fromTime.stdout.contains("note"))
    let afterFirst = try await fleetkeeper(["events", "--after-id", "1", "--database", db])
    #expect(afterFirst.stdout.contains("old") && !afterFirst.stdout.contains("note"))
    let bad = try await fleetkeeper(["events", "--since", "banana", "--database", db])
    #expect(bad.status == 1 && bad.stderr.contains("--since"), "\(bad.stderr)")
  }

  /// Every store command, with `FLEET_DATABASE` a libSQL URL: a `fleetkeeper libsql-server` process
  /// serves the file, and the commands reach it only over HTTP. The file then reads the same through
  /// SQLite directly.
  @Test func theCommandsWorkOverLibSQL() async throws {
    let token = "cli-turso-token-5521"
    let server = try Background(
      ["libsql-server", "--port", "0", "--file", db], env: ["FLEET_DATABASE_AUTH_TOKEN": token])
    defer { server.signal(SIGTERM) }
    let line = try #require(await server.readLine(containing: "FLEET_DATABASE="))
    let url = String(line.split(separator: "=").last!)
    let env = ["FLEET_DATABASE": url, "FLEET_DATABASE_AUTH_TOKEN": token]

    let migrated = try await fleetkeeper(["migrate"], env: env)
    #expect(migrated.status == 0, "\(migrated.stderr)")
    #expect(migrated.stdout.contains("applied migrations 1, 2") && migrated.stdout.contains(url))
    let file = dir.appendingPathComponent("users.csv")
    try ("user_id,region\n" + (0..<1200).map { "t\($0),cdg" }.joined(separator: "\n") + "\n").write(
      to: file, atomically: true, encoding: .utf8)
    let imported = try await fleetkeeper(["users", "import", file.path], env: env)
    #expect(imported.stdout.contains("imported 1200 users"), "\(imported.stderr)")
    let refused = try await fleetkeeper(["users", "import", file.path], env: env)
    #expect(refused.status == 1 && refused.stderr.contains("line 2"), "all or nothing: \(refused.stderr)")
    #expect(try await fleetkeeper(["users", "add", "alice", "--region", "ams"], env: env).status == 0)
    #expect(try await fleetkeeper(["users", "set", "alice", "--state", "stopped"], env: env).status == 0)
    #expect(try await fleetkeeper(["users", "remove", "t0"], env: env).status == 0)
    let bad = try await fleetkeeper(["users", "add", "bob", "--region", "cdg", "--state", "sideways"], env: env)
    #expect(bad.status == 1 && bad.stderr.contains("sideways"))
    #expect(try await fleetkeeper(["template", "set", "--image", "registry.fly.io/agent:v3"], env: env).status == 0)
    #expect(try await fleetkeeper(["template", "show"], env: env).stdout.contains("agent:v3"))
    #expect(try await fleetkeeper(["regions", "add", "qqq"], env: env).status == 0)
    #expect(try await fleetkeeper(["events"], env: env).status == 0)
    #expect(try await fleetkeeper(["alerts"], env: env).status == 0)
    let listed = try await fleetkeeper(["users", "list", "--json"], env: env).stdout
    #expect(listed.split(separator: "\n").count == 1201)

    // The same file through SQLite: the same users.
    let direct = try await fleetkeeper(["users", "list", "--json", "--database", db])
    #expect(direct.stdout == listed)
    #expect(direct.stdout.contains(#""state":"stopped""#) && direct.stdout.contains(#""user_id":"alice""#))

    let wrong = try await fleetkeeper(
      ["users", "list"], env: ["FLEET_DATABASE": url, "FLEET_DATABASE_AUTH_TOKEN": "nope-wrong"])
    #expect(wrong.status == 1 && wrong.stderr.contains("FLEET_DATABASE_AUTH_TOKEN"))
    #expect(!wrong.stderr.contains("nope-wrong") && !migrated.stdout.contains(token))
  }

  @Test func schemaPrintsTheSchema() async throws {
    let result = try await fleetkeeper(["schema"])
    #expect(result.stdout.contains("CREATE TABLE desired_machines"))
  }
}
