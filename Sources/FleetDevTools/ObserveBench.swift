import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import Foundation
import Logging
import Synchronization

/// `fleetkeeper bench observe`: what a user sees at N users with the simulator enforcing Fly's rate
/// limits (1 request/s per list and org or app, bursts of 3), the org-wide informer against the
/// app's lists, side by side in one run. The simulator runs in its own process.
public enum ObserveBench {
  public struct Figures: Sendable {
    public var mode: String
    public var firstPassWallS: Double = 0
    public var fullReadWallS: Double = 0
    public var fullReadBoundS: Double = 0
    public var fullReadRequests = 0
    public var steadyRequests: [Int] = []
    public var steadyCPUMs: [Double] = []
    public var steadyWallMs: [Double] = []
    public var steadyTaken = 0
    public var driftLatenciesS: [Double] = []
    public var rateLimited = 0
    public var peakRSSMB: Double = 0
    public var restartExit: Int32 = 0
    public var restartCPUMs: Double = 0
    public var restartPeakRSSMB: Double = 0
  }

  public static func run(
    users: Int, drifts: Int, appDrifts: Int, modes: [String] = ["org", "app"], binary: String,
    say: @Sendable (String) -> Void
  ) async throws -> [Figures] {
    let (sim, base) = try ScaleBench.startSimulator(binary: binary, ["--fast", "--rate-limits"])
    defer { sim.terminate() }
    try await ScaleBench.post(
      base + "/_sim/seed", #"{"users":\#(users),"prefix":"b","volume_prefix":"fk_","region":"ord","spread":86400}"#)
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "fleetkeeper-observe-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let databasePath = folder.appendingPathComponent("fleet.sqlite3").path
    let store = try FleetStore.sqlite(path: databasePath, create: true)
    try await store.migrate()
    try await store.importUsers((0..<users).map { UserInput(userID: "b\($0)", region: "ord") })
    say("\(users) users seeded and imported; Fly's limits on (lists 1/s, burst 3)")

    let requests = Mutex((all: 0, limited: 0))
    let client = FlyClient(
      configuration: FlyClientConfiguration(
        baseURL: base, appName: "bench", token: FlyToken("bench-token"), requestTimeout: .seconds(120)),
      observer: { record in
        requests.withLock {
          $0.all += 1
          if record.status == 429 { $0.limited += 1 }
        }
      })
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    let pages = Double((users + 999) / 1000)
    // Two lists side by side, each in its own bucket: the slower one bounds the read.
    let bound = max(0, pages - 3) / 1.0

    func measure(_ reconciler: Reconciler) async -> (report: PassReport, wallS: Double, cpuMs: Double, requests: Int) {
      let before = requests.withLock { $0.all }
      let cpu = ScaleBench.cpuSeconds()
      let clock = ContinuousClock.now
      var report = await reconciler.pass()
      report.plan = nil
      return (
        report, ScaleBench.ms(ContinuousClock.now - clock) / 1000, (ScaleBench.cpuSeconds() - cpu) * 1000,
        requests.withLock { $0.all } - before
      )
    }

    var results: [Figures] = []
    for mode in modes where mode == "org" || mode == "app" {
      var settings = ReconcilerSettings()
      settings.planner.maxDestroysPerPass = 0
      settings.observe = mode == "org" ? .org(slug: "personal", app: "bench") : .app
      let reconciler = Reconciler(client: client, store: store, settings: settings, logger: logger)
      var figures = Figures(mode: mode)
      figures.fullReadBoundS = bound
      let limitedBefore = requests.withLock { $0.limited }

      let first = await measure(reconciler)
      figures.firstPassWallS = first.wallS
      let ids = (first.report.observation?.machines ?? []).filter { $0.userID != nil }.map(\.id)
      say(
        "\(mode): first pass \(String(format: "%.1f", first.wallS)) s, \(first.requests) requests, \(first.report.outcome.rawValue)"
      )

      // A full read of both lists under the limits (org: a resync; app: every pass is one).
      try await Task.sleep(for: .seconds(4))  // the buckets refill to their burst
      if mode == "org" { await reconciler.resync() }
      let full = await measure(reconciler)
      figures.fullReadWallS = full.wallS
      figures.fullReadRequests = full.requests
      say("\(mode): full read \(String(format: "%.1f", full.wallS)) s (bound \(bound) s), \(full.requests) requests")

      // Quiet passes, at the loop's own cadence.
      let quietPasses = mode == "org" ? 10 : 2
      for _ in 0..<quietPasses {
        try await Task.sleep(for: .seconds(mode == "org" ? settings.watchInterval : 1))
        let quiet = await measure(reconciler)
        figures.steadyRequests.append(quiet.requests)
        figures.steadyCPUMs.append(quiet.cpuMs)
        figures.steadyWallMs.append(quiet.wallS * 1000)
        if quiet.report.steady { figures.steadyTaken += 1 }
      }
      figures.peakRSSMB = ScaleBench.peakRSSMB()
      say("\(mode): quiet passes \(figures.steadyRequests) requests, CPU \(figures.steadyCPUMs.map { Int($0) }) ms")

      // Drifts: a machine stopped behind the controller's back at a random moment of the loop's
      // cadence; the time until its start call is made, the loop running as `run` runs it.
      var generator = SystemRandomNumberGenerator()
      for index in 0..<(mode == "org" ? drifts : appDrifts) {
        guard !ids.isEmpty else { break }
        let victim = ids[(index * 7919 + 13) % ids.count]
        var next = ContinuousClock.now
        let driftAt = ContinuousClock.now + .milliseconds(Int.random(in: 0..<2000, using: &generator))
        var drifted = false
        var latency: Double?
        while latency == nil {
          let now = ContinuousClock.now
          if !drifted && now >= driftAt {
            try await ScaleBench.post(base + "/_sim/drift", #"{"op":"stop_machine","machine_id":"\#(victim)"}"#)
            drifted = true
          }
          if now >= next {
            let pass = await measure(reconciler)
            if drifted,
              pass.report.results.contains(where: { $0.action.machineID == victim && $0.action.kind == .start })
            {
              latency = ScaleBench.ms(ContinuousClock.now - driftAt) / 1000
            }
            next =
              ContinuousClock.now
              + .milliseconds(Int(ReconcileLoop.nextDelay(after: pass.report, settings: settings) * 1000))
          }
          try await Task.sleep(for: .milliseconds(50))
        }
        figures.driftLatenciesS.append(latency ?? 0)
      }
      figures.rateLimited = requests.withLock { $0.limited } - limitedBefore
      say(
        "\(mode): drift → start \(figures.driftLatenciesS.map { String(format: "%.2f", $0) }) s; 429s \(figures.rateLimited)"
      )

      if mode == "org" {
        // A restart: a new process on the same database and fleet, one pass (a full read).
        try await Task.sleep(for: .seconds(4))
        let restart = await offloaded {
          ScaleBench.child(
            binary, ["reconcile"],
            environment: [
              "FLY_API_BASE_URL": base, "FLEET_FLY_APP": "bench", "FLY_API_TOKEN": "bench-token",
              "FLEET_DATABASE": databasePath, "FLEET_FLY_ORG": "personal",
            ])
        }
        figures.restartExit = restart.status
        figures.restartCPUMs = restart.cpuSeconds * 1000
        figures.restartPeakRSSMB = restart.peakRSSMB
        say(
          "org: restart exit \(restart.status), \(Int(restart.cpuSeconds * 1000)) ms CPU, peak RSS \(Int(restart.peakRSSMB)) MB"
        )
      }
      results.append(figures)
    }
    return results
  }

  /// The p-th percentile (0…100) of `values`, nearest rank.
  public static func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
    return sorted[max(0, min(sorted.count - 1, rank - 1))]
  }
}
