/// A template change that touches many users rolls out in waves: a canary first, then waves of at
/// most `max_unavailable`, each update seen through before the next wave, halted when too many fail.
/// Pure, like the planner (which calls ``Rollout/step(_:_:)`` once per planning pass).

/// What the operator says about rollouts (the `rollout_control` row): knobs, pause, abort, resume.
public struct RolloutControl: Sendable, Hashable {
  /// The canary: at least this many machines, or this percentage of the rollout, whichever is more.
  public var canaryMachines = 1
  public var canaryPercent = 1.0
  /// A wave updates at most this percentage of the rollout's machines at once (at least one).
  public var maxUnavailablePercent = 10.0
  /// Halt when this many machines of one wave fail (the canary: any, if it is smaller), or more
  /// than this percentage of the whole rollout.
  public var waveFailures = 2
  public var failurePercent = 5.0
  /// Attempts per machine (a silent revert is retried) before it counts as failed.
  public var maxAttempts = 2
  /// When waves may start (empty: any time). A wave under way finishes; repairs never wait.
  public var windows: [MaintenanceWindow] = []
  /// No new wave while set (`rollout pause`); updates under way finish.
  public var paused = false
  /// How many times `rollout abort` and `rollout resume` were asked (counters, not times: the
  /// database's clock and the controller's need not agree). An abort asked after a rollout began
  /// ends it; a resume asked after it halted continues it.
  public var abortRequests = 0
  public var resumeRequests = 0
  /// The row could not be read as it stands (a bad window written by plain SQL): no wave starts
  /// until it is fixed, and this says why.
  public var problem: String?
  public init() {}
}

/// A weekly maintenance window in UTC: `sat 02:00-06:00 UTC`, `mon-fri 22:00-02:00 UTC` (an end
/// before the start runs into the next day), `daily 03:00-04:00 UTC`.
public struct MaintenanceWindow: Sendable, Hashable, CustomStringConvertible {
  /// Days the window starts on, 0 = Monday … 6 = Sunday.
  public var days: Set<Int>
  /// Minutes after midnight UTC.
  public var start: Int
  public var end: Int
  public let description: String

  static let dayNames = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

  public struct Problem: Error, CustomStringConvertible {
    public var text: String
    public var reason: String
    public var description: String {
      "window: \(reason) in \"\(text)\" (expected e.g. \"sat 02:00-06:00 UTC\", \"mon-fri 22:00-02:00 UTC\" or \"daily 03:00-04:00 UTC\")"
    }
  }

  public init(parsing text: String) throws(Problem) {
    let parts = text.lowercased().split(separator: " ").map(String.init)
    guard parts.count == 3 || (parts.count == 2) else { throw Problem(text: text, reason: "three parts expected") }
    if parts.count == 3, parts[2] != "utc" {
      throw Problem(text: text, reason: "the time zone must be UTC, not \(parts[2])")
    }
    var days: Set<Int> = []
    for item in parts[0].split(separator: ",") {
      if item == "daily" {
        days.formUnion(0..<7)
        continue
      }
      let range = item.split(separator: "-").map(String.init)
      guard (1...2).contains(range.count), let first = Self.dayNames.firstIndex(of: range[0]),
        let last = Self.dayNames.firstIndex(of: range.last!)
      else { throw Problem(text: text, reason: "unknown day \(item)") }
      var day = first
      while true {
        days.insert(day)
        if day == last { break }
        day = (day + 1) % 7
      }
    }
    let times = parts[1].split(separator: "-").map(String.init)
    func minutes(_ clock: String) throws(Problem) -> Int {
      let hm = clock.split(separator: ":")
      guard hm.count == 2, hm[0].count == 2, hm[1].count == 2, let h = Int(hm[0]), let m = Int(hm[1]),
        (0...24).contains(h),
        (0..<60).contains(m), h * 60 + m <= 1440
      else { throw Problem(text: text, reason: "bad time \(clock)") }
      return h * 60 + m
    }
    guard times.count == 2 else { throw Problem(text: text, reason: "a time range HH:MM-HH:MM expected") }
    start = try minutes(times[0])
    end = try minutes(times[1])
    guard start != end else { throw Problem(text: text, reason: "an empty window") }
    self.days = days
    description = text
  }

  /// Whether `now` (Unix seconds) falls in the window.
  public func contains(_ now: Double) -> Bool {
    let minute = Int((now / 60).rounded(.down))
    let dayIndex = ((minute / 1440) + 3) % 7  // 1970-01-01 was a Thursday (index 3)
    let inDay = minute % 1440
    if start < end { return days.contains(dayIndex) && inDay >= start && inDay < end }
    // Past midnight: the evening of a window day, or the morning after it.
    return (days.contains(dayIndex) && inDay >= start) || (days.contains((dayIndex + 6) % 7) && inDay < end)
  }

