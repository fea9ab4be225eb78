import FleetCore
import Testing

/// What each outcome of each action does to a user: a table, like the planner's. Times are fixed
/// (`now`), the jitter draw is 0.5, the retry policy Fly's default (1 s doubling, 3 attempts a pass).
struct UserLifecycleTests {
  static let now = 1_000_000.0
  static let spec = MachineTemplate()
  static let policy = UserLifecycle.Policy()

  static func createVolume(lookUp: Bool = false, known: String? = nil) -> Action {
    Action(
      userID: "u1",
      call: .createVolume(
        region: "cdg", spec: spec, guard: Action.CreateGuard(lookUpFirst: lookUp, knownResourceID: known)),
      reason: "test")
  }
  static func createMachine(lookUp: Bool = false, known: String? = nil) -> Action {
    Action(
      userID: "u1",
      call: .createMachine(
        region: "cdg", volumeID: "vol_1", spec: spec,
        guard: Action.CreateGuard(lookUpFirst: lookUp, knownResourceID: known)),
      reason: "test")
  }
  static let start = Action(userID: "u1", call: .start(machineID: "m1"), reason: "test")
  static let destroy = Action(userID: "u1", call: .destroyMachine(machineID: "m1", volumeID: "vol_1"), reason: "test")
  static let deleteVolume = Action(userID: "u1", call: .deleteVolume(volumeID: "vol_1"), reason: "test")
  static let verifyMachine = Action(userID: "u1", call: .verifyMachine(machineID: "m1"), reason: "test")
  static let verifyVolume = Action(userID: "u1", call: .verifyVolume(volumeID: "vol_1"), reason: "test")

  static func error(
    _ kind: UserLifecycle.CallError.Kind, status: Int, retryable: Bool = false, unknown: Bool = false,
    aboutApp: Bool = false
  ) -> UserLifecycle.CallError {
    UserLifecycle.CallError(
      kind: kind, retryable: retryable, outcomeUnknown: unknown, aboutApp: aboutApp, status: status,
      requestID: "req-1", code: "http_\(status)", message: "HTTP \(status)")
  }
  static let lost = error(.other, status: 503, retryable: true, unknown: true)
  static let refused422 = error(.other, status: 422)
  static let notYet412 = error(.notYet, status: 412)
  static let limited429 = error(.rateLimited, status: 429, retryable: true)
  static let notFound = error(.notFound, status: 404)

  static func state(_ body: (inout UserState) -> Void = { _ in }) -> UserState {
    var state = UserState()
    body(&state)
    return state
  }
  static let intent = UserLifecycle.intent(createMachine(), state { $0.volumeID = "vol_1" }, now: now - 1)
  static func machine(
    _ id: String = "m1", state: MachineState = .started, owner: String? = "u1", volume: String? = "vol_1"
  )
    -> UserLifecycle.FoundMachine
  {
    UserLifecycle.FoundMachine(
      id: id, state: state, owner: owner, region: "cdg", volumeID: volume, privateIP: "fdaa::1")
  }
  static func volume(
    _ id: String = "vol_1", name: String = FleetNames.volumeName(forUser: "u1"), state: VolumeState = .created
  )
    -> UserLifecycle.FoundVolume
  {
    UserLifecycle.FoundVolume(id: id, name: name, state: state, region: "cdg")
  }

  struct Case: Sendable, CustomTestStringConvertible {
    var name: String
    var action: Action
    var outcome: UserLifecycle.Outcome
    var before = UserState()
    var attempt = 1
    var mayRetry = true
    var recorded: RecordedMachine? = RecordedMachine(machineID: "m1", volumeID: "vol_1")
    /// The step, described: outcome, next, row, events, state.
    var expected: String
    var testDescription: String { name }
  }

