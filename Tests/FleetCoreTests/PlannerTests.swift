import FleetCore
import Testing

/// The planner's rules, one row each: (desired, observed, states) → actions and findings.
struct PlannerTests {
  static let now = 1_800_000_000.0
  static let template = MachineTemplate(image: "registry.fly.io/agent:1")

  static func desired(_ rows: [(String, DesiredState, String)], updatedAt: Int64 = 1_799_999_000) -> DesiredSnapshot {
    DesiredSnapshot(
      template: template,
      machines: Dictionary(
        uniqueKeysWithValues: rows.map {
          ($0.0, DesiredMachine(userID: $0.0, state: $0.1, region: $0.2, updatedAt: updatedAt))
        }))
  }
  static func machine(
    _ id: String, user: String?, state: MachineState, region: String = "cdg", volume: String? = nil,
    created: Double = now - 3600,
    updated: Double = now - 60
  ) -> ObservedMachine {
    ObservedMachine(
      id: id, state: state, region: region, userID: user, volumeID: volume, createdAt: created, updatedAt: updated)
  }
  static func volume(
    _ id: String, user: String, region: String = "cdg", attached: String? = nil, state: VolumeState = .created,
    created: Double = now - 7200
  ) -> ObservedVolume {
    ObservedVolume(
      id: id, name: FleetNames.volumeName(forUser: user), state: state, region: region, attachedMachineID: attached,
      createdAt: created)
  }

  struct Case: Sendable, CustomTestStringConvertible {
    var name: String
    var desired: DesiredSnapshot
    var machines: [ObservedMachine] = []
    var volumes: [ObservedVolume] = []
    var recorded: [String: RecordedMachine] = [:]
    var states: UserMap<UserState> = [:]
    var guardState = GuardState()
    var settings = PlannerSettings()
    var trusted = true
    var actions: [String]
    var findings: [String] = []
    var testDescription: String { name }
  }

  static func state(_ body: (inout UserState) -> Void) -> UserState {
    var state = UserState()
    body(&state)
    return state
  }

