public import FleetCore
public import FleetStore
import Logging

/// What the controller keeps per user (pending creates, backoff, volume ids, reads by id), the
/// dashboard's `machines` rows as last written, and the guard's state: held in RAM between passes
/// and written through to the store. Owned by the reconciler (its only writer, on its actor).
///
/// RAM is never thrown away for the database's older copy while a write is failing: it may hold the
/// id of something just made. A user whose records could not be written is written again next pass.
final class UserStates {
  private let store: FleetStore
  private let redactor: Redactor
  private let logger: Logger
  private let onEvent: (@Sendable (AuditEvent) -> Void)?

  private var loaded = false
  /// Every user's state; handed to the planner (which updates it in place) and taken back.
  var states: UserMap<UserState> = [:]
  /// What the `machines` rows hold, as much as planning and change detection need.
  private(set) var rows = UserMap<RowMemo>()
  private(set) var guardState = GuardState()
  /// Where users live, and the shared app's name: what each `machines` row says of its app.
  var placement = AppPlacement()
  var sharedApp = ""

  /// The row with its app and (one app per user) hostname filled in.
  func placed(_ row: MachineRow) -> MachineRow {
    var row = row
    if let app = placement.app(forUser: row.userID) {
      row.appName = app
      row.hostname = FleetNames.hostname(app: app)
    } else {
      row.appName = sharedApp.isEmpty ? nil : sharedApp
      row.hostname = nil
    }
    return row
  }
  /// Users whose state could not be written: written again by the next pass.
  private var dirty: Set<String> = []
  /// Users whose records (events, row, state) could not be written this pass, and why.
  private(set) var recordFailures: [String: String] = [:]

  init(store: FleetStore, redactor: Redactor, logger: Logger, onEvent: (@Sendable (AuditEvent) -> Void)?) {
    self.store = store
    self.redactor = redactor
    self.logger = logger
    self.onEvent = onEvent
  }

  /// The next pass reads the states and rows back from the database.
  func invalidate() { loaded = false }

  func loadIfNeeded(isolation: isolated (any Actor)? = #isolation) async throws(StoreError) {
    guard !loaded else { return }
    let states = try await store.loadUserStates()
    self.states = states
    // A user's volume id is read from both tables: one string kept, not two.
    rows = try await store.machineRows { row in
      var memo = RowMemo(row)
      if let shared = states[row.userID]?.volumeID, shared == memo.volumeID { memo.volumeID = shared }
      return memo
    }
    guardState = try await store.loadGuardState()
    loaded = true
  }

  /// The user's `machines` row as last written or read.
  func recorded(_ user: String) -> RecordedMachine? { Self.recorded(rows[user]) }

  static func recorded(_ memo: RowMemo?) -> RecordedMachine? {
    memo.map { RecordedMachine(machineID: $0.id, volumeID: $0.volumeID, status: $0.status) }
  }

  func takeRecordFailures() -> [String: String] {
    defer { recordFailures = [:] }
    return recordFailures
  }

  // MARK: One action's records