  static let cases: [Case] = [
    // Creates and "never create twice".
    Case(
      name: "a volume made: remembered, pending until listed", action: createVolume(),
      outcome: .done(.init(id: "vol_9")),
      before: UserLifecycle.intent(createVolume(), UserState(), now: now - 1),
      expected: "ok · done · - · create_volume:ok · volume=vol_9 pending=volume(id vol_9)"),
    Case(
      name: "a machine made: its row written at once", action: createMachine(),
      outcome: .done(.init(id: "m9", state: .created, privateIP: "fdaa::9")), before: intent,
      expected: "ok · done · upsert m9 cdg vol_1 created · create_machine:ok · volume=vol_1 pending=machine(id m9)"),
    Case(
      name: "a create's answer lost: never sent again in the pass; looked up next time", action: createMachine(),
      outcome: .failed(lost), before: intent,
      expected:
        "unknown · done · - · create_machine:unknown · volume=vol_1 pending=machine(unknown) failures=1 backoff=0.5 error"
    ),
    Case(
      name: "a create refused (422): no pending, backoff", action: createMachine(), outcome: .failed(refused422),
      before: intent, expected: "failed · done · - · create_machine:failed · volume=vol_1 failures=1 backoff=0.5 error"),
    Case(
      name: "a create answered 412 is a failure, not 'not yet'", action: createVolume(), outcome: .failed(notYet412),
      expected: "failed · done · - · create_volume:failed · failures=1 backoff=0.5 error"),
    Case(
      name: "a create whose secret is missing: not sent, backoff", action: createMachine(),
      outcome: .refused("env X names secret $Y"), before: intent,
      expected: "failed · done · - · create_machine:failed · volume=vol_1 failures=1 backoff=0.5 error"),

    // Retries within the pass.
    Case(
      name: "a start lost (503), first attempt: retried in the pass after a jittered delay", action: start,
      outcome: .failed(lost), expected: "unknown · retry 0.5 · - · start:unknown · -"),
    Case(
      name: "a start lost on the last attempt: the user backs off", action: start, outcome: .failed(lost), attempt: 3,
      expected: "unknown · done · - · start:unknown · failures=1 backoff=0.5 error"),
    Case(
      name: "a start lost while shutting down: not retried", action: start, outcome: .failed(lost), mayRetry: false,
      expected: "unknown · done · - · start:unknown · failures=1 backoff=0.5 error"),
    Case(
      name: "a 429: retried at once (the budget waits out Retry-After)", action: start, outcome: .failed(limited429),
      expected: "failed · retry 0.0 · - · start:failed · -"),
    Case(
      name: "a 429 on the last attempt: backs off without counting a failure", action: start,
      outcome: .failed(limited429), attempt: 3, expected: "failed · done · - · start:failed · backoff=0.5 error"),

    // "Not yet".
    Case(
      name: "a first 412: not yet, recorded, at least 1 s", action: start, outcome: .failed(notYet412),
      expected: "not_yet · done · - · start:not_yet · failures=1 backoff=1.0 error"),
    Case(
      name: "a 412 in a streak: not recorded again", action: start, outcome: .failed(notYet412),
      before: state { $0.failures = 2 }, expected: "not_yet · done · - · - · failures=3 backoff=2.0 error"),
    Case(
      name: "success ends a streak", action: start, outcome: .done(nil),
      before: state {
        $0.failures = 4
        $0.backoffUntil = now - 1
        $0.lastError = "x"
      }, expected: "ok · done · - · start:ok · -"),

    // Destruction.
    Case(
      name: "a destroy done: the row goes", action: destroy, outcome: .done(nil),
      expected: "ok · done · delete · destroy_machine:ok · -"),
    Case(
      name: "a destroy answered 404: already gone, the row goes", action: destroy, outcome: .failed(notFound),
      expected: "ok · done · delete · destroy_machine:ok · -"),
    Case(
      name: "a destroy of a machine the row does not hold: the row stays", action: destroy, outcome: .done(nil),
      recorded: RecordedMachine(machineID: "m2"), expected: "ok · done · - · destroy_machine:ok · -"),
    Case(
      name: "a volume deleted: forgotten", action: deleteVolume, outcome: .done(nil),
      before: state {
        $0.volumeID = "vol_1"
        $0.volumeReleasedAt = now - 100
      }, expected: "ok · done · - · delete_volume:ok · -"),
    Case(
      name: "another volume deleted: the remembered one stays", action: deleteVolume, outcome: .failed(notFound),
      before: state { $0.volumeID = "vol_2" }, expected: "ok · done · - · delete_volume:ok · volume=vol_2"),
    Case(
      name: "abandoned at shutdown: recorded, state not written", action: destroy, outcome: .abandoned, attempt: 0,
      expected: "skipped · done · - · destroy_machine:skipped · - (not saved)"),

    // Reads by id.
    Case(
      name: "a read shows the machine the list left out: the list lies", action: verifyMachine,
      outcome: .readMachine(machine()), expected: "present · done · - · verify_machine:present · reads=m1+ backoff=15.0"
    ),
    Case(
      name: "read again, still there: not recorded again", action: verifyMachine, outcome: .readMachine(machine()),
      before: state { $0.noteRead("m1", found: true) }, expected: "present · done · - · - · reads=m1+ backoff=15.0"),
    Case(
      name: "a first 404: believed only when a second read says so", action: verifyMachine,
      outcome: .readFailed(notFound), expected: "unknown · done · - · - · reads=m1- backoff=15.0"),
    Case(
      name: "a second 404: gone, the row says destroyed", action: verifyMachine, outcome: .readFailed(notFound),
      before: state { $0.noteRead("m1", found: false) },
      expected: "gone · done · status destroyed · verify_machine:gone · -"),
    Case(
      name: "'app not found' says nothing about the machine", action: verifyMachine,
      outcome: .readFailed(error(.notFound, status: 404, aboutApp: true)),
      expected: "unknown · done · - · verify_machine:unknown · failures=1 backoff=15.0 error"),
    Case(
      name: "a read shows it destroyed: gone", action: verifyMachine, outcome: .readMachine(machine(state: .destroyed)),
      expected: "gone · done · status destroyed · verify_machine:gone · -"),
    Case(
      name: "a read shows it tagged for another user: gone for this one", action: verifyMachine,
      outcome: .readMachine(machine(owner: "u2")), expected: "gone · done · status destroyed · verify_machine:gone · -"),
    Case(
      name: "a read without the tag proves nothing", action: verifyMachine, outcome: .readMachine(machine(owner: nil)),
      expected: "unknown · done · - · verify_machine:unknown · failures=1 backoff=15.0 error"),
    Case(
      name: "a read answering another id proves nothing", action: verifyMachine, outcome: .readMachine(machine("m2")),
      expected: "unknown · done · - · verify_machine:unknown · failures=1 backoff=15.0 error"),
    Case(
      name: "a read that answers ends a streak of reads that could not tell", action: verifyMachine,
      outcome: .readMachine(machine()),
      before: state {
        $0.failures = 3
        $0.lastError = "read by id: HTTP 500"
      }, expected: "present · done · - · verify_machine:present · reads=m1+ backoff=15.0"),
    Case(
      name: "a volume twice 404: forgotten and reported lost", action: verifyVolume, outcome: .readFailed(notFound),
      before: state {
        $0.volumeID = "vol_1"
        $0.noteRead("vol_1", found: false)
      }, expected: "gone · done · - · verify_volume:gone · lost=vol_1"),
    Case(
      name: "a volume now named for someone else: forgotten, not lost", action: verifyVolume,
      outcome: .readVolume(volume(name: "fk_other")), before: state { $0.volumeID = "vol_1" },
      expected: "gone · done · - · verify_volume:gone · -"),

    // Look-ups before a create again.
    Case(
      name: "a look-up finds nothing: create", action: createMachine(lookUp: true), outcome: .lookedUpMachines([]),
      before: intent, expected: "skipped · create · - · - · volume=vol_1 pending=machine(unknown) (not saved)"),
    Case(
      name: "a look-up finds only others' machines: create, never adopt them", action: createMachine(lookUp: true),
      outcome: .lookedUpMachines([
        machine("m7", owner: "u2"), machine("m8", volume: "vol_2"), machine("m9", state: .destroyed),
      ]),
      before: intent, expected: "skipped · create · - · - · volume=vol_1 pending=machine(unknown) (not saved)"),
    Case(
      name: "a look-up finds the machine the lost create made: adopted", action: createMachine(lookUp: true),
      outcome: .lookedUpMachines([machine("m7", owner: "u2"), machine("m3")]), before: intent,
      expected:
        "adopted · done · upsert m3 cdg vol_1 started · adopt_machine:adopted · volume=vol_1 pending=machine(id m3)"),
    Case(
      name: "a look-up finds the volume: adopted", action: createVolume(lookUp: true),
      outcome: .lookedUpVolumes([volume("vol_0", state: .destroyed), volume("vol_3")]),
      expected: "adopted · done · - · adopt_volume:adopted · volume=vol_3 pending=volume(id vol_3)"),
    Case(
      name: "a look-up that fails: no create, backoff", action: createMachine(lookUp: true),
      outcome: .lookUpFailed(lost),
      before: intent,
      expected: "unknown · done · - · create_machine:unknown · volume=vol_1 pending=machine(unknown) backoff=0.5"),
  ]

