import FleetCore
import FleetRuntime
import FleetStore
import Foundation

/// `fleetkeeper bench pages`: the status board and the operator's pages at N users, `drifting` of
/// them not in sync (a full disk), over a real SQLite file holding recent events. Our own CPU only
/// (no Fly involved): the time to compute every user's condition after a pass, and to render the
/// overview, the not-in-sync list (plain, filtered, searched, a later page) and a user's page.
public enum PagesBench {
  public struct Result: Sendable {
    public var users: Int
    public var drifting: Int
    /// Medians, in milliseconds.
    public var statuses: Double
    public var boardUpdate: Double
    public var overview: Double
    public var list: Double
    public var filtered: Double
    public var searched: Double
    public var laterPage: Double
    public var userPage: Double
    public var overviewBytes: Int
  }

  static func median(_ runs: Int, _ body: () async throws -> Void) async rethrows -> Double {
    var samples: [Double] = []
    for _ in 0..<runs {
      let start = ContinuousClock.now
      try await body()
      let elapsed = ContinuousClock.now - start
      samples.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
    }
    return samples.sorted()[samples.count / 2]
  }

  public static func run(users: Int, drifting: Int, runs: Int = 15) async throws -> Result {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "fleetkeeper-pages-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try FleetStore.sqlite(path: folder.appendingPathComponent("fleet.sqlite3").path, create: true)
    try await store.migrate()
    let now = Date().timeIntervalSince1970
    // Recent events (the overview shows 15, a user's page 30).
    var events: [AuditEvent] = []
    for index in 0..<2000 {
      events.append(
        AuditEvent(
          type: .action(.createMachine), userID: "u\(index % users)", machineID: "m\(index)",
          details: ["outcome": .string("ok"), "reason": .string("desired running, no machine")],
          createdAt: Int64(now) - Int64(2000 - index)))
    }
    try await store.commit(events: events, statements: [])

    var rows: [String: DesiredMachine] = [:]
    rows.reserveCapacity(users)
    var machines: [ObservedMachine] = []
    machines.reserveCapacity(users)
    var findings: [DriftFinding] = []
    for index in 0..<users {
      let user = "u\(index)"
      rows[user] = DesiredMachine(userID: user, state: .running, region: "cdg", updatedAt: Int64(now) - 86_400)
      machines.append(
        ObservedMachine(
          id: "m\(index)", state: .started, region: "cdg", userID: user, volumeID: "v\(index)",
          createdAt: now - 86_400, updatedAt: now - 3600))
      if index < drifting {
        findings.append(
          DriftFinding(
            kind: .diskFull, userID: user, resourceID: "v\(index)",
            message: "volume v\(index) is 91% full (1 GB; reported above 85%)"))
      }
    }
    let desired = DesiredSnapshot(template: MachineTemplate(), machines: rows)
    let observation = Observation(machines: machines, volumes: [])
    let plan = Plan(actions: [], findings: findings, waiting: [], states: [:], guardState: GuardState())
    let states = UserMap<UserState>()

    var computed: (users: [UserStatus], summary: [UserCondition: Int]) = ([], [:])
    let statusTime = await median(max(3, runs / 3)) {
      computed = FleetStatus.board(plan: plan, desired: desired, observation: observation, states: states, now: now)
    }
    let board = StatusBoard()
    let boardTime = await median(max(3, runs / 3)) { board.update(computed, at: now) }
    let token = "bench-ui-token-0123456789"
    let pages = Pages(store: store, board: board, state: PageState(), token: token, alerts: { [] })
    let cookie = "fleet_ui=\(token)"
    var bytes = 0
    let overview = await median(runs) {
      bytes = await pages.handle(path: "/ui", query: [:], cookieHeader: cookie).body.utf8.count
    }
    let list = await median(runs) { _ = await pages.handle(path: "/ui/users", query: [:], cookieHeader: cookie) }
    let filtered = await median(runs) {
      _ = await pages.handle(path: "/ui/users", query: ["condition": "failing"], cookieHeader: cookie)
    }
    let searched = await median(runs) {
      _ = await pages.handle(path: "/ui/users", query: ["q": "u12"], cookieHeader: cookie)
    }
    let later = await median(runs) {
      _ = await pages.handle(path: "/ui/users", query: ["page": "40"], cookieHeader: cookie)
    }
    let user = await median(runs) { _ = await pages.handle(path: "/ui/users/u7", query: [:], cookieHeader: cookie) }
    return Result(
      users: users, drifting: drifting, statuses: statusTime, boardUpdate: boardTime, overview: overview, list: list,
      filtered: filtered, searched: searched, laterPage: later, userPage: user, overviewBytes: bytes)
  }
}
