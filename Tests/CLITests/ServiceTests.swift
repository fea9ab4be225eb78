import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// `fleetkeeper run` as a real process: SIGTERM mid-pass, logs without secrets, standby takeover.
@Suite(.serialized) struct ServiceTests {
  func startSim(_ extra: [String] = []) async throws -> (Background, String) {
    let sim = try Background(
      ["sim", "--port", "0", "--app", "app", "--token", "tok-secret-value-42", "--fast"] + extra)
    let line = try #require(await sim.readLine(containing: "FLY_API_BASE_URL="))
    return (sim, String(line.split(separator: "=").last!))
  }

  func database(users: Int, prefix: String = "s") async throws -> String {
    let dir = temporaryDirectory()
    let db = dir.appendingPathComponent("fleet.sqlite3").path
    try await fleetkeeper(["migrate", "--database", db])
    let file = dir.appendingPathComponent("u.csv")
    try ("user_id,region\n" + (0..<users).map { "\(prefix)\($0),cdg" }.joined(separator: "\n") + "\n").write(
      to: file, atomically: true, encoding: .utf8)
    try await fleetkeeper(["users", "import", file.path, "--database", db])
    return db
  }

  @Test func sigtermMidPassExitsZeroAndRecordsEverything() async throws {
    let (sim, base) = try await startSim(["--latency-ms", "700", "--mutations-only"])
    defer { sim.signal(SIGTERM) }
    let db = try await database(users: 12)
    let env = [
      "FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok-secret-value-42", "FLEET_DATABASE": db,
      "FLEET_LISTEN": "127.0.0.1:0", "FLEET_WRITE_RATE": "100", "FLEET_DRAIN_SECONDS": "10",
    ]
    let run = try Background(["run"], env: env)
    _ = await run.readLine(containing: "ops server listening", fromStandardError: true)
    // Mid-pass: the first creates are in flight (each takes 700 ms at the simulator).
    var inFlight = false
    for _ in 0..<100 where !inFlight {
      let state = try await fetchJSON(base + "/_sim/state")
      inFlight = !((state["volumes"] as? [Any]) ?? []).isEmpty
      if !inFlight { try await Task.sleep(for: .milliseconds(50)) }
    }
    let signalled = Date()
    await run.kill(SIGTERM)
    #expect(run.process.terminationStatus == 0)
    #expect(Date().timeIntervalSince(signalled) < 10, "within the drain time")
    // No action half-recorded: every mutation Fly saw has its event.
    let requests = try await fetchJSONArray(base + "/_sim/requests")
    let mutations = requests.filter { ($0["method"] as? String) != "GET" }.count
    let events = try await fleetkeeper(["events", "--json", "--limit", "1000", "--database", db]).stdout
      .split(separator: "\n").filter { $0.contains(#""event_type":"create_"#) && !$0.contains(#""outcome":"skipped""#) }
    #expect(events.count == mutations, "\(events.count) events for \(mutations) mutations")
  }

  /// One-shot commands write the error once, in the same log format as `run` (before: a swift-log
  /// default line, then the same error again as "error: …").
  @Test func aOneShotCommandSaysItsErrorOnceInTheLogFormat() async throws {
    let (sim, base) = try await startSim()
    defer { sim.signal(SIGTERM) }
    let db = temporaryDirectory().appendingPathComponent("fleet.sqlite3").path
    try await fleetkeeper(["migrate", "--database", db])
    let env = [
      "FLY_API_BASE_URL": base, "FLEET_FLY_APP": "app", "FLY_API_TOKEN": "tok-wrong-value-17", "FLEET_DATABASE": db,
    ]
    let reconcile = try await fleetkeeper(["reconcile"], env: env)
    #expect(reconcile.status == 1)
    let lines = reconcile.stderr.split(separator: "\n").filter { $0.contains("GET /v1") }
    #expect(lines.count == 1, "\(reconcile.stderr)")
    #expect(lines.first?.hasPrefix("ts=") == true && lines.first?.contains("level=error") == true, "\(lines)")
    let plan = try await fleetkeeper(["plan"], env: env)
    #expect(plan.status == 1)
    #expect(plan.stderr.split(separator: "\n").filter { $0.contains("GET /v1") }.count == 1, "\(plan.stderr)")
    #expect(!reconcile.stderr.contains("tok-wrong-value-17") && !plan.stderr.contains("tok-wrong-value-17"))
  }

  /// A first deploy: `run` on an empty volume (no database file) creates the database, applies the
  /// schema, says so in its log and reconciles; before, it exited "no database file".
  @Test func runOnAMissingDatabaseFileCreatesAndMigratesIt() async throws {
    let (sim, base) = try await startSim()
    defer { sim.signal(SIGTERM) }
    let db = temporaryDirectory().appendingPathComponent("fleet.sqlite3").path
    let env = [
      "FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok-secret-value-42", "FLEET_DATABASE": db,
      "FLEET_LISTEN": "127.0.0.1:0",
    ]
    let run = try Background(["run"], env: env)
    let created = await run.readLine(containing: "no database file", fromStandardError: true)
    #expect(created?.contains("created it") == true && created?.contains(db) == true, "\(created ?? "no such line")")
    #expect(await run.readLine(containing: "msg=pass", fromStandardError: true) != nil, "and it reconciles")
    await run.kill(SIGTERM)
    #expect(run.process.terminationStatus == 0)
    #expect(try await fleetkeeper(["users", "list", "--database", db]).status == 0, "a migrated database")
  }

  @Test func logsHoldNoTokenOnErrorPaths() async throws {
    let (sim, base) = try await startSim()
    defer { sim.signal(SIGTERM) }
    let db = try await database(users: 2)
    for format in ["logfmt", "json"] {
      let wrongToken = "fm2_wrong-token-value-77"
      let env = [
        "FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": wrongToken, "FLEET_DATABASE": db,
        "FLEET_LISTEN": "127.0.0.1:0", "FLEET_LOG_FORMAT": format,
        "FLEET_ALERT_WEBHOOK_URLS": "http://127.0.0.1:1/hook",
        "FLEET_ALERT_WEBHOOK_SECRET": "whsec-very-secret-99", "FLEET_INTERVAL": "1",
      ]
      let run = try Background(["run"], env: env)
      // Failing passes, then the fly_unreachable alert and its (failing) delivery: every error path logged.
      _ = await run.readLine(containing: "could_not_run", fromStandardError: true)
      _ = await run.readLine(containing: "alert delivery", fromStandardError: true)
      await run.kill(SIGTERM)
      let log = await run.wholeStandardError()
      #expect(log.contains("unauthorized"), "the error paths were exercised")
      #expect(!log.contains(wrongToken) && !log.contains("whsec-very-secret-99"))
      let tail = try await fleetkeeper(["events", "--json", "--database", db]).stdout
      #expect(!tail.contains(wrongToken))
      let plan = try await fleetkeeper(["plan"], env: env)
      #expect(plan.status == 1 && !plan.stderr.contains(wrongToken) && plan.stderr.contains("unauthorized"))
    }
  }

  /// At trace level the service library describes every service, settings included: the Fly
  /// token, the alert secret and the machines' env values appear in no form.
  @Test func runAtTraceLevelLogsNoSecret() async throws {
    let (sim, base) = try await startSim()
    defer { sim.signal(SIGTERM) }
    let db = try await database(users: 2)
    let agentSecret = #"agent/secret"value-123"#
    let env = [
      "FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok-secret-value-42", "FLEET_DATABASE": db,
      "FLEET_LISTEN": "127.0.0.1:0", "FLEET_LOG_LEVEL": "trace", "FLEET_INTERVAL": "1",
      "FLEET_ALERT_WEBHOOK_SECRET": "whsec-very-secret-99", "AGENT_KEY_VALUE": agentSecret,
    ]
    try await fleetkeeper(["template", "set", "--env", "KEY=$AGENT_KEY_VALUE", "--database", db])
    let run = try Background(["run"], env: env)
    _ = await run.readLine(containing: "create_machine", fromStandardError: true)
    _ = await run.readLine(containing: "msg=pass", fromStandardError: true)
    await run.kill(SIGTERM)
    let log = await run.wholeStandardError()
    #expect(log.contains("level=debug"), "the verbose levels were on")
    #expect(log.contains("SecretValues") || log.contains("secret value(s), redacted"), "the settings were described")
    for form in [
      "tok-secret-value-42", "whsec-very-secret-99", "agent/secret", #"agent\/secret"#, #"secret\"value"#,
      "agent%2Fsecret",
    ] {
      #expect(!log.contains(form), "\(form) in the log")
    }
  }

  /// Settings that crashed it or were silently taken are refused before anything starts, with the
  /// setting and the value named.
  @Test func garbageSettingsAreRefusedAtStart() async throws {
    let base = [
      "FLY_API_BASE_URL": "http://127.0.0.1:1", "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok-secret-value-42",
      "FLEET_DATABASE": temporaryDirectory().appendingPathComponent("none.sqlite3").path,
    ]
    for (name, value) in [
      ("FLEET_DRAIN_SECONDS", "inf"), ("FLEET_DRAIN_SECONDS", "1e30"), ("FLEET_WRITE_RATE", "1e-300"),
      ("FLEET_LISTEN", "127.0.0.1:99999"), ("FLEET_INTERVAL", "inf"), ("FLEET_VOLUME_RETENTION", "0x10"),
      ("FLEET_VOLUME_RETENTION", "1e-300"), ("FLEET_LEASE_SECONDS", "nan"),
    ] {
      let result = try await fleetkeeper(["run"], env: base.merging([name: value]) { $1 })
      #expect(result.status == 1, "\(name)=\(value): exit \(result.status) (the docs say 1)")
      #expect(result.stderr.contains(name) && result.stderr.contains(value), "\(name)=\(value): \(result.stderr)")
      #expect(!result.stderr.contains("tok-secret-value-42"))
    }
    let nan = try await fleetkeeper(["plan", "--stuck-after", "nan"], env: base)
    #expect(nan.status != 0 && nan.stderr.contains("--stuck-after"), "\(nan.stderr)")
    let hex = try await fleetkeeper(["plan", "--interval", "0x10"], env: base)
    #expect(hex.status != 0 && hex.stderr.contains("0x10"), "\(hex.stderr)")
    let clear = try await fleetkeeper(
      ["plan"], env: base.merging(["FLY_API_BASE_URL": "http://api.machines.dev"]) { $1 })
    #expect(clear.status != 0 && clear.stderr.contains("FLY_API_BASE_URL"), "\(clear.stderr)")
    // On Fly (FLY_MACHINE_ID set) FLY_APP_NAME is the controller's own app: never taken for the
    // users' app (before, a forgotten FLEET_FLY_APP put users' machines into the controller's app).
    let own = try await fleetkeeper(["plan"], env: base.merging(["FLY_MACHINE_ID": "148e21ea7d5d89"]) { $1 })
    #expect(own.status != 0 && own.stderr.contains("FLEET_FLY_APP"), "\(own.stderr)")
    let named = try await fleetkeeper(
      ["plan"], env: base.merging(["FLY_MACHINE_ID": "148e21ea7d5d89", "FLEET_FLY_APP": "app"]) { $1 })
    #expect(!named.stderr.contains("FLEET_FLY_APP is not set"), "\(named.stderr)")
  }

  /// The writer lease is renewed between passes too: with a 3 s lease and a 30 s interval, a
  /// second `run` stays standby for three lease lives (before, it took the lease 3 s after each
  /// pass and both reported holding it); `reconcile` beside a running writer refuses; after the
  /// writer dies the standby takes over.
  @Test func oneWriterBetweenPassesTooAndReconcileRefusesBesideIt() async throws {
    let (sim, base) = try await startSim()
    defer { sim.signal(SIGTERM) }
    let db = try await database(users: 2)
    let env = [
      "FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok-secret-value-42", "FLEET_DATABASE": db,
      "FLEET_LISTEN": "127.0.0.1:0", "FLEET_INTERVAL": "30", "FLEET_LEASE_SECONDS": "3",
    ]
    /// The ops server's address, from what was read of the log so far (the lines come in either
    /// order with the standby line).
    func address(_ process: Background) async throws -> String {
      if !process.readErrors.contains("ops server listening") {
        _ = await process.readLine(containing: "ops server listening", fromStandardError: true)
      }
      let line = try #require(process.readErrors.split(separator: "\n").first { $0.contains("ops server listening") })
      let field = try #require(line.split(separator: " ").first { $0.hasPrefix("address=") })
      return "http://" + field.dropFirst("address=".count)
    }
    func held(_ address: String) async throws -> Bool {
      let response = try await HTTPClient.shared.execute(
        HTTPClientRequest(url: address + "/metrics"), timeout: .seconds(5))
      let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
      let line = text.split(separator: "\n").first { $0.hasPrefix("fleetkeeper_writer_lease_held ") }
      return line.flatMap { Double($0.split(separator: " ").last ?? "") } == 1
    }
    let first = try Background(["run"], env: env)
    defer { first.signal(SIGKILL) }
    _ = await first.readLine(containing: "msg=pass", fromStandardError: true)
    let firstAddress = try await address(first)
    let second = try Background(["run"], env: env)
    defer { second.signal(SIGTERM) }
    _ = await second.readLine(containing: "standby", fromStandardError: true)
    let secondAddress = try await address(second)
    // Three lease lives with the writer idle between passes: the standby never holds it.
    let watched = Date()
    var samples = 0
    while Date().timeIntervalSince(watched) < 9 {
      #expect(try await held(firstAddress), "the writer holds it between passes")
      #expect(try await !held(secondAddress), "the standby never does")
      samples += 1
      try await Task.sleep(for: .milliseconds(300))
    }
    #expect(samples > 10)
    let refused = try await fleetkeeper(["reconcile"], env: env)
    #expect(refused.status == 1)
    #expect(refused.stderr.contains("holds the writer lease"), "\(refused.stderr)")
    #expect(refused.stdout.isEmpty, "nothing done")
    await first.kill(SIGKILL)
    let killed = Date()
    var takenOver = false
    while !takenOver && Date().timeIntervalSince(killed) < 20 {
      takenOver = try await held(secondAddress)
      if !takenOver { try await Task.sleep(for: .milliseconds(200)) }
    }
    #expect(takenOver, "the standby takes over")
    #expect(Date().timeIntervalSince(killed) < 3 + 2 + 2, "within the lease's life and a poll")
    await second.kill(SIGTERM)
    let alone = try await fleetkeeper(["reconcile"], env: env)
    #expect(alone.status == 0, "with no writer running, reconcile takes the lease: \(alone.stderr)")
  }

  /// Two controllers on one database never both act; the standby takes over when the active one
  /// dies. On `libsql` the database is behind `fleetkeeper libsql-server` (a separate process), so
  /// the two controllers reach it, and share the lease, only over HTTP, as on Turso.
  @Test(arguments: ["sqlite", "libsql"])
  func standbyTakesOverAfterTheActiveProcessDies(backend: String) async throws {
    let (sim, base) = try await startSim()
    defer { sim.signal(SIGTERM) }
    var db = try await database(users: 2)
    var server: Background? = nil
    var databaseEnv: [String: String] = [:]
    if backend == "libsql" {
      databaseEnv["FLEET_DATABASE_AUTH_TOKEN"] = "turso-token-test-77"
      let served = try Background(["libsql-server", "--port", "0", "--file", db], env: databaseEnv)
      let line = try #require(await served.readLine(containing: "FLEET_DATABASE="))
      db = String(line.split(separator: "=").last!)
      #expect(db.hasPrefix("http://127.0.0.1:"))
      server = served
    }
    defer { server?.signal(SIGTERM) }
    let env =
      [
        "FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok-secret-value-42", "FLEET_DATABASE": db,
        "FLEET_LISTEN": "127.0.0.1:0", "FLEET_INTERVAL": "1",
      ].merging(databaseEnv) { $1 }
    let first = try Background(["run"], env: env)
    _ = await first.readLine(containing: "msg=pass", fromStandardError: true)
    let second = try Background(["run"], env: env)
    _ = await second.readLine(containing: "standby", fromStandardError: true)
    await first.kill(SIGKILL)
    let killed = Date()
    try await fleetkeeper(["users", "add", "late", "--region", "cdg", "--database", db], env: databaseEnv)
    var created = false
    while !created && Date().timeIntervalSince(killed) < 40 {
      let census = try await census(base)
      created = census.machines["late"] == 1
      if !created { try await Task.sleep(for: .milliseconds(200)) }
    }
    let takeover = Date().timeIntervalSince(killed)
    await second.kill(SIGTERM)
    #expect(created)
    #expect(takeover < 30, "took over in \(takeover) s")
  }
}

func fetchJSONArray(_ url: String) async throws -> [[String: Any]] {
  let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
  let body = try await response.body.collect(upTo: 64 << 20)
  return (try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [[String: Any]]) ?? []
}

@Suite(.serialized) struct TemplateSecretTests {
  @Test func aTemplateCannotCopyTheFlyTokenIntoAMachine() async throws {
    let sim = try Background(["sim", "--port", "0", "--app", "app", "--token", "tok-secret-value-42", "--fast"])
    defer { sim.signal(SIGTERM) }
    let line = try #require(await sim.readLine(containing: "FLY_API_BASE_URL="))
    let base = String(line.split(separator: "=").last!)
    let db = temporaryDirectory().appendingPathComponent("fleet.sqlite3").path
    let env = [
      "FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok-secret-value-42", "FLEET_DATABASE": db,
      "AGENT_KEY_VALUE": "agent-secret-123",
    ]
    try await fleetkeeper(["migrate"], env: env)
    // The CLI refuses it when it is set (the name is said, never the value)...
    let refused = try await fleetkeeper(
      ["template", "set", "--env", "STOLEN=$FLY_API_TOKEN", "--env", "KEY=$AGENT_KEY_VALUE"], env: env)
    #expect(refused.status == 1 && refused.stderr.contains("env.STOLEN") && refused.stderr.contains("FLY_API_TOKEN"))
    #expect(!refused.stderr.contains("tok-secret-value-42"))
    // ...and written around the CLI, in SQL, it is still never resolved.
    let sql = Process()
    sql.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    sql.arguments = [
      db,
      #"UPDATE machine_template SET env = '{"STOLEN":"$FLY_API_TOKEN","KEY":"$AGENT_KEY_VALUE"}', image = 'registry.fly.io/agent:1';"#,
    ]
    try sql.run()
    sql.waitUntilExit()
    #expect(sql.terminationStatus == 0)
    try await fleetkeeper(["users", "add", "t1", "--region", "cdg"], env: env)
    for _ in 0..<3 { try await fleetkeeper(["reconcile"], env: env) }
    let state = try await fetchJSON(base + "/_sim/state")
    let text = String(describing: state)
    #expect(!text.contains("tok-secret-value-42"), "the Fly token never reaches a machine")
    let events = try await fleetkeeper(["events", "--json"], env: env).stdout
    #expect(events.contains("does not hold"))
    #expect(!events.contains("tok-secret-value-42") && !events.contains("agent-secret-123"))
  }
}
