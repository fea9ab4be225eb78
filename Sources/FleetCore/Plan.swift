/// What a list showed of a machine: its state and version, enough to see an update through when
/// the machine has no health checks to read.
public struct ListedMachine: Sendable, Hashable {
  public var state: MachineState
  public var versionHash: UInt64
  public init(state: MachineState, versionHash: UInt64) {
    self.state = state
    self.versionHash = versionHash
  }
}

/// One call the executor makes to Fly, for one user, and why.
public struct Action: Sendable, Hashable {
  /// The call and exactly what it needs: a stop names its machine, a create its region and spec.
  public enum Call: Sendable, Hashable {
    case createVolume(region: String, spec: MachineTemplate, guard: CreateGuard)
    case createMachine(region: String, volumeID: String, spec: MachineTemplate, guard: CreateGuard)
    case start(machineID: String)
    /// `forRemoval`: on the way to a destroy (the user is absent, or a duplicate): guarded and
    /// capped like a destroy, since a mass stop is an outage even though it loses no data.
    case stop(machineID: String, forRemoval: Bool)
    case destroyMachine(machineID: String, volumeID: String?)
    case deleteVolume(volumeID: String)
    /// A read by id (GET) of a machine or volume the controller made or adopted that the list no
    /// longer shows: absence from a list is never proof that something is gone.
    case verifyMachine(machineID: String)
    case verifyVolume(volumeID: String)
    /// Give the machine the user's desired config (Fly's update: the full config, with the
    /// machine's `current_version` as a guard). The executor reads the machine first and sends
    /// nothing when it already runs that config. `target`: the digests the update carries out;
    /// `skipLaunch`: the machine is stopped and stays so.
    case updateMachine(
      machineID: String, volumeID: String?, spec: MachineTemplate, skipLaunch: Bool, listedVolumeGB: Int? = nil)
    /// A read of a machine an update was sent to: is it on the new version, and healthy? `listed`:
    /// what the list shows, when that is enough to tell (no health checks to read): no request.
    case checkUpdate(machineID: String, listed: ListedMachine?)
    /// One app per user: make the user's app (`POST /v1/apps` with an idempotency key from the user
    /// id, so a lost answer never makes two).
    case createApp(app: String, org: String)
    /// Give the user's app its public addresses (a shared IPv4 and an IPv6), those it lacks.
    case assignIPs(app: String)
    /// Delete the user's app, once nothing of the user is left in it (read first: an app holding
    /// a machine or a volume is never deleted).
    case deleteApp(app: String)
    /// One app per user: tag the machine the old provisioning code made in the user's app with
    /// `fleet_user_id` (the metadata endpoint: no new version, no restart), after reading it.
    case adoptMachine(machineID: String, volumeID: String, region: String)
    /// A restore's first step: a new volume from the snapshot (at least the snapshot's size), after
    /// a snapshot of the volume it replaces. `replacing`: the user's volume until the restore is
    /// done (never taken for the new one by a look-up).
    case restoreVolume(
      region: String, snapshotID: String, sizeGB: Int, spec: MachineTemplate, replacing: String?,
      existing: [String], guard: CreateGuard)
    /// A restore's last step, no call to Fly: the new machine runs on the new volume and the old
    /// machine is gone; the old volume is kept for the retention, the request closed.
    case finishRestore(
      requestID: Int64, outcome: RestoreOutcome, newVolumeID: String?, retiredVolumeID: String?, detail: String)
    /// Grow a full volume (the volume policy's auto-extend), a snapshot first. The executor reads
    /// the volume first and grows it only if it is still smaller than `toGB`.
    case extendVolume(volumeID: String, machineID: String?, toGB: Int)
    /// Read a machine's recent events (its `updated_at` moved): exits, exit codes, OOM kills.
    case readEvents(machineID: String, updatedAt: Double)
  }

  /// How a restore ended.
  public enum RestoreOutcome: String, Sendable, Hashable, Codable {
    case done, failed, cancelled
  }

  /// How a create avoids making its resource twice (see ``UserLifecycle``).
  public struct CreateGuard: Sendable, Hashable {
    /// An earlier create's answer was lost: look the resource up before creating.
    public var lookUpFirst: Bool
    /// The id Fly answered an earlier create with: read by GET (no replica lag) before creating again.
    public var knownResourceID: String?
    public init(lookUpFirst: Bool = false, knownResourceID: String? = nil) {
      self.lookUpFirst = lookUpFirst
      self.knownResourceID = knownResourceID
    }
  }

  /// The call's name: event types, metrics, budgets, ordering.
  public enum Kind: String, Sendable, Hashable, CaseIterable {
    case createVolume = "create_volume"
    case createMachine = "create_machine"
    case start
    case stop
    case destroyMachine = "destroy_machine"
    case deleteVolume = "delete_volume"
    case verifyMachine = "verify_machine"
    case verifyVolume = "verify_volume"
    case updateMachine = "update_machine"
    case checkUpdate = "check_update"
    /// Not a call of its own: an update that grew the user's volume first records it so.
    case extendVolume = "extend_volume"
    case createApp = "create_app"
    case assignIPs = "assign_ips"
    case deleteApp = "delete_app"
    case adoptMachine = "adopt_app"
    /// Not a call of its own: a snapshot taken before a step that destroys data (a volume's
    /// delete, an extend, a restore), or asked for by an operator (`users snapshot`).
    case snapshotVolume = "snapshot_volume"
    case restoreVolume = "restore_volume"
    case readEvents = "read_events"
    case finishRestore = "restore_done"

