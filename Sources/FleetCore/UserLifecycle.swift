/// What one action's outcome does to its user: the state the controller keeps (pending create,
/// backoff, failures, volume id, reads by id), the dashboard's `machines` row, and the audit events.
///
/// Pure, like the planner: the runtime performs the call, says what Fly answered (``Outcome``),
/// and applies the ``Step`` this returns. No clock (``Context/now``), no randomness
/// (``Context/draw``), no I/O. "Never create twice" lives here: the intent before a create
/// (``intent(_:_:now:)``), the guard the planner puts on a create (``createGuard(_:_:)``), what a
/// look-up may adopt (``after(_:_:_:_:)`` with ``Outcome/lookedUpMachines(_:)``), and the rule that a
/// create whose answer was lost is never sent again blind.
public enum UserLifecycle {
  /// The knobs the lifecycle reads.
  public struct Policy: Sendable, Hashable {
    public var retry: RetryPolicy
    /// How long after a read by id it is read again.
    public var verifyInterval: Double
    /// How long an update's new version may take to come through, and how soon it is read again.
    public var updateDeadline: Double
    public var updateSettle: Double
    public init(
      retry: RetryPolicy = RetryPolicy(), verifyInterval: Double = 15, updateDeadline: Double = 180,
      updateSettle: Double = 1
    ) {
      self.retry = retry
      self.verifyInterval = verifyInterval
      self.updateDeadline = updateDeadline
      self.updateSettle = updateSettle
    }
  }

  /// When and how the outcome came.
  public struct Context: Sendable, Hashable {
    /// When the attempt started and when it answered (Unix seconds).
    public var started: Double
    public var now: Double
    /// The attempt within this pass (1 for the first call; 0 for what was not attempted).
    public var attempt: Int
    /// A uniform draw in 0..<1 for the backoff's jitter.
    public var draw: Double
    /// False while shutting down: a retryable error is not retried within the pass.
    public var mayRetry: Bool
    /// The user's `machines` row as the controller last wrote or read it.
    public var recorded: RecordedMachine?
    /// One app per user: reads went to the user's own app, so a volume found there by the id
    /// remembered is the user's whatever its name (an adopted one keeps the old fleet's name).
    public var ownApp = false

    public init(
      started: Double, now: Double, attempt: Int = 1, draw: Double = 0.5, mayRetry: Bool = true,
      recorded: RecordedMachine? = nil
    ) {
      self.started = started
      self.now = now
      self.attempt = attempt
      self.draw = draw
      self.mayRetry = mayRetry
      self.recorded = recorded
    }
  }

