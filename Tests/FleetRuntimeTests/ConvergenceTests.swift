import FleetCore
import FleetDevTools
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Testing

/// End to end against the built-in simulator, in process on a virtual clock (see `Harness`).
@Suite(.serialized) struct ConvergenceTests {
  @Test func twoHundredUsersConvergeFromEmpty() async throws {
    try await withHarness { harness in
      try await harness.addUsers(200)
      let reports = await harness.converge()
      let fleet = harness.fleet()
      #expect(fleet.machinesByUser.count == 200)
      #expect(fleet.machinesByUser.values.allSatisfy { $0.count == 1 }, "no duplicate machine")
      #expect(fleet.machinesByUser.values.allSatisfy { $0.first?.state == "started" })
      #expect(fleet.volumesByName.count == 200)
      #expect(fleet.volumesByName.values.allSatisfy { $0.count == 1 }, "no duplicate volume")
      // Every mutation Fly saw is in machine_events.
      let events = try await harness.store.events(limit: 100_000)
      let created = events.filter {
        ["create_volume", "create_machine"].contains($0.eventType) && $0.detailsJSON.contains(#""outcome":"ok""#)
      }
      #expect(created.count == 400)
      let rows = try await harness.store.machineRows()
      #expect(rows.count == 200)
      #expect(rows.values.allSatisfy { $0.status == "started" && $0.volumeID != nil })
      // The last pass did nothing: exactly the list requests, and no event.
      let before = harness.simulator.requestLog().count
      let eventsBefore = events.count
      let idle = await harness.reconciler.pass()
      #expect(idle.results.isEmpty)
      let requests = harness.simulator.requestLog().dropFirst(before)
      #expect(requests.map(\.endpoint).sorted() == ["GET /machines", "GET /volumes"])
      #expect(
        try await harness.store.events(limit: 100_000).count == eventsBefore, "a pass that did nothing writes no event")
      // Secrets resolved into the machine, never into the audit log.
      #expect(!events.contains { $0.detailsJSON.contains("s3cr3t-agent-value") })
      #expect(reports.count < 40)
      #expect(harness.simulator.requestLog().allSatisfy { $0.unknownFields.isEmpty })
    }
  }

  /// Lists lag behind creates longer than the pending grace (a slow replica, or a loaded machine
  /// where the pass outlasts the grace): the answered id is fetched by GET, never created twice.
  @Test func aCreateListedLaterThanTheGraceIsNeverMadeTwice() async throws {
    var configuration = SimulatorConfiguration.fast(appName: "app", token: "tok")
    configuration.listLag = 1.5
    var settings = Harness.testSettings()
    settings.planner.pendingGrace = 0.1
    try await withHarness(simulator: configuration, settings: settings) { harness in
      try await harness.addUsers(4)
      let reports = await harness.converge()
      let fleet = harness.fleet()
      #expect(fleet.machinesByUser.count == 4)
      #expect(fleet.machinesByUser.values.allSatisfy { $0.count == 1 && $0.first?.state == "started" })
      #expect(fleet.volumesByName.values.allSatisfy { $0.count == 1 })
      let creates = harness.mutations().filter { ["POST /volumes", "POST /machines"].contains($0.endpoint) }
      #expect(creates.count == 8, "one create per resource: \(creates.map(\.endpoint))")
      let endpoints = harness.simulator.requestLog().map(\.endpoint)
      #expect(endpoints.contains("GET /machines/{id}") || endpoints.contains("GET /volumes/{id}"), "looked up by id")
      #expect(reports.last?.plan?.actions.isEmpty == true)
    }
  }

