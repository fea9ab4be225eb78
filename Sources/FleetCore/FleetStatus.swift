/// Where a user stands, at a glance (`fleetkeeper status`, the pages, the API).
public enum UserCondition: String, Sendable, Hashable, CaseIterable, Codable {
  /// Fly matches the row: nothing to do, nothing waiting, nothing wrong.
  case inSync = "in_sync"
  /// Something is being done or settling (a create, a start, a retry after a backoff).
  case pending
  /// Something is wrong and is not putting itself right: an alert-worthy finding, or a streak of
  /// failures as long as the retry budget.
  case failing
  /// Paused by an operator (the user, or the whole fleet): observed and reported, never changed.
  case paused
  /// A config update of the user's machine is under way (a rollout's wave, a user's own change).
  case rollingOut = "rolling_out"
}

/// One user's status: condition, since when, why, what was planned, when the next try is.
public struct UserStatus: Sendable, Hashable {
  public var userID: String
  public var condition: UserCondition
  /// Unix seconds since the condition holds, when known.
  public var since: Double?
  public var desired: DesiredState?
  public var observed: MachineState?
  public var machineID: String?
  public var volumeID: String?
  public var region: String?
  /// The findings about this user (what is wrong), newest understanding first.
  public var findings: [DriftFinding]
  /// What the next pass would do for this user (kind and reason).
  public var planned: [Action]
  /// The last failure the controller remembers, and when the user is tried again.
  public var lastError: String?
  public var nextRetry: Double?
  public var failures: Int
}

/// Everything `status` says: pure, from one pass's inputs and plan (no clock read, no I/O).
public enum FleetStatus {
  /// Findings that mean something is wrong and is not going away by itself: the user is failing.
  public static let failingKinds: Set<DriftFinding.Kind> = [
    .actionFailing, .machineFailed, .stuck, .appNameTaken, .adoptionAmbiguous, .updateUnhealthy, .updateReverted,
    .crashLooping, .outOfMemory, .diskFull, .invalidDesiredRow, .recordFailed, .listOmits, .destroyGuardTripped,
    .restoreStuck,
  ]

  /// Each user's status: every desired user, and every user Fly shows a machine for.
  public static func users(
    plan: Plan, desired: DesiredSnapshot, observation: Observation, states: UserMap<UserState>,
    alertsSince: [String: Double] = [:], retryBudget: Int = 5, now: Double
  ) -> [UserStatus] {
    board(
      plan: plan, desired: desired, observation: observation, states: states, alertsSince: alertsSince,
      retryBudget: retryBudget, now: now, includeInSync: true
    ).users
  }

  /// The users not in sync, each in full, and how many users are in each condition: what the
  /// status board keeps after a pass. An in-sync user costs a count, not a value (100k users).
  public static func board(
    plan: Plan, desired: DesiredSnapshot, observation: Observation, states: UserMap<UserState>,
    alertsSince: [String: Double] = [:], retryBudget: Int = 5, now: Double, includeInSync: Bool = false
  ) -> (users: [UserStatus], summary: [UserCondition: Int]) {
    var summary: [UserCondition: Int] = [:]
    for condition in UserCondition.allCases { summary[condition] = 0 }
    var findings: [String: [DriftFinding]] = [:]
    for finding in plan.findings { if let user = finding.userID { findings[user, default: []].append(finding) } }
    var planned: [String: [Action]] = [:]
    for action in plan.actions + plan.held { planned[action.userID, default: []].append(action) }
    let waiting = Set(plan.waiting)
    var machines: [String: Int] = [:]
    machines.reserveCapacity(observation.machines.count)
    for (index, machine) in observation.machines.enumerated() where !machine.isGone {
      if let user = machine.userID, machines[user] == nil { machines[user] = index }
    }
    var users = desired.machines.keys
    for user in machines.keys where !desired.machines.contains(user) { users.append(user) }
    for user in desired.invalidRows.keys where !desired.machines.contains(user) && machines[user] == nil {
      users.append(user)
    }
    var out: [UserStatus] = []
    out.reserveCapacity(users.count)
    for user in users {
      let want = desired.machines[user]
      let mine = findings[user] ?? []
      let actions = planned[user] ?? []
      let state = states[user] ?? UserState()
      // The common case, at no cost: nothing planned, found, waiting, failing, paused or updating.
      if !includeInSync, mine.isEmpty, actions.isEmpty, !desired.fleetPaused, want?.paused != true,
        state.failures == 0, state.update == nil, !waiting.contains(user)
      {
        summary[.inSync, default: 0] += 1
        continue
      }
      let machine = machines[user].map { observation.machines[$0] }
      var status = UserStatus(
        userID: user, condition: .inSync, since: nil, desired: want?.state, observed: machine?.state,
        machineID: machine?.id, volumeID: machine?.volumeID ?? state.volumeID, region: machine?.region ?? want?.region,
        findings: mine, planned: actions, lastError: state.lastError,
        nextRetry: (state.backoffUntil ?? 0) > now ? state.backoffUntil : nil, failures: state.failures)
      // Failing first: a paused user whose disk is full or who crash-loops is still loud.
      if mine.contains(where: { failingKinds.contains($0.kind) }) || state.failures >= retryBudget {
        status.condition = .failing
        status.since =
          mine.compactMap { alertsSince[$0.fingerprint] }.min() ?? state.backoffSince
          ?? want.map { Double($0.updatedAt) }
      } else if desired.fleetPaused || want?.paused == true {
        status.condition = .paused
        status.since = want.map { Double($0.updatedAt) }
      } else if state.update != nil {
        status.condition = .rollingOut
        status.since = state.update?.since
      } else if !actions.isEmpty || waiting.contains(user) || !mine.isEmpty || state.failures > 0 {
        status.condition = .pending
        status.since =
          [state.pending?.since, state.transitionalSince, state.backoffSince, state.restore?.since].compactMap { $0 }
          .min() ?? mine.compactMap { alertsSince[$0.fingerprint] }.min() ?? want.map { Double($0.updatedAt) }
      }
      summary[status.condition, default: 0] += 1
      if includeInSync || status.condition != .inSync { out.append(status) }
    }
    return (out, summary)
  }

  /// How many users are in each condition.
  public static func summary(_ users: [UserStatus]) -> [UserCondition: Int] {
    var counts: [UserCondition: Int] = [:]
    for condition in UserCondition.allCases { counts[condition] = 0 }
    for user in users { counts[user.condition, default: 0] += 1 }
    return counts
  }

  /// `status`'s exit code: 1 when some user is failing, 2 when some are pending or rolling out,
  /// 0 when all are in sync (paused users are as the operator wants them).
  public static func exitCode(_ summary: [UserCondition: Int]) -> Int32 {
    if (summary[.failing] ?? 0) > 0 { return 1 }
    if (summary[.pending] ?? 0) + (summary[.rollingOut] ?? 0) > 0 { return 2 }
    return 0
  }

  /// The summary line: `12 users: 9 in sync, 1 pending, 1 failing, 1 paused, 0 rolling out`.
  public static func summaryLine(_ summary: [UserCondition: Int]) -> String {
    let total = summary.values.reduce(0, +)
    return "\(total) users: "
      + UserCondition.allCases.map { "\(summary[$0] ?? 0) \(String($0.rawValue.map { $0 == "_" ? " " : $0 }))" }
      .joined(separator: ", ")
  }
}