  static func describe(_ step: UserLifecycle.Step) -> String {
    let next: String =
      switch step.next {
      case .done: "done"
      case .create: "create"
      case .retry(let after): "retry \(after)"
      }
    let row: String =
      switch step.row {
      case nil: "-"
      case .delete: "delete"
      case .status(let state): "status \(state)"
      case .upsert(let row): "upsert \(row.id) \(row.region) \(row.volumeID ?? "-") \(row.status ?? "-")"
      }
    let events =
      step.events.isEmpty
      ? "-"
      : step.events.map { event -> String in
        guard case .string(let outcome)? = event.details["outcome"] else { return event.eventType }
        return "\(event.eventType):\(outcome)"
      }.joined(separator: ",")
    return "\(step.outcome.rawValue) · \(next) · \(row) · \(events) · \(describe(step.state))"
      + (step.saveState ? "" : " (not saved)")
  }

  static func describe(_ state: UserState) -> String {
    var parts: [String] = []
    if let volume = state.volumeID { parts.append("volume=\(volume)") }
    if let pending = state.pending {
      let kind = pending.kind == .machine ? "machine" : "volume"
      parts.append(
        "pending=\(kind)(\(pending.resourceID.map { "id \($0)" } ?? (pending.outcomeUnknown ? "unknown" : "-")))")
    }
    if !state.reads.isEmpty { parts.append("reads=" + state.reads.map { "\($0.id)\($0.found ? "+" : "-")" }.joined()) }
    if state.failures > 0 { parts.append("failures=\(state.failures)") }
    if let until = state.backoffUntil { parts.append("backoff=\(until - now)") }
    if state.lastError != nil { parts.append("error") }
    if let lost = state.lostVolume { parts.append("lost=\(lost)") }
    return parts.isEmpty ? "-" : parts.joined(separator: " ")
  }