  /// Applies what the lifecycle decided for `user` and commits it with its events (scrubbed):
  /// false when the database refused them.
  @discardableResult
  func apply(_ step: UserLifecycle.Step, for user: String, now: Double, isolation: isolated (any Actor)? = #isolation)
    async -> Bool
  {
    if step.saveState { states[user] = step.state }
    var statements: [SQLStatement] = []
    switch step.row {
    case .upsert(let row):
      let row = placed(row)
      rows[user] = RowMemo(row)
      statements.append(FleetStore.upsertMachineRow(row))
    case .delete:
      rows[user] = nil
      statements.append(FleetStore.deleteMachineRow(userID: user))
    case .status(let status):
      rows[user]?.status = status.rawValue
      statements.append(FleetStore.updateMachineStatus(userID: user, status: status.rawValue, updatedAt: Int64(now)))
    case nil:
      break
    }
    if let closed = step.restoreClosed {
      // Closed in the same write as the step's events and state: never one without the other.
      statements.append(
        FleetStore.finishRestoreStatement(
          id: closed.requestID, status: closed.outcome.rawValue, detail: redactor.scrub(closed.detail), at: Int64(now)))
    }
    let events = step.events.map(redactor.scrub)
    guard step.saveState || !events.isEmpty || !statements.isEmpty else { return true }
    return await record(events, user: user, statements: statements, saveState: step.saveState)
  }

  /// Writes the user's state as it is now (a create's intent, before the call): false when refused.
  func writeState(of user: String, isolation: isolated (any Actor)? = #isolation) async -> Bool {
    await record([], user: user)
  }

  private func record(
    _ events: [AuditEvent], user: String, statements: [SQLStatement] = [], saveState: Bool = true,
    isolation: isolated (any Actor)? = #isolation
  ) async -> Bool {
    let save = FleetStore.saveUserState(user, states[user] ?? UserState())
    var recorded = true
    do {
      try await store.commit(events: events, statements: statements + (saveState ? [save] : []))
    } catch {
      // Acted on Fly, not on record: the pass fails loudly (finding, alert, non-zero exit); the
      // next pass writes the user's state again from RAM, and its row from the list.
      recorded = false
      recordFailures[user] = error.description
      dirty.insert(user)
      if !statements.isEmpty { rows[user] = nil }
      logger.error(
        "could not record an action", metadata: ["user": "\(user)", "error": "\(redactor.scrub(error.description))"])
    }
    for event in events {
      onEvent?(event)
      log(event)
    }
    return recorded
  }

  /// One line per recorded event: info when it went as asked, warning (with the error, its code,
  /// the HTTP status and Fly's request id) when it did not.
  private func log(_ event: AuditEvent) {
    var metadata: Logger.Metadata = [
      "user": "\(event.userID ?? "-")", "machine": "\(event.machineID ?? "-")", "volume": "\(event.volumeID ?? "-")",
    ]
    for key in ["outcome", "attempt", "error_code", "http_status", "fly_request_id", "error", "message"] {
      switch event.details[key] {
      case .string(let text)?: metadata[key] = "\(text)"
      case .int(let number)?: metadata[key] = "\(number)"
      default: break
      }
    }
    let failed: Set = ["failed", "unknown", "not_yet"]
    var outcome = ""
    if case .string(let text)? = event.details["outcome"] { outcome = text }
    logger.log(level: failed.contains(outcome) ? .warning : .info, "\(event.eventType)", metadata: metadata)
  }

  // MARK: A pass's records

  /// Writes what a plan changed (states, the guard's state), the rows that must follow what Fly
  /// shows, and the pass's events, in chunks (the first pass over a 100k fleet adopts every user).
  /// One user's refused row fails only that user (``recordFailures``). Returns the statements written.
  func commit(
    _ plan: Plan, observation: Observation, trusted: Bool, events: [AuditEvent], also: [SQLStatement] = [],
    now: Double, isolation: isolated (any Actor)? = #isolation
  ) async throws(StoreError) -> Int {
    var writer = ChunkedWriter(store: store)
    recordFailures = [:]
    do {
      for statement in also { try await writer.add(statement) }
      let rewrite = dirty.subtracting(plan.changedStates)
      dirty = []
      for user in plan.changedStates + rewrite {
        try await writer.add(FleetStore.saveUserState(user, states[user] ?? UserState()), user: user)
      }
      if plan.guardState != guardState {
        try await writer.add(FleetStore.saveGuardState(plan.guardState))
        guardState = plan.guardState
      }
      try await syncRows(observation: observation, trusted: trusted, now: now, into: &writer)
      try await writer.finish(events: events)
    } catch {
      // Not all of it was written: the next pass reads the states and rows back from the database.
      loaded = false
      throw error
    }
    for (user, error) in writer.failed {
      // One user's bad row (another user's row holding its machine id, say) stops only that user's
      // record: its memo is dropped so the next pass writes it again (and says so again).
      let wanted = rows[user]?.id
      rows[user] = nil
      dirty.insert(user)
      var cause = error
      if error.contains("machines.id"), let wanted,
        let holder = rows.first(where: { $0.value.id == wanted && $0.key != user })?.key
      {
        cause += " (the machines row of user \(holder) holds machine \(wanted), which Fly tags for \(user))"
      }
      recordFailures[user] = cause
    }
    return writer.written
  }

  /// Statements that make the dashboard's `machines` rows follow what Fly shows (only changes).
  private func syncRows(
    observation: Observation, trusted: Bool, now: Double, into writer: inout ChunkedWriter,
    isolation: isolated (any Actor)? = #isolation
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
      if let row, !machines.contains(where: { $0.id == row.id }), !MachineState(row.status ?? "").isGone,
        listed(row.id)?.isGone != true
      {
        // The row's machine is not listed and not known gone: the row is not switched to another
        // machine until a read by id says the recorded one is gone.
        continue
      }
      guard
        let machine = machines.first(where: { $0.id == row?.id })
          ?? machines.min(by: { ($0.createdAt ?? 0, $0.id) < ($1.createdAt ?? 0, $1.id) })
      else { continue }
      let app = machine.app ?? placement.app(forUser: user) ?? sharedApp
      let digest = RowMemo.digest(
        region: machine.region, volumeID: machine.volumeID, status: machine.state.rawValue,
        ipAddress: machine.privateIP, app: app)
      if let row, row.id == machine.id, row.digest == digest {
        // Unchanged. Share the observation's string storage instead of a copy read from the database.
        if row.volumeID != nil && row.volumeID == machine.volumeID { rows[user]?.volumeID = machine.volumeID }
        continue
      }
      let next = placed(
        MachineRow(
          id: machine.id, userID: user, region: machine.region, volumeID: machine.volumeID,
          status: machine.state.rawValue, ipAddress: machine.privateIP,
          createdAt: row.map(\.createdAt) ?? Int64(machine.createdAt ?? now), updatedAt: Int64(now)))
      rows[user] = RowMemo(next)
      try await writer.add(FleetStore.upsertMachineRow(next), user: user)
    }
    // A row whose machine the list does not show is never dropped because of the list: the planner
    // reads that machine by id, and only a 404 (or the list showing it destroyed) removes the row.
    guard trusted else { return }
    let orphaned = rows.filter { live.first[$0.key] == nil && states[$0.key]?.pending?.kind != .machine }
    for (user, row) in orphaned {
      if let gone = listed(row.id), gone.isGone {
        // Still listed as destroying/destroyed: the row says so until Fly forgets the machine.
        if row.status != gone.state.rawValue {
          rows[user]?.status = gone.state.rawValue
          try await writer.add(
            FleetStore.updateMachineStatus(userID: user, status: gone.state.rawValue, updatedAt: Int64(now)),
            user: user)
        }
      } else if MachineState(row.status ?? "").isGone {
        // The list showed it destroyed before, and now forgets it: gone.
        rows[user] = nil
        try await writer.add(FleetStore.deleteMachineRow(userID: user), user: user)
      }
    }
  }

  /// A user's `machines` row as the controller keeps it between passes: the ids planning needs and
  /// a digest of the rest (see docs/benchmarks.md for what the whole row would cost).
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
      digest = Self.digest(
        region: row.region, volumeID: row.volumeID, status: row.status, ipAddress: row.ipAddress,
        app: row.appName ?? "")
    }

    /// A missing IP is not a change (the upsert keeps the last one). The app: a row written before
    /// rows named their app is written again once, with it.
    static func digest(region: String, volumeID: String?, status: String?, ipAddress: String?, app: String) -> Int {
      var hasher = Hasher()
      hasher.combine(region)
      hasher.combine(volumeID)
      hasher.combine(status)
      hasher.combine(app)
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
      } catch  where error.code == .constraint {
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
        } catch  where error.code == .constraint {
          failed[user] = error.message
        }
      }
      try await store.commit(events: events, statements: shared)
      written += shared.count
    }
  }
}
