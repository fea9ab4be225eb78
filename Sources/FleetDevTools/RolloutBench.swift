import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Logging

/// `fleetkeeper bench rollout`: a fleet of N users on v1 (seeded in the simulator, adopted by the
/// controller without a read), then `template set --image …:v2`, against the simulator over
/// loopback with Fly's timings (update 2 s, start 0.5 s, list lag 0.5 s) and rate limits on.
/// Three runs: clean; with a share of updates silently reverted; with a v2 that does not boot.
public enum RolloutBench {
  public struct Run: Sendable {
    public var scenario: String
    public var users: Int
    public var seconds: Double
    /// What the waves and Fly's reboots allow at best: per wave, its updates at our update ceiling
    /// (10/s across machines) plus one reboot (update + start durations).
    public var boundSeconds: Double
    public var status: String
    public var waves: Int
    public var through: Int
    public var failed: Int
    public var updatesSent: Int
    public var onV2: Int
    public var revertsInjected: Int
    public var revertsFound: Int
    /// Machines a check reported through that do not run v2 (must be 0).
    public var reportedDoneButNot: Int
    public var requests: Int
    public var rateLimited: Int
    public var passes: Int
  }

  public static func run(
    users: Int, scenario: String, revertRate: Double = 0.03, timeout: Double = 1800,
    say: @Sendable (String) -> Void = { _ in }
  ) async throws -> Run {
    var configuration = SimulatorConfiguration(appName: "bench", token: "bench-token")
    configuration.rateLimitsEnabled = true
    let simulator = FlySimulator(configuration: configuration, logCapacity: 2_000_000)
    let running = try await SimulatorServer.start(simulator)
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "fleetkeeper-rollout-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try FleetStore.sqlite(path: folder.appendingPathComponent("fleet.sqlite3").path, create: true)
    try await store.migrate()
    var v1 = TemplatePatch()
    v1.image = "registry.fly.io/agent:1"
    try await store.setTemplate(v1)
    _ = await simulator.handle(
      SimulatorRequest(
        method: "POST", path: "/_sim/seed",
        body: Data(
          #"{"users":\#(users),"prefix":"b","volume_prefix":"fk_","region":"ord","image":"registry.fly.io/agent:1"}"#
            .utf8)))
    try await store.importUsers((0..<users).map { UserInput(userID: "b\($0)", region: "ord") })
    let client = FlyClient(
      configuration: FlyClientConfiguration(baseURL: running.baseURL, appName: "bench", token: FlyToken("bench-token")))
    let settings = ReconcilerSettings()
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    let reconciler = Reconciler(client: client, store: store, settings: settings, logger: logger)

    // The fleet as the old code left it: adopted (configs taken as they are, no read), converged.
    var passes = 0
    while passes < 200 {
      let report = await reconciler.pass()
      passes += 1
      if report.converged { break }
      try await Task.sleep(for: .milliseconds(Int(ReconcileLoop.nextDelay(after: report, settings: settings) * 1000)))
    }
    let adoptRequests = simulator.requestLog().count
    say("\(scenario): \(users) users adopted in \(passes) passes, \(adoptRequests) requests (no config read)")

    var faults = SimulatorFaults()
    switch scenario {
    case "reverts": faults.revertRate = revertRate
    case "boot-failure": faults.crashImages = ["registry.fly.io/agent:2"]
    default: break
    }
    simulator.setFaults(faults)
    let logStart = simulator.requestLog().count
    var v2 = TemplatePatch()
    v2.image = "registry.fly.io/agent:2"
    try await store.setTemplate(v2)
    let started = Date()
    passes = 0
    var last: PassReport?
    while Date().timeIntervalSince(started) < timeout {
      let report = await reconciler.pass()
      passes += 1
      last = report
      if passes % 10 == 0, let rollout = report.rollout {
        say(
          "  \(Int(Date().timeIntervalSince(started))) s: \(rollout.status.rawValue), wave \(rollout.wave), \(rollout.through) through, \(rollout.remaining) to go, \(report.plan?.actions.count ?? 0) action(s), \(report.plan?.waiting.count ?? 0) waiting"
        )
      }
      if let rollout = report.rollout, rollout.status == .halted || (rollout.status == .done && report.converged) {
        break
      }
      try await Task.sleep(for: .milliseconds(Int(ReconcileLoop.nextDelay(after: report, settings: settings) * 1000)))
    }
    let seconds = Date().timeIntervalSince(started)
    let log = simulator.requestLog().dropFirst(logStart)
    let rollout = last?.rollout
    // The bound: waves as the rollout sized them, each sent at our update ceiling, plus one reboot.
    let control = RolloutControl()
    var bound = 0.0
    var left = rollout?.total ?? users
    var wave = 0
    while left > 0 {
      let size = min(
        left,
        wave == 0
          ? Rollout.canarySize(total: users, control: control) : Rollout.waveSize(total: users, control: control))
      bound +=
        Double(size) / settings.writeLimits.perMachineKindsPerSecond + configuration.updateDuration
        + configuration.startDuration
      left -= size
      wave += 1
      if scenario == "boot-failure" { break }  // it must halt within the first wave
    }
    // What the simulator holds, and what the controller said of it.
    struct Snapshot: Decodable {
      var machines: [FlyMachine]
    }
    let snapshot = try JSONDecoder().decode(Snapshot.self, from: simulator.stateJSON())
    var image: [String: String] = [:]
    for machine in snapshot.machines {
      if let user = machine.config?.metadata[FleetNames.userMetadataKey] { image[user] = machine.config?.image }
    }
    let events = try await store.events(limit: 100_000)
    let checks = events.filter { $0.eventType == "check_update" }
    var lastCheck: [String: String] = [:]
    for event in checks.sorted(by: { $0.id < $1.id }) {
      if let user = event.userID { lastCheck[user] = event.detailsJSON }
    }
    let reportedDone = lastCheck.filter { $0.value.contains(#""outcome":"ok""#) }.keys
    await running.stop()
    return Run(
      scenario: scenario, users: users, seconds: seconds, boundSeconds: bound,
      status: rollout?.status.rawValue ?? "none", waves: (rollout?.wave ?? -1) + 1, through: rollout?.through ?? 0,
      failed: rollout?.failed.count ?? 0, updatesSent: log.filter { $0.endpoint == "POST /machines/{id}" }.count,
      onV2: image.values.filter { $0 == "registry.fly.io/agent:2" }.count,
      revertsInjected: log.filter { $0.fault == "silent_revert" }.count,
      revertsFound: checks.filter { $0.detailsJSON.contains(#""outcome":"reverted""#) }.count,
      reportedDoneButNot: reportedDone.filter { image[$0] != "registry.fly.io/agent:2" }.count,
      requests: log.count, rateLimited: log.filter { $0.status == 429 }.count, passes: passes)
  }
}
