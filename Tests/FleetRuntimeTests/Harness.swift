import FleetCore
import FleetDevTools
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Logging

/// A simulated Fly, a fresh SQLite store, a client and a reconciler: one per test, torn down when
/// the test's body returns (``withHarness(simulator:faults:settings:databasePath:store:loopback:_:)``).
///
/// In process by default: the client's requests go straight to the simulator's handler
/// (``SimulatorTransport``), and Fly and the controller share one ``VirtualClock``, so a pass that
/// waits (list lag, backoff, retention) costs no real time and runs the same way every time.
/// `loopback: true` serves the simulator over HTTP on 127.0.0.1 with the wall clock instead, for
/// the tests of what only a socket shows (the loop service, the ops server, the HTTP client).
struct Harness {
  let simulator: FlySimulator
  let store: FleetStore
  let client: FlyClient
  let reconciler: Reconciler
  let databasePath: String
  /// Fly's clock: virtual in process, the wall clock over loopback.
  let time: any FleetClock
  /// The controller's clock: Fly's plus an offset a test may jump (``OffsetClock/jump(by:)``).
  let controllerClock: OffsetClock
  let settings: ReconcilerSettings
  fileprivate let server: SimulatorServer.Running?

  static func testSettings() -> ReconcilerSettings {
    var settings = ReconcilerSettings()
    settings.retry.base = 0.02
    settings.retry.cap = 0.5
    settings.retry.maxInPassDelay = 0.05
    settings.writeLimits = .unlimited
    settings.planner.pendingGrace = 1.5
    settings.planner.createdGrace = 1
    settings.planner.updateSettle = 0.5
    settings.suspectRereadDelay = 0.05
    settings.busyInterval = 0.05
    settings.verifyInterval = 0.3
    settings.secrets = ["AGENT_SECRET": "s3cr3t-agent-value"]
    return settings
  }

  /// Fly's timings of `.fast` with a 0.2 s list lag: creates are not listed at once.
  static let lagging: SimulatorConfiguration = {
    var c = SimulatorConfiguration.fast(appName: "app", token: "tok")
    c.listLag = 0.2
    return c
  }()

  /// Fly's timings at zero and no list lag: for tests about what the controller decides.
  static let instant = SimulatorConfiguration.fast(appName: "app", token: "tok")

  /// A new reconciler on the same database and Fly (a restart: it reads its state back).
  func restarted(
    settings: ReconcilerSettings? = nil, clock: (any FleetClock)? = nil, jitter: Jitter? = nil,
    logger given: Logger? = nil
  ) -> Reconciler {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    if let given { logger = given }
    return Reconciler(
      client: client, store: store, settings: settings ?? self.settings, clock: clock ?? controllerClock,
      jitter: jitter ?? Jitter({ 0.5 }), logger: logger)
  }

  /// Two users converged, then `u1` removed: its machine gone, its volume under retention.
  func removeAUser() async throws {
    try await addUsers(2)
    await converge()
    try await store.removeUser("u1")
    await converge()
  }

  func addUsers(
    _ count: Int, prefix: String = "u", state: String = "running", regions: [String] = ["cdg", "ams", "ord"]
  ) async throws {
    try await store.importUsers(
      (0..<count).map { UserInput(userID: "\(prefix)\($0)", state: state, region: regions[$0 % regions.count]) })
  }

  /// Lets `seconds` pass for Fly and the controller alike (in process: at once; over loopback: sleeps).
  func advance(by seconds: Double) async {
    if let virtual = time as? VirtualClock {
      virtual.advance(by: seconds)
    } else {
      try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
    }
  }

  /// Passes until one has nothing to do and nothing waiting (at most `maxPasses`, the loop's busy
  /// interval apart), returns the passes.
  @discardableResult
  func converge(maxPasses: Int = 400, using reconciler: Reconciler? = nil) async -> [PassReport] {
    var reports: [PassReport] = []
    for _ in 0..<maxPasses {
      let report = await (reconciler ?? self.reconciler).pass()
      reports.append(report)
      if report.converged { return reports }
      await advance(by: server == nil ? max(0.25, settings.busyInterval) : settings.busyInterval)
    }
    return reports
  }

  /// What the simulator holds, typed: machines by their `fleet_user_id`, volumes by name.
  struct FleetState {
    var machinesByUser: [String: [FlyMachine]] = [:]
    var volumesByName: [String: [FlyVolume]] = [:]
    /// Machines without a `fleet_user_id`.
    var foreign = 0

