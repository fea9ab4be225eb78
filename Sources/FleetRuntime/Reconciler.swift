public import FleetCore
public import FleetStore
public import FlyMachines
import Foundation
public import Logging
import Synchronization

/// One pass: what it saw, planned and did.
public struct PassReport: Sendable {
  public enum Outcome: String, Sendable {
    case ok
    /// Some action failed (retried on later passes).
    case actionsFailed = "actions_failed"
    /// The pass could not run: desired state unreadable, or Fly unreachable. Nothing was done.
    case couldNotRun = "could_not_run"
  }
  public var outcome: Outcome
  public var plan: Plan?
  public var results: [ActionResult] = []
  public var findings: [DriftFinding] = []
  public var desiredUsers = 0
  public var observedMachines = 0
  public var observedVolumes = 0
  public var listsTrusted = true
  public var startedAt: Double
  public var duration: Double = 0
  public var error: String?
  /// The observation, for `status`.
  public var observation: Observation?
  public var desired: DesiredSnapshot?
  /// The desired version, the list pages and the memory were all as after the previous pass, which
  /// found nothing to do and nothing waiting on a clock: its empty plan stands, not computed again.
  public var steady = false

  public init(outcome: Outcome, startedAt: Double) {
    self.outcome = outcome
    self.startedAt = startedAt
  }
}