  /// A failed call in the core's terms: the runtime maps the client's error to it (redacted).
  public struct CallError: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
      /// 404.
      case notFound
      /// 412 or 409: "not in this state yet" (a start right after a create, a volume still bound).
      case notYet
      /// 429: the runtime has paused the budget for its Retry-After.
      case rateLimited
      case other
    }
    public var kind: Kind
    public var retryable: Bool
    /// The request may have been carried out (5xx, 408, transport): the answer is lost.
    public var outcomeUnknown: Bool
    /// A 404 that names the app, not the resource (a token for another app, an incident).
    public var aboutApp: Bool
    public var status: Int?
    public var requestID: String?
    /// The error's code, for `details.error_code`.
    public var code: String
    /// The error, redacted.
    public var message: String

    public init(
      kind: Kind, retryable: Bool = false, outcomeUnknown: Bool = false, aboutApp: Bool = false, status: Int? = nil,
      requestID: String? = nil, code: String, message: String
    ) {
      self.kind = kind
      self.retryable = retryable
      self.outcomeUnknown = outcomeUnknown
      self.aboutApp = aboutApp
      self.status = status
      self.requestID = requestID
      self.code = code
      self.message = message
    }
  }

  /// What a create made, as Fly answered it.
  public struct Made: Sendable, Hashable {
    public var id: String
    public var state: MachineState?
    public var privateIP: String?
    /// A machine's `version`, as the create answered it.
    public var version: String?
    /// The snapshot a destructive step stood on (taken first, or a fresh one reused).
    public var snapshot: Snapshot?
    public init(
      id: String, state: MachineState? = nil, privateIP: String? = nil, version: String? = nil,
      snapshot: Snapshot? = nil
    ) {
      self.id = id
      self.state = state
      self.privateIP = privateIP
      self.version = version
      self.snapshot = snapshot
    }
  }

  /// A snapshot taken (or a fresh one found) before a step that destroys data.
  public struct Snapshot: Sendable, Hashable {
    public var id: String
    public var volumeID: String
    /// Found fresh (taken moments before, by an earlier attempt or Fly's daily backup), not taken now.
    public var reused: Bool
    public init(id: String, volumeID: String, reused: Bool) {
      self.id = id
      self.volumeID = volumeID
      self.reused = reused
    }
  }

  /// The event that records a snapshot a destructive step stands on.
  static func snapshotEvent(_ snapshot: Snapshot, before action: Action, _ context: Context, step: String)
    -> AuditEvent
  {
    AuditEvent(
      type: .action(.snapshotVolume), userID: action.userID, machineID: action.machineID,
      volumeID: snapshot.volumeID,
      details: [
        "outcome": .string("ok"), "snapshot_id": .string(snapshot.id), "reused": .bool(snapshot.reused),
        "before": .string(step), "attempt": .int(Int64(context.attempt)),
        "message": .string(
          "snapshot \(snapshot.id) of volume \(snapshot.volumeID) \(snapshot.reused ? "(taken moments before) " : "")stands before \(step)"
        ),
      ], createdAt: Int64(context.now))
  }

  /// What an update did, as Fly answered it.
  public struct Updated: Sendable, Hashable {
    /// The version it replaced (sent as `current_version`) and the one it made.
    public var from: String?
    public var to: String?
    /// What changed, one line per field, secret values masked.
    public var diff: [String]
    /// The machine was running and reboots on the new version (false: it stays stopped).
    public var launched: Bool
    /// The volume grown first, in GB (Fly's `needs_restart`: the update's reboot is the restart).
    public var extended: (volumeID: String, from: Int, to: Int)?
    /// The snapshot taken before the volume was grown.
    public var snapshot: Snapshot?
    public init(
      from: String?, to: String?, diff: [String], launched: Bool,
      extended: (volumeID: String, from: Int, to: Int)? = nil, snapshot: Snapshot? = nil
    ) {
      self.from = from
      self.to = to
      self.diff = diff
      self.launched = launched
      self.extended = extended
      self.snapshot = snapshot
    }

    public static func == (a: Updated, b: Updated) -> Bool {
      a.from == b.from && a.to == b.to && a.diff == b.diff && a.launched == b.launched
        && a.extended?.volumeID == b.extended?.volumeID && a.extended?.from == b.extended?.from
        && a.extended?.to == b.extended?.to
    }

    public func hash(into hasher: inout Hasher) {
      hasher.combine(to)
      hasher.combine(diff)
    }
  }

  /// A machine as a read by id or a look-up answered.
  public struct FoundMachine: Sendable, Hashable {
    public var id: String
    public var state: MachineState
    /// Its `fleet_user_id` tag; nil without one (or without a config).
    public var owner: String?
    public var region: String?
    /// The volume of its first mount.
    public var volumeID: String?
    public var privateIP: String?
    /// Its `version`, and that version hashed (``ConfigDigest/version(_:)``; given alone when only
    /// a list was read).
    public var version: String?
    public var versionHash: UInt64
    /// Its checks: all passing (true), any not (false), none (nil).
    public var healthy: Bool?
    public init(
      id: String, state: MachineState, owner: String?, region: String? = nil, volumeID: String? = nil,
      privateIP: String? = nil, version: String? = nil, healthy: Bool? = nil, versionHash: UInt64? = nil
    ) {
      self.versionHash = versionHash ?? ConfigDigest.version(version)
      self.id = id
      self.state = state
      self.owner = owner
      self.region = region
      self.volumeID = volumeID
      self.privateIP = privateIP
      self.version = version
      self.healthy = healthy
    }
  }

  /// A volume as a read by id or a look-up answered.
  public struct FoundVolume: Sendable, Hashable {
    public var id: String
    public var name: String
    public var state: VolumeState
    public var region: String
    public init(id: String, name: String, state: VolumeState, region: String) {
      self.id = id
      self.name = name
      self.state = state
      self.region = region
    }
  }

  /// What happened when the runtime tried the action.
  public enum Outcome: Sendable, Hashable {
    /// Not tried: shutting down, or the writer lease lost.
    case abandoned
    /// Fly did it; a create answers what it made.
    case done(Made?)
    /// Fly refused, or the answer was lost.
    case failed(CallError)
    /// Not sent: the request could not be built (a secret the template names is missing).
    case refused(String)
    /// A read by id answered.
    case readMachine(FoundMachine)
    case readVolume(FoundVolume)
    case readFailed(CallError)
    /// A look-up before a create answered (by id, or by tag or name).
    case lookedUpMachines([FoundMachine])
    case lookedUpVolumes([FoundVolume])
    case lookUpFailed(CallError)
    /// An update found the machine already running the desired config (at this version): nothing sent.
    case configMatches(version: String?)
    /// An update was sent and accepted.
    case updated(Updated)
    /// A machine's events were read: its unrequested exits.
    case eventsRead([MachineExit])
  }

  /// What the `machines` row does.
  public enum RowChange: Sendable, Hashable {
    case upsert(MachineRow)
    case delete
    /// The row's machine is known destroyed (the planner replaces it; the row follows).
    case status(MachineState)
  }

  /// The result of one outcome.
  public struct Step: Sendable, Hashable {
    public var state: UserState
    /// Whether the state is written (not when the lease may be another's).
    public var saveState = true
    public var events: [AuditEvent] = []
    public var row: RowChange?
    public var outcome: ActionResult.Outcome
    /// The error, the id made, or why.
    public var message: String
    public var next: Next = .done
    /// Something the operator should see in the log (not an event).
    public var warning: String?
    /// A restore request that ended with this step: its `restores` row is closed in the same write.
    public var restoreClosed: RestoreClosed?

    public enum Next: Sendable, Hashable {
      /// The action is over for this pass.
      case done
      /// Try the call again within this pass after this many seconds.
      case retry(after: Double)
      /// A look-up found nothing: create.
      case create
    }
  }

  /// A restore request closed by a step.
  public struct RestoreClosed: Sendable, Hashable {
    public var requestID: Int64
    public var outcome: Action.RestoreOutcome
    public var detail: String
    public init(requestID: Int64, outcome: Action.RestoreOutcome, detail: String) {
      self.requestID = requestID
      self.outcome = outcome
      self.detail = detail
    }
  }

  // MARK: Never create twice

  /// The guard the planner puts on a create: look up first when an earlier create of this kind may
  /// have made the resource, by the id Fly answered when it answered.
  public static func createGuard(_ kind: PendingCreate.Kind, _ state: UserState) -> Action.CreateGuard {
    guard let pending = state.pending, pending.kind == kind else { return Action.CreateGuard() }
    return Action.CreateGuard(lookUpFirst: true, knownResourceID: pending.resourceID)
  }

  /// The state to put on disk before a create is sent: a crash after it leaves something to look
  /// up, not a blind create again. If it cannot be written, the create is not sent.
  public static func intent(_ action: Action, _ state: UserState, now: Double) -> UserState {
    var state = state
    state.pending = PendingCreate(
      kind: action.kind == .createVolume || action.kind == .restoreVolume ? .volume : .machine, since: now,
      outcomeUnknown: true)
    return state
  }

  /// What a look-up may adopt for a create: ours, this user's, in the create's region, on its volume.
  /// A server that ignores the filter (or a re-tagged machine) must not hand over someone else's.
  public static func adoptable(_ machine: FoundMachine, for action: Action) -> Bool {
    !machine.state.isGone && machine.owner == action.userID
      && (action.region == nil || machine.region == nil || machine.region == action.region)
      && (action.volumeID == nil || machine.volumeID == action.volumeID)
  }

  public static func adoptable(_ volume: FoundVolume, for action: Action) -> Bool {
    volume.name == FleetNames.volumeName(forUser: action.userID) && !volume.state.isGone
      && (action.region == nil || volume.region == action.region)
      // A restore's new volume is never one the user had when it began.
      && !(action.kind == .restoreVolume && restoreExisting(action).contains(volume.id))
  }

  static func restoreExisting(_ action: Action) -> [String] {
    guard case .restoreVolume(_, _, _, _, let replacing, let existing, _) = action.call else { return [] }
    return existing + (replacing.map { [$0] } ?? [])
  }

  // MARK: After an outcome

  /// What `outcome` of `action` does to the user's `state`.
  public static func after(
    _ action: Action, _ outcome: Outcome, _ state: UserState, _ context: Context, policy: Policy
  ) -> Step {
    var step = decide(action, outcome, state, context, policy: policy)
    // When the backoff was set: an edit of the user's desired row after it ends it (the planner).
    if step.state.backoffUntil == nil {
      step.state.backoffSince = nil
    } else if step.state.backoffUntil != state.backoffUntil {
      step.state.backoffSince = context.now
    }
    return step
  }

  private static func decide(
    _ action: Action, _ outcome: Outcome, _ state: UserState, _ context: Context, policy: Policy
  ) -> Step {
    switch outcome {
    case .abandoned:
      // Abandoned, not attempted: the audit log says what shutdown (or a lost lease) left undone.
      // The state is not written: another process may hold the lease and its own view.
      return Step(
        state: state, saveState: false,
        events: [
          event(action, .skipped, context, attempt: 0, message: "abandoned: shutting down or lease lost")
        ],
        outcome: .skipped, message: "shutting down")
    case .done(let made):
      return done(action, made, state, context)
    case .failed(let error):
      return failed(action, error, state, context, policy)
    case .refused(let why):
      // Not retryable, nothing sent.
      var state = state
      state.pending = nil
      state.failures += 1
      state.backoffUntil = context.now + policy.retry.delay(attempt: state.failures, draw: context.draw)
      state.lastError = why
      return Step(
        state: state, events: [event(action, .failed, context, message: why)], outcome: .failed, message: why)
    case .eventsRead(let exits):
      return eventsRead(action, exits, state, context)
    case .readFailed where action.kind == .readEvents:
      // Not read: marked seen all the same (the next restart moves `updated_at` again).
      var state = state
      if case .readEvents(let id, let updated) = action.call {
        state.health = MachineHealth(
          machineID: id, seenUpdatedAt: updated, exits: state.health?.machineID == id ? state.health?.exits ?? [] : [])
      }
      return Step(state: state, outcome: .failed, message: "events not read")
    case .readMachine, .readVolume, .readFailed:
      if action.kind == .checkUpdate { return checked(action, outcome, state, context, policy) }
      return read(action, outcome, state, context, policy)
    case .configMatches(let version):
      var state = state
      state.applied = AppliedConfig(
        template: action.target.template, overrides: action.target.overrides, version: ConfigDigest.version(version))
      state.configProblem = nil
      state.failures = 0
      state.backoffUntil = nil
      state.lastError = nil
      return Step(state: state, outcome: .ok, message: configMatchesMessage)
    case .updated(let updated):
      return self.updated(action, updated, state, context)
    case .lookedUpMachines(let candidates):
      return lookedUp(action, candidates, state, context)
    case .lookedUpVolumes(let candidates):
      return lookedUp(action, candidates, state, context)
    case .lookUpFailed(let error):
      // The look-up itself failed: never create blind; the next pass looks again.
      var state = state
      state.backoffUntil = context.now + policy.retry.delay(attempt: max(1, state.failures + 1), draw: context.draw)
      return Step(
        state: state,
        events: [event(action, .unknown, context, attempt: 0, error: error, message: "lookup before create failed")],
        outcome: .unknown, message: error.message)
    }
  }

  private static func done(_ action: Action, _ made: Made?, _ state: UserState, _ context: Context) -> Step {
    var state = state
    state.failures = 0
    state.backoffUntil = nil
    state.lastError = nil
    var row: RowChange?
    var machineID: String?
    var volumeID: String?
    var closed: RestoreClosed?
    switch action.call {
    case .restoreVolume:
      volumeID = made?.id
      state.volumeID = made?.id
      state.restore?.newVolumeID = made?.id
      state.pending = PendingCreate(kind: .volume, since: context.now, resourceID: made?.id)
    case .finishRestore(let request, let outcome, let newVolume, let retired, let detail):
      state.closedRestore = ClosedRestore(id: request, outcome: outcome, detail: detail)
      if outcome == .done, let newVolume {
        state.volumeID = newVolume
        if let retired, retired != newVolume, !state.retired.contains(where: { $0.id == retired }) {
          state.retired.append(RetiredVolume(id: retired, since: context.now))
        }
      }
      state.restore = nil
      state.pending = nil
      closed = RestoreClosed(requestID: request, outcome: outcome, detail: detail)
    case .createVolume:
      volumeID = made?.id
      state.volumeID = made?.id
      // The grace for replica lag counts from the answer, not from the intent.
      state.pending = PendingCreate(kind: .volume, since: context.now, resourceID: made?.id)
    case .createMachine(let region, let volume, _, _):
      machineID = made?.id
      state.pending = PendingCreate(kind: .machine, since: context.now, resourceID: made?.id)
      // What it runs: the config this create carried, at the version Fly answered.
      state.applied = AppliedConfig(
        template: action.target.template, overrides: action.target.overrides,
        version: ConfigDigest.version(made?.version))
      state.configProblem = nil
      state.update = nil
      if let made {
        row = .upsert(
          MachineRow(
            id: made.id, userID: action.userID, region: region, volumeID: volume, status: made.state?.rawValue,
            ipAddress: made.privateIP, createdAt: Int64(context.started), updatedAt: Int64(context.now)))
      }
    case .destroyMachine(let id, _):
      if context.recorded?.machineID == id { row = .delete }
    case .deleteVolume(let id):
      if state.volumeID == id {
        state.volumeID = nil
        state.volumeReleasedAt = nil
      }
      state.retired.removeAll { $0.id == id }
    case .createApp:
      state.appSetup = .created
    case .assignIPs:
      state.appSetup.insert(.addressed)
    case .deleteApp:
      // Fly deletes an app in the background: remembered until the apps list drops it.
      state.appSetup = .retiring
    case .adoptMachine(let id, let volume, let region):
      machineID = id
      volumeID = volume
      state.volumeID = volume
      row = .upsert(
        MachineRow(
          id: id, userID: action.userID, region: region, volumeID: volume, status: made?.state?.rawValue,
          ipAddress: made?.privateIP, createdAt: Int64(context.started), updatedAt: Int64(context.now)))
    case .extendVolume(let id, _, _):
      volumeID = id
      state.extendedAt = context.now
    case .start, .stop, .verifyMachine, .verifyVolume, .updateMachine, .checkUpdate, .readEvents:
      break
    }
    var events = [event(action, .ok, context, machineID: machineID, volumeID: volumeID)]
    if let snapshot = made?.snapshot {
      events[0].details["snapshot_id"] = .string(snapshot.id)
      events.insert(snapshotEvent(snapshot, before: action, context, step: action.kind.rawValue), at: 0)
    }
    if case .extendVolume(_, _, let to) = action.call { events[events.count - 1].details["to_gb"] = .int(Int64(to)) }
    if case .finishRestore(_, let outcome, _, _, let detail) = action.call {
      events[0].details["outcome"] = .string(outcome.rawValue)
      events[0].details["message"] = .string(detail)
    }
    var step = Step(state: state, events: events, row: row, outcome: .ok, message: made?.id ?? "")
    step.restoreClosed = closed
    return step
  }

  private static func failed(
    _ action: Action, _ error: CallError, _ state: UserState, _ context: Context, _ policy: Policy
  ) -> Step {
    var state = state
    // Already gone: what a destroy or delete wanted.
    if error.kind == .notFound,
      action.kind == .destroyMachine || action.kind == .deleteVolume || action.kind == .deleteApp
    {
      if action.kind == .deleteApp { state.appSetup = [] }
      var row: RowChange?
      if case .destroyMachine(let id, _) = action.call, context.recorded?.machineID == id { row = .delete }
      if case .deleteVolume(let id) = action.call {
        if state.volumeID == id {
          state.volumeID = nil
          state.volumeReleasedAt = nil
        }
        state.retired.removeAll { $0.id == id }
      }
      return Step(
        state: state, events: [event(action, .ok, context, error: error, message: "already gone")], row: row,
        outcome: .ok, message: "already gone")
    }
    // "Not in this state yet": not a failure at first. Tried again after a backoff that grows,
    // recorded once per streak (not per attempt), `action_failing` once the streak reaches the budget.
    if error.kind == .notYet && !action.kind.isCreate {
      let first = state.failures == 0
      state.failures += 1
      state.lastError = error.message
      state.backoffUntil = context.now + max(1, policy.retry.delay(attempt: state.failures, draw: context.draw))
      return Step(
        state: state, events: first ? [event(action, .notYet, context, error: error)] : [], outcome: .notYet,
        message: error.message)
    }
    // A create whose answer was lost may have made the resource: never sent again blind.
    let unknown = error.outcomeUnknown
    let outcome: ActionResult.Outcome = unknown ? .unknown : .failed
    let retryHere =
      error.retryable && !(unknown && action.kind.isCreate) && context.attempt < policy.retry.attemptsPerPass
      && context.mayRetry
    if retryHere {
      // A 429's wait is the budget's (paused for its Retry-After), not a second one here.
      let delay =
        error.kind == .rateLimited
        ? 0 : min(policy.retry.maxInPassDelay, policy.retry.delay(attempt: context.attempt, draw: context.draw))
      return Step(
        state: state, events: [event(action, outcome, context, error: error)], outcome: outcome,
        message: error.message, next: .retry(after: delay))
    }
    if action.kind.isCreate {
      if unknown {
        state.pending?.outcomeUnknown = true
      } else {
        state.pending = nil
      }
    }
    // A restore Fly refuses outright (no such snapshot, a size too small): nothing was made, and
    // asking again changes nothing. The request is closed as failed, saying why.
    if action.kind == .restoreVolume, !unknown, !error.retryable, let request = state.restore?.requestID,
      state.restore?.newVolumeID == nil
    {
      state.restore = nil
      let detail = "not restored: \(error.message)"
      state.closedRestore = ClosedRestore(id: request, outcome: .failed, detail: detail)
      var step = Step(
        state: state, events: [event(action, .failed, context, error: error)], outcome: .failed, message: error.message)
      step.restoreClosed = RestoreClosed(requestID: request, outcome: .failed, detail: detail)
      return step
    }
    if action.kind == .createApp, error.code == "name_taken" { state.appSetup.insert(.nameTaken) }
    if error.kind != .rateLimited { state.failures += 1 }
    state.backoffUntil = context.now + policy.retry.delay(attempt: max(1, state.failures), draw: context.draw)
    state.lastError = error.message
    return Step(
      state: state, events: [event(action, outcome, context, error: error)], outcome: outcome, message: error.message)
  }

  /// How long an exit counts (a machine that ran this long without one runs cleanly).
  public static let crashWindow: Double = 600

  private static func eventsRead(_ action: Action, _ exits: [MachineExit], _ state: UserState, _ context: Context)
    -> Step
  {
    var state = state
    guard case .readEvents(let id, let updated) = action.call else {
      return Step(state: state, outcome: .ok, message: "")
    }
    var known = state.health?.machineID == id ? state.health?.exits ?? [] : []
    for exit in exits where !known.contains(where: { $0.at == exit.at }) { known.append(exit) }
    known = known.filter { context.now - $0.at < crashWindow }.sorted { $0.at < $1.at }.suffix(50).map { $0 }
    state.health = MachineHealth(machineID: id, seenUpdatedAt: updated, exits: known)
    return Step(state: state, outcome: .ok, message: "\(exits.count) exit(s)")
  }

  // MARK: Reads by id

  /// What one read by id says.
  enum Answer {
    /// Gone for this user (destroyed, or now someone else's): definitive. `lost`: the user's data
    /// went with it (not so for a volume that is simply another user's).
    case gone(String, lost: Bool)
    /// 404: definitive only when a second read, a while later, says so again.
    case notFound
    /// There: the list lies.
    case present(String)
    /// Says nothing (an error, another id, no tag).
    case cannotTell(String)
  }

  static func answer(_ action: Action, _ outcome: Outcome, ownApp: Bool = false) -> Answer {
    let user = action.userID
    switch outcome {
    case .readMachine(let machine):
      let id = action.machineID ?? ""
      let shows = machine.state.rawValue
      if machine.id != id { return .cannotTell("a read of \(id) answered machine \(machine.id)") }
      if machine.state.isGone { return .gone("a read by id shows it \(shows)", lost: true) }
      // No config (a host in trouble answers without one) or no tag: not proof of anything.
      guard let owner = machine.owner else {
        return .cannotTell("a read by id shows it \(shows) without its fleet_user_id")
      }
      if owner != user { return .gone("a read by id shows it tagged for user \(owner), not \(user)", lost: true) }
      return .present(shows)
    case .readVolume(let volume):
      let id = action.volumeID ?? ""
      let shows = volume.state.rawValue
      if volume.id != id { return .cannotTell("a read of \(id) answered volume \(volume.id)") }
      if volume.state.isGone { return .gone("a read by id shows it \(shows)", lost: true) }
      if !ownApp && volume.name != FleetNames.volumeName(forUser: user) {
        return .gone("a read by id shows it named \(volume.name), not this user's", lost: false)
      }
      return .present(shows)
    case .readFailed(let error):
      // Only "this machine/volume is not found" is about the resource; "app not found" says nothing.
      return error.kind == .notFound && !error.aboutApp ? .notFound : .cannotTell(error.message)
    default:
      return .cannotTell("not a read")
    }
  }

  /// A read by id of a machine or volume the list left out. Gone (twice 404, destroyed, or now
  /// someone else's): the row says destroyed or the remembered volume id goes, and the next pass
  /// may replace it. There: nothing is replaced; `list_omits` is reported, and it is read again later.
  private static func read(
    _ action: Action, _ outcome: Outcome, _ state: UserState, _ context: Context, _ policy: Policy
  ) -> Step {
    var state = state
    let isMachine = action.kind == .verifyMachine
    let noun = isMachine ? "machine" : "volume"
    let id = (isMachine ? action.machineID : action.volumeID) ?? ""
    let answer = answer(action, outcome, ownApp: context.ownApp)
    if case .cannotTell = answer {
    } else if state.lastError?.hasPrefix("read by id") == true {
      state.failures = 0  // this read answered: the streak of reads that could not tell ends
      state.lastError = nil
    }
    switch answer {
    case .cannotTell(let why):
      // Nothing is replaced; read again after a backoff that grows (and, repeated, `action_failing`).
      state.failures += 1
      state.lastError = "read by id: \(why)"
      state.backoffUntil =
        context.now + max(policy.verifyInterval, policy.retry.delay(attempt: state.failures, draw: context.draw))
      return Step(
        state: state,
        events: state.failures == 1 ? [event(action, .unknown, context, message: "\(noun) \(id): \(why)")] : [],
        outcome: .unknown, message: why)
    case .notFound where !state.reads.contains(ReadByID(id: id, found: false)):
      // A first 404: confirmed by a second read a while later before anything is replaced.
      state.noteRead(id, found: false)
      state.backoffUntil = context.now + policy.verifyInterval
      return Step(state: state, outcome: .unknown, message: "404 once; read again before believing it")
    case .present(let shows):
      let first = !state.reads.contains(ReadByID(id: id, found: true))
      state.noteRead(id, found: true)
      state.backoffUntil = context.now + policy.verifyInterval
      let message = "\(noun) \(id) is not in Fly's list, but a read by id shows it \(shows): nothing replaces it"
      return Step(
        state: state, events: first ? [event(action, .present, context, message: message)] : [], outcome: .present,
        message: shows)
    case .gone, .notFound:
      var because = "a read by id answers 404, twice"
      var lost = true
      if case .gone(let why, let dataLost) = answer { (because, lost) = (why, dataLost) }
      state.reads.removeAll { $0.id == id }
      var row: RowChange?
      if isMachine {
        // The row says destroyed, as when the list shows it so: the planner reports it missing and
        // replaces it, and the row follows the new machine (or goes, for a removed user).
        if context.recorded?.machineID == id { row = .status(.destroyed) }
      } else if state.volumeID == id {
        state.volumeID = nil
        state.volumeReleasedAt = nil
        if lost { state.lostVolume = id }  // reported `volume_missing` until the user has one again
      }
      return Step(
        state: state,
        events: [event(action, .gone, context, message: "\(noun) \(id) is not in Fly's list and \(because): gone")],
        row: row, outcome: .gone, message: because)
    }
  }

  // MARK: Updates

  /// An update's message when nothing had to be sent.
  public static let configMatchesMessage = "the machine runs the desired config"

  /// An update Fly accepted: the machine runs (or is about to run) the target config at the new
  /// version, watched until it is seen started and healthy on it. Putting back a version the
  /// controller did not make is config drift: reported until the update is seen through.
  private static func updated(_ action: Action, _ updated: Updated, _ state: UserState, _ context: Context) -> Step {
    var state = state
    let from = ConfigDigest.version(updated.from)
    let to = ConfigDigest.version(updated.to)
    let drifted = state.applied.version != 0 && from != 0 && from != state.applied.version
    if state.configProblem?.target != action.target.template { state.updateFailures = 0 }  // a new target's attempts
    state.applied = AppliedConfig(template: action.target.template, overrides: action.target.overrides, version: to)
    // Sent (a new version): watched until seen through. Only a volume grown: nothing to watch.
    let sent = from != to
    state.update =
      sent
      ? UpdateWatch(since: context.now, from: from, to: to, launched: updated.launched, target: action.target.template)
      : nil
    state.failures = 0
    state.backoffUntil = nil
    state.lastError = nil
    let summary = updated.diff.isEmpty ? "no field differs" : updated.diff.joined(separator: "; ")
    if drifted {
      state.configProblem = ConfigProblem(kind: .drift, detail: summary)
    } else if state.configProblem?.kind == .drift {
      state.configProblem = nil
    }
    var event = event(action, .ok, context, message: summary)
    event.details["diff"] = .string(summary)
    event.details["from_version"] = .string(updated.from ?? "")
    event.details["to_version"] = .string(updated.to ?? "")
    event.details["drift"] = .bool(drifted)
    event.details["skip_launch"] = .bool(!updated.launched)
    var events = sent ? [event] : []
    if let extended = updated.extended {
      var extend = AuditEvent(
        type: .action(.extendVolume), userID: action.userID, machineID: action.machineID,
        volumeID: extended.volumeID,
        details: [
          "outcome": .string("ok"), "from_gb": .int(Int64(extended.from)), "to_gb": .int(Int64(extended.to)),
          "reason": .string(action.reason),
          "message": .string(
            "volume \(extended.volumeID): \(extended.from) GB → \(extended.to) GB\(updated.launched ? "; the update's reboot is the restart Fly asks for" : "")"
          ),
        ], createdAt: Int64(context.now))
      extend.details["attempt"] = .int(Int64(context.attempt))
      if let snapshot = updated.snapshot { extend.details["snapshot_id"] = .string(snapshot.id) }
      events.insert(extend, at: 0)
      if let snapshot = updated.snapshot {
        events.insert(snapshotEvent(snapshot, before: action, context, step: "extend_volume"), at: 0)
      }
    }
    return Step(state: state, events: events, outcome: .ok, message: summary)
  }

  /// What a read of an updated machine says: through (the new version, started and healthy; or
  /// stopped, for a stopped machine), reverted (the old version is back: Fly gave the update up),
  /// unhealthy (failed, or not through by the deadline), or not yet.
  private static func checked(
    _ action: Action, _ outcome: Outcome, _ state: UserState, _ context: Context, _ policy: Policy
  ) -> Step {
    var state = state
    guard let watch = state.update else {
      return Step(state: state, saveState: false, outcome: .skipped, message: "no update under way")
    }
    guard case .readMachine(let machine) = outcome, machine.id == action.machineID else {
      // A read that says nothing: read again a little later (the deadline still holds).
      state.backoffUntil = context.now + policy.verifyInterval
      var message = "the read of the updated machine failed"
      if case .readFailed(let error) = outcome { message += ": \(error.message)" }
      return Step(state: state, outcome: .unknown, message: message)
    }
    let version = machine.versionHash
    // The version's name when a read gave it (" 01J…"); nothing when only the list was seen.
    let shown = machine.version.map { " \($0)" } ?? ""
    let late = context.now - watch.since >= policy.updateDeadline
    func failure(_ kind: ConfigProblem.Kind, _ detail: String, outcome: ActionResult.Outcome) -> Step {
      state.update = nil
      state.configProblem = ConfigProblem(kind: kind, detail: detail, target: watch.target)
      state.updateFailures += 1
      state.failures += 1
      state.lastError = detail
      state.backoffUntil = context.now + policy.retry.delay(attempt: state.failures, draw: context.draw)
      var event = event(action, outcome, context, message: detail)
      if let version = machine.version { event.details["version"] = .string(version) }
      return Step(state: state, events: [event], outcome: outcome, message: detail)
    }
    if machine.state.isGone {
      state.update = nil
      return Step(state: state, outcome: .gone, message: "the machine is \(machine.state.rawValue)")
    }
    if version == watch.to {
      let through =
        watch.launched ? machine.state == .started && machine.healthy != false : !machine.state.isTransitional
      if through {
        state.update = nil
        state.configProblem = nil
        state.updateFailures = 0
        let message =
          "the new version\(shown) runs, \(machine.state.rawValue)\(machine.healthy == true ? ", checks passing" : "")"
        return Step(
          state: state, events: [event(action, .ok, context, message: message)], outcome: .ok, message: message)
      }
      if machine.state == .failed {
        return failure(.unhealthy, "the new version\(shown) failed on boot", outcome: .failed)
      }
      if late {
        let checks = machine.healthy == false ? ", checks failing" : ""
        return failure(
          .unhealthy,
          "the new version\(shown) is not healthy \(Int(policy.updateDeadline)) s after the update: \(machine.state.rawValue)\(checks)",
          outcome: .failed)
      }
      state.backoffUntil = context.now + policy.updateSettle
      return Step(state: state, outcome: .notYet, message: "the new version\(shown) is \(machine.state.rawValue)")
    }
    if version == watch.from && !machine.state.isTransitional {
      // Fly accepted the update, then went back: the machine runs its old version as if nothing happened.
      state.applied.template = 0
      state.applied.overrides = 0
      state.applied.version = watch.from
      return failure(
        .reverted,
        "Fly reverted the update silently: the machine is \(machine.state.rawValue) on its previous version\(shown); retried after a backoff",
        outcome: .reverted)
    }
    if version != watch.from && version != watch.to && version != 0 {
      // Someone else updated it meanwhile: compared and put back by the next pass.
      state.update = nil
      return Step(
        state: state,
        events: [event(action, .unknown, context, message: "the machine is at another version\(shown)")],
        outcome: .unknown, message: "another version")
    }
    if late {
      return failure(.unhealthy, "the update did not come through in time: \(machine.state.rawValue)", outcome: .failed)
    }
    state.backoffUntil = context.now + policy.updateSettle
    return Step(state: state, outcome: .notYet, message: "\(machine.state.rawValue)")
  }

  // MARK: Look-ups

  private static func lookedUp(
    _ action: Action, _ candidates: [FoundMachine], _ state: UserState, _ context: Context
  ) -> Step {
    let found = candidates.filter { adoptable($0, for: action) }
    let warning =
      found.count < candidates.count
      ? "look-up returned \(candidates.count - found.count) machine(s) that do not match" : nil
    guard let machine = found.first else {
      return Step(state: state, saveState: false, outcome: .skipped, message: "", next: .create, warning: warning)
    }
    var state = state
    state.pending = PendingCreate(kind: .machine, since: context.started, resourceID: machine.id)
    let row = MachineRow(
      id: machine.id, userID: action.userID, region: machine.region ?? action.region ?? "", volumeID: machine.volumeID,
      status: machine.state.rawValue, ipAddress: machine.privateIP, createdAt: Int64(context.started),
      updatedAt: Int64(context.started))
    var adoption = event(
      action, .adopted, context, attempt: 0, machineID: machine.id, volumeID: machine.volumeID)
    adoption.type = .adopted(.machine)
    adoption.details["reason"] = .string("adopt after a lost create")
    return Step(
      state: state, events: [adoption], row: .upsert(row), outcome: .adopted, message: machine.id, warning: warning)
  }

  private static func lookedUp(
    _ action: Action, _ candidates: [FoundVolume], _ state: UserState, _ context: Context
  ) -> Step {
    guard let volume = candidates.first(where: { adoptable($0, for: action) }) else {
      return Step(state: state, saveState: false, outcome: .skipped, message: "", next: .create)
    }
    var state = state
    state.pending = PendingCreate(kind: .volume, since: context.started, resourceID: volume.id)
    state.volumeID = volume.id
    if action.kind == .restoreVolume { state.restore?.newVolumeID = volume.id }
    var adoption = event(action, .adopted, context, attempt: 0, volumeID: volume.id)
    adoption.type = .adopted(.volume)
    return Step(state: state, events: [adoption], outcome: .adopted, message: volume.id)
  }

  // MARK: Events

  /// The audit event of one attempt: outcome, attempt, duration, reason, region, the error's code,
  /// HTTP status and Fly request id. The runtime scrubs its strings before it is written.
  static func event(
    _ action: Action, _ outcome: ActionResult.Outcome, _ context: Context, attempt: Int? = nil,
    machineID: String? = nil, volumeID: String? = nil, error: CallError? = nil, message: String? = nil
  ) -> AuditEvent {
    var details: [String: AuditField] = [
      "outcome": .string(outcome.rawValue), "attempt": .int(Int64(attempt ?? context.attempt)),
      "duration_ms": .int(Int64(((context.now - context.started) * 1000).rounded())), "reason": .string(action.reason),
    ]
    if let region = action.region { details["region"] = .string(region) }
    if let error {
      if let status = error.status { details["http_status"] = .int(Int64(status)) }
      if let id = error.requestID { details["fly_request_id"] = .string(id) }
      details["error_code"] = .string(error.code)
      details["error"] = .string(error.message)
    }
    if let message { details["message"] = .string(message) }
    if let app = action.appName { details["app"] = .string(app) }
    return AuditEvent(
      type: .action(action.kind), userID: action.userID, machineID: machineID ?? action.machineID,
      volumeID: volumeID ?? action.volumeID, details: details, createdAt: Int64(context.now))
  }
}

/// What one action came to.
public struct ActionResult: Sendable, Hashable {
  public enum Outcome: String, Sendable, Hashable {
    /// Done.
    case ok
    /// Fly said "not in this state yet" (412 after a create or stop, a bound volume): try next pass.
    case notYet = "not_yet"
    /// The answer was lost: the next pass looks before acting again.
    case unknown
    /// A lookup found the resource: adopted instead of created.
    case adopted
    /// Failed; the user backs off.
    case failed
    /// Not tried (shutdown, or a secret missing).
    case skipped
    /// A read by id found the resource gone (404, or destroyed): what the list said is now known.
    case gone
    /// A read by id found the resource the list left out: nothing replaces it.
    case present
    /// Fly accepted an update, then silently went back to the old version.
    case reverted
  }
  public var action: Action
  public var outcome: Outcome
  public var attempts: Int
  /// The error, redacted; or the id of what was made.
  public var message: String

  public init(action: Action, outcome: Outcome, attempts: Int, message: String) {
    self.action = action
    self.outcome = outcome
    self.attempts = attempts
    self.message = message
  }
}