  public static func parseList(_ text: String) throws(Problem) -> [MaintenanceWindow] {
    var windows: [MaintenanceWindow] = []
    for item in text.split(separator: ";") {
      let trimmed = item.trimmingSpaces
      if !trimmed.isEmpty { windows.append(try MaintenanceWindow(parsing: trimmed)) }
    }
    return windows
  }
}

extension Substring {
  fileprivate var trimmingSpaces: String {
    String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
  }
}

/// Where a rollout is (kept by the controller between passes and restarts).
public struct RolloutState: Sendable, Hashable, Codable {
  public enum Status: String, Sendable, Hashable, Codable {
    case running
    /// Between waves, outside every maintenance window.
    case waiting
    case paused
    /// Too many failures: nothing more until `rollout resume` (or a new template, or `undo`).
    case halted
    case aborted
    case done
  }
  /// The template digest it rolls out, and the template revision that was current when it began.
  public var target: UInt64
  public var revision: Int?
  public var startedAt: Double
  public var status: Status
  /// Machines that needed the new template when it began.
  public var total: Int
  /// Machines still to update (pending, under way); through = total - remaining - failed.
  public var remaining: Int
  /// -1 before the canary; 0 is the canary.
  public var wave: Int = -1
  public var waveMembers: [String] = []
  public var waveStartedAt: Double?
  /// Machines that failed every attempt (reverted, unhealthy), over every wave.
  public var failed: [String] = []
  /// Why it halted, or when.
  public var message: String?
  public var changedAt: Double
  /// The abort and resume counters (``RolloutControl``) this rollout has seen.
  public var abortsSeen = 0
  public var resumesSeen = 0

  public init(target: UInt64, revision: Int?, startedAt: Double, total: Int) {
    self.target = target
    self.revision = revision
    self.startedAt = startedAt
    self.status = .running
    self.total = total
    self.remaining = total
    self.changedAt = startedAt
  }

  public var through: Int { max(0, total - remaining - failed.count) }
  /// A rollout that still acts (or waits to).
  public var isActive: Bool { status == .running || status == .waiting || status == .paused }

  // Digests as hex (JSON numbers above 2^53 are not exact in every reader).
  enum CodingKeys: String, CodingKey {
    case target, revision, startedAt = "started_at", status, total, remaining, wave
    case waveMembers = "wave_members", waveStartedAt = "wave_started_at", failed, message
    case changedAt = "changed_at", abortsSeen = "aborts_seen", resumesSeen = "resumes_seen"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    target = try c.decodeDigest(forKey: .target)
    revision = try c.decodeIfPresent(Int.self, forKey: .revision)
    startedAt = try c.decode(Double.self, forKey: .startedAt)
    status = try c.decode(Status.self, forKey: .status)
    total = try c.decode(Int.self, forKey: .total)
    remaining = try c.decode(Int.self, forKey: .remaining)
    wave = try c.decode(Int.self, forKey: .wave)
    waveMembers = try c.decodeIfPresent([String].self, forKey: .waveMembers) ?? []
    waveStartedAt = try c.decodeIfPresent(Double.self, forKey: .waveStartedAt)
    failed = try c.decodeIfPresent([String].self, forKey: .failed) ?? []
    message = try c.decodeIfPresent(String.self, forKey: .message)
    changedAt = try c.decodeIfPresent(Double.self, forKey: .changedAt) ?? startedAt
    abortsSeen = try c.decodeIfPresent(Int.self, forKey: .abortsSeen) ?? 0
    resumesSeen = try c.decodeIfPresent(Int.self, forKey: .resumesSeen) ?? 0
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encodeDigest(target, forKey: .target)
    try c.encodeIfPresent(revision, forKey: .revision)
    try c.encode(startedAt, forKey: .startedAt)
    try c.encode(status, forKey: .status)
    try c.encode(total, forKey: .total)
    try c.encode(remaining, forKey: .remaining)
    try c.encode(wave, forKey: .wave)
    try c.encode(waveMembers, forKey: .waveMembers)
    try c.encodeIfPresent(waveStartedAt, forKey: .waveStartedAt)
    try c.encode(failed, forKey: .failed)
    try c.encodeIfPresent(message, forKey: .message)
    try c.encode(changedAt, forKey: .changedAt)
    try c.encode(abortsSeen, forKey: .abortsSeen)
    try c.encode(resumesSeen, forKey: .resumesSeen)
  }
}