    /// The user's only machine (nil when it has none or several).
    func machine(_ user: String) -> FlyMachine? {
      guard let machines = machinesByUser[user], machines.count == 1 else { return nil }
      return machines[0]
    }
  }

  /// The simulator's whole state (destroyed machines and deleted volumes excluded).
  func fleet() -> FleetState {
    struct Snapshot: Decodable {
      var machines: [FlyMachine]
      var volumes: [FlyVolume]
    }
    guard let snapshot = try? JSONDecoder().decode(Snapshot.self, from: simulator.stateJSON()) else {
      return FleetState(foreign: -1)  // never equal to what a test expects
    }
    var state = FleetState()
    for machine in snapshot.machines where !MachineState(machine.state).isGone {
      if let user = machine.config?.metadata[FleetNames.userMetadataKey] {
        state.machinesByUser[user, default: []].append(machine)
      } else {
        state.foreign += 1
      }
    }
    for volume in snapshot.volumes where volume.state != "pending_destroy" && volume.state != "destroyed" {
      state.volumesByName[volume.name, default: []].append(volume)
    }
    return state
  }

  func mutations() -> [SimulatorLogEntry] {
    simulator.requestLog().filter { $0.method != "GET" }
  }

  func drift(_ body: String) async {
    _ = await simulator.handle(SimulatorRequest(method: "POST", path: "/_sim/drift", body: Data(body.utf8)))
  }
}

/// Runs `body` with a fresh ``Harness`` and tears it down when `body` returns or throws: the
/// loopback server stopped, the database file removed (unless the test named it).
func withHarness<T>(
  simulator configuration: SimulatorConfiguration = Harness.lagging, faults: SimulatorFaults = .init(),
  settings: ReconcilerSettings = Harness.testSettings(), databasePath: String? = nil, store given: FleetStore? = nil,
  loopback: Bool = false, _ body: (Harness) async throws -> T
) async throws -> T {
  let time: any FleetClock & SimulatorClock = loopback ? WallClock() : VirtualClock()
  let simulator = FlySimulator(configuration: configuration, faults: faults, clock: time)
  let server = loopback ? try await SimulatorServer.start(simulator) : nil
  let path =
    databasePath
    ?? FileManager.default.temporaryDirectory.appendingPathComponent("fk-e2e-\(UUID().uuidString).sqlite3").path
  let client =
    server.map { running in
      var client = FlyClientConfiguration(
        baseURL: running.baseURL, appName: configuration.appName, token: FlyToken(configuration.token),
        requestTimeout: .seconds(3))
      client.listPacing = configuration.listPacing
      return FlyClient(configuration: client)
    } ?? FlyClient.inProcess(simulator)
  do {
    let store = try given ?? FleetStore.sqlite(path: path, create: true)
    try await store.migrate()
    var template = TemplatePatch()
    template.image = "registry.fly.io/agent:1"
    template.env = ["AGENT_KEY": "$AGENT_SECRET"]
    try await store.setTemplate(template)
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let controllerClock = OffsetClock(base: time)
    let reconciler = Reconciler(
      client: client, store: store, settings: settings, clock: controllerClock, jitter: Jitter({ 0.5 }), logger: logger)
    let harness = Harness(
      simulator: simulator, store: store, client: client, reconciler: reconciler, databasePath: path, time: time,
      controllerClock: controllerClock, settings: settings, server: server)
    let result = try await body(harness)
    await teardown(server, path: databasePath == nil ? path : nil)
    return result
  } catch {
    await teardown(server, path: databasePath == nil ? path : nil)
    throw error
  }
}

private func teardown(_ server: SimulatorServer.Running?, path: String?) async {
  await server?.stop()
  if let path {
    for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
  }
}

/// The wall clock, for Fly and the controller alike (loopback tests).
struct WallClock: FleetClock, SimulatorClock {
  func now() -> Double { Date().timeIntervalSince1970 }
  func sleep(seconds: Double) async throws { try await SystemFleetClock().sleep(seconds: seconds) }
}

/// Runs a blocking call (a child process's pipes and exit) on its own thread, so that it never
/// holds one of the cooperative pool's few threads that in-process servers need.
func offload<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
  await withCheckedContinuation { continuation in
    Thread { continuation.resume(returning: body()) }.start()
  }
}
