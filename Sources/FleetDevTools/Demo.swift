import AsyncHTTPClient
import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Logging

/// `fleetkeeper demo`: the built-in simulator and a fresh SQLite database in a temporary folder, a
/// few users, and the loop at work: the fleet created, drift injected behind its back, repaired.
public enum Demo {
  /// One audit event as the demo prints it: type, user, outcome, what it touched, its message.
  static func line(_ event: AuditEvent) -> String {
    func text(_ key: String) -> String? { if case .string(let s)? = event.details[key] { s } else { nil } }
    let target = [
      text("app").map { "app \($0)" }, event.machineID.map { "machine \($0)" }, event.volumeID.map { "volume \($0)" },
    ].compactMap { $0 }.joined(separator: ", ")
    return [
      event.eventType.padding(toLength: 34, withPad: " ", startingAt: 0),
      (event.userID ?? "-").padding(toLength: 8, withPad: " ", startingAt: 0),
      (text("outcome") ?? "").padding(toLength: 8, withPad: " ", startingAt: 0), target, text("message") ?? "",
    ].joined(separator: " ")
  }

  /// Passes (700 ms apart, on the wall clock: a demo runs against a live simulator) until one has
  /// nothing to do, or `limit` seconds pass.
  static func converge(
    _ reconciler: Reconciler, _ label: String, limit: Double, say: (String) -> Void, stamp: () -> String
  ) async -> Bool {
    say("\(stamp()) — \(label)")
    let deadline = Date().addingTimeInterval(limit)
    while Date() < deadline {
      let report = await reconciler.pass()
      if report.converged {
        say(
          "\(stamp())   converged: nothing to do (\(report.observedMachines) machines, \(report.observedVolumes) volumes listed)"
        )
        return true
      }
      try? await Task.sleep(for: .milliseconds(700))
    }
    say("\(stamp())   did not converge within \(Int(limit)) s")
    return false
  }

  static func drift(_ simulator: FlySimulator, _ body: String) async throws {
    _ = await simulator.handle(SimulatorRequest(method: "POST", path: "/_sim/drift", body: Data(body.utf8)))
  }

