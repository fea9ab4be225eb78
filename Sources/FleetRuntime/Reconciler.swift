public import FleetCore
public import FleetStore
public import FlyMachines
public import Logging

/// The loop's one pass, as data flow (docs/reconciler.md): **observe** (the desired snapshot, Fly's
/// lists through the list guard) → **plan** (``Planner``, pure) → **perform** each action within the
/// write budget (``FlyCalls``) → **apply** what the outcome means (``UserLifecycle``, pure) to the
/// users' states, rows and audit log (``UserStates``).
///
/// Between passes it holds the states, rows, the desired snapshot and the list pages, so a pass
/// with nothing to do costs the two list reads and nothing else.
public actor Reconciler {
  private let store: FleetStore
  public let settings: ReconcilerSettings
  private let clock: any FleetClock
  private let jitter: Jitter
  public let budget: WriteBudget
  private let redactor: Redactor
  private let logger: Logger
  private let onEvent: (@Sendable (AuditEvent) -> Void)?
  private var fly: FlyCalls
  private let observer: Observer
  private let users: UserStates
  private var episodes = FindingEpisodes()
  /// The rollout as the last pass left it (read back with the episodes).
  private var rollout: RolloutState?
  /// The open episodes were read back from the database (at start, and after the lease is regained).
  private var episodesLoaded = false
  /// Whether this process may still act (holds the writer lease); checked before every call that
  /// changes Fly and before a pass's writes. Always true without a lease.
  private var mayWrite: @Sendable () -> Bool = { true }
  private var draining = false
  /// The last snapshot and the desired-state version it was read at: an unchanged version means an
  /// unchanged table (triggers bump it on every edit), so a quiet pass reads one row, not every user.
  private var cachedDesired: (version: Int64, snapshot: DesiredSnapshot, active: Int)?
  /// The last pass was quiet (no action, finding, wait, write) and no user has a clock running
  /// (pending create, backoff, retention, transitional state): the same inputs plan the same nothing.
  private var steady = false
  /// When this process started watching, by the monotonic clock (retention's floor).
  private let watchingSince = MonotonicWallClock.continuousSeconds()

  public init(
    client: any FlyMachinesAPI, store: FleetStore, settings: ReconcilerSettings,
    clock: any FleetClock = SystemFleetClock(), jitter: Jitter = Jitter(), redactor: Redactor = Redactor(),
    logger: Logger = Logger(label: "fleetkeeper"), onEvent: (@Sendable (AuditEvent) -> Void)? = nil
  ) {
    self.store = store
    self.settings = settings
    self.clock = clock
    self.jitter = jitter
    self.budget = WriteBudget(limits: settings.writeLimits, clock: clock)
    self.redactor = redactor
    redactor.add(client.credentials)
    self.logger = logger
    self.onEvent = onEvent
    fly = FlyCalls(client: client, budget: budget, redactor: redactor, secrets: settings.secrets, clock: clock)
    observer = Observer(client: client, settings: settings, clock: clock, logger: logger)
    users = UserStates(store: store, redactor: redactor, logger: logger, onEvent: onEvent)
  }

  /// Sets the check of the writer lease (see ``LeaseKeeper``).
  public func setWriterCheck(_ check: @escaping @Sendable () -> Bool) { mayWrite = check }

  /// Stop starting new actions (graceful shutdown); actions in flight finish.
  public func drain() { draining = true }

  /// Allow actions again (a new pass while holding the writer lease).
  public func resume() { draining = false }

  /// Forgets everything held between passes: the next pass reads states, rows and the desired
  /// state from the database and the lists afresh. Called when the writer lease is (re)gained:
  /// another process may have acted meanwhile.
  public func invalidate() async {
    users.invalidate()
    episodesLoaded = false
    cachedDesired = nil
    await observer.invalidate()
    steady = false
  }

  /// The next pass reads Fly's lists whole (an org-wide resync now), nothing else forgotten.
  public func resync() async {
    await observer.invalidate()
    steady = false
  }

  /// The desired snapshot: the cached one while the table's version is unchanged.
  /// `active`: the users desired running or stopped (a row marked absent is a user on the way out),
  /// counted once per snapshot, not once per pass.
  private func readDesired() async throws(StoreError) -> (snapshot: DesiredSnapshot, active: Int, unchanged: Bool) {
    let version = try await store.desiredVersion()
    if let cached = cachedDesired, cached.version == version { return (cached.snapshot, cached.active, true) }
    cachedDesired = nil  // the old snapshot is not held while the new one is read
    let desired = try await store.readDesired()
    let active = desired.machines.values.reduce(0) { $1.state == .absent ? $0 : $0 + 1 }
    cachedDesired = (version, desired, active)
    // Every secret the template names is scrubbed from the start, not only once a create has
    // resolved it (an error echoing a machine's env after a restart must not print it).
    redactor.add(
      desired.template.env.values.compactMap { value in
        value.hasPrefix("$") && value.count > 1 ? settings.secrets[String(value.dropFirst())] : nil
      })
    return (desired, active, false)
  }

  /// The users' remembered states as the last pass left them (`status`, `describe`).
  public func userStates() -> UserMap<UserState> { users.states }

  /// `describe`: what differs between the user's machine and the config it should run (no env
  /// value or init argument is ever shown), or why it cannot be told.
  public func configDiff(user: String, machineID: String, desired: DesiredSnapshot) async -> [String] {
    guard let want = desired.machines[user] else { return ["no desired row: nothing to compare"] }
    var calls = fly
    calls.placement = desired.placement
    let machine: FlyMachine
    do {
      machine = try await calls.client(for: user).getMachine(machineID)
    } catch {
      return ["machine \(machineID) cannot be read: \(redactor.scrub(error.description))"]
    }
    guard let current = machine.config else {
      return ["machine \(machineID)'s config cannot be read now (host \(machine.hostStatus ?? "unknown"))"]
    }
    let action = Action(
      userID: user,
      call: .updateMachine(
        machineID: machineID, volumeID: current.mounts.first?.volume, spec: want.spec(from: desired.template),
        skipLaunch: false),
      reason: "describe")
    do {
      let built = try calls.machineConfigAndSecrets(action, volume: current.mounts.first?.volume)
      let lines = ConfigDiff.lines(current: current, desired: built.config)
      return lines.isEmpty
        ? ["as desired (image \(current.image ?? "-"))"] : ["differs from the desired config:"] + lines
    } catch {
      return ["the desired config cannot be built: \(redactor.scrub("\(error)"))"]
    }
  }

  /// Runs one pass. With `apply: false` it plans only: nothing is called but the lists, nothing is written.
  public func pass(apply: Bool = true) async -> PassReport {
    let started = clock.now()
    var report = PassReport(outcome: .ok, startedAt: started)
    let wasSteady = steady && apply
    steady = false

    // Observe: the desired state (unreadable means "do nothing", never "empty"), then Fly.
    let desired: (snapshot: DesiredSnapshot, active: Int, unchanged: Bool)
    do {
      desired = try await readDesired()
      try await users.loadIfNeeded()
      if !episodesLoaded {
        episodes = FindingEpisodes(open: try await store.loadOpenFindings() ?? [])
        rollout = try await store.loadRollout()
        episodesLoaded = true
      }
    } catch {
      return couldNotRun(report, .desiredUnreadable, error.description, log: "desired state unreadable: nothing done")
    }
    report.desired = desired.snapshot
    report.desiredUsers = desired.active
    let expected = desired.snapshot.machines.count
    // Where users live: each user's calls, rows and lists follow it.
    let topology = desired.snapshot.topology
    fly.placement = desired.snapshot.placement
    fly.volumePolicy = desired.snapshot.volumePolicy
    budget.setAppPerUser(topology.isAppPerUser)
    users.placement = desired.snapshot.placement
    users.sharedApp = fly.client.appName
    let listed: (observation: Observation, unchanged: Bool)
    do {
      listed = try await observer.observe(expected: expected, topology: topology)
    } catch {
      return couldNotRun(report, .flyUnreachable, error.description, log: "fly lists failed: nothing done")
    }
    report.observation = listed.observation
    report.resyncCorrections = await observer.takeCorrections()
    report.unreadableRegions = listed.observation.unreadableRegions
    report.observedMachines = listed.observation.machines.count
    report.observedVolumes = listed.observation.volumes.count
    if wasSteady && listed.unchanged && desired.unchanged && !draining {
      // Nothing changed since a pass that had nothing to do: the same empty plan, without planning.
      steady = true
      report.steady = true
      report.rollout = rollout
      report.plan = Plan(actions: [], findings: [], waiting: [], states: [:], guardState: users.guardState)
      report.duration = clock.now() - started
      return report
    }
    let guarded = await observer.guarded(listed.observation, guardState: users.guardState, expected: expected)
    let observation = guarded.observation
    report.listsTrusted = guarded.trusted
    report.observation = observation
    report.observedMachines = observation.machines.count
    report.observedVolumes = observation.volumes.count

    // Plan.
    let plan = makePlan(desired.snapshot, observation, guarded, started: started, apply: apply)
    report.plan = plan
    report.findings = plan.findings
    report.rollout = plan.rollout
    guard apply else {
      report.duration = clock.now() - started
      return report
    }

    // Record what the plan changed, then act.
    guard mayWrite() else {
      // The lease went while this pass planned: another process may be acting. Nothing is written.
      users.invalidate()
      return couldNotRun(report, .leaseLost, "the writer lease was lost while planning: nothing done")
    }
    // The episodes move on only once their events are written: a failed commit reports them again.
    var episodes = self.episodes
    var (appeared, events) = episodes.update(plan.findings, now: started)
    let rolloutEvents = Rollout.events(from: rollout, to: plan.rollout, now: started)
    events += rolloutEvents
    var also: [SQLStatement] = []
    if let next = plan.rollout, next != rollout { also.append(FleetStore.saveRollout(next)) }
    for finding in appeared {
      logger.warning(
        "drift",
        metadata: [
          "kind": "\(finding.kind.rawValue)", "user": "\(finding.userID ?? "-")",
          "message": "\(redactor.scrub(finding.message))",
        ])
    }
    let scrubbed = events.map(redactor.scrub)
    let statements: Int
    do {
      statements = try await users.commit(
        plan, observation: observation, trusted: guarded.trusted, events: scrubbed,
        also: also
          + (events.count == rolloutEvents.count
            ? [] : [FleetStore.saveOpenFindings(episodes.open.map(redactor.scrub))]),
        now: started)
    } catch {
      // Nothing was acted on: what this plan changed is planned again from the database.
      return couldNotRun(report, .desiredUnreadable, error.description)
    }
    self.episodes = episodes
    rollout = plan.rollout
    report.rollout = rollout
    scrubbed.forEach { onEvent?($0) }
    steady =
      guarded.trusted && plan.actions.isEmpty && plan.eventReads.isEmpty && plan.waiting.isEmpty
      && plan.findings.isEmpty && statements == 0
      && events.isEmpty && users.states.values.allSatisfy { $0.isQuiet(now: started) }
      && rollout?.status != .waiting
    report.results = await execute(
      Self.trim(
        plan.actions, limits: settings.writeLimits, seconds: settings.passWorkSeconds,
        appPerUser: desired.snapshot.topology.isAppPerUser))
    // Then what the machines' events say (crash loops, OOM kills): reads, after the changes.
    report.eventsRead = await execute(plan.eventReads).count
    if report.results.contains(where: { $0.outcome == .failed }) { report.outcome = .actionsFailed }
    let failures = users.takeRecordFailures()
    if !failures.isEmpty {
      // What was done is not all on record: a failed pass, loud; the users' states are written
      // again by the next pass from RAM (which knows what was just made).
      report.outcome = .actionsFailed
      steady = false
      for (user, error) in failures.sorted(by: { $0.key < $1.key }) {
        let finding = DriftFinding(
          kind: .recordFailed, userID: user,
          message: "could not record \(user)'s state (others go on): \(redactor.scrub(error))")
        report.findings.append(finding)
        logger.error("record failed", metadata: ["user": "\(user)", "error": "\(finding.message)"])
      }
    }
    report.duration = clock.now() - started
    return report
  }

  /// The planner's input from this pass's reads; applying, the states are handed over (the planner
  /// updates them in place: at 100k users a copy costs milliseconds) and taken back.
  private func makePlan(
    _ desired: DesiredSnapshot, _ observation: Observation, _ guarded: Observer.Guarded, started: Double,
    apply: Bool
  ) -> Plan {
    // A clock wrong from the start (a VM booted before NTP) would count retention from a wrong now:
    // checked against Fly's own clock, and retention deletes held while they disagree.
    var watching = MonotonicWallClock.continuousSeconds() - watchingSince
    var skew: DriftFinding?
    if let server = fly.client.serverNow(), abs(started - server) > settings.maxClockSkew {
      watching = -.infinity  // below any floor, 0 included
      skew = DriftFinding(
        kind: .clockSkew,
        message:
          "the controller's clock is \(Int(started - server)) s off Fly's: volume deletes after retention are held until they agree"
      )
    }
    let users = self.users
    let rows = users.rows
    let handed = users.states
    if apply { users.states = [:] }
    var plan = Planner.plan(
      Planner.Input(
        desired: desired, observed: observation, recordedBy: { UserStates.recorded(rows[$0]) }, states: consume handed,
        guardState: guarded.guardState, now: started, settings: settings.planner, listsTrusted: guarded.trusted,
        watching: watching, configSalt: configSalt(desired.template), rollout: rollout,
        rolloutControl: desired.rolloutControl, templateRevision: desired.templateRevision))
    if let skew { plan.findings.append(skew) }
    if apply {
      users.states = plan.states
      plan.states = [:]  // not shared with the report: the next change would copy it
    }
    return plan
  }

  /// What the template's digest also changes with: the app and the secrets the template names (a
  /// rotated key is a new config for every user's machine).
  private func configSalt(_ template: MachineTemplate) -> UInt64 {
    ConfigDigest.salt(
      appName: fly.client.appName,
      secrets: ConfigDigest.secretNames(template).map { ($0, settings.secrets[$0]) })
  }

  /// The pass stops before acting: what it could not read becomes its finding (and the alert).
  private func couldNotRun(
    _ report: PassReport, _ kind: DriftFinding.Kind, _ error: String,
    log: Logger.Message = "pass could not run: nothing done"
  ) -> PassReport {
    var report = report
    report.outcome = .couldNotRun
    report.error = redactor.scrub(error)
    report.findings.append(DriftFinding(kind: kind, message: report.error!))
    logger.error(log, metadata: ["error": "\(report.error!)"])
    report.duration = clock.now() - report.startedAt
    return report
  }

  // MARK: Acting

  /// Keeps of each rate-limited kind only what the write budget lets through in `seconds`; the
  /// rest is planned again next pass (soon, since the loop comes back quickly while busy).
  static func trim(_ actions: [Action], limits: WriteBudget.Limits, seconds: Double, appPerUser: Bool = false)
    -> [Action]
  {
    let allowed = Int(min(1e9, limits.burst + limits.perSecond * seconds))
    // One app per user: these go to many apps, under the per-machine ceiling.
    let perApp = Int(min(1e9, limits.perMachineKindsPerSecond * (1 + seconds)))
    var counts: [Action.Kind: Int] = [:]
    return actions.filter { action in
      switch action.kind {
      case .createApp:
        break
      case .createVolume, .createMachine, .deleteVolume:
        counts[action.kind, default: 0] += 1
        return counts[action.kind]! <= (appPerUser ? perApp : allowed)
      default:
        return true
      }
      counts[action.kind, default: 0] += 1
      return counts[action.kind]! <= allowed
    }
  }

  private func execute(_ actions: [Action]) async -> [ActionResult] {
    guard !actions.isEmpty else { return [] }
    return await withTaskGroup(of: ActionResult.self) { group in
      var results: [ActionResult] = []
      var iterator = actions.makeIterator()
      var inFlight = 0
      while inFlight < settings.concurrency, let action = iterator.next() {
        group.addTask { await self.run(action) }
        inFlight += 1
      }
      while let result = await group.next() {
        results.append(result)
        if let action = iterator.next() { group.addTask { await self.run(action) } }
      }
      return results
    }
  }

  /// Performs one action and applies each outcome: **perform → apply**, again while the lifecycle
  /// says to retry within the pass.
  private func run(_ action: Action) async -> ActionResult {
    let user = action.userID
    if draining || !mayWrite() { return await apply(.abandoned, of: action, started: clock.now(), attempt: 0).result }
    if action.kind.isRead {
      let started = clock.now()
      var listed = false
      if case .checkUpdate(_, let seen) = action.call { listed = seen != nil }
      if !listed, (try? await budget.acquire(action.kind)) == nil { return cancelled(action, attempts: 0) }
      return await apply(await fly.read(action), of: action, started: started, attempt: 1).result
    }
    if action.lookUpFirst {
      let started = clock.now()
      let looked = await apply(await fly.lookUp(action), of: action, started: started, attempt: 0)
      if looked.next != .create { return looked.result }
    }
    if action.kind.isCreate {
      // The intent is on disk before the call: a crash leaves something to look up, not a blind create.
      let before = users.states[user]
      users.states[user] = UserLifecycle.intent(action, before ?? UserState(), now: clock.now())
      guard await users.writeState(of: user) else {
        // Not on disk: a crash now would leave nothing to look up. Not sent; the earlier intent (if
        // any, with the id Fly answered) is kept, so the next attempt still looks up first.
        users.states[user]?.pending = before?.pending
        return ActionResult(action: action, outcome: .failed, attempts: 0, message: "intent not recorded")
      }
    }
    var attempt = 0
    while true {
      attempt += 1
      let started = clock.now()
      guard (try? await budget.acquire(action.kind)) != nil else { return cancelled(action, attempts: attempt - 1) }
      let applied = await apply(await fly.perform(action), of: action, started: started, attempt: attempt)
      guard case .retry(let delay) = applied.next else { return applied.result }
      try? await clock.sleep(seconds: delay)
    }
  }

  /// What the lifecycle makes of `outcome`, applied to the user's state, row and audit log.
  private func apply(_ outcome: UserLifecycle.Outcome, of action: Action, started: Double, attempt: Int) async
    -> (result: ActionResult, next: UserLifecycle.Step.Next)
  {
    let user = action.userID
    var context = UserLifecycle.Context(
      started: started, now: clock.now(), attempt: attempt, draw: jitter.next(), mayRetry: !draining,
      recorded: users.recorded(user))
    context.ownApp = fly.placement.app(forUser: user) != nil
    let step = UserLifecycle.after(
      action, outcome, users.states[user] ?? UserState(), context,
      policy: UserLifecycle.Policy(
        retry: settings.retry, verifyInterval: settings.verifyInterval,
        updateDeadline: settings.planner.updateDeadline, updateSettle: settings.planner.updateSettle))
    if let warning = step.warning { logger.warning("\(warning)", metadata: ["user": "\(user)"]) }
    await users.apply(step, for: user, now: context.now)
    return (ActionResult(action: action, outcome: step.outcome, attempts: attempt, message: step.message), step.next)
  }

  private func cancelled(_ action: Action, attempts: Int) -> ActionResult {
    ActionResult(action: action, outcome: .skipped, attempts: attempts, message: "cancelled")
  }
}