public enum Rollout {
  /// One user's part in a rollout, as the planner sees it this pass.
  public enum Member: Sendable, Hashable {
    /// Needs the new template and may be updated now.
    case ready
    /// Needs it, but waits (a backoff after a revert, a pause, a transitional state).
    case waiting
    /// An update is under way.
    case underWay
    /// Runs the new template, seen through.
    case through
    /// Failed every attempt.
    case failed
  }

  public struct Input {
    public var previous: RolloutState?
    public var control: RolloutControl
    public var target: UInt64
    public var revision: Int?
    /// Every user that needs the target template (ready, waiting or under way), in a stable order.
    public var outdated: [String]
    /// What each user is in this rollout (any user: wave members may be through already).
    public var member: (String) -> Member
    public var now: Double
    public init(
      previous: RolloutState?, control: RolloutControl, target: UInt64, revision: Int?, outdated: [String],
      member: @escaping (String) -> Member, now: Double
    ) {
      self.previous = previous
      self.control = control
      self.target = target
      self.revision = revision
      self.outdated = outdated
      self.member = member
      self.now = now
    }
  }

  public struct Output: Sendable {
    public var state: RolloutState?
    /// The users to update this pass.
    public var update: [String]
    public var findings: [DriftFinding]
    /// Resumed after a halt: the machines that failed get their attempts back (the planner resets
    /// their count) and form the wave again.
    public var retry: [String] = []
  }

  public static func canarySize(total: Int, control: RolloutControl) -> Int {
    max(1, control.canaryMachines, Int((Double(total) * control.canaryPercent / 100).rounded(.up)))
  }

  public static func waveSize(total: Int, control: RolloutControl) -> Int {
    max(1, Int((Double(total) * control.maxUnavailablePercent / 100).rounded(.down)))
  }

  public static func step(_ input: Input) -> Output {
    let now = input.now
    let control = input.control
    var state: RolloutState
    if let previous = input.previous, previous.target == input.target {
      state = previous
    } else {
      // A new template (or the first look): a new rollout if any machine needs it.
      guard !input.outdated.isEmpty else { return Output(state: input.previous, update: [], findings: []) }
      state = RolloutState(
        target: input.target, revision: input.revision, startedAt: now, total: input.outdated.count)
      state.abortsSeen = control.abortRequests
      state.resumesSeen = control.resumeRequests
    }
    let before = state
    state.remaining = input.outdated.filter { input.member($0) != .failed }.count
    var findings: [DriftFinding] = []
    func changed() -> RolloutState {
      var s = state
      if s != before { s.changedAt = now }
      return s
    }
    if state.status == .aborted { return Output(state: changed(), update: [], findings: []) }
    if state.status == .done {
      // Users that were held (paused) when it finished: it goes on for them.
      guard state.remaining > 0 else { return Output(state: changed(), update: [], findings: []) }
      state.status = .running
    }
    if control.abortRequests > state.abortsSeen {
      state.status = .aborted
      state.message = "aborted by an operator: \(state.remaining) machine(s) left on their config"
      return Output(state: changed(), update: [], findings: [])
    }
    // Members of the current wave.
    var waveFailed = 0
    var waveOpen = 0
    for user in state.waveMembers {
      switch input.member(user) {
      case .failed:
        waveFailed += 1
        if !state.failed.contains(user) { state.failed.append(user) }
      case .ready, .waiting, .underWay: waveOpen += 1
      case .through: break
      }
    }
    if state.status == .halted {
      if control.resumeRequests > state.resumesSeen {
        // The operator fixed what failed (or accepts it): the failed machines are tried again,
        // as the wave, before the rollout goes on.
        state.resumesSeen = control.resumeRequests
        state.status = .running
        state.message = nil
        let retry = state.failed
        state.failed = []
        state.remaining = input.outdated.count
        if !retry.isEmpty { state.waveMembers = retry }
        return Output(state: changed(), update: [], findings: [], retry: retry)
      } else {
        findings.append(halted(state))
        return Output(state: changed(), update: [], findings: findings)
      }
    }
    state.resumesSeen = control.resumeRequests  // a resume asked while it runs is spent
    let waveLimit = min(control.waveFailures, max(1, state.waveMembers.count))
    let totalLimit = Double(state.total) * control.failurePercent / 100
    if waveFailed >= waveLimit && waveFailed > 0 || (state.failed.count > 0 && Double(state.failed.count) > totalLimit)
    {
      state.status = .halted
      state.message =
        waveFailed >= waveLimit
        ? "\(waveFailed) of \(state.waveMembers.count) machine(s) of wave \(state.wave) failed (limit \(waveLimit)): halted"
        : "\(state.failed.count) machine(s) failed, more than \(control.failurePercent)% of \(state.total): halted"
      findings.append(halted(state))
      return Output(state: changed(), update: [], findings: findings)
    }
    if state.remaining == 0 && waveOpen == 0 {
      state.status = .done
      state.message = nil
      return Output(state: changed(), update: [], findings: [])
    }
    if let problem = control.problem {
      state.status = .waiting
      state.message = problem
      findings.append(DriftFinding(kind: .invalidDesiredRow, message: "rollout_control: \(problem): no wave starts"))
      return Output(state: changed(), update: [], findings: findings)
    }
    if control.paused {
      state.status = .paused
      return Output(state: changed(), update: [], findings: [])
    }
    if waveOpen == 0 {
      // The wave is through (or there was none yet): the next one, inside a window.
      if !control.windows.isEmpty && !control.windows.contains(where: { $0.contains(now) }) {
        state.status = .waiting
        state.message =
          "waiting for a maintenance window (\(control.windows.map(\.description).joined(separator: "; ")))"
        return Output(state: changed(), update: [], findings: [])
      }
      let size =
        state.wave < 0
        ? canarySize(total: state.total, control: control) : waveSize(total: state.total, control: control)
      let next = input.outdated.lazy.filter { input.member($0) == .ready || input.member($0) == .waiting }.prefix(size)
      state.wave += 1
      state.waveMembers = Array(next)
      state.waveStartedAt = now
    }
    state.status = .running
    state.message = nil
    let update = state.waveMembers.filter { input.member($0) == .ready }
    return Output(state: changed(), update: update, findings: findings)
  }