  public static func run(print say: @escaping @Sendable (String) -> Void, keepDatabase: Bool = false) async throws
    -> Int32
  {
    let started = Date()
    @Sendable func stamp() -> String { String(format: "%6.1fs", Date().timeIntervalSince(started)) }
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "fleetkeeper-demo-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let databasePath = folder.appendingPathComponent("fleet.sqlite3").path

    var simConfiguration = SimulatorConfiguration(appName: "demo-users", token: "demo-token")
    simConfiguration.createSettle = 1
    simConfiguration.volumeDetachDelay = 2
    let simulator = FlySimulator(configuration: simConfiguration)
    let running = try await SimulatorServer.start(simulator)
    say("fleetkeeper demo: Fly simulator on \(running.baseURL) (app demo-users, Fly's rate limits on)")
    say("                  desired state in \(databasePath)")

    let store = try FleetStore.sqlite(path: databasePath, create: true)
    try await store.migrate()
    var patch = TemplatePatch()
    patch.image = "registry.fly.io/fleet-agent:v1"
    patch.memoryMB = 512
    patch.env = ["AGENT_MODE": "always-on", "ANTHROPIC_API_KEY": "$ANTHROPIC_API_KEY"]
    try await store.setTemplate(patch)
    let users: [(String, String, String)] = [
      ("alice", "cdg", "running"), ("bob", "ams", "running"), ("carol", "iad", "running"), ("dave", "cdg", "stopped"),
      ("erin", "sin", "running"),
    ]
    for (user, region, state) in users {
      try await store.addUser(UserInput(userID: user, email: "\(user)@example.com", state: state, region: region))
    }
    say("\(stamp()) desired: " + users.map { "\($0.0)=\($0.2)@\($0.1)" }.joined(separator: ", "))

    let client = FlyClient(
      configuration: FlyClientConfiguration(
        baseURL: running.baseURL, appName: "demo-users", token: FlyToken("demo-token"), requestTimeout: .seconds(10)))
    var settings = ReconcilerSettings()
    settings.busyInterval = 1
    settings.interval = 5
    settings.planner.pendingGrace = 10
    settings.planner.createdGrace = 5
    settings.secrets = ["ANTHROPIC_API_KEY": "sk-demo-not-a-real-key"]
    var quiet = Logger(label: "fleetkeeper")
    quiet.logLevel = .critical
    let reconciler = Reconciler(
      client: client, store: store, settings: settings, logger: quiet,
      onEvent: { say("\(stamp())   " + Self.line($0)) })
    func converge(_ label: String, limit: Double = 60) async -> Bool {
      await Self.converge(reconciler, label, limit: limit, say: say, stamp: stamp)
    }

    var ok = await converge("pass after pass until Fly matches the table")
    // Alice's agent fills its workspace; an operator takes a snapshot of it.
    let aliceVolume = try await store.recordedVolume("alice") ?? ""
    try await drift(simulator, #"{"op":"fill_volume","volume_id":"\#(aliceVolume)","bytes_used":419430400}"#)
    let snapshot = try await Snapshots.take(client, volumeID: aliceVolume)
    say(
      "\(stamp()) — alice's agent writes 400 MB to its workspace; operator: `fleetkeeper users snapshot alice` → \(snapshot.id)"
    )
    let machines = try await client.listMachines()
    func machineID(_ user: String) -> String? {
      machines.first { $0.config?.metadata[FleetNames.userMetadataKey] == user && $0.state != "destroyed" }?.id
    }
    say(
      "\(stamp()) — drift behind fleetkeeper's back: alice's machine stopped, bob's destroyed, a foreign machine appears"
    )
    for (op, id) in [("stop_machine", machineID("alice")), ("destroy_machine", machineID("bob"))] {
      _ = await simulator.handle(
        SimulatorRequest(
          method: "POST", path: "/_sim/drift", body: Data(#"{"op":"\#(op)","machine_id":"\#(id ?? "")"}"#.utf8)))
    }
    _ = await simulator.handle(
      SimulatorRequest(
        method: "POST", path: "/_sim/drift",
        body: Data(#"{"op":"create_foreign_machine","region":"ord","name":"someone-elses"}"#.utf8)))
    ok = await converge("repairing") && ok

    say(
      "\(stamp()) — operator: `fleetkeeper template set --image registry.fly.io/fleet-agent:v2`: a rollout, canary first, a wave at a time"
    )
    var v2 = TemplatePatch()
    v2.image = "registry.fly.io/fleet-agent:v2"
    try await store.setTemplate(v2)
    ok = await converge("rolling out", limit: 120) && ok
    if let rollout = try await store.loadRollout() {
      say(
        "\(stamp())   rollout of template revision \(rollout.revision ?? 0): \(rollout.status.rawValue), \(rollout.through) of \(rollout.total) machines through in \(rollout.wave + 1) wave(s), \(rollout.failed.count) failed"
      )
    }
    say("\(stamp()) — someone runs `fly machine update` on carol's machine behind fleetkeeper's back")
    if let carol = machineID("carol") {
      _ = await simulator.handle(
        SimulatorRequest(
          method: "POST", path: "/_sim/drift",
          body: Data(
            #"{"op":"update_machine","machine_id":"\#(carol)","image":"registry.fly.io/fleet-agent:hotfix"}"#.utf8)))
    }
    ok = await converge("putting carol's config back") && ok

    say("\(stamp()) — alice's agent wipes its workspace by mistake (400 MB → 1 MB)")
    try await drift(simulator, #"{"op":"fill_volume","volume_id":"\#(aliceVolume)","bytes_used":1048576}"#)
    say(
      "\(stamp()) — operator: `fleetkeeper users restore alice --latest`: a new volume from \(snapshot.id), a new machine on it, then the old machine goes (its volume kept)"
    )
    _ = try await store.requestRestore(userID: "alice", snapshotID: snapshot.id, sizeGB: snapshot.volumeSize)
    if let plan = await reconciler.pass(apply: false).plan, let first = plan.actions.first {
      say("\(stamp())   plan: \(first.kind.rawValue) alice — \(first.reason)")
    }
    ok = await converge("restoring alice", limit: 90) && ok
    if let volume = try await store.recordedVolume("alice"), volume != aliceVolume {
      let restored = try await client.getVolume(volume)
      say(
        "\(stamp())   alice runs on volume \(volume): \((restored.bytesUsed ?? 0) >> 20) MB, as in the snapshot; volume \(aliceVolume) kept for the retention"
      )
    } else {
      say("\(stamp())   alice was not restored")
      ok = false
    }

    say("\(stamp()) — operator: `fleetkeeper users remove erin` (machine destroyed, volume kept for 7 days)")
    try await store.removeUser("erin")
    ok = await converge("acting on the edit") && ok

    let rows = try await store.machineRows()
    say("\(stamp()) machines table (the dashboard's):")
    for user in rows.keys.sorted() {
      let row = rows[user]!
      say(
        "           \(user.padding(toLength: 6, withPad: " ", startingAt: 0)) \(row.id)  \(row.region)  \(row.status ?? "-")  \(row.volumeID ?? "-")"
      )
    }
    let events = try await store.events(limit: 10_000)
    let requests = simulator.requestLog()
    say(
      "\(stamp()) \(events.count) events in machine_events; \(requests.count) API requests, \(requests.filter { $0.status == 429 }.count) answered 429"
    )
    say("           read them: fleetkeeper events --database \(databasePath)")
    await running.stop()
    if !keepDatabase { try? FileManager.default.removeItem(at: folder) }
    return ok ? 0 : 1
  }
}
