import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// A background `fleetkeeper` process.
final class Background: @unchecked Sendable {
  let process = Process()
  let output = Pipe()
  let errors = Pipe()
  /// Everything `readLine` has read so far, per stream, so a later check sees the whole transcript.
  private(set) var readOutput = ""
  private(set) var readErrors = ""

  init(_ args: [String], env: [String: String] = [:]) throws {
    process.executableURL = fleetkeeperBinary
    process.arguments = args
    var environment = ProcessInfo.processInfo.environment
    for (key, value) in env { environment[key] = value }
    process.environment = environment
    process.standardOutput = output
    process.standardError = errors
    try process.run()
  }

  /// Reads standard output until a line containing `marker` (or EOF), off the cooperative pool.
  func readLine(containing marker: String, fromStandardError: Bool = false) async -> String? {
    await offload { self.readLineBlocking(containing: marker, fromStandardError: fromStandardError) }
  }

  private func readLineBlocking(containing marker: String, fromStandardError: Bool) -> String? {
    var buffer = ""
    let handle = (fromStandardError ? errors : output).fileHandleForReading
    while true {
      let data = handle.availableData
      if data.isEmpty { return nil }
      let text = String(decoding: data, as: UTF8.self)
      if fromStandardError { readErrors += text } else { readOutput += text }
      buffer += text
      if let line = buffer.split(separator: "\n").first(where: { $0.contains(marker) }) { return String(line) }
    }
  }

  /// The whole standard error: what was read already plus the rest (after the process ended).
  func wholeStandardError() async -> String {
    await offload {
      self.readErrors + String(decoding: self.errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }
  }

  /// Signals the process and waits for it to exit (off the cooperative pool).
  func kill(_ signal: Int32) async {
    Foundation.kill(process.processIdentifier, signal)
    await offload { self.process.waitUntilExit() }
  }

  /// For `defer`, which cannot await: signals without waiting.
  func signal(_ signal: Int32) {
    Foundation.kill(process.processIdentifier, signal)
  }
}

func fetchJSON(_ url: String) async throws -> [String: Any] {
  let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
  let body = try await response.body.collect(upTo: 64 << 20)
  return (try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]) ?? [:]
}

/// Live (not destroyed) machines per user and volumes per name, from the simulator's state.
func census(_ base: String) async throws -> (machines: [String: Int], started: Int, volumes: [String: Int]) {
  let state = try await fetchJSON(base + "/_sim/state")
  var machines: [String: Int] = [:]
  var started = 0
  for machine in state["machines"] as? [[String: Any]] ?? [] {
    let s = machine["state"] as? String ?? ""
    if s == "destroyed" || s == "destroying" { continue }
    if let user = ((machine["config"] as? [String: Any])?["metadata"] as? [String: Any])?["fleet_user_id"] as? String {
      machines[user, default: 0] += 1
      if s == "started" { started += 1 }
    }
  }
  var volumes: [String: Int] = [:]
  for volume in state["volumes"] as? [[String: Any]] ?? [] where (volume["state"] as? String) == "created" {
    volumes[volume["name"] as? String ?? "", default: 0] += 1
  }
  return (machines, started, volumes)
}