    /// Destroy and delete lose something; they are capped and guarded.
    public var isDestructive: Bool { self == .destroyMachine || self == .deleteVolume || self == .deleteApp }
    public var isCreate: Bool { self == .createVolume || self == .createMachine || self == .restoreVolume }
    /// Reads: change nothing on Fly.
    public var isRead: Bool {
      self == .verifyMachine || self == .verifyVolume || self == .checkUpdate || self == .readEvents
    }
  }

  public var userID: String
  public var call: Call
  /// Why, for plan output and events.
  public var reason: String
  /// A machine create's or update's config digests (``AppliedConfig``, version 0): what the
  /// machine runs once the call is done.
  public var target: AppliedConfig

  public init(userID: String, call: Call, reason: String, target: AppliedConfig = .unknown) {
    self.userID = userID
    self.call = call
    self.reason = reason
    self.target = target
  }

  public var kind: Kind {
    switch call {
    case .createVolume: .createVolume
    case .createMachine: .createMachine
    case .start: .start
    case .stop: .stop
    case .destroyMachine: .destroyMachine
    case .deleteVolume: .deleteVolume
    case .verifyMachine: .verifyMachine
    case .verifyVolume: .verifyVolume
    case .updateMachine: .updateMachine
    case .checkUpdate: .checkUpdate
    case .createApp: .createApp
    case .assignIPs: .assignIPs
    case .deleteApp: .deleteApp
    case .adoptMachine: .adoptMachine
    case .restoreVolume: .restoreVolume
    case .finishRestore: .finishRestore
    case .extendVolume: .extendVolume
    case .readEvents: .readEvents
    }
  }

  /// The app the call is about, when it is an app's call.
  public var appName: String? {
    switch call {
    case .createApp(let app, _), .assignIPs(let app), .deleteApp(let app): app
    default: nil
    }
  }

  /// The machine the call is about, if any.
  public var machineID: String? {
    switch call {
    case .start(let id), .stop(let id, _), .destroyMachine(let id, _), .verifyMachine(let id),
      .updateMachine(let id, _, _, _, _), .checkUpdate(let id, _), .adoptMachine(let id, _, _), .readEvents(let id, _):
      id
    case .extendVolume(_, let id, _): id
    default: nil
    }
  }

  /// The volume the call is about (a machine's create: the volume it mounts), if any.
  public var volumeID: String? {
    switch call {
    case .createMachine(_, let id, _, _), .deleteVolume(let id), .verifyVolume(let id): id
    case .destroyMachine(_, let id), .updateMachine(_, let id, _, _, _): id
    case .adoptMachine(_, let id, _): id
    case .restoreVolume(_, _, _, _, let replacing, _, _): replacing
    case .finishRestore(_, _, let id, _, _): id
    case .extendVolume(let id, _, _): id
    default: nil
    }
  }

  /// Where a create makes its resource.
  public var region: String? {
    switch call {
    case .createVolume(let region, _, _), .createMachine(let region, _, _, _): region
    case .restoreVolume(let region, _, _, _, _, _, _): region
    default: nil
    }
  }

  /// A create's resolved spec (template with overrides).
  public var spec: MachineTemplate? {
    switch call {
    case .createVolume(_, let spec, _), .createMachine(_, _, let spec, _), .updateMachine(_, _, let spec, _, _): spec
    case .restoreVolume(_, _, _, let spec, _, _, _): spec
    default: nil
    }
  }

  /// A create's guard against making twice.
  public var createGuard: CreateGuard? {
    switch call {
    case .createVolume(_, _, let g), .createMachine(_, _, _, let g): g
    case .restoreVolume(_, _, _, _, _, _, let g): g
    default: nil
    }
  }

  public var lookUpFirst: Bool { createGuard?.lookUpFirst ?? false }
  public var knownResourceID: String? { createGuard?.knownResourceID }

  /// A stop on the way to a destroy.
  public var forRemoval: Bool {
    if case .stop(_, true) = call { return true }
    return false
  }

  /// Guarded and capped: destroys, volume deletes, and stops on the way to a destroy.
  public var isDestructive: Bool { kind.isDestructive || forRemoval }
}

