import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// `status` and `describe` as an operator uses them: which users are not as desired, since when,
/// why, what was last tried, what comes next; exit codes a script can act on.
@Suite(.serialized) struct StatusCLITests {
  @Test func statusSaysWhoIsNotInSyncAndWhyAndDescribeSaysEverything() async throws {
    let dir = temporaryDirectory()
    let db = dir.appendingPathComponent("fleet.sqlite3").path
    let sim = try Background(["sim", "--port", "0", "--app", "app", "--token", "tok", "--fast"])
    defer { sim.signal(SIGTERM) }
    let line = try #require(await sim.readLine(containing: "FLY_API_BASE_URL="))
    let base = String(line.split(separator: "=").last!)
    let env = ["FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok", "FLEET_DATABASE": db]
    try await fleetkeeper(["migrate"], env: env)
    // Two ids that share their first 28 characters: shown in full, never cut.
    let long = "3f0c2a4e-9b7d-4c1a-8e2f-5d6b7a8c9d0e"
    let twin = "3f0c2a4e-9b7d-4c1a-8e2f-5d6b7a8c9d0f"
    for user in [long, twin] { try await fleetkeeper(["users", "add", user, "--region", "cdg"], env: env) }
    for _ in 0..<4 { _ = try await fleetkeeper(["reconcile"], env: env) }
    let synced = try await fleetkeeper(["status"], env: env)
    #expect(synced.status == 0, "\(synced.stdout)\(synced.stderr)")
    #expect(synced.stdout.contains("2 users: 2 in sync, 0 pending, 0 failing, 0 paused, 0 rolling out"))
    #expect(synced.stdout.contains("every user is in sync"))
    let everyone = try await fleetkeeper(["status", "--all"], env: env).stdout
    #expect(everyone.contains("\(long)  IN_SYNC") && everyone.contains("\(twin)  IN_SYNC"), "\(everyone)")

    // A new user: pending, exit 2, with what comes next.
    try await fleetkeeper(["users", "add", "newcomer", "--region", "cdg"], env: env)
    let pending = try await fleetkeeper(["status"], env: env)
    #expect(pending.status == 2, "\(pending.stdout)")
    #expect(pending.stdout.contains("newcomer  PENDING"), "\(pending.stdout)")
    #expect(pending.stdout.contains("next: create_volume"), "\(pending.stdout)")
    #expect(!pending.stdout.contains("\(long)  "), "in-sync users are not listed without --all")
    for _ in 0..<4 { _ = try await fleetkeeper(["reconcile"], env: env) }

    // A full disk: failing, exit 1, why and since when; describe says the rest.
    let state = try await fetchJSON(base + "/_sim/state")
    let machines = state["machines"] as? [[String: Any]] ?? []
    let owned: [String] = (state["volumes"] as? [[String: Any]] ?? []).compactMap { volume in
      let attached = volume["attached_machine_id"] as? String
      let machine = machines.first { $0["id"] as? String == attached }
      let metadata = (machine?["config"] as? [String: Any])?["metadata"] as? [String: Any]
      return metadata?["fleet_user_id"] as? String == twin ? volume["id"] as? String : nil
    }
    let twinVolume = try #require(owned.first)
    var request = HTTPClientRequest(url: base + "/_sim/drift")
    request.method = .POST
    request.body = .bytes(
      ByteBuffer(string: #"{"op":"fill_volume","volume_id":"\#(twinVolume)","bytes_used":1020054732}"#))
    _ = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
    let failing = try await fleetkeeper(["status"], env: env)
    #expect(failing.status == 1, "\(failing.stdout)")
    #expect(failing.stdout.contains("\(twin)  FAILING"), "\(failing.stdout)")
    #expect(failing.stdout.contains("why: disk_full: volume \(twinVolume) is 95% full"), "\(failing.stdout)")
    #expect(failing.stdout.contains("last: create_machine ok"), "\(failing.stdout)")
    let json = try await fleetkeeper(["status", "--json"], env: env).stdout.split(separator: "\n")
    #expect(json.first?.contains(#""failing":1"#) == true, "\(json.first ?? "")")
    #expect(json.contains { $0.contains(#""condition":"failing""#) && $0.contains(twin) })

    let described = try await fleetkeeper(["describe", twin], env: env)
    #expect(described.status == 0, "\(described.stderr)")
    let text = described.stdout
    for expected in [
      "User:        \(twin)", "Condition:   FAILING", "Desired:     running in cdg", "Config:      as desired",
      "Volume:      \(twinVolume) created, 1 GB, 95% full", "Finding:     disk_full", "create_volume ok",
    ] {
      #expect(text.contains(expected), "describe shows \(expected):\n\(text)")
    }
    let unknown = try await fleetkeeper(["describe", "nobody"], env: env)
    #expect(unknown.status == 1 && unknown.stderr.contains("nobody"))
  }
}
