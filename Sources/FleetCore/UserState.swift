/// A create fleetkeeper issued whose resource the lists do not show yet.
public struct PendingCreate: Sendable, Hashable, Codable {
  public enum Kind: String, Sendable, Hashable, Codable {
    case volume = "create_volume"
    case machine = "create_machine"
  }
  public var kind: Kind
  /// Unix seconds when the create was sent.
  public var since: Double
  /// The id Fly answered with, when it answered.
  public var resourceID: String?
  /// The answer was lost (5xx, 408, transport): the resource may exist. Look before creating again.
  public var outcomeUnknown: Bool

  public init(kind: Kind, since: Double, resourceID: String? = nil, outcomeUnknown: Bool = false) {
    self.kind = kind
    self.since = since
    self.resourceID = resourceID
    self.outcomeUnknown = outcomeUnknown
  }
}

/// An update the controller sent and has not yet seen through: the machine must show the new
/// version, started (or stopped, for a stopped machine) and healthy, before `since` + the deadline.
public struct UpdateWatch: Sendable, Hashable, Codable {
  /// Unix seconds when Fly accepted the update.
  public var since: Double
  /// ``ConfigDigest/version(_:)`` of the version before, and of the one the update made.
  public var from: UInt64
  public var to: UInt64
  /// The machine was running (it reboots on the new version); false: it stays stopped.
  public var launched: Bool
  /// The template digest the update carries (what a failure of it is a failure of).
  public var target: UInt64
  public init(since: Double, from: UInt64, to: UInt64, launched: Bool, target: UInt64 = 0) {
    self.since = since
    self.from = from
    self.to = to
    self.launched = launched
    self.target = target
  }

  enum CodingKeys: String, CodingKey { case since, from, to, launched, target }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    since = try c.decode(Double.self, forKey: .since)
    from = try c.decodeDigest(forKey: .from)
    to = try c.decodeDigest(forKey: .to)
    launched = try c.decode(Bool.self, forKey: .launched)
    target = try c.decodeDigest(forKey: .target)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(since, forKey: .since)
    try c.encodeDigest(from, forKey: .from)
    try c.encodeDigest(to, forKey: .to)
    try c.encode(launched, forKey: .launched)
    try c.encodeDigest(target, forKey: .target)
  }
}

/// Something wrong with what a machine runs, reported (a finding, an alert) until an update is seen
/// through.
public struct ConfigProblem: Sendable, Hashable, Codable {
  public enum Kind: String, Sendable, Hashable, Codable {
    /// The machine runs a version the controller did not make, and its config differs from the
    /// desired one (someone ran `fly machine update`).
    case drift
    /// Fly took an update, then went back to the old version (an image it could not pull).
    case reverted
    /// The new version did not come up healthy (failed, or not started by the deadline).
    case unhealthy
  }
  public var kind: Kind
  /// What differs or what happened, secrets masked.
  public var detail: String
  /// The template digest of the update that failed (0: not an update's failure): a rollout counts
  /// a machine failed only for its own target.
  public var target: UInt64
  public init(kind: Kind, detail: String, target: UInt64 = 0) {
    self.kind = kind
    self.detail = detail
    self.target = target
  }

  enum CodingKeys: String, CodingKey { case kind, detail, target }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    kind = try c.decode(Kind.self, forKey: .kind)
    detail = try c.decode(String.self, forKey: .detail)
    target = try c.decodeDigest(forKey: .target)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(kind, forKey: .kind)
    try c.encode(detail, forKey: .detail)
    try c.encodeDigest(target, forKey: .target)
  }
}

/// What the controller remembers about one user across passes and restarts.
///
/// Compact: a quiet user (the common case at 100k users) holds only its volume id; the rarely set
/// fields live in one shared, immutable box that a setter replaces, so the states map of a large
/// fleet fits a small VM (`LayoutTests` pins the size; the figures: docs/benchmarks.md).
public struct UserState: Sendable, Hashable, Codable {
  /// The volume fleetkeeper created or adopted for this user.
  public var volumeID: String?
  private var box: Box?
  /// The config the controller last gave the user's machine (``AppliedConfig``): every user has one,
  /// so it is kept inline (24 bytes), not in the box.
  public var applied = AppliedConfig.unknown

  /// The fields a quiet user does not have.
  struct Rare: Sendable, Hashable {
    var pending: PendingCreate?
    var failures = 0
    var backoffUntil: Double?
    var lastError: String?
    var volumeReleasedAt: Double?
    var transitionalSince: Double?
    var lostVolume: String?
    var reads: [ReadByID] = []
    var backoffSince: Double?
    var update: UpdateWatch?
    var configProblem: ConfigProblem?
    var updateFailures = 0
    var appSetup = AppSetup()
    var restore: RestoreProgress?
    var retired: [RetiredVolume] = []
    var health: MachineHealth?
    var closedRestore: ClosedRestore?
    var extendedAt: Double?
  }

