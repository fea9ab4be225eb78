import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Logging
import Testing

/// One user's bad state (a hostile row, a refused start, a lying look-up) never stops the others,
/// is reported by user and cause, and never floods the audit log.
@Suite(.serialized) struct OneUserNeverStopsTheOthersTests {
  /// A `machines` row written by hand holds a live machine's id under another user: the user whose
  /// row cannot be written is reported (`record_failed`), everyone else is reconciled, a new user
  /// included.
  @Test func aHostileMachinesRowFailsOnlyItsUser() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(3)
      await harness.converge()
      let stolen = try #require(try await harness.store.machineRows()["u0"]?.id)
      _ = try await harness.store.database.write([
        SQLStatement("DELETE FROM machines WHERE user_id = 'u0'"),
        SQLStatement(
          "INSERT INTO machines (id, user_id, region, status) VALUES (?, 'intruder', 'cdg', 'started')", [.text(stolen)]
        ),
      ])
      try await harness.store.importUsers([UserInput(userID: "late", state: "running", region: "cdg")])
      // A restart reads the rows back.
      let restarted = harness.restarted()
      var reports: [PassReport] = []
      for _ in 0..<20 {
        let report = await restarted.pass()
        reports.append(report)
        if harness.fleet().machinesByUser["late"]?.first?.state == "started" { break }
      }
      #expect(harness.fleet().machinesByUser["late"]?.first?.state == "started", "the others go on")
      #expect(!reports.contains { $0.outcome == .couldNotRun }, "never a pass that does nothing for everyone")
      let failed = reports.flatMap(\.findings).filter { $0.kind == .recordFailed }
      #expect(failed.contains { $0.userID == "u0" && $0.message.contains("UNIQUE") }, "names the user and the cause")
      #expect(reports.last?.outcome == .actionsFailed, "a pass that could not record is a failed pass")
    }
  }

  /// Fly refuses a start with 412 for good: one `not_yet` event for the streak, growing backoff,
  /// then `action_failing` (the alert), not a row every two seconds forever.
  @Test func aStartRefusedForeverBacksOffEscalatesAndRecordsOnce() async throws {
    var configuration = Harness.instant
    configuration.stillActiveAfterStop = 1e9  // every start after a stop: 412, forever
    var settings = Harness.testSettings()
    settings.retry = RetryPolicy()  // Fly's real backoff: 1 s doubling
    try await withHarness(simulator: configuration, settings: settings) { harness in
      try await harness.addUsers(1)
      await harness.converge()
      let machine = try #require(try await harness.store.machineRows()["u0"]?.id)
      _ = try await harness.client.stopMachine(machine)  // stopped through the API: "still active" from now on
      let reconciler = harness.restarted(settings: settings, jitter: Jitter({ 0.99 }))
      var findings: [DriftFinding] = []
      for _ in 0..<60 {
        let report = await reconciler.pass()
        findings = report.findings
        await harness.advance(by: 1)
      }
      let starts = harness.mutations().filter { $0.endpoint == "POST /machines/{id}/start" }.count
      #expect(starts <= 8, "\(starts) start attempts in 60 s: backoff grows")
      let notYet = try await harness.store.events(user: "u0", limit: 500).filter {
        $0.eventType == "start" && $0.detailsJSON.contains("not_yet")
      }
      #expect(notYet.count == 1, "one event for the streak, not one per attempt")
      #expect(findings.contains { $0.kind == .actionFailing && $0.userID == "u0" }, "escalated")
    }
  }

  /// After a create whose answer was lost, the look-up asks for this user's machines; a server
  /// that ignores the filter answers every machine. None of them is adopted: a new machine is made.
  @Test func aLookUpThatIgnoresItsFilterNeverAdoptsAnotherUsersMachine() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(2)
      await harness.converge()
      // "late" has a volume and a machine create whose answer was lost (none was made).
      let volume = try await harness.client.createVolume(
        CreateVolumeRequest(name: FleetNames.volumeName(forUser: "late"), region: "cdg", sizeGB: 1, encrypted: true))
      var memory = UserState()
      memory.volumeID = volume.id
      memory.pending = PendingCreate(kind: .machine, since: 0, outcomeUnknown: true)
      try await harness.store.commit(events: [], statements: [FleetStore.saveUserState("late", memory)])
      try await harness.store.importUsers([UserInput(userID: "late", state: "running", region: "cdg")])
      var faults = harness.simulator.faults
      faults.ignoreMetadataFilter = true
      harness.simulator.setFaults(faults)
      let restarted = harness.restarted()
      var reports: [PassReport] = []
      for _ in 0..<10 {
        let report = await restarted.pass()
        reports.append(report)
        if report.plan?.actions.isEmpty == true && report.plan?.waiting.isEmpty == true { break }
      }
      let lookUps = harness.simulator.requestLog().filter {
        $0.endpoint == "GET /machines" && $0.query.contains("metadata.")
      }
      #expect(!lookUps.isEmpty, "the lost create was looked up, through the (ignored) metadata filter")
      let rows = try await harness.store.machineRows()
      let lateMachine = try #require(rows["late"]?.id)
      #expect(lateMachine != rows["u0"]?.id && lateMachine != rows["u1"]?.id, "not another user's machine")
      let fleet = harness.fleet()
      #expect(fleet.machinesByUser["late"]?.count == 1)
      #expect((fleet.machinesByUser["late"]?.first?.id) == lateMachine)
      #expect(!reports.contains { $0.outcome != .ok }, "\(reports.map(\.outcome))")
      let adopted = try await harness.store.events(user: "late", limit: 100).filter { $0.eventType == "adopt_machine" }
      #expect(adopted.isEmpty, "nothing of someone else's adopted")
    }
  }
}