  static let cases: [Case] = [
    Case(
      name: "running, nothing on Fly → create the volume", desired: desired([("u1", .running, "cdg")]),
      actions: ["create_volume u1"]),
    Case(
      name: "running, a volume, no machine → create the machine on it",
      desired: desired([("u1", .running, "cdg")]), volumes: [volume("v1", user: "u1")],
      actions: ["create_machine u1 vol=v1"]),
    Case(
      name: "running, started → nothing", desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "started", volume: "v1")],
      volumes: [volume("v1", user: "u1", attached: "m1")],
      actions: []),
    Case(
      name: "running, stopped behind our back → start and report",
      desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "stopped", volume: "v1")],
      volumes: [volume("v1", user: "u1", attached: "m1")], actions: ["start u1 m1"],
      findings: ["stopped_while_desired_running u1"]),
    Case(
      name: "running, stopped before the operator asked for running → start, no drift",
      desired: desired([("u1", .running, "cdg")], updatedAt: Int64(now) - 10),
      machines: [machine("m1", user: "u1", state: "stopped", volume: "v1", updated: now - 3600)],
      volumes: [volume("v1", user: "u1", attached: "m1")], actions: ["start u1 m1"]),
    Case(
      name: "running, failed → start and report", desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "failed")], actions: ["start u1 m1"], findings: ["machine_failed u1"]),
    Case(
      name: "running, suspended → start", desired: desired([("u1", .running, "cdg")], updatedAt: Int64(now)),
      machines: [machine("m1", user: "u1", state: "suspended")], actions: ["start u1 m1"]),
    Case(
      name: "running, starting → wait", desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "starting")], actions: []),
    Case(
      name: "running, starting for too long → stuck", desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "starting")],
      states: ["u1": state { $0.transitionalSince = now - 301 }], actions: [], findings: ["stuck u1"]),
    Case(
      name: "running, created a moment ago → wait for it to boot", desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "created", created: now - 5)], actions: []),
    Case(
      name: "running, created long ago (skip_launch or stuck) → start", desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "created", created: now - 60)], actions: ["start u1 m1"]),
    Case(
      name: "stopped, started → stop", desired: desired([("u1", .stopped, "cdg")]),
      machines: [machine("m1", user: "u1", state: "started")], actions: ["stop u1 m1"]),
    Case(
      name: "stopped, stopped → nothing; the volume stays", desired: desired([("u1", .stopped, "cdg")]),
      machines: [machine("m1", user: "u1", state: "stopped", volume: "v1")],
      volumes: [volume("v1", user: "u1", attached: "m1")],
      actions: []),
    Case(
      name: "absent, started → stop first", desired: desired([("u1", .absent, "cdg")]),
      machines: [machine("m1", user: "u1", state: "started")], actions: ["stop u1 m1"]),
    Case(
      name: "absent, stopped → destroy the machine, not the volume", desired: desired([("u1", .absent, "cdg")]),
      machines: [machine("m1", user: "u1", state: "stopped", volume: "v1")],
      volumes: [volume("v1", user: "u1", attached: "m1")],
      actions: ["destroy_machine u1 m1"]),
    Case(
      name: "no desired row for our machine → destroy it, report an orphan", desired: desired([]),
      machines: [machine("m1", user: "gone", state: "stopped")], actions: ["destroy_machine gone m1"],
      findings: ["orphan_machine gone"]),
    Case(
      name: "absent, volume still attached to the destroyed machine → wait", desired: desired([("u1", .absent, "cdg")]),
      machines: [machine("m1", user: "u1", state: "destroyed")], volumes: [volume("v1", user: "u1", attached: "m1")],
      actions: []),
    Case(
      name: "absent, volume free, retention running → keep it", desired: desired([("u1", .absent, "cdg")]),
      volumes: [volume("v1", user: "u1")], states: ["u1": state { $0.volumeReleasedAt = now - 3600 }], actions: []),
    Case(
      name: "absent, volume free, retention passed → delete it", desired: desired([("u1", .absent, "cdg")]),
      volumes: [volume("v1", user: "u1")], states: ["u1": state { $0.volumeReleasedAt = now - 8 * 86_400 }],
      actions: ["delete_volume u1 vol=v1"]),
    Case(
      name: "absent, retention never → keep it forever", desired: desired([("u1", .absent, "cdg")]),
      volumes: [volume("v1", user: "u1")], states: ["u1": state { $0.volumeReleasedAt = now - 800 * 86_400 }],
      settings: {
        var s = PlannerSettings(); s.volumeRetention = nil; return s
      }(), actions: []),
    Case(
      name: "a foreign machine → reported, never touched", desired: desired([]),
      machines: [machine("f1", user: nil, state: "started")], actions: [], findings: ["foreign_machine -"]),
    Case(
      name: "two machines → keep the recorded one, stop the started extra",
      desired: desired([("u1", .running, "cdg")]),
      machines: [
        machine("m1", user: "u1", state: "started", created: now - 10),
        machine("m2", user: "u1", state: "started", created: now - 100),
      ],
      recorded: ["u1": RecordedMachine(machineID: "m1")], actions: ["stop u1 m2"], findings: ["duplicate_machine u1"]),
    Case(
      name: "two machines, the extra stopped → destroy it", desired: desired([("u1", .running, "cdg")]),
      machines: [
        machine("m1", user: "u1", state: "started", created: now - 100),
        machine("m2", user: "u1", state: "stopped", created: now - 10),
      ],
      actions: ["destroy_machine u1 m2"], findings: ["duplicate_machine u1"]),
    Case(
      name: "two volumes → the extra is reported, never deleted as a side effect",
      desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "started", volume: "v1")],
      volumes: [volume("v1", user: "u1", attached: "m1"), volume("v2", user: "u1")],
      actions: [], findings: ["duplicate_volume u1"]),
    Case(
      name: "absent, a stop refused (backing off) → waits, takes no place under the destroy cap",
      desired: desired([("u1", .absent, "cdg")]),
      machines: [machine("m1", user: "u1", state: "started")],
      states: [
        "u1": state {
          $0.backoffUntil = now + 30; $0.failures = 2; $0.lastError = "412"
        }
      ],
      actions: []),
    Case(
      name: "an attached extra volume is never deleted", desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "started", volume: "v1")],
      volumes: [volume("v1", user: "u1", attached: "m1"), volume("v2", user: "u1", attached: "m9")],
      actions: [], findings: ["duplicate_volume u1"]),
    Case(
      name: "a volume create in flight, not listed yet → wait (no duplicate)",
      desired: desired([("u1", .running, "cdg")]),
      states: ["u1": state { $0.pending = PendingCreate(kind: .volume, since: now - 2, resourceID: "v1") }],
      actions: []),
    Case(
      name: "a lost volume create, grace passed → look up before creating", desired: desired([("u1", .running, "cdg")]),
      states: ["u1": state { $0.pending = PendingCreate(kind: .volume, since: now - 60, outcomeUnknown: true) }],
      actions: ["create_volume u1 lookup"]),
    Case(
      name: "a machine create in flight, not listed yet → wait", desired: desired([("u1", .running, "cdg")]),
      volumes: [volume("v1", user: "u1")],
      states: ["u1": state { $0.pending = PendingCreate(kind: .machine, since: now - 2) }], actions: []),
    Case(
      name: "an answered machine create still unlisted after the grace → GET it by id before creating again",
      desired: desired([("u1", .running, "cdg")]), volumes: [volume("v1", user: "u1")],
      states: ["u1": state { $0.pending = PendingCreate(kind: .machine, since: now - 60, resourceID: "m9") }],
      actions: ["create_machine u1 vol=v1 lookup known=m9"]),
    Case(
      name: "a just-created machine holds the volume before it is listed → wait",
      desired: desired([("u1", .running, "cdg")]),
      volumes: [volume("v1", user: "u1", attached: "m-new")], actions: []),
    Case(
      name: "backing off → no action", desired: desired([("u1", .running, "cdg")]),
      states: [
        "u1": state {
          $0.backoffUntil = now + 30; $0.failures = 2
        }
      ], actions: []),
    Case(
      name: "backing off, the desired row edited after the failure → tried at once",
      desired: desired([("u1", .running, "cdg")], updatedAt: Int64(now) - 5),
      states: [
        "u1": state {
          $0.backoffUntil = now + 30; $0.failures = 2; $0.lastError = "422"; $0.backoffSince = now - 10
        }
      ], actions: ["create_volume u1"]),
    Case(
      name: "backing off, the desired row last edited before the failure → still waits",
      desired: desired([("u1", .running, "cdg")], updatedAt: Int64(now) - 60),
      states: [
        "u1": state {
          $0.backoffUntil = now + 30; $0.failures = 2; $0.lastError = "422"; $0.backoffSince = now - 10
        }
      ], actions: []),
    Case(
      name: "failing beyond the budget → reported", desired: desired([("u1", .running, "cdg")]),
      states: [
        "u1": state {
          $0.failures = 6; $0.lastError = "fly capacity"
        }
      ], actions: ["create_volume u1"],
      findings: ["action_failing u1"]),
    Case(
      name: "machine not in the list → read by id before anything replaces it",
      desired: desired([("u1", .running, "cdg")]),
      volumes: [volume("v1", user: "u1")], recorded: ["u1": RecordedMachine(machineID: "m1", volumeID: "v1")],
      actions: ["verify_machine u1 m1"], findings: []),
    Case(
      name: "machine read by id and found destroyed → recreate on its volume and report",
      desired: desired([("u1", .running, "cdg")]),
      volumes: [volume("v1", user: "u1")],
      recorded: ["u1": RecordedMachine(machineID: "m1", volumeID: "v1", status: "destroyed")],
      actions: ["create_machine u1 vol=v1"], findings: ["machine_missing u1"]),
    Case(
      name: "machine not in the list, another of the user's is → read by id, no duplicate resolved",
      desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m2", user: "u1", state: "stopped", volume: "v2")],
      volumes: [volume("v1", user: "u1"), volume("v2", user: "u1", attached: "m2")],
      recorded: ["u1": RecordedMachine(machineID: "m1", volumeID: "v1")],
      states: ["u1": state { $0.volumeID = "v1" }],
      actions: ["verify_machine u1 m1"], findings: []),
    Case(
      name: "a read by id showed the machine the list leaves out → wait, report list_omits",
      desired: desired([("u1", .running, "cdg")]),
      recorded: ["u1": RecordedMachine(machineID: "m1", volumeID: "v1")],
      states: [
        "u1": state {
          $0.volumeID = "v1"; $0.noteRead("m1", found: true); $0.backoffUntil = now + 10
        }
      ],
      actions: [], findings: ["list_omits u1"]),
    Case(
      name: "the remembered volume not in the list, a newer one is → read by id, nothing switched or deleted",
      desired: desired([("u1", .running, "cdg")]),
      volumes: [volume("v2", user: "u1")],
      states: ["u1": state { $0.volumeID = "v1" }],
      actions: ["verify_volume u1"], findings: []),
    Case(
      name: "a duplicate volume older than the kept one may hold data → reported, not deleted",
      desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "started", volume: "v2")],
      volumes: [
        volume("v1", user: "u1", created: now - 900), volume("v2", user: "u1", attached: "m1", created: now - 60),
      ],
      states: ["u1": state { $0.volumeID = "v2" }],
      actions: [], findings: ["duplicate_volume u1"]),
    Case(
      name: "a duplicate volume the user's machine once mounted (remembered) → reported, not deleted",
      desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "started", volume: "v2")],
      volumes: [volume("v1", user: "u1", created: now), volume("v2", user: "u1", attached: "m1", created: now - 60)],
      states: ["u1": state { $0.volumeID = "v1" }],
      actions: [], findings: ["duplicate_volume u1"]),
    Case(
      name: "a remembered deadline from the future (clock stepped back) holds the user at most maxBackoff",
      desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "stopped")],
      states: [
        "u1": state {
          $0.backoffUntil = now + 86_400; $0.failures = 1; $0.lastError = "x"
        }
      ],
      settings: {
        var s = PlannerSettings(); s.maxBackoff = 0; return s
      }(),
      actions: ["start u1 m1"], findings: ["stopped_while_desired_running u1"]),
    Case(
      name: "machine destroyed behind our back, volume still bound → wait, and report it missing",
      desired: desired([("u1", .running, "cdg")]),
      machines: [machine("m1", user: "u1", state: "destroyed", volume: "v1")],
      volumes: [volume("v1", user: "u1", attached: "m1")],
      recorded: ["u1": RecordedMachine(machineID: "m1", volumeID: "v1")],
      actions: [], findings: ["machine_missing u1"]),
    Case(
      name: "volume not in the list → read by id before a new one is made", desired: desired([("u1", .running, "cdg")]),
      states: ["u1": state { $0.volumeID = "v1" }], actions: ["verify_volume u1"], findings: []),
    Case(
      name: "volume read by id and found gone → recreate and report", desired: desired([("u1", .running, "cdg")]),
      states: ["u1": state { $0.lostVolume = "v1" }], actions: ["create_volume u1"], findings: ["volume_missing u1"]),
    Case(
      name: "region changed under a machine → reported, not moved", desired: desired([("u1", .running, "ams")]),
      machines: [machine("m1", user: "u1", state: "started", region: "cdg")], actions: [],
      findings: ["region_mismatch u1"]),
    Case(
      name: "lists untrusted → starts only, creates and destroys held",
      desired: desired([("u1", .running, "cdg"), ("u2", .running, "cdg"), ("u3", .absent, "cdg")]),
      machines: [machine("m2", user: "u2", state: "stopped"), machine("m3", user: "u3", state: "stopped")],
      trusted: false,
      actions: ["start u2 m2"], findings: ["stopped_while_desired_running u2", "list_suspect -"]),
    Case(
      name: "an unreadable desired row is reported and never taken for absent",
      desired: {
        var d = desired([]); d.invalidRows = ["u1": "bad state"]; return d
      }(),
      machines: [machine("m1", user: "u1", state: "stopped")], actions: [], findings: ["invalid_desired_row u1"]),
  ]

  static func describe(_ action: Action) -> String {
    var text = "\(action.kind.rawValue) \(action.userID)"
    if let machine = action.machineID { text += " \(machine)" }
    if action.kind == .createMachine || action.kind == .deleteVolume, let volume = action.volumeID {
      text += " vol=\(volume)"
    }
    if action.lookUpFirst { text += " lookup" }
    if let id = action.knownResourceID { text += " known=\(id)" }
    return text
  }

  @Test(arguments: cases)
  func rule(_ c: Case) {
    let plan = Planner.plan(
      Planner.Input(
        desired: c.desired, observed: Observation(machines: c.machines, volumes: c.volumes), recorded: c.recorded,
        states: c.states, guardState: c.guardState, now: Self.now, settings: c.settings, listsTrusted: c.trusted))
    #expect(plan.actions.map(Self.describe) == c.actions)
    #expect(plan.findings.map { "\($0.kind.rawValue) \($0.userID ?? "-")" }.sorted() == c.findings.sorted())
  }

  @Test func createsCarryTheResolvedSpecAndTheVolumeRegion() {
    var snapshot = Self.desired([("u1", .running, "ams")])
    snapshot.machines["u1"]!.overrides = TemplateOverrides(image: "nginx:2", memoryMB: 1024)
    let plan = Planner.plan(
      .init(
        desired: snapshot, observed: Observation(machines: [], volumes: [Self.volume("v1", user: "u1", region: "cdg")]),
        now: Self.now))
    #expect(plan.actions.first?.spec?.image == "nginx:2")
    #expect(plan.actions.first?.spec?.memoryMB == 1024)
    #expect(plan.actions.first?.region == "cdg", "the machine goes where its volume is")
  }

  @Test func pendingCreateIsClearedOnceListed() {
    let plan = Planner.plan(
      .init(
        desired: Self.desired([("u1", .running, "cdg")]),
        observed: Observation(machines: [], volumes: [Self.volume("v1", user: "u1")]),
        states: [
          "u1": Self.state { $0.pending = PendingCreate(kind: .volume, since: Self.now - 1) },
          "u9": Self.state { $0.volumeID = "v9" },
        ], now: Self.now))
    #expect(plan.states["u1"]?.pending == nil)
    #expect(plan.states["u1"]?.volumeID == "v1")
    // What must be written is exactly what differs from the states planned from.
    let before: UserMap<UserState> = [
      "u1": Self.state { $0.pending = PendingCreate(kind: .volume, since: Self.now - 1) },
      "u9": Self.state { $0.volumeID = "v9" },
    ]
    #expect(plan.changedStates.contains("u1"))
    for user in Set(plan.states.keys).union(before.keys) {
      #expect(plan.changedStates.contains(user) == (plan.states[user] != before[user]), "\(user)")
    }
  }

  @Test func retentionClockStartsWhenTheVolumeIsFree() {
    let plan = Planner.plan(
      .init(
        desired: Self.desired([("u1", .absent, "cdg")]),
        observed: Observation(machines: [], volumes: [Self.volume("v1", user: "u1")]), now: Self.now))
    #expect(plan.actions.isEmpty)
    #expect(plan.states["u1"]?.volumeReleasedAt == Self.now)
  }

  @Test func destroysAreCappedPerPass() {
    let users = (0..<15).map { ("u\($0)", DesiredState.absent, "cdg") }
    let machines = (0..<15).map { Self.machine("m\($0)", user: "u\($0)", state: "stopped") }
    let plan = Planner.plan(
      .init(desired: Self.desired(users), observed: Observation(machines: machines, volumes: []), now: Self.now))
    #expect(plan.actions.filter { $0.kind == .destroyMachine }.count == 10)
    #expect(plan.findings.map(\.kind) == [.destroyCapReached])
  }

  @Test func massShrinkTripsTheGuardUntilOverridden() {
    let machines = (0..<10).map { Self.machine("m\($0)", user: "u\($0)", state: "stopped") }
    var guardState = GuardState()
    guardState.desiredBaseline = 10
    let emptied = Self.desired([])
    let tripped = Planner.plan(
      .init(
        desired: emptied, observed: Observation(machines: machines, volumes: []), guardState: guardState,
        now: Self.now))
    #expect(tripped.actions.isEmpty)
    #expect(tripped.findings.contains { $0.kind == .destroyGuardTripped })
    #expect(tripped.guardState.desiredBaseline == 10, "the baseline holds while tripped, across passes and restarts")

    var override = PlannerSettings()
    override.allowMassDestroy = true
    let allowed = Planner.plan(
      .init(
        desired: emptied, observed: Observation(machines: machines, volumes: []), guardState: guardState,
        now: Self.now, settings: override))
    #expect(allowed.actions.filter { $0.kind == .destroyMachine }.count == 10)
    #expect(allowed.guardState.desiredBaseline == 0)
  }

  @Test func oneUserLeavingASmallFleetDoesNotTripTheGuard() {
    var guardState = GuardState()
    guardState.desiredBaseline = 3
    let plan = Planner.plan(
      .init(
        desired: Self.desired([("u1", .running, "cdg"), ("u2", .running, "cdg"), ("u3", .absent, "cdg")]),
        observed: Observation(
          machines: [
            Self.machine("m1", user: "u1", state: "started"), Self.machine("m2", user: "u2", state: "started"),
            Self.machine("m3", user: "u3", state: "stopped"),
          ], volumes: []), guardState: guardState, now: Self.now))
    #expect(plan.actions.map(Self.describe) == ["destroy_machine u3 m3"])
  }

  @Test(arguments: [
    (nil as Int?, 0, false), (10, 0, true), (10, 4, true), (10, 6, false), (1, 0, false), (100, 99, false),
  ])
  func suspectLists(previous: Int?, current: Int, suspect: Bool) {
    #expect(Planner.listLooksSuspect(previous: previous, current: current) == suspect)
  }

  @Test func plannerIsLinearEnoughFor100kUsers() {
    // Not a timing test: a smoke check that the grouping is by hash map (this would take minutes if quadratic).
    let users = (0..<20_000).map { ("u\($0)", DesiredState.running, "cdg") }
    let machines = (0..<20_000).map { Self.machine("m\($0)", user: "u\($0)", state: "started", volume: "v\($0)") }
    let volumes = (0..<20_000).map { Self.volume("v\($0)", user: "u\($0)", attached: "m\($0)") }
    let plan = Planner.plan(
      .init(desired: Self.desired(users), observed: Observation(machines: machines, volumes: volumes), now: Self.now))
    #expect(plan.actions.isEmpty)
    #expect(plan.findings.isEmpty)
  }

  /// `plan` exits 2 while anything is pending, not only while there are actions: a user backing off,
  /// a create settling, destroys a guard holds. Before, a fleet with every user in backoff exited 0.
  @Test func pendingChangesIncludeBackoffsAndHeldDestroys() {
    func plan(_ c: Case) -> Plan {
      Planner.plan(
        Planner.Input(
          desired: c.desired, observed: Observation(machines: c.machines, volumes: c.volumes),
          recordedBy: { c.recorded[$0] }, states: c.states, guardState: c.guardState, now: Self.now,
          settings: c.settings, listsTrusted: c.trusted))
    }
    let converged = Case(
      name: "", desired: Self.desired([("u1", .running, "cdg")]),
      machines: [Self.machine("m1", user: "u1", state: "started", volume: "v1")],
      volumes: [Self.volume("v1", user: "u1", attached: "m1")], actions: [])
    #expect(!plan(converged).hasPendingChanges)
    var backingOff = converged
    backingOff.machines = [Self.machine("m1", user: "u1", state: "stopped", volume: "v1")]
    backingOff.states = [
      "u1": Self.state {
        $0.backoffUntil = Self.now + 30; $0.failures = 2
      }
    ]
    #expect(plan(backingOff).actions.isEmpty && plan(backingOff).hasPendingChanges)
    var held = converged
    held.desired = Self.desired([])
    held.guardState.desiredBaseline = 5
    held.machines = (0..<5).map { Self.machine("m\($0)", user: "u\($0)", state: "stopped") }
    #expect(plan(held).actions.isEmpty && plan(held).hasPendingChanges, "destroys held by the guard")
  }

  /// The finding says what will happen: a machine made on the surviving volume, or, when the
  /// volume is gone too, on a new one (before: "on the volume" either way).
  @Test func aMissingMachineSaysWhichVolumeItWillBeMadeOn() {
    func message(volumes: [ObservedVolume]) -> String? {
      Planner.plan(
        Planner.Input(
          desired: Self.desired([("u1", .running, "cdg")]), observed: Observation(machines: [], volumes: volumes),
          recordedBy: { _ in RecordedMachine(machineID: "m1", volumeID: "v1", status: "destroyed") }, states: [:],
          guardState: GuardState(),
          now: Self.now, settings: PlannerSettings(), listsTrusted: true)
      ).findings.first { $0.kind == .machineMissing }?.message
    }
    #expect(message(volumes: [Self.volume("v1", user: "u1")])?.contains("on volume v1") == true)
    #expect(message(volumes: [])?.contains("a new volume") == true)
  }
}
