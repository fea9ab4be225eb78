import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Logging

extension Demo {
  /// `fleetkeeper demo --topology app-per-user`: the whole cycle of one app per user against the
  /// simulator (Fly's rate limits on): two apps made the old way adopted in place, new users' apps
  /// made with their addresses, volumes and machines, drift repaired, a user removed (machine
  /// destroyed, volume kept for its retention, then deleted, then the app).
  public static func runAppPerUser(print say: @escaping @Sendable (String) -> Void, keepDatabase: Bool = false)
    async throws -> Int32
  {
    let started = Date()
    @Sendable func stamp() -> String { String(format: "%6.1fs", Date().timeIntervalSince(started)) }
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "fleetkeeper-demo-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let databasePath = folder.appendingPathComponent("fleet.sqlite3").path

    var simConfiguration = SimulatorConfiguration(appName: "demo-shared", token: "demo-token")
    simConfiguration.orgSlug = "demo-org"
    simConfiguration.createSettle = 1
    simConfiguration.volumeDetachDelay = 2
    let simulator = FlySimulator(configuration: simConfiguration)
    let running = try await SimulatorServer.start(simulator)
    say("fleetkeeper demo (one app per user): Fly simulator on \(running.baseURL) (org demo-org, Fly's rate limits on)")
    say("                  desired state in \(databasePath)")
    // The fleet fleetkeeper takes over: two users' apps made by the old provisioning code.
    _ = await simulator.handle(
      SimulatorRequest(
        method: "POST", path: "/_sim/seed",
        body: Data(
          #"{"users":2,"topology":"app-per-user","app_prefix":"agents","prefix":"legacy","region":"cdg","image":"registry.fly.io/fleet-agent:v1"}"#
            .utf8)))
    say(
      "\(stamp()) Fly already holds agents-u-legacy0 and agents-u-legacy1: one machine (no fleet_user_id) and one volume each"
    )

    let store = try FleetStore.sqlite(path: databasePath, create: true)
    try await store.migrate()
    var patch = TemplatePatch()
    patch.image = "registry.fly.io/fleet-agent:v1"
    try await store.setTemplate(patch)
    try await store.setTopology(.appPerUser(prefix: "agents", org: "demo-org"))
    say("\(stamp()) operator: `fleetkeeper fleet set --topology app-per-user --app-prefix agents --org demo-org`")
    let users: [(String, String)] = [
      ("legacy0", "cdg"), ("legacy1", "cdg"), ("alice", "cdg"), ("bob", "ams"), ("erin", "sin"),
    ]
    for (user, region) in users {
      try await store.addUser(UserInput(userID: user, state: "running", region: region))
    }
    say("\(stamp()) desired: " + users.map { "\($0.0)=running@\($0.1)" }.joined(separator: ", "))

    let client = FlyClient(
      configuration: FlyClientConfiguration(
        baseURL: running.baseURL, appName: "demo-shared", token: FlyToken("demo-token"),
        requestTimeout: .seconds(10)))
    var settings = ReconcilerSettings()
    settings.busyInterval = 1
    settings.interval = 5
    settings.planner.pendingGrace = 10
    settings.planner.createdGrace = 5
    settings.planner.volumeRetention = 15
    settings.planner.retentionFloor = 0
    var quiet = Logger(label: "fleetkeeper")
    quiet.logLevel = .critical
    let reconciler = Reconciler(
      client: client, store: store, settings: settings, logger: quiet,
      onEvent: { say("\(stamp())   " + Self.line($0)) })
    func converge(_ label: String, limit: Double = 90) async -> Bool {
      await Self.converge(reconciler, label, limit: limit, say: say, stamp: stamp)
    }

    let plan = await reconciler.pass(apply: false).plan
    say("\(stamp()) — `fleetkeeper plan` first:")
    for action in plan?.actions ?? [] {
      say(
        "           \(action.kind.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0)) \(action.userID): \(action.reason)"
      )
    }
    var ok = await converge("pass after pass: the old apps adopted, each new user's app, addresses, volume, machine")

    let state = (try? JSONSerialization.jsonObject(with: simulator.stateJSON())) as? [String: Any] ?? [:]
    let aliceMachine =
      (state["machines"] as? [[String: Any]] ?? []).first {
        $0["app"] as? String == "agents-u-alice" && $0["state"] as? String == "started"
      }?["id"] as? String
    say("\(stamp()) — drift behind fleetkeeper's back: alice's machine stopped")
    _ = await simulator.handle(
      SimulatorRequest(
        method: "POST", path: "/_sim/drift",
        body: Data(#"{"op":"stop_machine","machine_id":"\#(aliceMachine ?? "")"}"#.utf8)))
    ok = await converge("repairing") && ok

    say(
      "\(stamp()) — operator: `fleetkeeper users remove erin` (machine destroyed; volume kept 15 s here, 7 days by default)"
    )
    try await store.removeUser("erin")
    ok = await converge("acting on the edit") && ok
    say("\(stamp()) — the volume's retention passes; then the volume goes, then erin's app")
    try? await Task.sleep(for: .seconds(16))
    ok = await converge("retiring erin's app") && ok

    let rows = try await store.machineRows()
    say("\(stamp()) machines table (the dashboard's): user, machine, app, hostname, status")
    for user in rows.keys.sorted() {
      let row = rows[user]!
      say(
        "           \(user.padding(toLength: 8, withPad: " ", startingAt: 0)) \(row.id)  \(row.appName ?? "-")  \(row.hostname ?? "-")  \(row.status ?? "-")"
      )
    }
    let apps = try await client.listApps(org: "demo-org").map(\.name).sorted()
    say("\(stamp()) apps in demo-org: \(apps.joined(separator: ", "))")
    let requests = simulator.requestLog()
    let creates = requests.filter {
      $0.method == "POST" && ($0.endpoint == "POST /machines" || $0.endpoint == "POST /volumes")
    }
    say(
      "\(stamp()) \(requests.count) API requests, \(requests.filter { $0.status == 429 }.count) answered 429; \(creates.count) machines and volumes created (none for the adopted users)"
    )
    say("           read the events: fleetkeeper events --database \(databasePath)")
    await running.stop()
    if !keepDatabase { try? FileManager.default.removeItem(at: folder) }
    return ok && !apps.contains("agents-u-erin") ? 0 : 1
  }
}
