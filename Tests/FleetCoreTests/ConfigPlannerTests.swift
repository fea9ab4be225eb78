import FleetCore
import Foundation
import Testing

/// The planner's config decisions, pure: which settled machines get an update (and why), which
/// never-recorded ones are taken as they are without a read, how many at once, when an update
/// under way is read.
struct ConfigPlannerTests {
  let template = MachineTemplate(image: "registry.fly.io/agent:1")

  func input(
    machines: [ObservedMachine], states: [String: UserState], desired: [String: DesiredMachine]? = nil,
    template: MachineTemplate? = nil, settings: PlannerSettings = PlannerSettings(), now: Double = 1_000
  ) -> Planner.Input {
    let users =
      desired
      ?? Dictionary(
        uniqueKeysWithValues: machines.compactMap(\.userID).map {
          ($0, DesiredMachine(userID: $0, state: .running, region: "ord"))
        })
    let volumes = machines.map {
      ObservedVolume(
        id: "v-\($0.userID!)", name: "fk_\($0.userID!)", state: .created, region: "ord", attachedMachineID: $0.id)
    }
    return Planner.Input(
      desired: DesiredSnapshot(template: template ?? self.template, machines: users),
      observed: Observation(machines: machines, volumes: volumes), states: UserMap(states), now: now, settings: settings
    )
  }

  func machine(
    _ user: String, version: String = "v1", image: String = "registry.fly.io/agent:1", state: MachineState = .started
  )
    -> ObservedMachine
  {
    ObservedMachine(
      id: "m-\(user)", state: state, region: "ord", userID: user, volumeID: "v-\(user)",
      versionHash: ConfigDigest.version(version),
      overviewHash: ConfigDigest.overview(image: image, cpuKind: "shared", cpus: 1, memoryMB: 256))
  }

  var digest: UInt64 { ConfigDigest.template(template, salt: 0) }

  func applied(_ user: String = "u1", version: String = "v1", template: UInt64? = nil) -> UserState {
    var state = UserState()
    state.volumeID = "v-\(user)"
    state.applied = AppliedConfig(template: template ?? digest, overrides: 0, version: ConfigDigest.version(version))
    return state
  }

  @Test func aMachineInSyncGetsNothing() {
    let plan = Planner.plan(input(machines: [machine("u1")], states: ["u1": applied()]))
    #expect(plan.actions.isEmpty)
  }

