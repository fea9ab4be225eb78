import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Testing

/// One app per user, end to end against the simulator: each user's app made (once, whatever
/// answers are lost), given its addresses, then the volume and the machine in it; the machines row
/// says where to connect; a name someone else holds is reported, never adopted; a removed user's
/// app goes last, after the volume's retention.
@Suite(.serialized) struct AppPerUserTests {
  static let topology = Topology.appPerUser(prefix: "agents", org: "personal")

  /// What the simulator holds, by app: its IPs, machines and volumes (live ones).
  struct Apps {
    var ips: [String: Int] = [:]
    var machines: [String: [String]] = [:]
    var volumes: [String: [String]] = [:]
    var names: [String] { ips.keys.sorted() }
  }

  func apps(_ h: Harness) -> Apps {
    let state = (try? JSONSerialization.jsonObject(with: h.simulator.stateJSON())) as? [String: Any] ?? [:]
    var result = Apps()
    for app in state["apps"] as? [[String: Any]] ?? [] {
      result.ips[app["name"] as? String ?? ""] = (app["ips"] as? [Any])?.count ?? 0
    }
    for machine in state["machines"] as? [[String: Any]] ?? [] {
      let machineState = machine["state"] as? String ?? ""
      guard machineState != "destroyed" && machineState != "destroying" else { continue }
      result.machines[machine["app"] as? String ?? "", default: []].append(machine["id"] as? String ?? "")
    }
    for volume in state["volumes"] as? [[String: Any]] ?? [] {
      let volumeState = volume["state"] as? String ?? ""
      guard volumeState != "destroyed" && volumeState != "pending_destroy" else { continue }
      result.volumes[volume["app"] as? String ?? "", default: []].append(volume["id"] as? String ?? "")
    }
    return result
  }

