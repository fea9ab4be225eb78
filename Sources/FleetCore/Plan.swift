/// One call the executor makes to Fly.
public struct Action: Sendable, Hashable {
  public enum Kind: String, Sendable, Hashable, CaseIterable {
    case createVolume = "create_volume"
    case createMachine = "create_machine"
    case start
    case stop
    case destroyMachine = "destroy_machine"
    case deleteVolume = "delete_volume"
    /// A read by id (GET) of a machine or volume the controller made or adopted that the list no
    /// longer shows: absence from a list is never proof that something is gone.
    case verifyMachine = "verify_machine"
    case verifyVolume = "verify_volume"

    /// Destroy and delete lose something; they are capped and guarded.
    public var isDestructive: Bool { self == .destroyMachine || self == .deleteVolume }
    public var isCreate: Bool { self == .createVolume || self == .createMachine }
    /// Reads: change nothing on Fly.
    public var isRead: Bool { self == .verifyMachine || self == .verifyVolume }
  }

  public var kind: Kind
  public var userID: String
  public var machineID: String?
  public var volumeID: String?
  public var region: String?
  /// For creates: the resolved machine spec (template with overrides).
  public var spec: MachineTemplate?
  /// For creates after an outcome-unknown failure: look the resource up before creating.
  public var lookUpFirst: Bool
  /// The id Fly answered an earlier create of this kind with: looked up by GET (no replica lag)
  /// before creating again.
  public var knownResourceID: String?
  /// Why, for plan output and events.
  public var reason: String
  /// A stop on the way to a destroy (the user is absent): guarded and capped like a destroy, since
  /// a mass stop is an outage even though it loses no data.
  public var forRemoval: Bool

  /// Guarded and capped: destroys, volume deletes, and stops on the way to a destroy.
  public var isDestructive: Bool { kind.isDestructive || forRemoval }

  public init(
    kind: Kind, userID: String, machineID: String? = nil, volumeID: String? = nil, region: String? = nil,
    spec: MachineTemplate? = nil, lookUpFirst: Bool = false, knownResourceID: String? = nil, reason: String,
    forRemoval: Bool = false
  ) {
    self.knownResourceID = knownResourceID
    self.forRemoval = forRemoval
    self.kind = kind
    self.userID = userID
    self.machineID = machineID
    self.volumeID = volumeID
    self.region = region
    self.spec = spec
    self.lookUpFirst = lookUpFirst
    self.reason = reason
  }
}

/// Something that differs from what should be, for operators and alerts.
public struct DriftFinding: Sendable, Hashable {
  public enum Kind: String, Sendable, Hashable, CaseIterable {
    case machineMissing = "machine_missing"
    case volumeMissing = "volume_missing"
    case stoppedWhileDesiredRunning = "stopped_while_desired_running"
    case machineFailed = "machine_failed"
    case stuck
    case orphanMachine = "orphan_machine"
    case foreignMachine = "foreign_machine"
    case duplicateMachine = "duplicate_machine"
    case duplicateVolume = "duplicate_volume"
    case regionMismatch = "region_mismatch"
    case actionFailing = "action_failing"
    case destroyGuardTripped = "destroy_guard_tripped"
    case destroyCapReached = "destroy_cap_reached"
    case listSuspect = "list_suspect"
    case invalidDesiredRow = "invalid_desired_row"
    /// Fly's list leaves out a machine or volume that a read by id shows: nothing replaces it.
    case listOmits = "list_omits"
    /// A record of this user (an event, its `machines` row, its memory) could not be written.
    case recordFailed = "record_failed"
    /// This process lost the writer lease mid-pass (another may be acting): nothing more done.
    case leaseLost = "lease_lost"
    /// The controller's clock disagrees with Fly's (its `Date` header) by more than the bound:
    /// retention deletes are held, since they would count from a wrong now.
    case clockSkew = "clock_skew"
    case desiredUnreadable = "desired_unreadable"
    case flyUnreachable = "fly_unreachable"
  }
  public var kind: Kind
  public var userID: String?
  /// The machine or volume concerned.
  public var resourceID: String?
  public var message: String

  public init(kind: Kind, userID: String? = nil, resourceID: String? = nil, message: String) {
    self.kind = kind
    self.userID = userID
    self.resourceID = resourceID
    self.message = message
  }

  /// Stable identity of the finding across passes: kind + user + resource.
  public var fingerprint: String { "\(kind.rawValue)|\(userID ?? "")|\(resourceID ?? "")" }
}

/// The planner's knobs.
public struct PlannerSettings: Sendable, Hashable {
  /// How long a volume outlives its absent user's machine; nil keeps it forever.
  public var volumeRetention: Double? = 7 * 86_400
  /// A transitional state longer than this is reported stuck.
  public var stuckAfter: Double = 300
  /// How long a create's resource may be missing from lists (replica lag) before it is sought again.
  public var pendingGrace: Double = 20
  /// How long a machine may sit in `created` (image pull) before fleetkeeper starts it.
  public var createdGrace: Double = 20
  /// At most this many destroys and volume deletes per pass.
  public var maxDestroysPerPass: Int = 10
  /// Operator override of the mass-destroy guard.
  public var allowMassDestroy: Bool = false
  /// Failures of one user's actions before `action_failing` is reported.
  public var retryBudget: Int = 5
  /// At most this many reads by id (of resources a list left out) per pass; the rest wait.
  public var maxVerifiesPerPass: Int = 10
  /// The longest backoff a remembered deadline may hold: one from the future (the clock stepped
  /// back, or a hostile row) is brought back to this.
  public var maxBackoff: Double = 600
  /// A volume's retention counts only once this process has watched for this long (or the whole
  /// retention, if shorter): a wall clock step across a restart never deletes at once.
  public var retentionFloor: Double = 3600
  public init() {}
}

/// What a pass should do, and what it sees wrong.
public struct Plan: Sendable, Hashable {
  public var actions: [Action]
  public var findings: [DriftFinding]
  /// Users with something under way (a create settling, a transitional state): the loop comes
  /// back soon rather than after the full interval.
  public var waiting: [String]
  /// The users' memory after this plan (pending creates cleared when their resource shows up,
  /// retention clocks started or stopped, transitional clocks).
  public var memory: [String: UserMemory]
  /// The guard memory after this plan.
  public var guardMemory: GuardMemory
  /// The users whose memory this plan set, changed or removed (what must be written).
  public var changedMemory: [String]

  public var isEmpty: Bool { actions.isEmpty }

  public init(
    actions: [Action], findings: [DriftFinding], waiting: [String], memory: [String: UserMemory],
    guardMemory: GuardMemory, changedMemory: [String] = []
  ) {
    self.actions = actions
    self.findings = findings
    self.waiting = waiting
    self.memory = memory
    self.guardMemory = guardMemory
    self.changedMemory = changedMemory
  }
}