  @Test func aNeverRecordedMachineWhoseListedConfigMatchesIsTakenAsItIsWithoutARead() {
    var state = UserState()
    state.volumeID = "v-u1"
    let plan = Planner.plan(input(machines: [machine("u1")], states: ["u1": state]))
    #expect(plan.actions.isEmpty)
    #expect(
      plan.states["u1"]?.applied == AppliedConfig(template: digest, overrides: 0, version: ConfigDigest.version("v1")))
  }

  @Test func aNeverRecordedMachineOnAnotherImageIsReadAndCompared() {
    let plan = Planner.plan(input(machines: [machine("u1", image: "other:1")], states: [:]))
    #expect(plan.actions.map(\.kind) == [.updateMachine])
    #expect(plan.actions.first?.reason.contains("never recorded") == true)
  }

  @Test func aVersionTheControllerDidNotMakeIsComparedAndPutBack() {
    let plan = Planner.plan(input(machines: [machine("u1", version: "v9")], states: ["u1": applied()]))
    #expect(plan.actions.map(\.kind) == [.updateMachine])
    #expect(plan.actions.first?.reason.contains("did not make") == true)
  }

  @Test func aTemplateChangeUpdatesWithTheNewDigestAsTarget() {
    let plan = Planner.plan(input(machines: [machine("u1")], states: ["u1": applied(template: 42)]))
    #expect(plan.actions.first?.reason.hasPrefix("rollout wave 0") == true)
    #expect(plan.actions.first?.target == AppliedConfig(template: digest, overrides: 0))
    if case .updateMachine(_, let volume, let spec, let skipLaunch, _) = plan.actions.first?.call {
      #expect(volume == "v-u1")
      #expect(spec.image == "registry.fly.io/agent:1")
      #expect(!skipLaunch)
    } else {
      Issue.record("not an update")
    }
  }

  @Test func aUsersOwnChangeSaysSo() {
    var desired = DesiredMachine(userID: "u1", state: .running, region: "ord")
    desired.overrides = TemplateOverrides(memoryMB: 512)
    let plan = Planner.plan(input(machines: [machine("u1")], states: ["u1": applied()], desired: ["u1": desired]))
    #expect(plan.actions.first?.reason == "user's config changed")
    #expect(plan.actions.first?.spec?.memoryMB == 512)
  }

  @Test func aStoppedMachineIsUpdatedWithSkipLaunch() {
    let desired = ["u1": DesiredMachine(userID: "u1", state: .stopped, region: "ord")]
    let plan = Planner.plan(
      input(machines: [machine("u1", state: .stopped)], states: ["u1": applied(template: 42)], desired: desired))
    guard case .updateMachine(_, _, _, let skipLaunch, _) = plan.actions.first?.call else {
      Issue.record("not an update")
      return
    }
    #expect(skipLaunch)
  }

  @Test func updatesInFlightAreBounded() {
    var settings = PlannerSettings()
    settings.maxUpdatesInFlight = 3
    let users = (0..<10).map { "u\($0)" }
    var states: [String: UserState] = [:]
    for user in users { states[user] = applied(user, template: 42) }
    // Two already under way.
    states["u0"]?.update = UpdateWatch(since: 999, from: 1, to: 2, launched: true)
    states["u1"]?.update = UpdateWatch(since: 999, from: 1, to: 2, launched: true)
    let plan = Planner.plan(input(machines: users.map { machine($0) }, states: states, settings: settings))
    #expect(plan.actions.filter { $0.kind == .updateMachine }.count == 1)
  }

  @Test func anUpdateUnderWayIsReadOnceTheListShowsItSettledAndNotBefore() {
    var state = applied(version: "v2")
    state.update = UpdateWatch(
      since: 999.5, from: ConfigDigest.version("v1"), to: ConfigDigest.version("v2"), launched: true)
    // Too soon: Fly is rebooting it.
    let early = Planner.plan(input(machines: [machine("u1", version: "v2")], states: ["u1": state], now: 1_000))
    #expect(early.actions.isEmpty)
    #expect(early.waiting == ["u1"])
    // Settled on the new version: read to see it through.
    let settled = Planner.plan(input(machines: [machine("u1", version: "v2")], states: ["u1": state], now: 1_005))
    #expect(settled.actions.map(\.kind) == [.checkUpdate])
    // No health checks in the template: the list tells, no read is needed.
    if case .checkUpdate(_, let listed) = settled.actions.first?.call {
      #expect(listed == ListedMachine(state: .started, versionHash: ConfigDigest.version("v2")))
    }
    // With health checks: a read.
    var checked = template
    checked.servicesJSON = #"[{"internal_port":8080,"checks":[{"type":"http","path":"/healthz"}]}]"#
    let read = Planner.plan(
      input(machines: [machine("u1", version: "v2")], states: ["u1": state], template: checked, now: 1_005))
    if case .checkUpdate(_, let listed) = read.actions.first?.call {
      #expect(listed == nil)
    } else {
      Issue.record("no check")
    }
    // Back on the old version: read (a silent revert?).
    let back = Planner.plan(input(machines: [machine("u1", version: "v1")], states: ["u1": state], now: 1_005))
    #expect(back.actions.map(\.kind) == [.checkUpdate])
    // Still updating, before the deadline: wait.
    let busy = Planner.plan(
      input(machines: [machine("u1", version: "v2", state: .updating)], states: ["u1": state], now: 1_005))
    #expect(busy.actions.isEmpty)
    // Past the deadline: read whatever it shows.
    let late = Planner.plan(
      input(machines: [machine("u1", version: "v2", state: .updating)], states: ["u1": state], now: 1_500))
    #expect(late.actions.map(\.kind) == [.checkUpdate])
  }

  @Test func aRotatedSecretOrAnotherAppIsANewTemplateDigest() {
    let a = ConfigDigest.salt(appName: "app", secrets: [("KEY", "one")])
    let b = ConfigDigest.salt(appName: "app", secrets: [("KEY", "two")])
    let c = ConfigDigest.salt(appName: "other", secrets: [("KEY", "one")])
    #expect(Set([a, b, c]).count == 3)
    #expect(ConfigDigest.template(template, salt: a) != ConfigDigest.template(template, salt: b))
    // A bigger volume is a change the update carries out (an extend, in the rollout's waves).
    var bigger = template
    bigger.volumeSizeGB = 10
    #expect(ConfigDigest.template(bigger, salt: a) != ConfigDigest.template(template, salt: a))
    #expect(ConfigDigest.overrides(TemplateOverrides(volumeSizeGB: 10)) != 0)
  }

  @Test func appliedConfigsRoundTripExactly() throws {
    var state = UserState()
    state.applied = AppliedConfig(template: .max, overrides: 0x8000_0000_0000_0001, version: 12_345)
    state.update = UpdateWatch(since: 5, from: 1, to: .max, launched: false)
    let data = try JSONEncoder().encode(state)
    #expect(try JSONDecoder().decode(UserState.self, from: data) == state)
  }
}