  @Test(arguments: cases) func rule(_ c: Case) {
    let step = UserLifecycle.after(
      c.action, c.outcome, c.before,
      UserLifecycle.Context(
        started: Self.now - 0.25, now: Self.now, attempt: c.attempt, draw: 0.5, mayRetry: c.mayRetry,
        recorded: c.recorded), policy: Self.policy)
    #expect(Self.describe(step) == c.expected)
  }

  @Test func everyEventCarriesAttemptDurationReasonAndTheError() {
    let step = UserLifecycle.after(
      Self.createMachine(), .failed(Self.refused422), Self.intent,
      UserLifecycle.Context(started: Self.now - 0.25, now: Self.now, attempt: 2), policy: Self.policy)
    let details = step.events.first?.details ?? [:]
    #expect(details["attempt"] == .int(2))
    #expect(details["duration_ms"] == .int(250))
    #expect(details["reason"] == .string("test"))
    #expect(details["region"] == .string("cdg"))
    #expect(details["http_status"] == .int(422))
    #expect(details["fly_request_id"] == .string("req-1"))
    #expect(details["error_code"] == .string("http_422"))
    #expect(step.events.first?.volumeID == "vol_1")
    #expect(step.events.first?.createdAt == Int64(Self.now))
  }

  /// A backoff remembers when it was set (an edit of the desired row after it ends it, in the
  /// planner); success forgets it.
  @Test func aBackoffRemembersWhenItWasSet() {
    let context = UserLifecycle.Context(started: Self.now - 0.25, now: Self.now, attempt: 3)
    let failed = UserLifecycle.after(Self.start, .failed(Self.lost), UserState(), context, policy: Self.policy)
    #expect(failed.state.backoffSince == Self.now)
    let done = UserLifecycle.after(Self.start, .done(nil), failed.state, context, policy: Self.policy)
    #expect(done.state.backoffSince == nil && done.state.backoffUntil == nil)
  }

  @Test func theIntentIsWrittenBeforeACreateAndGuardsTheNext() {
    let intent = UserLifecycle.intent(Self.createVolume(), UserState(), now: Self.now)
    #expect(intent.pending == PendingCreate(kind: .volume, since: Self.now, outcomeUnknown: true))
    #expect(UserLifecycle.createGuard(.volume, intent) == Action.CreateGuard(lookUpFirst: true))
    #expect(UserLifecycle.createGuard(.machine, intent) == Action.CreateGuard())
    var answered = intent
    answered.pending?.resourceID = "vol_7"
    #expect(
      UserLifecycle.createGuard(.volume, answered) == Action.CreateGuard(lookUpFirst: true, knownResourceID: "vol_7"))
  }

  @Test func eventTypesRoundTripThroughTheirText() {
    var all: [EventType] = Action.Kind.allCases.map { .action($0) } + [.adopted(.machine), .adopted(.volume)]
    all += DriftFinding.Kind.allCases.flatMap { [EventType.drift($0), .driftResolved($0)] }
    for type in all { #expect(EventType(rawValue: type.rawValue) == type) }
    #expect(Set(all.map(\.rawValue)).count == all.count)
    #expect(EventType(rawValue: "drift.nonsense") == nil)
  }
}