  @Test func eachUserGetsAnAppItsAddressesThenItsVolumeAndMachine() async throws {
    try await withHarness(simulator: Harness.lagging) { h in
      try await h.store.setTopology(Self.topology)
      try await h.addUsers(3)
      let reports = await h.converge()
      #expect(reports.last?.converged == true)
      let apps = apps(h)
      #expect(apps.names == ["agents-u-u0", "agents-u-u1", "agents-u-u2", "app"])
      for user in ["u0", "u1", "u2"] {
        let app = "agents-u-\(user)"
        #expect(apps.ips[app] == 2, "\(app): a shared IPv4 and an IPv6")
        #expect(apps.machines[app]?.count == 1)
        #expect(apps.volumes[app]?.count == 1)
      }
      #expect(apps.machines["app"] == nil, "nothing in the shared app")
      // The dashboard's row says where to connect.
      let rows = try await h.store.machineRows()
      #expect(rows["u1"]?.appName == "agents-u-u1")
      #expect(rows["u1"]?.hostname == "agents-u-u1.fly.dev")
      #expect(rows["u1"]?.id == apps.machines["agents-u-u1"]?.first)
      // Each step recorded, once per user.
      let events = try await h.store.events(limit: 500)
      for type in ["create_app", "assign_ips", "create_volume", "create_machine"] {
        #expect(
          events.filter { $0.eventType == type && $0.detailsJSON.contains(#""outcome":"ok""#) }.count == 3, "\(type)")
      }
      // A quiet pass: the two org-wide lists and the apps list, nothing per user.
      let before = h.simulator.requestLog().last?.seq ?? 0
      let quiet = await h.reconciler.pass()
      #expect(quiet.plan?.actions.isEmpty == true)
      let requests = h.simulator.requestLog(since: before + 1)
      #expect(requests.count <= 3, "\(requests.map(\.endpoint))")
    }
  }

  @Test func secretsAreTheAppsNotTheMachinesAndARotationRollsOut() async throws {
    try await withHarness(simulator: Harness.instant) { h in
      try await h.store.setTopology(Self.topology)
      try await h.addUsers(2)
      await h.converge()
      let machine = try #require(h.fleet().machine("u0"))
      #expect(machine.config?.env["AGENT_KEY"] == nil, "not in the machine's config")
      #expect(machine.config?.env["FLEETKEEPER_SECRETS_DIGEST"]?.count == 32)
      #expect(h.simulator.machineSecrets(machine.id) == ["AGENT_KEY": "s3cr3t-agent-value"])
      #expect(!String(decoding: h.simulator.stateJSON(), as: UTF8.self).contains("s3cr3t-agent-value"))
      // A rotated secret: each app's secrets set again, each machine updated to see them (a rollout).
      var settings = h.settings
      settings.secrets = ["AGENT_SECRET": "rotated-agent-value"]
      let rotated = h.restarted(settings: settings)
      await h.converge(using: rotated)
      #expect(h.simulator.machineSecrets(machine.id) == ["AGENT_KEY": "rotated-agent-value"])
      let other = try #require(h.fleet().machine("u1"))
      #expect(h.simulator.machineSecrets(other.id) == ["AGENT_KEY": "rotated-agent-value"])
      let updates = h.mutations().filter { $0.endpoint == "POST /machines/{id}" }
      #expect(updates.count == 2)
      #expect(updates.allSatisfy { $0.path.hasPrefix("/v1/apps/agents-u-u") })
      // Each create and update asks to see the secrets just set.
      let creates = h.mutations().filter { $0.endpoint == "POST /machines" }
      #expect(creates.count == 2)
      #expect((creates + updates).allSatisfy { $0.guards.contains("min_secrets_version") })
      let events = try await h.store.events(limit: 500)
      #expect(!events.contains { $0.detailsJSON.contains("rotated-agent-value") || $0.detailsJSON.contains("s3cr3t") })
    }
  }

  @Test func aMachineTaggedForAUserInAnotherAppIsLeftAlone() async throws {
    try await withHarness(simulator: Harness.instant) { h in
      try await h.store.setTopology(Self.topology)
      _ = await h.simulator.handle(
        SimulatorRequest(
          method: "POST", path: "/v1/apps", headers: ["authorization": "Bearer tok"],
          body: Data(#"{"name":"agents-copy","org_slug":"personal"}"#.utf8)))
      await h.drift(
        #"{"op":"create_foreign_machine","app":"agents-copy","region":"ord","metadata":{"fleet_user_id":"u0"}}"#)
      try await h.addUsers(1)
      let reports = await h.converge()
      #expect(
        reports.last?.findings.contains { $0.kind == .foreignMachine && $0.message.contains("agents-copy") } == true)
      #expect(apps(h).machines["agents-copy"]?.count == 1, "not stopped, not destroyed")
      #expect(apps(h).machines["agents-u-u0"]?.count == 1, "the user's own machine, in its own app")
      #expect(!h.mutations().contains { $0.path.hasPrefix("/v1/apps/agents-copy/") })
    }
  }

  @Test func aUserBackAfterTheirAppWasDeletedGetsANewOne() async throws {
    var settings = Harness.testSettings()
    settings.planner.volumeRetention = 5
    settings.planner.retentionFloor = 0
    try await withHarness(simulator: Harness.instant, settings: settings) { h in
      try await h.store.setTopology(Self.topology)
      try await h.addUsers(1)
      await h.converge()
      try await h.store.removeUser("u0")
      await h.converge(maxPasses: 20)
      await h.advance(by: 6)
      await h.converge()
      #expect(!apps(h).names.contains("agents-u-u0"))
      try await h.store.setUser(UserInput(userID: "u0", state: "running", region: "cdg"))
      await h.converge()
      #expect(apps(h).machines["agents-u-u0"]?.count == 1, "a new app, volume and machine")
      #expect(h.mutations().filter { $0.endpoint == "POST /apps" }.count == 2)
    }
  }

  @Test func lostAnswersNeverMakeTwoApps() async throws {
    var faults = SimulatorFaults()
    faults.lostResponseRate = 0.4
    try await withHarness(simulator: Harness.lagging, faults: faults) { h in
      try await h.store.setTopology(Self.topology)
      try await h.addUsers(6)
      await h.converge()
      let apps = apps(h)
      #expect(h.simulator.requestLog().contains { $0.endpoint == "POST /apps" && $0.fault == "lost_response" })
      for user in 0..<6 {
        let app = "agents-u-u\(user)"
        #expect(apps.machines[app]?.count == 1, "\(app)")
        #expect(apps.volumes[app]?.count == 1, "\(app)")
        #expect(apps.ips[app] == 2, "\(app): \(apps.ips[app] ?? 0) addresses")
      }
      #expect(apps.names.count == 7)
    }
  }

  @Test func aNameHeldByAnotherOrganizationIsReportedNeverAdopted() async throws {
    try await withHarness(simulator: Harness.instant) { h in
      try await h.store.setTopology(Self.topology)
      await h.drift(#"{"op":"create_foreign_app","app":"agents-u-u0","org":"someone-else"}"#)
      try await h.addUsers(2)
      var reports: [PassReport] = []
      for _ in 0..<6 {
        reports.append(await h.reconciler.pass())
        await h.advance(by: 1)
      }
      #expect(reports.last?.findings.contains { $0.kind == .appNameTaken && $0.userID == "u0" } == true)
      let apps = apps(h)
      #expect(apps.machines["agents-u-u1"]?.count == 1, "the other user goes on")
      #expect(apps.machines["agents-u-u0"] == nil)
      #expect(apps.volumes["agents-u-u0"] == nil)
      // Nothing was made in (or asked of) the other organization's app.
      #expect(!h.mutations().contains { $0.path.hasPrefix("/v1/apps/agents-u-u0/") })
    }
  }

  @Test func aRemovedUsersAppGoesLastAfterTheVolumesRetention() async throws {
    var settings = Harness.testSettings()
    settings.planner.volumeRetention = 30
    settings.planner.retentionFloor = 0
    try await withHarness(simulator: Harness.instant, settings: settings) { h in
      try await h.store.setTopology(Self.topology)
      try await h.addUsers(2)
      await h.converge()
      try await h.store.removeUser("u1")
      await h.converge(maxPasses: 20)
      var apps = self.apps(h)
      #expect(apps.machines["agents-u-u1"] == nil, "machine destroyed")
      #expect(apps.volumes["agents-u-u1"]?.count == 1, "volume kept for its retention")
      #expect(apps.names.contains("agents-u-u1"), "the app holds the volume: kept")
      #expect(!h.mutations().contains { $0.endpoint == "DELETE /apps/{app}" })
      await h.advance(by: 31)
      await h.converge()
      apps = self.apps(h)
      #expect(apps.volumes["agents-u-u1"] == nil, "volume deleted after retention")
      #expect(!apps.names.contains("agents-u-u1"), "then the app")
      #expect(apps.machines["agents-u-u0"]?.count == 1, "the other user untouched")
      let deletes = h.mutations().filter { $0.endpoint == "DELETE /apps/{app}" }
      #expect(deletes.map(\.path) == ["/v1/apps/agents-u-u1"])
      let events = try await h.store.events(limit: 500)
      #expect(
        events.contains {
          $0.eventType == "delete_app" && $0.detailsJSON.contains(#""outcome":"ok""#) && $0.userID == "u1"
        })
      // Forgotten once gone: a quiet fleet again.
      #expect(await h.reconciler.pass().plan?.actions.isEmpty == true)
    }
  }
}

/// Taking over a fleet made the old way: one app per user, each with one machine (no
/// `fleet_user_id`) and one volume. Adopted in place, or reported when ambiguous.
@Suite(.serialized) struct AdoptionTests {
  static let topology = Topology.appPerUser(prefix: "agents", org: "personal")

  func seedOldFleet(_ h: Harness, users: Int, prefix: String = "u") async {
    _ = await h.simulator.handle(
      SimulatorRequest(
        method: "POST", path: "/_sim/seed",
        body: Data(
          #"{"users":\#(users),"topology":"app-per-user","app_prefix":"agents","prefix":"\#(prefix)","region":"ord","image":"registry.fly.io/agent:1"}"#
            .utf8)))
  }

  func creates(_ h: Harness) -> [SimulatorLogEntry] {
    h.mutations().filter {
      [
        "POST /apps", "POST /machines", "POST /volumes", "DELETE /apps/{app}", "DELETE /machines/{id}",
        "DELETE /volumes/{id}",
      ].contains($0.endpoint)
    }
  }

  @Test func anOldFleetIsAdoptedInPlace() async throws {
    try await withHarness(simulator: Harness.instant) { h in
      await seedOldFleet(h, users: 4)
      try await h.store.setTopology(Self.topology)
      try await h.addUsers(4, regions: ["ord"])
      // The plan says it first.
      let plan = await h.reconciler.pass(apply: false).plan
      #expect(plan?.actions.map(\.kind) == Array(repeating: .adoptMachine, count: 4))
      #expect(plan?.actions.first?.reason.contains("tag it for u0, no restart") == true)
      #expect(h.mutations().isEmpty)
      await h.converge()
      #expect(creates(h).isEmpty, "nothing made, nothing destroyed: \(creates(h).map(\.path))")
      let tags = h.mutations().filter { $0.endpoint == "POST /machines/{id}/metadata/{key}" }
      #expect(tags.count == 4)
      let fleet = h.fleet()
      for user in 0..<4 {
        #expect(fleet.machine("u\(user)") != nil, "u\(user) tagged")
      }
      let rows = try await h.store.machineRows()
      #expect(rows["u2"]?.appName == "agents-u-u2")
      #expect(rows["u2"]?.hostname == "agents-u-u2.fly.dev")
      #expect(rows["u2"]?.volumeID == fleet.machine("u2")?.config?.mounts.first?.volume)
      let events = try await h.store.events(limit: 500)
      #expect(
        events.filter { $0.eventType == "adopt_app" && $0.detailsJSON.contains(#""outcome":"ok""#) }.count == 4)
    }
  }

  @Test func ambiguousAppsAreReportedNeverActedOn() async throws {
    try await withHarness(simulator: Harness.instant) { h in
      await seedOldFleet(h, users: 4)
      try await h.store.setTopology(Self.topology)
      let state = (try? JSONSerialization.jsonObject(with: h.simulator.stateJSON())) as? [String: Any] ?? [:]
      let machines = state["machines"] as? [[String: Any]] ?? []
      func machine(in app: String) -> String {
        machines.first { $0["app"] as? String == app }?["id"] as? String ?? ""
      }
      // u1's app holds a second machine; u2's volume has no machine; u3 has no desired row.
      await h.drift(#"{"op":"create_foreign_machine","app":"agents-u-u1","region":"ord"}"#)
      await h.drift(#"{"op":"destroy_machine","machine_id":"\#(machine(in: "agents-u-u2"))"}"#)
      try await h.addUsers(3, regions: ["ord"])
      var last: PassReport?
      for _ in 0..<5 {
        last = await h.reconciler.pass()
        await h.advance(by: 1)
      }
      let ambiguous = (last?.findings ?? []).filter { $0.kind == .adoptionAmbiguous }
      #expect(ambiguous.contains { $0.userID == "u1" && $0.message.contains("2 machines without a tag") })
      #expect(ambiguous.contains { $0.userID == "u2" && $0.message.contains("has no machine") })
      #expect(
        ambiguous.contains { $0.resourceID == machine(in: "agents-u-u3") && $0.message.contains("no desired user") })
      #expect(h.fleet().machine("u0") != nil, "the unambiguous one is adopted")
      let touched = h.mutations().filter {
        $0.path.contains("/agents-u-u1") || $0.path.contains("/agents-u-u2") || $0.path.contains("/agents-u-u3")
      }
      #expect(touched.isEmpty, "\(touched.map(\.path))")
      #expect(creates(h).isEmpty)
    }
  }

  @Test func anAppMappedByHandIsAdoptedForItsUser() async throws {
    try await withHarness(simulator: Harness.instant) { h in
      await seedOldFleet(h, users: 1, prefix: "legacy")
      try await h.store.setTopology(Self.topology)
      try await h.store.importUsers([UserInput(userID: "ada", state: "running", region: "ord")])
      try await h.store.mapApps([(app: "agents-u-legacy0", user: "ada")])
      await h.converge()
      #expect(h.fleet().machine("ada") != nil)
      #expect(creates(h).isEmpty, "\(creates(h).map(\.path))")
      #expect(try await h.store.machineRows()["ada"]?.appName == "agents-u-legacy0")
      // The user's calls go to the mapped app: a stop lands there.
      try await h.store.setUser(UserInput(userID: "ada", state: "stopped", region: "ord"))
      await h.converge()
      #expect(
        h.mutations().contains {
          $0.endpoint == "POST /machines/{id}/stop" && $0.path.hasPrefix("/v1/apps/agents-u-legacy0/")
        })
    }
  }
}