  final class Box: Sendable {
    let rare: Rare
    init(_ rare: Rare) { self.rare = rare }
  }

  private var rare: Rare {
    get { box?.rare ?? Rare() }
    set { box = newValue == Rare() ? nil : Box(newValue) }
  }

  public var pending: PendingCreate? {
    get { rare.pending }
    set { rare.pending = newValue }
  }
  /// Consecutive failed attempts (reset on success).
  public var failures: Int {
    get { rare.failures }
    set { rare.failures = newValue }
  }
  /// Unix seconds before which no action is tried for this user.
  public var backoffUntil: Double? {
    get { rare.backoffUntil }
    set { rare.backoffUntil = newValue }
  }
  /// The last failure, redacted.
  public var lastError: String? {
    get { rare.lastError }
    set { rare.lastError = newValue }
  }
  /// Unix seconds since the user's volume has been without a machine while the user is absent.
  public var volumeReleasedAt: Double? {
    get { rare.volumeReleasedAt }
    set { rare.volumeReleasedAt = newValue }
  }
  /// Unix seconds since the machine has been in a transitional state.
  public var transitionalSince: Double? {
    get { rare.transitionalSince }
    set { rare.transitionalSince = newValue }
  }

  /// Unix seconds when the current backoff was set: an edit of the user's desired row after it
  /// ends the backoff (the operator fixed something; waiting out the old failure helps no one).
  public var backoffSince: Double? {
    get { rare.backoffSince }
    set { rare.backoffSince = newValue }
  }

  /// The user's volume that a read by id found gone (reported until the user has a volume again).
  public var lostVolume: String? {
    get { rare.lostVolume }
    set { rare.lostVolume = newValue }
  }

  /// What the last read by id said of each of this user's machine and volume that Fly's lists leave
  /// out (at most one entry per id): `found` — the list lies (`list_omits`); not found — a first 404,
  /// believed only when a second read, a while later, says so again.
  public var reads: [ReadByID] {
    get { rare.reads }
    set { rare.reads = newValue }
  }

  /// An update sent and not yet seen through.
  public var update: UpdateWatch? {
    get { rare.update }
    set { rare.update = newValue }
  }

  /// What is wrong with what the machine runs (reported until an update is seen through).
  public var configProblem: ConfigProblem? {
    get { rare.configProblem }
    set { rare.configProblem = newValue }
  }

  /// Consecutive updates that did not come through (reverted, failed, not healthy in time).
  public var updateFailures: Int {
    get { rare.updateFailures }
    set { rare.updateFailures = newValue }
  }

  /// One app per user: how far the user's app is set up (kept only until the machine shows).
  public var appSetup: AppSetup {
    get { rare.appSetup }
    set { rare.appSetup = newValue }
  }

  /// A restore under way (``RestoreProgress``).
  public var restore: RestoreProgress? {
    get { rare.restore }
    set { rare.restore = newValue }
  }

  /// Volumes a restore replaced: kept for the retention, then deleted (a snapshot first).
  public var retired: [RetiredVolume] {
    get { rare.retired }
    set { rare.retired = newValue }
  }

  /// What the machine's recent events said (kept once its `updated_at` moved while watched).
  public var health: MachineHealth? {
    get { rare.health }
    set { rare.health = newValue }
  }

  /// The last restore this controller closed (a row that still asks for it is closed again,
  /// never carried out twice).
  public var closedRestore: ClosedRestore? {
    get { rare.closedRestore }
    set { rare.closedRestore = newValue }
  }

  /// When auto-extend last grew the user's volume (the next step waits a while: the guest may
  /// need a restart, or the list a moment, to see the new size).
  public var extendedAt: Double? {
    get { rare.extendedAt }
    set { rare.extendedAt = newValue }
  }

  /// Records what a read by id said of `id`, replacing what an earlier read said of it.
  public mutating func noteRead(_ id: String, found: Bool) {
    reads = reads.filter { $0.id != id } + [ReadByID(id: id, found: found)]
  }

  /// Brings remembered times back from the future: a deadline or start beyond `now` (the wall
  /// clock stepped back, or a row written by hand) would hold a user for as long as the step.
  public mutating func clampDeadlines(now: Double, maxBackoff: Double) {
    guard box != nil else { return }
    if let until = backoffUntil, !(until <= now + maxBackoff) { backoffUntil = now + maxBackoff }
    if let pending, !(pending.since <= now) { self.pending?.since = now }
    if let released = volumeReleasedAt, !(released <= now) { volumeReleasedAt = now }
    if let since = transitionalSince, !(since <= now) { transitionalSince = now }
    if let since = backoffSince, !(since <= now) { backoffSince = now }
    if let since = update?.since, !(since <= now) { update?.since = now }
    if let since = restore?.since, !(since <= now) { restore?.since = now }
    if let at = extendedAt, !(at <= now) { extendedAt = now }
    for index in retired.indices where !(retired[index].since <= now) { retired[index].since = now }
  }

