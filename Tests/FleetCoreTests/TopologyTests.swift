import FleetCore
import Testing

/// App names and where each user lives, one app per user (pure: no simulator).
struct TopologyTests {
  static let topology = Topology.appPerUser(prefix: "agents", org: "acme")

  @Test func appNamesAreValidDistinctAndReadBack() {
    let ids = [
      "ada", "u-1", "0b8e7c7a-5d1f-4c3e-9b7a-2f1e0d9c8b7a", "Ada", "a--b", "-a", "a_b", "x.y@z",
      String(repeating: "a", count: 54), String(repeating: "a", count: 55), String(repeating: "é", count: 64),
    ]
    var seen: Set<String> = []
    for id in ids {
      let name = FleetNames.appName(prefix: "agents", userID: id)
      let bytes = Array(name.utf8)
      #expect(bytes.count <= 63, "\(id)")
      #expect(bytes.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }, "\(id)")
      #expect(bytes.last != 0x2d)
      #expect(seen.insert(name).inserted, "\(id) -> \(name) repeats")
    }
    #expect(FleetNames.appName(prefix: "agents", userID: "ada") == "agents-u-ada")
    #expect(FleetNames.appName(prefix: "agents", userID: "Ada").hasPrefix("agents-h-"))
    let placement = AppPlacement(topology: Self.topology)
    #expect(placement.user(ofApp: "agents-u-ada") == "ada")
    #expect(placement.user(ofApp: "agents-u-a--b") == nil, "not a name the rule gives")
    #expect(placement.user(ofApp: "other-u-ada") == nil)
    #expect(AppPlacement(topology: .sharedApp).app(forUser: "ada") == nil)
    // Mapped by hand: the app is the user's, and the rule's name for that user is no longer read back.
    let mapped = AppPlacement(topology: Self.topology, mapping: ["agents-u-legacy7": "ada"])
    #expect(mapped.app(forUser: "ada") == "agents-u-legacy7")
    #expect(mapped.user(ofApp: "agents-u-legacy7") == "ada")
    #expect(mapped.user(ofApp: "agents-u-ada") == nil)
  }

  @Test func prefixesThatCouldNameAnotherFleetsAppsAreRefused() {
    for prefix in ["agents", "a", "my-fleet2"] { #expect(Topology.prefixProblem(prefix) == nil, "\(prefix)") }
    for prefix in ["", "Agents", "1a", "a-", "a-u-b", "x-h-y", String(repeating: "a", count: 31), "a_b"] {
      #expect(Topology.prefixProblem(prefix) != nil, "\(prefix)")
    }
  }

  func plan(apps: Set<String>?, state: UserState) -> Plan {
    var desired = DesiredSnapshot(
      template: MachineTemplate(), machines: ["ada": DesiredMachine(userID: "ada", state: .running, region: "cdg")])
    desired.topology = Self.topology
    return Planner.plan(
      Planner.Input(
        desired: desired, observed: Observation(machines: [], volumes: [], apps: apps), states: ["ada": state],
        now: 1000))
  }

  @Test func theAppComesFirstThenItsAddressesAndNothingInAnAppOnItsWayOut() {
    #expect(plan(apps: [], state: UserState()).actions.map(\.kind) == [.createApp])
    #expect(plan(apps: ["agents-u-ada"], state: UserState()).actions.map(\.kind) == [.assignIPs])
    var ready = UserState()
    ready.appSetup = [.created, .addressed]
    #expect(plan(apps: ["agents-u-ada"], state: ready).actions.map(\.kind) == [.createVolume])
    var retiring = UserState()
    retiring.appSetup = .retiring
    let waiting = plan(apps: ["agents-u-ada"], state: retiring)
    #expect(waiting.actions.isEmpty, "nothing made in an app being deleted")
    #expect(waiting.waiting == ["ada"])
    #expect(plan(apps: [], state: retiring).actions.map(\.kind) == [.createApp])
  }

  @Test func anEmptyAppIsDeletedOnlyOnTheSecondPassThatSeesItEmpty() {
    var desired = DesiredSnapshot(
      template: MachineTemplate(), machines: ["ada": DesiredMachine(userID: "ada", state: .absent, region: "cdg")])
    desired.topology = Self.topology
    func plan(_ state: UserState, unreadable: Set<String> = []) -> Plan {
      Planner.plan(
        Planner.Input(
          desired: desired,
          observed: Observation(machines: [], volumes: [], unreadableRegions: unreadable, apps: ["agents-u-ada"]),
          states: ["ada": state], now: 1000))
    }
    let first = plan(UserState())
    #expect(first.actions.isEmpty)
    let marked = first.states["ada"] ?? UserState()
    #expect(marked.appSetup == .retiring)
    #expect(plan(marked).actions.map(\.kind) == [.deleteApp])
    #expect(plan(marked, unreadable: ["sin"]).actions.isEmpty, "a region Fly cannot read holds it")
  }
}