/// Something that differs from what should be, for operators and alerts.
public struct DriftFinding: Sendable, Hashable, Codable {
  public enum Kind: String, Sendable, Hashable, CaseIterable, Codable {
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
    /// Fly's org-wide list named regions it could not read (`error_regions`): creates and destroys
    /// of users there are held this pass.
    case regionsUnreadable = "regions_unreadable"
    case invalidDesiredRow = "invalid_desired_row"
    /// One app per user: the user's app name is held by someone else (another organization):
    /// never adopted; nothing is made for the user until an operator sorts it out.
    case appNameTaken = "app_name_taken"
    /// One app per user: an app made before fleetkeeper that cannot be adopted as it is (two
    /// machines, a volume without a machine, no user its name stands for): left alone.
    case adoptionAmbiguous = "adoption_ambiguous"
    /// Fly's list leaves out a machine or volume that a read by id shows: nothing replaces it.
    case listOmits = "list_omits"
    /// A record of this user (an event, its `machines` row, its states) could not be written.
    case recordFailed = "record_failed"
    /// This process lost the writer lease mid-pass (another may be acting): nothing more done.
    case leaseLost = "lease_lost"
    /// The controller's clock disagrees with Fly's (its `Date` header) by more than the bound:
    /// retention deletes are held, since they would count from a wrong now.
    case clockSkew = "clock_skew"
    /// The machine runs a config the controller did not make (a human's `fly machine update`):
    /// put back to the desired one.
    case configDrift = "config_drift"
    /// Fly accepted an update, then silently went back to the old version.
    case updateReverted = "update_reverted"
    /// An update's new version did not come up healthy in time.
    case updateUnhealthy = "update_unhealthy"
    /// A rollout halted: too many of its machines failed.
    case rolloutHalted = "rollout_halted"
    /// The user's volume is fuller than the volume policy's threshold (`bytes_used`).
    case diskFull = "disk_full"
    /// The machine's process keeps exiting (Fly restarts it, so it is listed `started`).
    case crashLooping = "crash_looping"
    /// The machine's process was killed for running out of memory.
    case outOfMemory = "out_of_memory"
    /// A restore has been under way far longer than its steps take.
    case restoreStuck = "restore_stuck"
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
  /// At most this many machines whose config was never recorded (made before fleetkeeper kept
  /// configs, or adopted) are read and compared per pass; the rest wait their turn.
  public var maxConfigChecksPerPass: Int = 100
  /// How long an update's new version may take to show started (or stopped) and healthy.
  public var updateDeadline: Double = 180
  /// How soon after an update the machine is first read to see it through (the list must show it
  /// settled on the new version, or back on the old one, as well).
  public var updateSettle: Double = 1
  /// At most this many updates of one kind in flight at once outside a rollout (users' own
  /// changes, drift repairs, first config checks).
  public var maxUpdatesInFlight: Int = 50
  /// At most this many machines' events are read per pass (machines whose `updated_at` moved).
  public var maxEventReadsPerPass: Int = 20
  /// This many unrequested exits within the crash window make a machine `crash_looping`.
  public var crashLoopExits: Int = 3
  /// A restore's new machine must have been `started` this long before the old one goes.
  public var restoreSettle: Double = 10
  /// A restore under way this long is `restore_stuck`.
  public var restoreStuckAfter: Double = 1800
  /// After an automatic extend, the next waits this long (the guest may need a restart to see it).
  public var extendCooldown: Double = 600
  public init() {}
}

/// What a pass should do, and what it sees wrong.
public struct Plan: Sendable, Hashable {
  public var actions: [Action]
  public var findings: [DriftFinding]
  /// Users with something under way (a create settling, a transitional state): the loop comes
  /// back soon rather than after the full interval.
  public var waiting: [String]
  /// The users' states after this plan (pending creates cleared when their resource shows up,
  /// retention clocks started or stopped, transitional clocks).
  public var states: UserMap<UserState>
  /// The guard states after this plan.
  public var guardState: GuardState
  /// The users whose states this plan set, changed or removed (what must be written).
  public var changedStates: [String]
  /// What a pause holds back: the actions paused users (or a paused fleet) would have had. Shown,
  /// never taken; not an alert (a pause is the operator's choice).
  public var held: [Action] = []
  /// Users paused, one by one or by a fleet-wide pause.
  public var pausedUsers = 0
  /// The rollout of the template after this plan (nil: none ever).
  public var rollout: RolloutState?
  /// Reads of machines' events (their `updated_at` moved): observation, not change; not held by
  /// a pause, never a pending change.
  public var eventReads: [Action] = []

  public var isEmpty: Bool { actions.isEmpty }

  /// Changes are pending (`plan` exits 2): actions to take, users waiting (a create settling, a
  /// backoff running), or creates and destroys a guard holds back.
  public var hasPendingChanges: Bool {
    let held: Set<DriftFinding.Kind> = [.destroyGuardTripped, .destroyCapReached, .listSuspect, .regionsUnreadable]
    return !actions.isEmpty || !waiting.isEmpty || findings.contains { held.contains($0.kind) }
  }

  public init(
    actions: [Action], findings: [DriftFinding], waiting: [String], states: UserMap<UserState>,
    guardState: GuardState, changedStates: [String] = []
  ) {
    self.actions = actions
    self.findings = findings
    self.waiting = waiting
    self.states = states
    self.guardState = guardState
    self.changedStates = changedStates
  }
}