  /// A converged fleet whose lists and desired state do not change is not planned again; any
  /// change (Fly's side or the table's) plans again at once.
  @Test func aSteadyFleetIsNotPlannedAgainUntilSomethingChanges() async throws {
    try await withHarness { harness in
      try await harness.addUsers(5)
      await harness.converge()
      _ = await harness.reconciler.pass()
      let quiet = await harness.reconciler.pass()
      #expect(quiet.steady)
      #expect(quiet.plan?.actions.isEmpty == true && quiet.observedMachines == 5)
      // Drift behind our back: the pages change, the plan runs, the machine is started.
      let id = harness.fleet().machinesByUser["u0"]?.first?.id ?? ""
      await harness.drift(#"{"op":"stop_machine","machine_id":"\#(id)"}"#)
      let drifted = await harness.reconciler.pass()
      #expect(!drifted.steady)
      #expect(drifted.plan?.actions.map(\.kind) == [.start])
      await harness.converge()
      _ = await harness.reconciler.pass()
      #expect(await harness.reconciler.pass().steady)
      // An edit of the table: planned again at once.
      try await harness.store.setUser(UserInput(userID: "u1", state: "stopped"))
      let edited = await harness.reconciler.pass()
      #expect(!edited.steady)
      #expect(edited.plan?.actions.map(\.kind) == [.stop])
    }
  }

  @Test func everyDriftKindIsRepaired() async throws {
    try await withHarness { harness in
      try await harness.addUsers(6)
      await harness.converge()
      let fleet = harness.fleet()
      func id(_ user: String) -> String { fleet.machinesByUser[user]?.first?.id ?? "" }
      await harness.drift(#"{"op":"stop_machine","machine_id":"\#(id("u0"))"}"#)
      await harness.drift(#"{"op":"fail_machine","machine_id":"\#(id("u1"))"}"#)
      await harness.drift(#"{"op":"destroy_machine","machine_id":"\#(id("u2"))"}"#)
      await harness.drift(#"{"op":"create_foreign_machine","region":"ord"}"#)
      let reports = await harness.converge()
      let kinds = Set(reports.flatMap(\.findings).map(\.kind))
      #expect(kinds.isSuperset(of: [.stoppedWhileDesiredRunning, .machineFailed, .machineMissing, .foreignMachine]))
      let after = harness.fleet()
      #expect(after.machinesByUser.values.allSatisfy { $0.count == 1 && $0.first?.state == "started" })
      #expect(after.machinesByUser.count == 6)
      #expect(after.foreign == 1, "the foreign machine is never touched")
      let events = try await harness.store.events(limit: 10_000).map(\.eventType)
      #expect(events.contains("drift.stopped_while_desired_running"))
      #expect(events.contains("drift.machine_missing"))
      #expect(events.contains("drift_resolved.machine_missing"))
    }
  }

  @Test func stopAndRemoveKeepTheVolume() async throws {
    try await withHarness { harness in
      try await harness.addUsers(3)
      await harness.converge()
      try await harness.store.setUser(UserInput(userID: "u0", state: "stopped"))
      try await harness.store.removeUser("u1")
      // plan's "N users desired" counts the users desired running or stopped, not one marked absent.
      #expect(await harness.reconciler.pass(apply: false).desiredUsers == 2)
      await harness.converge()
      let fleet = harness.fleet()
      #expect(fleet.machinesByUser["u0"]?.first?.state == "stopped")
      #expect(fleet.machinesByUser["u1"] == nil)
      #expect(fleet.volumesByName[FleetNames.volumeName(forUser: "u1")]?.count == 1, "the volume outlives the machine")
      #expect(harness.mutations().filter { $0.endpoint == "DELETE /volumes/{id}" }.isEmpty)
    }
  }

  @Test func volumeIsDeletedAfterRetention() async throws {
    var settings = Harness.testSettings()
    settings.planner.volumeRetention = 7 * 86_400
    // The test moves the controller's clock instead of waiting a week: no monotonic floor and no
    // check against Fly's clock here (`aClockStepNeverDeletesAVolume` tests those).
    settings.planner.retentionFloor = 0
    settings.maxClockSkew = .infinity
    try await withHarness(settings: settings) { harness in
      try await harness.addUsers(2)
      await harness.converge()
      try await harness.store.removeUser("u1")
      await harness.converge()
      #expect(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")] != nil, "kept during retention")
      harness.controllerClock.jump(by: 7 * 86_400 + 1)
      await harness.converge()
      #expect(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")] == nil)
      let events = try await harness.store.events(user: "u1", limit: 100).map(\.eventType)
      #expect(events.contains("destroy_machine") && events.contains("delete_volume"))
    }
  }

  /// The wall clock jumps two days ahead under a one-day retention: the volume stays until the
  /// controller itself has watched for the retention's floor (an hour) by its monotonic clock.
  @Test func aClockStepNeverDeletesAVolume() async throws {
    var settings = Harness.testSettings()
    settings.planner.volumeRetention = 86_400
    try await withHarness(settings: settings) { harness in
      try await harness.removeAUser()
      harness.controllerClock.jump(by: 2 * 86_400)
      await harness.converge()
      #expect(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")]?.count == 1, "not deleted by a jump")
      #expect(harness.mutations().filter { $0.endpoint == "DELETE /volumes/{id}" }.isEmpty)
    }
  }

  /// The controller's clock is ten days fast from the start (a VM booted before NTP), and a user's
  /// volume was released a day ago under a 7-day retention: with no floor at all, the check against
  /// Fly's `Date` header alone holds the delete, and says why.
  @Test func aClockWrongFromTheStartNeverDeletesAVolume() async throws {
    var settings = Harness.testSettings()
    settings.planner.volumeRetention = 7 * 86_400
    settings.planner.retentionFloor = 0
    try await withHarness(settings: settings) { harness in
      try await harness.removeAUser()
      harness.controllerClock.jump(by: 10 * 86_400)
      let reports = await harness.converge()
      #expect(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")]?.count == 1, "held")
      #expect(harness.mutations().filter { $0.endpoint == "DELETE /volumes/{id}" }.isEmpty)
      #expect(reports.last?.findings.contains { $0.kind == .clockSkew } == true, "and said so")
    }
  }

  @Test func convergesWithFaultsOnAndNoDuplicates() async throws {
    var faults = SimulatorFaults()
    faults.errorRate = 0.2
    faults.rateLimitRate = 0.1
    faults.timeoutRate = 0.05
    faults.lostResponseRate = 0.1
    try await withHarness(faults: faults) { harness in
      try await harness.addUsers(40)
      await harness.converge(maxPasses: 1000)
      // Faults off for one last look, so the check itself is not disturbed.
      harness.simulator.setFaults(SimulatorFaults())
      await harness.converge()
      let fleet = harness.fleet()
      #expect(fleet.machinesByUser.count == 40)
      #expect(fleet.machinesByUser.values.allSatisfy { $0.count == 1 }, "zero duplicate machines")
      #expect(fleet.volumesByName.values.allSatisfy { $0.count == 1 }, "zero duplicate volumes")
      // Every mutation that reached the simulator was attempted by an action recorded in machine_events.
      let events = try await harness.store.events(limit: 100_000)
      let attempts = events.filter { !$0.eventType.hasPrefix("drift") && !$0.eventType.hasPrefix("adopt") }.count
      let mutations = harness.mutations().count
      #expect(attempts >= mutations, "\(attempts) recorded attempts for \(mutations) mutations")
      #expect(harness.mutations().contains { $0.fault == "lost_response" }, "the faults did happen")
    }
  }

  @Test func emptiedDesiredTableTripsTheGuard() async throws {
    try await withHarness { harness in
      try await harness.addUsers(8)
      await harness.converge()
      _ = try await harness.store.database.write([SQLStatement("DELETE FROM desired_machines")])
      let before = harness.mutations().count
      for _ in 0..<3 {
        let report = await harness.reconciler.pass()
        #expect(report.findings.contains { $0.kind == .destroyGuardTripped })
      }
      #expect(harness.mutations().count == before, "no destroy at all")
      #expect(try await harness.store.events(limit: 1000).contains { $0.eventType == "drift.destroy_guard_tripped" })
      // The guard survives a restart: a new reconciler on the same database holds too.
      let restarted = Reconciler(client: harness.client, store: harness.store, settings: Harness.testSettings())
      let report = await restarted.pass()
      #expect(report.findings.contains { $0.kind == .destroyGuardTripped })
      #expect(harness.mutations().count == before)
    }
  }

  @Test func emptyListIsReadAgainBeforeActing() async throws {
    try await withHarness { harness in
      try await harness.addUsers(8)
      await harness.converge()
      var faults = SimulatorFaults()
      faults.emptyListOnce = true
      harness.simulator.setFaults(faults)
      let before = harness.mutations().count
      let report = await harness.reconciler.pass()
      #expect(report.results.isEmpty)
      #expect(harness.mutations().count == before, "no create after an empty list")
      #expect(harness.simulator.requestLog().filter { $0.fault == "empty_list" }.count == 2)
      // Once the lists agree again, the fleet is as it was and there is nothing to do.
      #expect(harness.fleet().machinesByUser.count == 8)
      let next = await harness.reconciler.pass()
      #expect(next.results.isEmpty && next.listsTrusted)
    }
  }

  /// A pass whose records are refused (here: a trigger on `machine_events`) acts on nothing and
  /// writes nothing; the finding it saw is recorded by the next pass that can write, not lost.
  @Test func aFindingWhoseEventCouldNotBeWrittenIsRecordedByTheNextPass() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(1)
      await harness.converge()
      let id = try #require(harness.fleet().machine("u0")?.id)
      await harness.drift(#"{"op":"stop_machine","machine_id":"\#(id)"}"#)
      _ = try await harness.store.database.write([
        SQLStatement(
          "CREATE TRIGGER no_events BEFORE INSERT ON machine_events BEGIN SELECT RAISE(ABORT, 'refused'); END")
      ])
      let refused = await harness.reconciler.pass()
      #expect(refused.outcome == .couldNotRun)
      #expect(refused.results.isEmpty, "nothing acted on")
      _ = try await harness.store.database.write([SQLStatement("DROP TRIGGER no_events")])
      await harness.converge()
      let events = try await harness.store.events(user: "u0", limit: 100).map(\.eventType)
      #expect(events.contains("drift.stopped_while_desired_running"))
      #expect(events.contains("drift_resolved.stopped_while_desired_running"))
    }
  }

  /// A restart (or a one-shot `reconcile`) does not record the same drift again: the open
  /// episodes are read back (before: every new process wrote `drift.*` for everything still wrong).
  @Test func aRestartDoesNotRecordTheSameDriftAgain() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(1)
      await harness.converge()
      await harness.drift(#"{"op":"create_foreign_machine","region":"ord"}"#)
      await harness.converge()
      func recorded() async throws -> Int {
        try await harness.store.events(limit: 1000).filter { $0.eventType == "drift.foreign_machine" }.count
      }
      #expect(try await recorded() == 1)
      for _ in 0..<2 { await harness.converge(using: harness.restarted()) }
      #expect(try await recorded() == 1, "not again after two restarts")
    }
  }

  @Test func unreadableDatabaseMeansNoAction() async throws {
    try await withHarness { harness in
      try await harness.addUsers(4)
      await harness.converge()
      // Break the schema under the store, as a bad manual edit or a half-restored backup would.
      _ = try await harness.store.database.write([
        SQLStatement("ALTER TABLE desired_machines RENAME TO desired_machines_broken")
      ])
      let reconciler = harness.reconciler
      let before = harness.simulator.requestLog().count
      let report = await reconciler.pass()
      #expect(report.outcome == .couldNotRun)
      #expect(report.findings.map(\.kind) == [.desiredUnreadable])
      #expect(harness.simulator.requestLog().count == before, "not even a list: nothing at all")
    }
  }

  @Test func aBrokenUserNeverBlocksTheOthers() async throws {
    // Fly's timings at zero (no list lag): they are the simulator's real time, and 30 back-to-back
    // passes can all fall inside them.
    try await withHarness(simulator: .fast(appName: "app", token: "tok")) { harness in
      try await harness.addUsers(5)
      try await harness.store.setUser(UserInput(userID: "u0", image: "registry.fly.io/broken:1"))
      try await harness.store.setUser(UserInput(userID: "u1", region: "syd"))
      var faults = SimulatorFaults()
      faults.badImages = ["registry.fly.io/broken:1"]
      faults.capacityExhaustedRegions = ["syd"]
      harness.simulator.setFaults(faults)
      let passes = 30
      for _ in 0..<passes { _ = await harness.reconciler.pass() }
      let fleet = harness.fleet()
      #expect(fleet.machinesByUser.keys.sorted() == ["u2", "u3", "u4"])
      let events = try await harness.store.events(user: "u0", limit: 1000)
      #expect(
        events.contains {
          $0.detailsJSON.contains(#""outcome":"failed""#) && $0.detailsJSON.contains("manifest unknown")
        }
      )
      let memory = try await harness.store.loadUserStates()
      #expect((memory["u0"]?.failures ?? 0) >= 1)
      #expect(memory["u0"]?.backoffUntil != nil, "backs off across passes")
      // Backoff: far fewer create attempts than passes.
      let attempts = harness.mutations().filter { $0.endpoint == "POST /machines" }.count
      #expect(attempts < passes)
    }
  }
}
