import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Logging

/// `fleetkeeper bench ensure`: the dashboard's `ensure` against `fleetkeeper run`'s loop, over
/// loopback, with the simulator's Fly timings and rate limits on. One new user: how long after the
/// simulator's machine reached `started` the answer came (the controller's overhead). Then N new
/// users ensured at once: how long until every one answered started, against the bound the write
/// budget sets (creates of one kind at 0.95/s, volume then machine).
public enum EnsureBench {
  public struct Result: Sendable {
    public var single: Double
    public var singleStartedAfter: Double
    public var overhead: Double
    public var users: Int
    public var seconds: Double
    public var bound: Double
    public var ready: Int
    public var machines: Int
    public var requests: Int
    public var rateLimited: Int
  }

  public static func run(users: Int) async throws -> Result {
    var configuration = SimulatorConfiguration(appName: "bench", token: "bench-token")
    configuration.rateLimitsEnabled = true
    let simulator = FlySimulator(configuration: configuration, logCapacity: 200_000)
    let running = try await SimulatorServer.start(simulator)
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "fleetkeeper-ensure-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try FleetStore.sqlite(path: folder.appendingPathComponent("fleet.sqlite3").path, create: true)
    try await store.migrate()
    let client = FlyClient(
      configuration: FlyClientConfiguration(baseURL: running.baseURL, appName: "bench", token: FlyToken("bench-token")))
    let settings = ReconcilerSettings()
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    let reconciler = Reconciler(client: client, store: store, settings: settings, logger: logger)
    let board = StatusBoard()
    let waker = LoopWaker()
    let loop = ReconcileLoop(
      reconciler: reconciler, store: store, settings: settings, logger: logger, waker: waker,
      onPass: { report in
        if let plan = report.plan, let desired = report.desired, let observation = report.observation {
          board.update(
            FleetStatus.board(
              plan: plan, desired: desired, observation: observation, states: await reconciler.userStates(),
              now: report.startedAt), at: report.startedAt)
        }
      })
    let task = Task { try await loop.run() }
    defer { task.cancel() }
    let token = "bench-api-token-0123456789"
    let api = DashboardAPI(store: store, board: board, waker: waker, client: client, token: token)
    while board.updatedAt == nil { try await Task.sleep(for: .milliseconds(50)) }

    func ensure(_ user: String) async -> (Int, Double) {
      let answer = await api.handle(
        method: "POST", path: "/v1/users/\(user)/ensure", query: ["wait": "60", "region": "ord"],
        authorization: "Bearer \(token)", body: Data())
      return (answer.status, Date().timeIntervalSince1970)
    }

    // One new user, the fleet otherwise quiet.
    let began = Date().timeIntervalSince1970
    let (_, answered) = await ensure("e0")
    let startedAt = machineStarted(simulator, user: "e0") ?? answered

    // N new users at once.
    let start = Date()
    let statuses = await withTaskGroup(of: Int.self) { group in
      for index in 0..<users {
        group.addTask {
          var status = 0
          for _ in 0..<10 where status != 200 { status = await ensure("c\(index)").0 }
          return status
        }
      }
      var all: [Int] = []
      for await status in group { all.append(status) }
      return all
    }
    let seconds = Date().timeIntervalSince(start)
    let log = simulator.requestLog()
    let machines = machineCount(simulator, prefix: "c")
    await running.stop()
    // Volume creates then machine creates, each kind at the write budget's rate, pipelined; plus
    // one chain (create settle, start, list lag).
    let rate = settings.writeLimits.perSecond
    let bound =
      Double(users) / rate + 1 / rate + configuration.createSettle + configuration.startDuration
      + configuration.listLag
    return Result(
      single: answered - began, singleStartedAfter: startedAt - began, overhead: answered - startedAt, users: users,
      seconds: seconds, bound: bound, ready: statuses.filter { $0 == 200 }.count, machines: machines,
      requests: log.count, rateLimited: log.filter { $0.status == 429 }.count)
  }

  struct Snapshot: Decodable {
    var machines: [FlyMachine]
  }

  /// When the simulator's machine of `user` reached `started` (its `updated_at` then).
  static func machineStarted(_ simulator: FlySimulator, user: String) -> Double? {
    guard let snapshot = try? JSONDecoder().decode(Snapshot.self, from: simulator.stateJSON()) else { return nil }
    return snapshot.machines.first {
      $0.config?.metadata[FleetNames.userMetadataKey] == user && $0.state == "started"
    }?.updatedAt.flatMap(parseRFC3339)
  }

  static func machineCount(_ simulator: FlySimulator, prefix: String) -> Int {
    guard let snapshot = try? JSONDecoder().decode(Snapshot.self, from: simulator.stateJSON()) else { return 0 }
    return snapshot.machines.filter {
      ($0.config?.metadata[FleetNames.userMetadataKey]?.hasPrefix(prefix) ?? false) && $0.state != "destroyed"
    }.count
  }
}