  public init() {}
  public var isEmpty: Bool { volumeID == nil && box == nil && applied.isUnknown }

  /// Nothing waits on a clock: no pending create, backoff, retention, transitional state, failure
  /// streak or read by id. A fleet of quiet users with unchanged inputs plans the same nothing.
  public func isQuiet(now: Double) -> Bool {
    guard box != nil else { return true }
    return pending == nil && (backoffUntil ?? 0) <= now && volumeReleasedAt == nil && transitionalSince == nil
      && failures == 0 && reads.isEmpty && update == nil && configProblem == nil && restore == nil && retired.isEmpty
      && (health?.exits.isEmpty ?? true)
  }

  public static func == (a: UserState, b: UserState) -> Bool {
    a.volumeID == b.volumeID && a.applied == b.applied && (a.box === b.box || a.rare == b.rare)
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(volumeID)
    hasher.combine(applied)
    hasher.combine(rare)
  }

  // The stored JSON keeps the flat shape of earlier versions.
  enum CodingKeys: String, CodingKey {
    case pending, failures, backoffUntil, lastError, volumeID, volumeReleasedAt, transitionalSince, lostVolume, reads
    case backoffSince, applied, update, configProblem, updateFailures, appSetup, restore, retired, health
    case closedRestore, extendedAt
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    volumeID = try container.decodeIfPresent(String.self, forKey: .volumeID)
    var rare = Rare()
    rare.pending = try container.decodeIfPresent(PendingCreate.self, forKey: .pending)
    rare.failures = try container.decodeIfPresent(Int.self, forKey: .failures) ?? 0
    rare.backoffUntil = try container.decodeIfPresent(Double.self, forKey: .backoffUntil)
    rare.lastError = try container.decodeIfPresent(String.self, forKey: .lastError)
    rare.volumeReleasedAt = try container.decodeIfPresent(Double.self, forKey: .volumeReleasedAt)
    rare.transitionalSince = try container.decodeIfPresent(Double.self, forKey: .transitionalSince)
    rare.lostVolume = try container.decodeIfPresent(String.self, forKey: .lostVolume)
    rare.reads = try container.decodeIfPresent([ReadByID].self, forKey: .reads) ?? []
    rare.backoffSince = try container.decodeIfPresent(Double.self, forKey: .backoffSince)
    rare.update = try container.decodeIfPresent(UpdateWatch.self, forKey: .update)
    rare.configProblem = try container.decodeIfPresent(ConfigProblem.self, forKey: .configProblem)
    rare.updateFailures = try container.decodeIfPresent(Int.self, forKey: .updateFailures) ?? 0
    rare.appSetup = AppSetup(rawValue: try container.decodeIfPresent(UInt8.self, forKey: .appSetup) ?? 0)
    rare.restore = try container.decodeIfPresent(RestoreProgress.self, forKey: .restore)
    rare.retired = try container.decodeIfPresent([RetiredVolume].self, forKey: .retired) ?? []
    rare.health = try container.decodeIfPresent(MachineHealth.self, forKey: .health)
    rare.closedRestore = try container.decodeIfPresent(ClosedRestore.self, forKey: .closedRestore)
    rare.extendedAt = try container.decodeIfPresent(Double.self, forKey: .extendedAt)
    applied = try container.decodeIfPresent(AppliedConfig.self, forKey: .applied) ?? .unknown
    self.rare = rare
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encodeIfPresent(volumeID, forKey: .volumeID)
    let rare = self.rare
    try container.encodeIfPresent(rare.pending, forKey: .pending)
    try container.encode(rare.failures, forKey: .failures)
    try container.encodeIfPresent(rare.backoffUntil, forKey: .backoffUntil)
    try container.encodeIfPresent(rare.lastError, forKey: .lastError)
    try container.encodeIfPresent(rare.volumeReleasedAt, forKey: .volumeReleasedAt)
    try container.encodeIfPresent(rare.transitionalSince, forKey: .transitionalSince)
    try container.encodeIfPresent(rare.lostVolume, forKey: .lostVolume)
    if !rare.reads.isEmpty { try container.encode(rare.reads, forKey: .reads) }
    try container.encodeIfPresent(rare.backoffSince, forKey: .backoffSince)
    if !applied.isUnknown { try container.encode(applied, forKey: .applied) }
    try container.encodeIfPresent(rare.update, forKey: .update)
    try container.encodeIfPresent(rare.configProblem, forKey: .configProblem)
    if rare.updateFailures > 0 { try container.encode(rare.updateFailures, forKey: .updateFailures) }
    if !rare.appSetup.isEmpty { try container.encode(rare.appSetup.rawValue, forKey: .appSetup) }
    try container.encodeIfPresent(rare.restore, forKey: .restore)
    if !rare.retired.isEmpty { try container.encode(rare.retired, forKey: .retired) }
    try container.encodeIfPresent(rare.health, forKey: .health)
    try container.encodeIfPresent(rare.closedRestore, forKey: .closedRestore)
    try container.encodeIfPresent(rare.extendedAt, forKey: .extendedAt)
  }
}

