import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Logging
import Synchronization

/// A simulator on loopback, a fresh SQLite store, a client and a reconciler: one per test.
struct Harness {
  let simulator: FlySimulator
  let running: SimulatorServer.Running
  let store: FleetStore
  let client: FlyClient
  let reconciler: Reconciler
  let databasePath: String

  static func testSettings() -> ReconcilerSettings {
    var settings = ReconcilerSettings()
    settings.retry.base = 0.02
    settings.retry.cap = 0.5
    settings.retry.maxInPassDelay = 0.05
    settings.writeLimits = .unlimited
    settings.planner.pendingGrace = 1.5
    settings.planner.createdGrace = 1
    settings.suspectRereadDelay = 0.05
    settings.busyInterval = 0.05
    settings.verifyInterval = 0.3
    settings.secrets = ["AGENT_SECRET": "s3cr3t-agent-value"]
    return settings
  }

  static func make(
    simulator configuration: SimulatorConfiguration = {
      var c = SimulatorConfiguration.fast(appName: "app", token: "tok"); c.listLag = 0.2; return c
    }(),
    faults: SimulatorFaults = .init(), settings: ReconcilerSettings = testSettings(), databasePath: String? = nil,
    clock: any FleetClock = SystemFleetClock(), store given: FleetStore? = nil
  ) async throws -> Harness {
    let simulator = FlySimulator(configuration: configuration, faults: faults)
    let running = try await SimulatorServer.start(simulator)
    let path =
      databasePath
      ?? FileManager.default.temporaryDirectory.appendingPathComponent("fk-e2e-\(UUID().uuidString).sqlite3").path
    let store = try given ?? FleetStore.sqlite(path: path, create: true)
    try await store.migrate()
    var template = TemplatePatch()
    template.image = "registry.fly.io/agent:1"
    template.env = ["AGENT_KEY": "$AGENT_SECRET"]
    try await store.setTemplate(template)
    let client = FlyClient(
      configuration: FlyClientConfiguration(
        baseURL: running.baseURL, appName: configuration.appName, token: FlyToken(configuration.token),
        requestTimeout: .seconds(3)))
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let reconciler = Reconciler(client: client, store: store, settings: settings, clock: clock, logger: logger)
    return Harness(
      simulator: simulator, running: running, store: store, client: client, reconciler: reconciler, databasePath: path)
  }

  /// Fly's timings at zero and no list lag: for tests about what the controller decides.
  static let instant = SimulatorConfiguration.fast(appName: "app", token: "tok")

  /// A new reconciler on the same database and Fly (a restart: it reads its state back).
  func restarted(
    settings: ReconcilerSettings = testSettings(), clock: any FleetClock = SystemFleetClock(), jitter: Jitter = Jitter()
  ) -> Reconciler {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return Reconciler(client: client, store: store, settings: settings, clock: clock, jitter: jitter, logger: logger)
  }

  /// Two users converged, then `u1` removed: its machine gone, its volume under retention.
  static func withARemovedUser(settings: ReconcilerSettings, clock: any FleetClock) async throws -> Harness {
    let harness = try await make(settings: settings, clock: clock)
    try await harness.addUsers(2)
    await harness.converge()
    try await harness.store.removeUser("u1")
    await harness.converge()
    return harness
  }

  func addUsers(
    _ count: Int, prefix: String = "u", state: String = "running", regions: [String] = ["cdg", "ams", "ord"]
  ) async throws {
    try await store.importUsers(
      (0..<count).map { UserInput(userID: "\(prefix)\($0)", state: state, region: regions[$0 % regions.count]) })
  }

  /// Passes until one has nothing to do and nothing waiting (or the deadline), returns the passes.
  @discardableResult
  func converge(timeout: Double = 60) async -> [PassReport] {
    var reports: [PassReport] = []
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
      let report = await reconciler.pass()
      reports.append(report)
      if report.outcome == .ok, report.plan?.actions.isEmpty == true, report.plan?.waiting.isEmpty == true,
        report.listsTrusted
      {
        return reports
      }
      try? await Task.sleep(for: .milliseconds(50))
    }
    return reports
  }

  struct FleetState {
    var machinesByUser: [String: [[String: Any]]] = [:]
    var volumesByName: [String: [[String: Any]]] = [:]
    var foreign = 0
  }

  /// The simulator's whole state (destroyed machines and deleted volumes excluded).
  func fleet() -> FleetState {
    let json = (try? JSONSerialization.jsonObject(with: simulator.stateJSON())) as? [String: Any] ?? [:]
    var state = FleetState()
    for machine in json["machines"] as? [[String: Any]] ?? [] {
      let machineState = machine["state"] as? String ?? ""
      if machineState == "destroyed" || machineState == "destroying" { continue }
      let metadata = (machine["config"] as? [String: Any])?["metadata"] as? [String: Any]
      if let user = metadata?["fleet_user_id"] as? String {
        state.machinesByUser[user, default: []].append(machine)
      } else {
        state.foreign += 1
      }
    }
    for volume in json["volumes"] as? [[String: Any]] ?? [] {
      let volumeState = volume["state"] as? String ?? ""
      if volumeState == "pending_destroy" || volumeState == "destroyed" { continue }
      state.volumesByName[volume["name"] as? String ?? "", default: []].append(volume)
    }
    return state
  }

  func mutations() -> [SimulatorLogEntry] {
    simulator.requestLog().filter { $0.method != "GET" }
  }

  func drift(_ body: String) async {
    _ = await simulator.handle(SimulatorRequest(method: "POST", path: "/_sim/drift", body: Data(body.utf8)))
  }

  func stop() async { await running.stop() }
}

/// The wall clock plus an offset a test moves forward: the controller's notion of time jumps
/// (retention, backoff) while the simulator keeps real time.
final class OffsetClock: FleetClock {
  private let offset = Mutex(0.0)
  func advance(by seconds: Double) { offset.withLock { $0 += seconds } }
  func now() -> Double { Date().timeIntervalSince1970 + offset.withLock { $0 } }
  func sleep(seconds: Double) async throws { try await SystemFleetClock().sleep(seconds: seconds) }
}

/// Runs a blocking call (a child process's pipes and exit) on its own thread, so that it never
/// holds one of the cooperative pool's few threads that in-process servers need.
func offload<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
  await withCheckedContinuation { continuation in
    Thread { continuation.resume(returning: body()) }.start()
  }
}
