import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Logging

/// `fleetkeeper bench apps`: one app per user against the simulator over loopback, Fly's rate
/// limits on. New users from nothing (app, addresses, volume, machine), and a fleet made the old
/// way adopted in place.
public enum AppsBench {
  public struct Result: Sendable {
    public var scenario: String
    public var users: Int
    public var converged: Bool
    public var seconds: Double
    /// The least time the limits allow (see ``run(scenario:users:say:)``).
    public var boundSeconds: Double
    public var passes: Int
    public var requests: Int
    public var rateLimited: Int
    /// Requests by endpoint, for the scenario's counts (creates, destroys, metadata writes).
    public var byEndpoint: [String: Int]
    /// What a pass over the converged fleet sent.
    public var quietPass: [String]
  }

  /// `new`: `users` users desired running from nothing. The bound: apps are made one a second
  /// (Fly's limit per action, keyed by the org for a create, burst 3), so (users − 3) s, plus one
  /// user's chain after the last app (addresses, volume, machine, boot).
  /// `adopt`: `users` apps made the old way (one untagged machine and one volume each), adopted.
  /// The bound: one metadata write per machine under the controller's ceiling for per-machine
  /// calls (10 a second: Fly limits them per machine, so the ceiling is ours), users / 10 s.
  public static func run(
    scenario: String, users: Int, timeout: Double = 3600, say: @escaping @Sendable (String) -> Void
  ) async throws -> Result {
    var configuration = SimulatorConfiguration(appName: "shared", token: "bench-token")
    configuration.orgSlug = "bench-org"
    let simulator = FlySimulator(configuration: configuration, logCapacity: 4_000_000)
    let running = try await SimulatorServer.start(simulator)
    defer { Task { await running.stop() } }
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "fleetkeeper-bench-apps-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try FleetStore.sqlite(path: folder.appendingPathComponent("fleet.sqlite3").path, create: true)
    try await store.migrate()
    var template = TemplatePatch()
    template.image = "registry.fly.io/agent:1"
    try await store.setTemplate(template)
    try await store.setTopology(.appPerUser(prefix: "agents", org: "bench-org"))
    let settings = ReconcilerSettings()
    let bound: Double
    switch scenario {
    case "new":
      bound =
        max(0, Double(users) - configuration.mutationBurst) / configuration.mutationRate + configuration.createSettle
        + configuration.startDuration + 3 * configuration.listLag
    case "adopt":
      _ = await simulator.handle(
        SimulatorRequest(
          method: "POST", path: "/_sim/seed",
          body: Data(
            #"{"users":\#(users),"topology":"app-per-user","app_prefix":"agents","prefix":"u","region":"ord","image":"registry.fly.io/agent:1","spread":86400}"#
              .utf8)))
      bound = Double(users) / settings.writeLimits.perMachineKindsPerSecond
    default:
      throw BenchError(description: "unknown scenario \(scenario): new or adopt")
    }
    try await store.importUsers((0..<users).map { UserInput(userID: "u\($0)", region: "ord") })
    let client = FlyClient(
      configuration: FlyClientConfiguration(
        baseURL: running.baseURL, appName: "shared", token: FlyToken("bench-token")))
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    let reconciler = Reconciler(client: client, store: store, settings: settings, logger: logger)
    let started = Date()
    var passes = 0
    var converged = false
    while Date().timeIntervalSince(started) < timeout {
      let report = await reconciler.pass()
      passes += 1
      if passes % 20 == 0 || ProcessInfo.processInfo.environment["FLEET_BENCH_VERBOSE"] != nil {
        let findings = Set((report.findings).map(\.kind.rawValue)).sorted().joined(separator: ",")
        say(
          String(
            format: "  %6.1f s, pass %d: %d actions, %d waiting, %d machines listed, findings: %@",
            Date().timeIntervalSince(started), passes, report.results.count, report.plan?.waiting.count ?? 0,
            report.observedMachines, findings))
      }
      if report.converged {
        converged = true
        break
      }
      try await Task.sleep(for: .milliseconds(Int(ReconcileLoop.nextDelay(after: report, settings: settings) * 1000)))
    }
    let seconds = Date().timeIntervalSince(started)
    let log = simulator.requestLog()
    var byEndpoint: [String: Int] = [:]
    for entry in log { byEndpoint[entry.endpoint, default: 0] += 1 }
    let before = log.last?.seq ?? 0
    try await Task.sleep(for: .seconds(2))
    _ = await reconciler.pass()
    let quiet = simulator.requestLog(since: before + 1).map(\.endpoint)
    return Result(
      scenario: scenario, users: users, converged: converged, seconds: seconds, boundSeconds: bound, passes: passes,
      requests: log.count, rateLimited: log.filter { $0.status == 429 }.count, byEndpoint: byEndpoint,
      quietPass: quiet)
  }
}

struct BenchError: Error, CustomStringConvertible {
  var description: String
}
