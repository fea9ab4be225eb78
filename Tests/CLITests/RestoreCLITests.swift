import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// Issue 17 as an operator does it: snapshots by hand, and a restore carried out by `fleetkeeper
/// run`, killed with SIGKILL while Fly is doing each of its steps, and resumed by a new process
/// without a duplicate.
@Suite(.serialized) struct RestoreCLITests {
  static func post(_ url: String, _ body: String) async throws {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.body = .bytes(ByteBuffer(string: body))
    _ = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
  }

  /// Live machines and volumes of `user` in the simulator.
  static func holdings(_ base: String, user: String) async throws -> (machines: [String], volumes: [String]) {
    let state = try await fetchJSON(base + "/_sim/state")
    var machines: [String] = []
    for machine in state["machines"] as? [[String: Any]] ?? [] {
      let s = machine["state"] as? String ?? ""
      if s == "destroyed" || s == "destroying" { continue }
      let owner = ((machine["config"] as? [String: Any])?["metadata"] as? [String: Any])?["fleet_user_id"] as? String
      if owner == user { machines.append(machine["id"] as? String ?? "") }
    }
    let volumes = (state["volumes"] as? [[String: Any]] ?? []).filter {
      ($0["name"] as? String) == "fk_\(user)"
        && !["destroyed", "pending_destroy"].contains($0["state"] as? String ?? "")
    }.map { $0["id"] as? String ?? "" }
    return (machines, volumes)
  }

  @Test func aRestoreSurvivesSIGKILLAtEveryStep() async throws {
    let dir = temporaryDirectory()
    let db = dir.appendingPathComponent("fleet.sqlite3").path
    let sim = try Background(["sim", "--port", "0", "--app", "app", "--token", "tok", "--fast"])
    defer { sim.signal(SIGTERM) }
    let line = try #require(await sim.readLine(containing: "FLY_API_BASE_URL="))
    let base = String(line.split(separator: "=").last!)
    let env = [
      "FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok", "FLEET_DATABASE": db,
      // A killed process's writer lease lapses in 3 s: the next one takes over soon after.
      // Port 0: two `run`s (of two suites) never fight over the ops port.
      "FLEET_INTERVAL": "1", "FLEET_LEASE_SECONDS": "3", "FLEET_LISTEN": "127.0.0.1:0",
    ]
    try await fleetkeeper(["migrate"], env: env)
    try await fleetkeeper(["users", "add", "u1", "--region", "cdg"], env: env)
    for _ in 0..<10 where try await Self.holdings(base, user: "u1").machines.isEmpty {
      _ = try await fleetkeeper(["reconcile"], env: env)
    }
    #expect(try await Self.holdings(base, user: "u1").machines.count == 1)
    // By hand: a snapshot, listed, recorded.
    let taken = try await fleetkeeper(["users", "snapshot", "u1"], env: env)
    #expect(taken.status == 0, "\(taken.stderr)")
    let snapshotID = try #require(taken.stdout.split(separator: " ").dropFirst().first.map(String.init))
    #expect(snapshotID.hasPrefix("vs_"), "\(taken.stdout)")
    #expect(try await fleetkeeper(["users", "snapshots", "u1"], env: env).stdout.contains(snapshotID))
    #expect(try await fleetkeeper(["events", "--user", "u1"], env: env).stdout.contains(snapshotID))
    // Refused with the field and the value: a snapshot the volume does not have.
    let refused = try await fleetkeeper(["users", "restore", "u1", "--snapshot", "vs_nope"], env: env)
    #expect(refused.status == 1 && refused.stderr.contains("vs_nope"), "\(refused.stderr)")

    let steps = ["POST /volumes", "POST /machines", "POST /machines/{id}/stop", "DELETE /machines/{id}"]
    for (index, step) in steps.enumerated() {
      try await Self.post(base + "/_sim/faults", #"{"hold_answers":["\#(step)"],"hold_seconds":600}"#)
      if index > 0 { #expect(try await fleetkeeper(["users", "snapshot", "u1"], env: env).status == 0) }
      let asked = try await fleetkeeper(["users", "restore", "u1", "--latest"], env: env)
      #expect(asked.status == 0, "\(asked.stderr)")
      let run = try Background(["run"], env: env)
      // Fly is doing the step and its answer is held: the controller dies right now.
      var reached = false
      for _ in 0..<200 where !reached {
        let log = try await Self.requests(base)
        reached = log.contains { $0["endpoint"] as? String == step && ($0["status"] as? Int ?? 0) < 300 }
        if !reached { try await Task.sleep(for: .milliseconds(50)) }
      }
      #expect(reached, "the restore reached \(step)")
      await run.kill(SIGKILL)
      try await Self.post(base + "/_sim/faults", "{}")
      let resumed = try Background(["run"], env: env)
      var done = false
      let deadline = Date().addingTimeInterval(90)
      while !done && Date() < deadline {
        done =
          try await fleetkeeper(["users", "restores", "u1"], env: env).stdout.split(separator: "\n").first?
          .contains("\tdone\t") == true
        if !done { try await Task.sleep(for: .milliseconds(100)) }
      }
      await resumed.kill(SIGTERM)
      if !done {
        let events = try await fleetkeeper(["events", "--user", "u1", "--limit", "15"], env: env).stdout
        let log = String(await resumed.wholeStandardError().suffix(3000))
        Issue.record("restore \(index + 1), killed at \(step), not finished by the next process:\n\(events)\n\(log)")
      }
      let held = try await Self.holdings(base, user: "u1")
      #expect(held.machines.count == 1, "one machine after a kill at \(step): \(held.machines)")
      #expect(held.volumes.count == index + 2, "the restored volume and each one replaced, no more: \(held.volumes)")
    }
    let events = try await fleetkeeper(["events", "--user", "u1", "--limit", "500"], env: env).stdout
    #expect(events.components(separatedBy: "restore_done").count - 1 == steps.count)
  }

  static func requests(_ base: String) async throws -> [[String: Any]] {
    let response = try await HTTPClient.shared.execute(
      HTTPClientRequest(url: base + "/_sim/requests?since=0"), timeout: .seconds(5))
    let body = try await response.body.collect(upTo: 64 << 20)
    let json = try JSONSerialization.jsonObject(with: Data(body.readableBytesView))
    if let list = json as? [[String: Any]] { return list }
    return (json as? [String: Any])?["requests"] as? [[String: Any]] ?? []
  }
}