/// The loop's one pass, as data flow: read the desired snapshot, list Fly whole, plan (pure), act
/// within the write budget with retries, record every attempt, make the `machines` rows follow.
///
/// Holds the controller's memory in RAM after the first pass (write-through to the store), so a
/// pass with nothing to do costs the two list reads and nothing else.
public actor Reconciler {
  private nonisolated let client: any FlyMachinesAPI
  public nonisolated let store: FleetStore
  public let settings: ReconcilerSettings
  private let clock: any FleetClock
  private let jitter: Jitter
  public let budget: WriteBudget
  private let redactor: Redactor
  private let logger: Logger
  private let onEvent: (@Sendable (AuditEvent) -> Void)?
  /// Whether this process may still act (holds the writer lease); checked before every call that
  /// changes Fly and before a pass's writes. Always true without a lease.
  private var mayWrite: @Sendable () -> Bool = { true }
  /// Users whose memory could not be written: written again by the next pass (RAM is not thrown
  /// away for the database's older copy: it may hold the id of something just made).
  private var dirty: Set<String> = []

  private var loaded = false
  private var memory: [String: UserMemory] = [:]
  /// What the `machines` rows hold, as much as planning and change detection need.
  private var rows = UserMap<RowMemo>()
  private var guardMemory = GuardMemory()
  private var activeFindings: [String: DriftFinding] = [:]
  private var draining = false
  /// The last snapshot and the desired-state version it was read at: an unchanged version means an
  /// unchanged table (triggers bump it on every edit), so a quiet pass reads one row, not every user.
  private var cachedDesired: (version: Int64, snapshot: DesiredSnapshot)?
  /// The last lists read, page by page: an unchanged page is not decoded again.
  private var machinePages: PagedList<ObservedMachine>?
  private var volumePages: PagedList<ObservedVolume>?
  /// The last pass was quiet (no action, finding, wait, write) and no user has a clock running
  /// (pending create, backoff, retention, transitional state): the same inputs plan the same nothing.
  private var steady = false
  /// Users whose records (events, `machines` row, memory) could not be written this pass, and why.
  private var recordFailures: [String: String] = [:]
  /// When this process started watching, by the monotonic clock (retention's floor).
  private let watchingSince = MonotonicWallClock.continuousSeconds()

  public init(
    client: any FlyMachinesAPI, store: FleetStore, settings: ReconcilerSettings, clock: any FleetClock = SystemFleetClock(),
    jitter: Jitter = Jitter(), redactor: Redactor = Redactor(), logger: Logger = Logger(label: "fleetkeeper"),
    onEvent: (@Sendable (AuditEvent) -> Void)? = nil
  ) {
    self.client = client
    self.store = store
    self.settings = settings
    self.clock = clock
    self.jitter = jitter
    self.budget = WriteBudget(limits: settings.writeLimits, clock: clock)
    self.redactor = redactor
    redactor.add(client.credentials)
    self.logger = logger
    self.onEvent = onEvent
  }

  /// Sets the check of the writer lease (see ``LeaseKeeper``).
  public func setWriterCheck(_ check: @escaping @Sendable () -> Bool) { mayWrite = check }

  /// Stop starting new actions (graceful shutdown); actions in flight finish.
  public func drain() { draining = true }

  /// Allow actions again (a new pass while holding the writer lease).
  public func resume() { draining = false }

  /// Forgets everything held between passes: the next pass reads memory, rows and the desired
  /// state from the database and the lists afresh. Called when the writer lease is (re)gained:
  /// another process may have acted meanwhile.
  public func invalidate() {
    loaded = false
    cachedDesired = nil
    machinePages = nil
    volumePages = nil
    steady = false
  }

  private func loadIfNeeded() async throws(StoreError) {
    guard !loaded else { return }
    let memory = try await store.loadUserMemory()
    self.memory = memory
    // A user's volume id is read from both tables: one string kept, not two (6 MB at 100k users).
    rows = try await store.machineRows { row in
      var memo = RowMemo(row)
      if let shared = memory[row.userID]?.volumeID, shared == memo.volumeID { memo.volumeID = shared }
      return memo
    }
    guardMemory = try await store.loadGuardMemory()
    loaded = true
  }

  /// Both lists, read against the last read. `unchanged`: no page of either list changed.
  private func observe() async throws(FlyAPIError) -> (observation: Observation, unchanged: Bool) {
    // The last lists are handed over, not shared: a changed page is replaced in their storage
    // instead of the whole list being copied. If a read fails they are gone, and the next pass
    // decodes every page (CPU once, nothing wrong).
    let previousMachines = Handover(machinePages.take())
    let previousVolumes = Handover(volumePages.take())
    // About one machine and one volume per desired user: the lists are allocated once at that size.
    let expected = cachedDesired?.snapshot.machines.count ?? 0
    async let machines = client.listMachineListings(
      ownerKey: FleetNames.userMetadataKey, includeDeleted: false, previous: previousMachines.take(),
      expected: expected,
      { ObservedMachine($0) })
    async let volumes = client.listVolumes(previous: previousVolumes.take(), expected: expected, { ObservedVolume($0) })
    do {
      let (m, v) = try await (machines, volumes)
      machinePages = m
      volumePages = v
      return (Observation(machines: m.items, volumes: v.items), m.unchanged && v.unchanged)
    } catch let error as FlyAPIError {
      throw error
    } catch {
      throw FlyAPIError(code: .transport, message: "\(error)", operation: "list")
    }
  }

  private static func counts(_ observation: Observation) -> (machines: Int, volumes: Int) {
    var machines = 0
    var volumes = 0
    for machine in observation.machines where machine.userID != nil && !machine.isGone { machines += 1 }
    for volume in observation.volumes where FleetNames.isFleetVolumeName(volume.name) && !volume.isGone { volumes += 1 }
    return (machines, volumes)
  }

  /// Runs one pass. With `apply: false` it plans only: nothing is called but the lists, nothing is written.
  public func pass(apply: Bool = true) async -> PassReport {
    let started = clock.now()
    var report = PassReport(outcome: .ok, startedAt: started)
    let desired: DesiredSnapshot
    let wasSteady = steady && apply
    steady = false
    var desiredUnchanged = false
    do {
      let version = try await store.desiredVersion()
      if let cached = cachedDesired, cached.version == version {
        desired = cached.snapshot
        desiredUnchanged = true
      } else {
        cachedDesired = nil  // the old snapshot is not held while the new one is read
        desired = try await store.readDesired()
        cachedDesired = (version, desired)
        // Every secret the template names is scrubbed from the start, not only once a create has
        // resolved it (an error echoing a machine's env after a restart must not print it).
        redactor.add(desired.template.env.values.compactMap { value in
          value.hasPrefix("$") && value.count > 1 ? settings.secrets[String(value.dropFirst())] : nil
        })
      }
      try await loadIfNeeded()
    } catch {
      // "Cannot read the desired state" means "do nothing", never "the desired state is empty".
      return couldNotRun(report, .desiredUnreadable, error.description, log: "desired state unreadable: nothing done")
    }
    report.desired = desired
    report.desiredUsers = desired.machines.count

    var observation: Observation
    let unchanged: Bool
    do {
      (observation, unchanged) = try await observe()
    } catch {
      return couldNotRun(report, .flyUnreachable, error.description, log: "fly lists failed: nothing done")
    }

    if wasSteady && unchanged && desiredUnchanged && !draining {
      // Nothing changed since a pass that had nothing to do: the same empty plan, without planning.
      steady = true
      report.steady = true
      report.observation = observation
      report.observedMachines = observation.machines.count
      report.observedVolumes = observation.volumes.count
      report.plan = Plan(actions: [], findings: [], waiting: [], memory: [:], guardMemory: guardMemory)
      report.duration = clock.now() - started
      return report
    }

    // The list guard: an empty or sharply shorter list is read again before anything is created or destroyed.
    var counts = Self.counts(observation)
    var suspect =
      Planner.listLooksSuspect(previous: guardMemory.observedMachines, current: counts.machines)
      || Planner.listLooksSuspect(previous: guardMemory.observedVolumes, current: counts.volumes)
    var rereads = 0
    while suspect && rereads < settings.suspectRereads {
      rereads += 1
      logger.warning(
        "fly lists look short; reading again",
        metadata: ["machines": "\(counts.machines)", "volumes": "\(counts.volumes)"])
      try? await clock.sleep(seconds: settings.suspectRereadDelay)
      guard let again = try? await observe() else { break }
      observation = again.observation
      counts = Self.counts(observation)
      suspect =
        Planner.listLooksSuspect(previous: guardMemory.observedMachines, current: counts.machines)
        || Planner.listLooksSuspect(previous: guardMemory.observedVolumes, current: counts.volumes)
    }
    var nextGuard = guardMemory
    if suspect {
      nextGuard.suspectPasses += 1
      if nextGuard.suspectPasses >= settings.suspectPassesBeforeTrust {
        suspect = false  // the same short lists, pass after pass: believe them
      }
    }
    if !suspect {
      nextGuard.suspectPasses = 0
      nextGuard.observedMachines = counts.machines
      nextGuard.observedVolumes = counts.volumes
    }
    report.listsTrusted = !suspect
    report.observation = observation
    report.observedMachines = observation.machines.count
    report.observedVolumes = observation.volumes.count

    // A clock wrong from the start (a VM booted before NTP) would count retention from a wrong now:
    // checked against Fly's own clock, and retention deletes held while they disagree.
    var watching = MonotonicWallClock.continuousSeconds() - watchingSince
    var skewFinding: DriftFinding?
    if let server = client.serverNow(), abs(started - server) > settings.maxClockSkew {
      watching = -.infinity  // below any floor, 0 included
      skewFinding = DriftFinding(
        kind: .clockSkew,
        message:
          "the controller's clock is \(Int(started - server)) s off Fly's: volume deletes after retention are held until they agree")
    }
    let rows = self.rows
    // Applying, the memory map is handed to the planner, which updates it in place (at 100k users
    // a copy is 10 MB and milliseconds); planning only, the planner gets a shared copy.
    var handed = memory
    if apply { memory = [:] }
    var plan = Planner.plan(
      Planner.Input(
        desired: desired, observed: observation,
        recordedBy: { user in
          rows[user].map { RecordedMachine(machineID: $0.id, volumeID: $0.volumeID, status: $0.status) }
        }, memory: consume handed, guardMemory: nextGuard,
        now: started, settings: settings.planner, listsTrusted: !suspect, watching: watching))
    if let skewFinding { plan.findings.append(skewFinding) }
    if apply {
      memory = plan.memory
      plan.memory = [:]  // not shared with the report: the next change would copy it
    }
    report.plan = plan
    report.findings = plan.findings
    guard apply else {
      report.duration = clock.now() - started
      return report
    }

    // Persist what the plan changed in memory, the rows that must follow reality, new findings.
    // Written in chunks of a few thousand statements: the first pass over a 100k fleet adopts every
    // user (a memory and a row each), and holding all of it at once would double the peak memory.
    guard mayWrite() else {
      // The lease went while this pass planned: another process may be acting. Nothing is written.
      loaded = false
      return couldNotRun(report, .leaseLost, "the writer lease was lost while planning: nothing done")
    }
    var writer = ChunkedWriter(store: store)
    var events: [AuditEvent] = []
    recordFailures = [:]
    do {
      let rewrite = dirty.subtracting(plan.changedMemory)
      dirty = []
      for user in plan.changedMemory + rewrite {
        try await writer.add(FleetStore.saveUserMemory(user, memory[user] ?? UserMemory()), user: user)
      }
      if plan.guardMemory != guardMemory {
        try await writer.add(FleetStore.saveGuardMemory(plan.guardMemory))
        guardMemory = plan.guardMemory
      }
      try await syncRows(observation: observation, trusted: !suspect, now: started, into: &writer)
      events = findingEvents(plan.findings, now: started)
      try await writer.finish(events: events)
      for (user, error) in writer.failed {
        // One user's bad row (another user's row holding its machine id, say) stops only that
        // user's record: its memo is dropped so the next pass writes it again (and says so again).
        let wanted = self.rows[user]?.id
        self.rows[user] = nil
        dirty.insert(user)
        var cause = error
        if error.contains("machines.id"), let wanted,
          let holder = self.rows.first(where: { $0.value.id == wanted && $0.key != user })?.key
        {
          cause += " (the machines row of user \(holder) holds machine \(wanted), which Fly tags for \(user))"
        }
        recordFailures[user] = cause
      }
    } catch {
      // Not all of it was written: the next pass reads the memory and rows back from the database.
      // Nothing was acted on, so what this plan changed is planned again from there.
      loaded = false
      return couldNotRun(report, .desiredUnreadable, error.description)
    }
    events.forEach { onEvent?($0) }
    let statements = writer.written

    steady =
      !suspect && plan.actions.isEmpty && plan.waiting.isEmpty && plan.findings.isEmpty && statements == 0
      && events.isEmpty
      && memory.values.allSatisfy {
        $0.pending == nil && ($0.backoffUntil ?? 0) <= started && $0.volumeReleasedAt == nil
          && $0.transitionalSince == nil && $0.failures == 0 && $0.reads.isEmpty
      }
    report.results = await execute(
      Self.trim(plan.actions, limits: settings.writeLimits, seconds: settings.passWorkSeconds))
    if report.results.contains(where: { $0.outcome == .failed }) { report.outcome = .actionsFailed }
    if !recordFailures.isEmpty {
      // What was done is not all on record: a failed pass, loud; the users' memory is written again
      // by the next pass from RAM (which knows what was just made).
      report.outcome = .actionsFailed
      steady = false
      for (user, error) in recordFailures.sorted(by: { $0.key < $1.key }) {
        let finding = DriftFinding(
          kind: .recordFailed, userID: user,
          message: "could not record \(user)'s state (others go on): \(redactor.scrub(error))")
        report.findings.append(finding)
        logger.error("record failed", metadata: ["user": "\(user)", "error": "\(finding.message)"])
      }
      recordFailures = [:]
    }
    report.duration = clock.now() - started
    return report
  }

  /// The pass stops before acting: what it could not read becomes its finding (and the alert).
  private func couldNotRun(
    _ report: PassReport, _ kind: DriftFinding.Kind, _ error: String, log: Logger.Message? = nil
  ) -> PassReport {
    var report = report
    report.outcome = .couldNotRun
    report.error = redactor.scrub(error)
    report.findings.append(DriftFinding(kind: kind, message: report.error!))
    if let log { logger.error(log, metadata: ["error": "\(report.error!)"]) }
    report.duration = clock.now() - report.startedAt
    return report
  }

  // MARK: Rows and findings

  /// A user's `machines` row as the controller keeps it between passes: the ids planning needs and
  /// a digest of the rest (64 bytes instead of the whole row; at 100k users, tens of MB).
  struct RowMemo: Sendable {
    var id: String
    var volumeID: String?
    var status: String?
    var createdAt: Int64
    var digest: Int

    init(_ row: MachineRow) {
      id = row.id
      volumeID = row.volumeID
      status = row.status
      createdAt = row.createdAt ?? 0
      digest = Self.digest(region: row.region, volumeID: row.volumeID, status: row.status, ipAddress: row.ipAddress)
    }

    /// A missing IP is not a change (the upsert keeps the last one).
    static func digest(region: String, volumeID: String?, status: String?, ipAddress: String?) -> Int {
      var hasher = Hasher()
      hasher.combine(region)
      hasher.combine(volumeID)
      hasher.combine(status)
      if let ipAddress { hasher.combine(ipAddress) }
      return hasher.finalize()
    }
  }

  /// Commits statements a chunk at a time; the last chunk carries the pass's events.
  ///
  /// A chunk a constraint refuses is written again one user at a time, so that one user's bad
  /// row (a hand-written `machines` row holding another user's machine id) fails only that user
  /// (``failed``), never the pass for everyone. A database that refuses everything still fails it.
  struct ChunkedWriter {
    let store: FleetStore
    var batch: [SQLStatement] = []
    var users: [String?] = []
    var written = 0
    /// Users whose statements were refused, with the database's reason.
    var failed: [String: String] = [:]
    static let chunk = 4000

    mutating func add(_ statement: SQLStatement, user: String? = nil) async throws(StoreError) {
      batch.append(statement)
      users.append(user)
      if batch.count >= Self.chunk { try await flush(events: []) }
    }

    mutating func finish(events: [AuditEvent]) async throws(StoreError) {
      try await flush(events: events)
    }

    private mutating func flush(events: [AuditEvent]) async throws(StoreError) {
      defer {
        batch.removeAll(keepingCapacity: true)
        users.removeAll(keepingCapacity: true)
      }
      do {
        try await store.commit(events: events, statements: batch)
        written += batch.count
        return
      } catch where error.code == .constraint {
        // Below: one user at a time.
      }
      var byUser: [String: [SQLStatement]] = [:]
      var shared: [SQLStatement] = []
      var order: [String] = []
      for (statement, user) in zip(batch, users) {
        guard let user else {
          shared.append(statement)
          continue
        }
        if byUser[user] == nil { order.append(user) }
        byUser[user, default: []].append(statement)
      }
      for user in order {
        do {
          try await store.commit(events: [], statements: byUser[user]!)
          written += byUser[user]!.count
        } catch where error.code == .constraint {
          failed[user] = error.message
        }
      }
      try await store.commit(events: events, statements: shared)
      written += shared.count
    }
  }

  /// Statements that make the dashboard's `machines` rows follow what Fly shows (only changes).
  private func syncRows(
    observation: Observation, trusted: Bool, now: Double, into writer: inout ChunkedWriter
  ) async throws(StoreError) {
    var live = IndexGroups(capacity: observation.machines.count)
    for (index, machine) in observation.machines.enumerated() where !machine.isGone {
      if let user = machine.userID { live.add(user, index) }
    }
    // The first pass over a fleet writes every user's row: the map is allocated once at its size.
    if rows.count < live.keys.count / 2 { rows.reserveCapacity(live.keys.count) }
    // Rare (a row's machine not among its user's listed ones, or machines gone): every listed
    // machine by id, built only then, once.
    var listedByID: [String: Int]?
    func listed(_ id: String) -> ObservedMachine? {
      if listedByID == nil {
        var index: [String: Int] = [:]
        for (position, machine) in observation.machines.enumerated() where index[machine.id] == nil {
          index[machine.id] = position
        }
        listedByID = index
      }
      return listedByID![id].map { observation.machines[$0] }
    }
    for user in live.keys {
      let machines = live.items(user, in: observation.machines)
      let row = rows[user]
      if let row, !machines.contains(where: { $0.id == row.id }),
        !MachineState(row.status ?? "").isGone, listed(row.id)?.isGone != true
      {
        // The row's machine is not listed and not known gone: the row is not switched to another
        // machine until a read by id says the recorded one is gone.
        continue
      }
      guard
        let machine = machines.first(where: { $0.id == row?.id })
          ?? machines.min(by: { ($0.createdAt ?? 0, $0.id) < ($1.createdAt ?? 0, $1.id) })
      else { continue }
      let digest = RowMemo.digest(
        region: machine.region, volumeID: machine.volumeID, status: machine.state.rawValue, ipAddress: machine.privateIP)
      if let row, row.id == machine.id, row.digest == digest {
        // Unchanged. Share the observation's string storage instead of a copy read from the database.
        if row.volumeID != nil && row.volumeID == machine.volumeID { rows[user]?.volumeID = machine.volumeID }
        continue
      }
      let next = MachineRow(
        id: machine.id, userID: user, region: machine.region, volumeID: machine.volumeID, status: machine.state.rawValue,
        ipAddress: machine.privateIP, createdAt: row.map(\.createdAt) ?? Int64(machine.createdAt ?? now),
        updatedAt: Int64(now))
      rows[user] = RowMemo(next)
      try await writer.add(FleetStore.upsertMachineRow(next), user: user)
    }
    // A row whose machine the list does not show is never dropped because of the list: the planner
    // reads that machine by id, and only a 404 (or the list showing it destroyed) removes the row.
    if trusted {
      let orphaned = rows.filter { live.first[$0.key] == nil && memory[$0.key]?.pending?.kind != .machine }
      for (user, row) in orphaned {
        if let gone = listed(row.id), gone.isGone {
          // Still listed as destroying/destroyed: the row says so until Fly forgets the machine.
          if row.status != gone.state.rawValue {
            rows[user]?.status = gone.state.rawValue
            try await writer.add(
              FleetStore.updateMachineStatus(userID: user, status: gone.state.rawValue, updatedAt: Int64(now)), user: user)
          }
        } else if MachineState(row.status ?? "").isGone {
          // The list showed it destroyed before, and now forgets it: gone.
          rows[user] = nil
          try await writer.add(FleetStore.deleteMachineRow(userID: user), user: user)
        }
      }
    }
  }

  /// Events for findings that are new since the last pass, and for those that cleared.
  private func findingEvents(_ findings: [DriftFinding], now: Double) -> [AuditEvent] {
    var current: [String: DriftFinding] = [:]
    for finding in findings { current[finding.fingerprint] = finding }
    var events: [AuditEvent] = []
    for (key, finding) in current where activeFindings[key] == nil {
      logger.warning(
        "drift",
        metadata: [
          "kind": "\(finding.kind.rawValue)", "user": "\(finding.userID ?? "-")", "message": "\(finding.message)",
        ])
      events.append(
        AuditEvent(
          type: .drift(finding.kind), userID: finding.userID,
          machineID: finding.resourceID.flatMap { $0.hasPrefix("vol_") ? nil : $0 },
          volumeID: finding.resourceID.flatMap { $0.hasPrefix("vol_") ? $0 : nil },
          details: ["message": .string(redactor.scrub(finding.message))], createdAt: Int64(now)))
    }
    for (key, finding) in activeFindings where current[key] == nil {
      events.append(
        AuditEvent(
          type: .driftResolved(finding.kind), userID: finding.userID,
          machineID: finding.resourceID.flatMap { $0.hasPrefix("vol_") ? nil : $0 },
          volumeID: finding.resourceID.flatMap { $0.hasPrefix("vol_") ? $0 : nil }, createdAt: Int64(now)))
    }
    activeFindings = current
    return events.sorted { ($0.eventType, $0.userID ?? "") < ($1.eventType, $1.userID ?? "") }
  }

  // MARK: Acting

  /// Keeps of each rate-limited kind only what the write budget lets through in `seconds`; the
  /// rest is planned again next pass (soon, since the loop comes back quickly while busy).
  static func trim(_ actions: [Action], limits: WriteBudget.Limits, seconds: Double) -> [Action] {
    let allowed = Int(min(1e9, limits.burst + limits.perSecond * seconds))
    var counts: [Action.Kind: Int] = [:]
    return actions.filter { action in
      guard action.kind == .createVolume || action.kind == .createMachine || action.kind == .deleteVolume else {
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

  /// Commits the events, statements and the user's memory; false when the database refused them.
  @discardableResult
  private func record(
    _ events: [AuditEvent], user: String, statements: [SQLStatement] = [], saveMemory: Bool = true
  ) async -> Bool {
    let save = memory[user].map { FleetStore.saveUserMemory(user, $0) } ?? FleetStore.saveUserMemory(user, UserMemory())
    var recorded = true
    do {
      try await store.commit(events: events, statements: statements + (saveMemory ? [save] : []))
    } catch {
      // Acted on Fly, not on record: the pass fails loudly (finding, alert, non-zero exit); the
      // next pass writes the user's memory again from RAM, and its row from the list.
      recorded = false
      recordFailures[user] = error.description
      dirty.insert(user)
      if !statements.isEmpty { rows[user] = nil }
      logger.error(
        "could not record an action", metadata: ["user": "\(user)", "error": "\(redactor.scrub(error.description))"])
    }
    for event in events {
      onEvent?(event)
      logger.info(
        "\(event.eventType)",
        metadata: [
          "user": "\(event.userID ?? "-")", "machine": "\(event.machineID ?? "-")",
          "volume": "\(event.volumeID ?? "-")",
          "outcome": "\(event.details["outcome"].map { if case .string(let s) = $0 { s } else { "" } } ?? "")",
        ])
    }
    return recorded
  }

  /// Applies what the lifecycle decided: the user's state in RAM, its row, the events (scrubbed),
  /// all committed together.
  @discardableResult
  private func apply(_ step: UserLifecycle.Step, for action: Action, attempts: Int) async -> ActionResult {
    let user = action.userID
    if let warning = step.warning { logger.warning("\(warning)", metadata: ["user": "\(user)"]) }
    if step.saveState { memory[user] = step.state }
    var statements: [SQLStatement] = []
    let now = Int64(clock.now())
    switch step.row {
    case .upsert(let row):
      rows[user] = RowMemo(row)
      statements.append(FleetStore.upsertMachineRow(row))
    case .delete:
      rows[user] = nil
      statements.append(FleetStore.deleteMachineRow(userID: user))
    case .status(let status):
      rows[user]?.status = status.rawValue
      statements.append(FleetStore.updateMachineStatus(userID: user, status: status.rawValue, updatedAt: now))
    case nil:
      break
    }
    let events = step.events.map(redactor.scrub)
    if step.saveState || !events.isEmpty || !statements.isEmpty {
      await record(events, user: user, statements: statements, saveMemory: step.saveState)
    }
    return ActionResult(action: action, outcome: step.outcome, attempts: attempts, message: step.message)
  }

  private func context(started: Double, attempt: Int, user: String) -> UserLifecycle.Context {
    UserLifecycle.Context(
      started: started, now: clock.now(), attempt: attempt, draw: jitter.next(), mayRetry: !draining,
      recorded: rows[user].map { RecordedMachine(machineID: $0.id, volumeID: $0.volumeID, status: $0.status) })
  }

  private var policy: UserLifecycle.Policy {
    UserLifecycle.Policy(retry: settings.retry, verifyInterval: settings.verifyInterval)
  }

  /// Performs one action and applies its outcome: observe → plan → **perform → apply**.
  private func run(_ action: Action) async -> ActionResult {
    let user = action.userID
    func after(_ outcome: UserLifecycle.Outcome, started: Double, attempt: Int) async -> (UserLifecycle.Step, ActionResult) {
      let step = UserLifecycle.after(
        action, outcome, memory[user] ?? UserMemory(), context(started: started, attempt: attempt, user: user),
        policy: policy)
      return (step, await apply(step, for: action, attempts: attempt))
    }
    if draining || !mayWrite() { return await after(.abandoned, started: clock.now(), attempt: 0).1 }
    if action.kind.isRead {
      let started = clock.now()
      do {
        try await budget.acquire(action.kind)
      } catch {
        return ActionResult(action: action, outcome: .skipped, attempts: 0, message: "cancelled")
      }
      return await after(await read(action), started: started, attempt: 1).1
    }
    if action.lookUpFirst {
      let started = clock.now()
      let (step, result) = await after(await lookUp(action), started: started, attempt: 0)
      if step.next != .create { return result }
    }
    if action.kind.isCreate {
      // The intent is on disk before the call: a crash leaves something to look up, not a blind re-create.
      let before = memory[user]
      memory[user] = UserLifecycle.intent(action, before ?? UserMemory(), now: clock.now())
      guard await record([], user: user) else {
        // The intent is not on disk: a crash now would leave nothing to look up. Not sent.
        memory[user] = before
        return ActionResult(action: action, outcome: .failed, attempts: 0, message: "intent not recorded")
      }
    }
    var attempt = 0
    while true {
      attempt += 1
      let started = clock.now()
      do {
        try await budget.acquire(action.kind)
      } catch {
        return ActionResult(action: action, outcome: .skipped, attempts: attempt - 1, message: "cancelled")
      }
      let outcome = await perform(action)
      let (step, result) = await after(outcome, started: started, attempt: attempt)
      guard case .retry(let delay) = step.next else { return result }
      try? await clock.sleep(seconds: delay)
    }
  }

  /// The client's error in the lifecycle's terms, redacted; a 429 pauses the write budget.
  private func callError(_ error: FlyAPIError) -> UserLifecycle.CallError {
    if error.code == .rateLimited { budget.pause(retryAfter: error.retryAfter) }
    let kind: UserLifecycle.CallError.Kind =
      switch error.code {
      case .notFound: .notFound
      case .precondition, .conflict: .notYet
      case .rateLimited: .rateLimited
      default: .other
      }
    return UserLifecycle.CallError(
      kind: kind, retryable: error.isRetryable, outcomeUnknown: error.outcomeUnknown,
      aboutApp: error.code == .notFound && error.message.lowercased().contains("app"), status: error.status,
      requestID: error.requestID, code: error.code.description, message: redactor.scrub(error.description))
  }

  /// A read by id of a machine or volume the list left out.
  private func read(_ action: Action) async -> UserLifecycle.Outcome {
    do {
      switch action.call {
      case .verifyMachine(let id): return .readMachine(Self.found(try await client.getMachine(id)))
      case .verifyVolume(let id): return .readVolume(Self.found(try await client.getVolume(id)))
      default: return .refused("not a read")
      }
    } catch {
      return .readFailed(callError(error))
    }
  }

  /// Before creating again after a create: look for the resource (by the id Fly answered with;
  /// else machines by metadata, volumes by name). What may be adopted is the lifecycle's to say.
  private func lookUp(_ action: Action) async -> UserLifecycle.Outcome {
    do {
      switch action.call {
      case .createMachine:
        if let id = action.knownResourceID {
          // Fly answered an earlier create with this id: a GET sees it even while lists lag.
          return .lookedUpMachines(try await ifPresent { () async throws(FlyAPIError) in try await client.getMachine(id) }.map(Self.found))
        }
        return .lookedUpMachines(
          try await client.listMachines(ListMachinesQuery(metadata: [FleetNames.userMetadataKey: action.userID]))
            .map(Self.found))
      case .createVolume:
        if let id = action.knownResourceID {
          return .lookedUpVolumes(try await ifPresent { () async throws(FlyAPIError) in try await client.getVolume(id) }.map(Self.found))
        }
        return .lookedUpVolumes(try await client.listVolumes(summary: true).map(Self.found))
      default:
        return .lookedUpMachines([])
      }
    } catch {
      return .lookUpFailed(callError(error))
    }
  }

  /// A GET by id as a list of zero or one: a 404 means gone, any other error is thrown.
  private func ifPresent<T>(_ get: () async throws(FlyAPIError) -> T) async throws(FlyAPIError) -> [T] {
    do {
      return [try await get()]
    } catch {
      if error.code == .notFound { return [] }
      throw error
    }
  }

  static func found(_ machine: FlyMachine) -> UserLifecycle.FoundMachine {
    UserLifecycle.FoundMachine(
      id: machine.id, state: MachineState(machine.state), owner: machine.config?.metadata[FleetNames.userMetadataKey],
      region: machine.region, volumeID: machine.config?.mounts.first?.volume, privateIP: machine.privateIP)
  }

  static func found(_ volume: FlyVolume) -> UserLifecycle.FoundVolume {
    UserLifecycle.FoundVolume(id: volume.id, name: volume.name, state: VolumeState(volume.state), region: volume.region)
  }

  /// Makes the call.
  private func perform(_ action: Action) async -> UserLifecycle.Outcome {
    do {
      switch action.call {
      case .createVolume(let region, let spec, _):
        let volume = try await client.createVolume(
          CreateVolumeRequest(
            name: FleetNames.volumeName(forUser: action.userID), region: region, sizeGB: spec.volumeSizeGB,
            encrypted: spec.encrypted))
        return .done(UserLifecycle.Made(id: volume.id))
      case .createMachine(let region, _, _, _):
        let config: FlyMachineConfig
        do {
          config = try machineConfig(action)
        } catch {
          return .refused("\(error)")
        }
        let machine = try await client.createMachine(
          CreateMachineRequest(name: FleetNames.machineName(forUser: action.userID), region: region, config: config))
        return .done(
          UserLifecycle.Made(id: machine.id, state: MachineState(machine.state), privateIP: machine.privateIP))
      case .start(let id):
        _ = try await client.startMachine(id, leaseNonce: nil)
      case .stop(let id, _):
        try await client.stopMachine(id, nil, leaseNonce: nil)
      case .destroyMachine(let id, _):
        try await client.destroyMachine(id, force: false, leaseNonce: nil)
      case .deleteVolume(let id):
        _ = try await client.deleteVolume(id)
      case .verifyMachine, .verifyVolume:
        return await read(action)
      }
      return .done(nil)
    } catch {
      return .failed(callError(error))
    }
  }

  /// A missing secret named by the template.
  struct MissingSecret: Error, CustomStringConvertible {
    var variable: String
    var secret: String
    var description: String { "env \(variable) names secret $\(secret), which the controller does not hold" }
  }

  /// The config of a user's machine: the template with overrides, secrets resolved, tagged ours.
  func machineConfig(_ action: Action) throws -> FlyMachineConfig {
    let spec = action.spec ?? MachineTemplate()
    var config = FlyMachineConfig()
    config.image = spec.image
    config.guest = FlyGuest(cpuKind: spec.cpuKind, cpus: spec.cpus, memoryMB: spec.memoryMB)
    var env: [String: String] = [:]
    for (name, value) in spec.env {
      if value.hasPrefix("$"), value.count > 1 {
        let secret = String(value.dropFirst())
        guard let resolved = settings.secrets[secret] else { throw MissingSecret(variable: name, secret: secret) }
        redactor.add([resolved])
        env[name] = resolved
      } else {
        env[name] = value
      }
    }
    config.env = env
    config.initCommand = spec.initCommand
    if let services = spec.servicesJSON,
      let value = try? JSONDecoder().decode(JSONValue.self, from: Data(services.utf8))
    {
      config.services = value
    }
    if let volume = action.volumeID { config.mounts = [FlyMount(volume: volume, path: spec.mountPath)] }
    config.metadata = [FleetNames.userMetadataKey: action.userID, "fleet_managed_by": "fleetkeeper"]
    config.restartPolicy = spec.restartPolicy
    return config
  }
}

/// A value passed to another task by move: the receiver takes the only reference (so that it may
/// mutate the value's storage in place).
final class Handover<Value: Sendable>: Sendable {
  private let value: Mutex<Value?>
  init(_ value: consuming Value?) { self.value = Mutex(value) }
  func take() -> Value? { value.withLock { $0.take() } }
}
