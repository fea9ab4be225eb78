import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Logging

/// Benchmarks against the built-in simulator over loopback (`fleetkeeper bench`). Numbers for
/// docs, never timed tests.
public enum Bench {
  public struct ConvergeResult: Sendable {
    public var users: Int
    public var seconds: Double
    public var passes: Int
    public var requests: Int
    public var mutations: Int
    public var rateLimited: Int
    /// The least time Fly's limits allow for the creates: (users − burst) / rate for each create kind,
    /// which run side by side, plus one boot.
    public var boundSeconds: Double
    public var converged: Bool
    public var steadyStateRequests: [String]
  }

  /// N new users from empty to converged, with the simulator's default (Fly's) rate limits unless `rateLimits` is false.
  public static func converge(users: Int, rateLimits: Bool = true, timeout: Double = 1800) async throws
    -> ConvergeResult
  {
    var configuration = SimulatorConfiguration(appName: "bench", token: "bench-token")
    configuration.rateLimitsEnabled = rateLimits
    let simulator = FlySimulator(configuration: configuration, logCapacity: 2_000_000)
    let running = try await SimulatorServer.start(simulator)
    defer { Task { await running.stop() } }
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "fleetkeeper-bench-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try FleetStore.sqlite(path: folder.appendingPathComponent("fleet.sqlite3").path, create: true)
    try await store.migrate()
    let regions = ["cdg", "ams", "ord", "iad", "sin", "syd"]
    try await store.importUsers((0..<users).map { UserInput(userID: "b\($0)", region: regions[$0 % regions.count]) })
    var clientConfiguration = FlyClientConfiguration(
      baseURL: running.baseURL, appName: "bench", token: FlyToken("bench-token"))
    if !rateLimits { clientConfiguration.listPacing = nil }
    let client = FlyClient(configuration: clientConfiguration)
    var settings = ReconcilerSettings()
    if !rateLimits { settings.writeLimits = .unlimited }
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    let reconciler = Reconciler(client: client, store: store, settings: settings, logger: logger)
    let started = Date()
    var passes = 0
    var converged = false
    while Date().timeIntervalSince(started) < timeout {
      let report = await reconciler.pass()
      passes += 1
      if report.converged {
        converged = true
        break
      }
      try await Task.sleep(for: .milliseconds(Int(ReconcileLoop.nextDelay(after: report, settings: settings) * 1000)))
    }
    let seconds = Date().timeIntervalSince(started)
    let log = simulator.requestLog()
    let before = log.count
    _ = await reconciler.pass()
    let steady = simulator.requestLog().dropFirst(before).map(\.endpoint)
    let rate = configuration.mutationRate
    let bound =
      max(0, Double(users) - configuration.mutationBurst) / rate + configuration.createSettle
      + configuration.startDuration
    return ConvergeResult(
      users: users, seconds: seconds, passes: passes, requests: log.count,
      mutations: log.filter { $0.method != "GET" }.count,
      rateLimited: log.filter { $0.status == 429 }.count, boundSeconds: bound, converged: converged,
      steadyStateRequests: steady)
  }
}