/// A restore request this controller closed, and how.
public struct ClosedRestore: Sendable, Hashable, Codable {
  public var id: Int64
  public var outcome: Action.RestoreOutcome
  public var detail: String
  public init(id: Int64, outcome: Action.RestoreOutcome, detail: String) {
    self.id = id
    self.outcome = outcome
    self.detail = detail
  }
}

/// An exit of a machine's process that nobody asked for (a crash, an OOM kill).
public struct MachineExit: Sendable, Hashable, Codable {
  /// Unix seconds.
  public var at: Double
  public var exitCode: Int?
  public var oomKilled: Bool
  public init(at: Double, exitCode: Int?, oomKilled: Bool) {
    self.at = at
    self.exitCode = exitCode
    self.oomKilled = oomKilled
  }
}

/// What a machine's recent events said: read only when its `updated_at` moved (a restart moves
/// it), never every machine every pass.
public struct MachineHealth: Sendable, Hashable, Codable {
  public var machineID: String
  /// The listed `updated_at` the events were last read for.
  public var seenUpdatedAt: Double
  /// Unrequested exits within the crash window, oldest first.
  public var exits: [MachineExit]
  public init(machineID: String, seenUpdatedAt: Double, exits: [MachineExit] = []) {
    self.machineID = machineID
    self.seenUpdatedAt = seenUpdatedAt
    self.exits = exits
  }
}

/// A restore under way: what the user had when it began, and what it has made so far. The rest
/// (is the new machine started, is the old one gone) is read off Fly each pass.
public struct RestoreProgress: Sendable, Hashable, Codable {
  /// The `restores` row.
  public var requestID: Int64
  public var snapshotID: String
  /// The machine and volume the restore replaces.
  public var oldMachineID: String?
  public var oldVolumeID: String?
  /// Every volume of the user listed when it began: never taken for the restored one.
  public var existingVolumes: [String]
  /// The volume made from the snapshot, once Fly answered (or a look-up found it).
  public var newVolumeID: String?
  /// When the loop began it.
  public var since: Double
  public init(
    requestID: Int64, snapshotID: String, oldMachineID: String?, oldVolumeID: String?, existingVolumes: [String] = [],
    newVolumeID: String? = nil, since: Double
  ) {
    self.existingVolumes = existingVolumes
    self.requestID = requestID
    self.snapshotID = snapshotID
    self.oldMachineID = oldMachineID
    self.oldVolumeID = oldVolumeID
    self.newVolumeID = newVolumeID
    self.since = since
  }
}

/// A volume a restore replaced, kept for the retention from `since`.
public struct RetiredVolume: Sendable, Hashable, Codable {
  public var id: String
  public var since: Double
  public init(id: String, since: Double) {
    self.id = id
    self.since = since
  }
}

/// One app per user: what has been done to set up (or take down) the user's app.
public struct AppSetup: OptionSet, Sendable, Hashable {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  /// Fly answered the create (or the app was found to be ours).
  public static let created = AppSetup(rawValue: 1)
  /// The app has its shared IPv4 and its IPv6.
  public static let addressed = AppSetup(rawValue: 2)
  /// The name is someone else's: nothing is made until the desired row is edited.
  public static let nameTaken = AppSetup(rawValue: 4)
  /// The user is gone and the app is to be deleted once empty (kept so that the user is not
  /// forgotten while the app remains).
  public static let retiring = AppSetup(rawValue: 8)
}

/// What one read by id said of a machine or volume the lists leave out.
public struct ReadByID: Sendable, Hashable, Codable {
  public var id: String
  /// The read found it (else: 404).
  public var found: Bool
  public init(id: String, found: Bool) {
    self.id = id
    self.found = found
  }
}

/// What the destroy and list guards remember (persisted, so a restart does not forget a trip).
public struct GuardState: Sendable, Hashable, Codable {
  /// Users desired running or stopped at the last pass that was allowed to destroy.
  public var desiredBaseline: Int?
  /// Our machines and volumes the last trusted list showed.
  public var observedMachines: Int?
  public var observedVolumes: Int?
  /// Consecutive passes whose lists looked suspect with the same counts.
  public var suspectPasses: Int = 0
  public init() {}
}