  /// The events of a rollout's move from `old` to `new` (one pass's step).
  public static func events(from old: RolloutState?, to new: RolloutState?, now: Double) -> [AuditEvent] {
    guard let new, new != old else { return [] }
    var events: [AuditEvent] = []
    func add(_ step: RolloutStep, _ extra: [String: AuditField] = [:]) {
      var details: [String: AuditField] = [
        "target": .string(String(new.target, radix: 16)), "total": .int(Int64(new.total)),
        "through": .int(Int64(new.through)), "failed": .int(Int64(new.failed.count)),
        "remaining": .int(Int64(new.remaining)), "status": .string(new.status.rawValue),
      ]
      if let revision = new.revision { details["revision"] = .int(Int64(revision)) }
      if let message = new.message { details["message"] = .string(message) }
      details.merge(extra) { _, b in b }
      events.append(AuditEvent(type: .rollout(step), details: details, createdAt: Int64(now)))
    }
    let fresh = old == nil || old!.target != new.target
    let revision = new.revision.map { "template revision \($0)" } ?? "the template"
    if fresh { add(.start, ["message": .string("\(revision) to \(new.total) machine(s)")]) }
    if new.wave >= 0 && (fresh || old!.wave != new.wave) {
      add(
        .wave,
        [
          "wave": .int(Int64(new.wave)), "size": .int(Int64(new.waveMembers.count)), "canary": .bool(new.wave == 0),
          "message": .string(
            "\(new.wave == 0 ? "canary" : "wave \(new.wave)"): \(new.waveMembers.count) machine(s); \(new.through) of \(new.total) through so far"
          ),
        ])
    }
    let before = fresh ? RolloutState.Status.running : old!.status
    if new.status != before {
      switch new.status {
      case .running: add(.resume)
      case .waiting: add(.waiting)
      case .paused: add(.pause)
      case .halted: add(.halt)
      case .aborted: add(.abort)
      case .done:
        add(
          .finish,
          [
            "duration_s": .int(Int64(now - new.startedAt)),
            "message": .string(
              "\(revision): \(new.through) of \(new.total) through, \(new.failed.count) failed, in \(Int(now - new.startedAt)) s"
            ),
          ])
      }
    }
    return events
  }

  static func halted(_ state: RolloutState) -> DriftFinding {
    DriftFinding(
      kind: .rolloutHalted,
      message:
        "rollout of template revision \(state.revision.map(String.init) ?? "?") halted: \(state.message ?? "too many failures"); \(state.through) of \(state.total) updated, \(state.remaining) left untouched (`fleetkeeper rollout resume` or `rollout undo`)"
    )
  }
}