@Suite(.serialized) struct KillTests {
  @Test func sigkillAtRandomMomentsLeavesNoDuplicates() async throws {
    let dir = temporaryDirectory()
    let db = dir.appendingPathComponent("fleet.sqlite3").path
    let sim = try Background([
      "sim", "--port", "0", "--app", "app", "--token", "tok", "--no-rate-limits", "--list-lag", "0.3",
      "--lost-response-rate", "0.1", "--mutations-only",
    ])
    defer { sim.signal(SIGTERM) }
    let line = try #require(await sim.readLine(containing: "FLY_API_BASE_URL="))
    let base = String(line.split(separator: "=").last!)
    try await fleetkeeper(["migrate", "--database", db])
    let users = dir.appendingPathComponent("users.csv")
    try ("user_id,region\n" + (0..<60).map { "k\($0),cdg" }.joined(separator: "\n") + "\n").write(
      to: users, atomically: true, encoding: .utf8)
    #expect(try await fleetkeeper(["users", "import", users.path, "--database", db]).status == 0)
    let env = [
      "FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok", "FLEET_DATABASE": db,
      "FLEET_INTERVAL": "1", "FLEET_WRITE_RATE": "50", "FLEET_LISTEN": "127.0.0.1:0",
    ]
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<6 {
      let run = try Background(["run"], env: env)
      // A random moment in a pass: this is the point of the test, not synchronisation.
      try await Task.sleep(for: .milliseconds(Int.random(in: 150...1200, using: &generator)))
      await run.kill(SIGKILL)
      let now = try await census(base)
      #expect(
        now.machines.values.allSatisfy { $0 <= 1 },
        "duplicate machine after a kill: \(now.machines.filter { $0.value > 1 })")
      #expect(now.volumes.values.allSatisfy { $0 <= 1 }, "duplicate volume after a kill")
    }
    let final = try Background(["run"], env: env)
    let deadline = Date().addingTimeInterval(120)
    var last = try await census(base)
    while Date() < deadline && last.started < 60 {
      try await Task.sleep(for: .milliseconds(250))
      last = try await census(base)
    }
    // A whole pass is done: signal handlers are installed.
    _ = await final.readLine(containing: "outcome=ok", fromStandardError: true)
    await final.kill(SIGTERM)
    #expect(final.process.terminationStatus == 0, "SIGTERM ends the loop cleanly")
    #expect(last.started == 60)
    #expect(last.machines.count == 60 && last.machines.values.allSatisfy { $0 == 1 })
    #expect(last.volumes.count == 60 && last.volumes.values.allSatisfy { $0 == 1 })
  }

  @Test func planAndReconcileExitCodes() async throws {
    let dir = temporaryDirectory()
    let db = dir.appendingPathComponent("fleet.sqlite3").path
    let sim = try Background(["sim", "--port", "0", "--app", "app", "--token", "tok", "--fast"])
    defer { sim.signal(SIGTERM) }
    let line = try #require(await sim.readLine(containing: "FLY_API_BASE_URL="))
    let base = String(line.split(separator: "=").last!)
    let env = ["FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok", "FLEET_DATABASE": db]
    try await fleetkeeper(["migrate"], env: env)
    #expect(try await fleetkeeper(["plan"], env: env).status == 0)
    try await fleetkeeper(["users", "add", "p1", "--region", "cdg"], env: env)
    let plan = try await fleetkeeper(["plan", "--json"], env: env)
    #expect(plan.status == 2)
    #expect(plan.stdout.contains(#""action":"create_volume""#))
    #expect(try await fleetkeeper(["reconcile"], env: env).status == 0)
    #expect(try await fleetkeeper(["reconcile"], env: env).status == 0)
    let status = try await fleetkeeper(["status", "--json", "--all"], env: env)
    #expect(status.stdout.contains(#""user_id":"p1""#))
    // Paused, the fleet holds a new user's create and says so; plan exits 0 (nothing will be done).
    try await fleetkeeper(["users", "add", "p2", "--region", "cdg"], env: env)
    #expect(try await fleetkeeper(["pause"], env: env).status == 0)
    let held = try await fleetkeeper(["plan"], env: env)
    #expect(held.status == 0, "\(held.stdout)")
    #expect(held.stdout.contains("held (paused)") && held.stdout.contains("p2"), "\(held.stdout)")
    #expect(try await fleetkeeper(["status"], env: env).stdout.contains("the fleet is PAUSED"))
    #expect(try await fleetkeeper(["resume"], env: env).status == 0)
    #expect(try await fleetkeeper(["users", "pause", "p1"], env: env).status == 0)
    let one = try await fleetkeeper(["status"], env: env).stdout
    #expect(one.split(separator: "\n").contains { $0.hasPrefix("p1  PAUSED") }, "\(one)")
    #expect(try await fleetkeeper(["users", "pause", "ghost"], env: env).status != 0)
    #expect(try await fleetkeeper(["users", "resume", "p1"], env: env).status == 0)
    let events = try await fleetkeeper(["events", "--json"], env: env)
    #expect(events.stdout.contains("create_volume") && events.stdout.contains("create_machine"))
    // No token, no database: exit 1, nothing printed that looks like a secret.
    var wrong = env
    wrong["FLY_API_TOKEN"] = "wrong-token-value"
    let refused = try await fleetkeeper(["reconcile"], env: wrong)
    #expect(refused.status == 1)
    #expect(!refused.stderr.contains("wrong-token-value") && !refused.stdout.contains("wrong-token-value"))
    var missing = env
    missing["FLEET_DATABASE"] = dir.appendingPathComponent("nope.sqlite3").path
    #expect(try await fleetkeeper(["plan"], env: missing).status == 1)
  }
}
