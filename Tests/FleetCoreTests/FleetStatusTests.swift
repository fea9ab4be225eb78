import FleetCore
import Testing

/// `status`'s conditions, one row each: from a plan, the users' states and the desired rows.
struct FleetStatusTests {
  static let now = 1_800_000_000.0

  static func snapshot(paused: Set<String> = [], fleetPaused: Bool = false) -> DesiredSnapshot {
    var snapshot = DesiredSnapshot(
      template: MachineTemplate(),
      machines: Dictionary(
        uniqueKeysWithValues: ["ok", "busy", "broken", "tired", "held", "rolling"].map {
          (
            $0,
            DesiredMachine(
              userID: $0, state: .running, region: "cdg", updatedAt: 1_799_990_000, paused: paused.contains($0))
          )
        }))
    snapshot.fleetPaused = fleetPaused
    return snapshot
  }

  static func plan() -> Plan {
    var plan = Plan(
      actions: [Action(userID: "busy", call: .start(machineID: "m-busy"), reason: "desired running, machine stopped")],
      findings: [
        DriftFinding(kind: .crashLooping, userID: "broken", resourceID: "m-broken", message: "exited 5 times"),
        DriftFinding(kind: .regionMismatch, userID: "ok2", message: "informational, for a user not desired"),
      ],
      waiting: [], states: [:], guardState: GuardState())
    plan.held = [Action(userID: "held", call: .start(machineID: "m-held"), reason: "held")]
    return plan
  }

  static func states() -> UserMap<UserState> {
    var tired = UserState()
    tired.failures = 5
    tired.backoffUntil = now + 30
    tired.backoffSince = now - 100
    tired.lastError = "capacity"
    var rolling = UserState()
    rolling.update = UpdateWatch(since: now - 20, from: 1, to: 2, launched: true)
    return ["tired": tired, "rolling": rolling]
  }

  @Test func eachUserGetsTheConditionAnOperatorExpects() {
    let users = FleetStatus.users(
      plan: Self.plan(), desired: Self.snapshot(paused: ["held"]), observation: Observation(machines: [], volumes: []),
      states: Self.states(), alertsSince: ["crash_looping|broken|m-broken": Self.now - 300], now: Self.now)
    let by = Dictionary(uniqueKeysWithValues: users.map { ($0.userID, $0) })
    #expect(by["ok"]?.condition == .inSync)
    #expect(by["busy"]?.condition == .pending)
    #expect(by["busy"]?.planned.map(\.kind) == [.start])
    #expect(by["broken"]?.condition == .failing)
    #expect(by["broken"]?.since == Self.now - 300, "since the alert began")
    #expect(by["tired"]?.condition == .failing, "a streak as long as the retry budget")
    #expect(by["tired"]?.nextRetry == Self.now + 30 && by["tired"]?.lastError == "capacity")
    #expect(by["held"]?.condition == .paused)
    #expect(by["rolling"]?.condition == .rollingOut && by["rolling"]?.since == Self.now - 20)
    let summary = FleetStatus.summary(users)
    #expect(summary == [.inSync: 1, .pending: 1, .failing: 2, .paused: 1, .rollingOut: 1])
    #expect(FleetStatus.exitCode(summary) == 1)
    #expect(FleetStatus.summaryLine(summary) == "6 users: 1 in sync, 1 pending, 2 failing, 1 paused, 1 rolling out")
  }

  /// The board's fast path (an in-sync user costs a count) says what the full list says.
  @Test func theBoardCountsWhatTheFullListSays() {
    let snapshot = Self.snapshot(paused: ["held"])
    let observation = Observation(machines: [], volumes: [])
    let full = FleetStatus.users(
      plan: Self.plan(), desired: snapshot, observation: observation, states: Self.states(), now: Self.now)
    let board = FleetStatus.board(
      plan: Self.plan(), desired: snapshot, observation: observation, states: Self.states(), now: Self.now)
    #expect(board.summary == FleetStatus.summary(full))
    #expect(board.users.map(\.userID).sorted() == full.filter { $0.condition != .inSync }.map(\.userID).sorted())
    #expect(!board.users.contains { $0.userID == "ok" })
  }

  @Test func exitCodes() {
    #expect(FleetStatus.exitCode([.inSync: 3, .paused: 2]) == 0, "paused users are as the operator wants them")
    #expect(FleetStatus.exitCode([.inSync: 3, .pending: 1]) == 2)
    #expect(FleetStatus.exitCode([.inSync: 3, .rollingOut: 1]) == 2)
    #expect(FleetStatus.exitCode([.pending: 3, .failing: 1]) == 1)
  }

  /// A paused fleet pauses everyone, except who is failing: a paused user crash-looping or with a
  /// full disk stays loud (and `status` exits 1).
  @Test func aPausedFleetPausesEveryoneButTheFailing() {
    let users = FleetStatus.users(
      plan: Self.plan(), desired: Self.snapshot(fleetPaused: true), observation: Observation(machines: [], volumes: []),
      states: Self.states(), now: Self.now)
    let failing = Set(users.filter { $0.condition == .failing }.map(\.userID))
    #expect(failing == ["broken", "tired"])
    #expect(users.filter { !failing.contains($0.userID) }.allSatisfy { $0.condition == .paused })
    #expect(FleetStatus.exitCode(FleetStatus.summary(users)) == 1)
  }
}
