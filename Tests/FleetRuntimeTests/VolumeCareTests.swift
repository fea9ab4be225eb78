import FleetCore
import FleetDevTools
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Testing

/// Issue 17: users' data is never lost. A snapshot stands before every step that destroys data;
/// without one the step waits and, after a while, alerts.
@Suite struct VolumeCareTests {
  static func retentionSettings() -> ReconcilerSettings {
    var settings = Harness.testSettings()
    settings.planner.volumeRetention = 86_400
    settings.planner.retentionFloor = 0
    settings.maxClockSkew = .infinity
    return settings
  }

  /// The removed user's volume is deleted after its retention only once a snapshot of it is
  /// taken; the snapshot's id is in `machine_events`, on its own event and on the delete's.
  @Test func aSnapshotIsTakenBeforeARetentionDelete() async throws {
    try await withHarness(settings: Self.retentionSettings()) { harness in
      try await harness.removeAUser()
      let volume = try #require(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")]?.first)
      harness.controllerClock.jump(by: 86_400 + 1)
      await harness.converge()
      #expect(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")] == nil)
      let events = try await harness.store.events(user: "u1", limit: 100)
      let snapshot = try #require(events.first { $0.eventType == "snapshot_volume" })
      let delete = try #require(events.first { $0.eventType == "delete_volume" })
      #expect(snapshot.id < delete.id, "the snapshot comes first")
      #expect(snapshot.volumeID == volume.id)
      let snapshotID = try #require(
        (try JSONSerialization.jsonObject(with: Data(snapshot.detailsJSON.utf8)) as? [String: Any])?["snapshot_id"]
          as? String)
      #expect(delete.detailsJSON.contains(#""snapshot_id":"\#(snapshotID)""#))
      // Fly keeps it after the volume is gone: a user who comes back can be restored.
      let listed = await harness.simulator.handle(
        SimulatorRequest(
          method: "GET", target: "/v1/apps/app/volumes/\(volume.id)/snapshots",
          headers: ["authorization": "Bearer tok"]))
      #expect(listed.status == 200)
      let snapshots = try JSONSerialization.jsonObject(with: listed.body) as? [[String: Any]] ?? []
      #expect(snapshots.contains { $0["id"] as? String == snapshotID })
      let order = harness.mutations().map(\.endpoint)
      let taken = try #require(order.firstIndex(of: "POST /volumes/{id}/snapshots"))
      #expect(order.firstIndex(of: "DELETE /volumes/{id}").map { $0 > taken } == true)
    }
  }

  /// Snapshots cannot be taken: the delete waits (never goes ahead), alerts after the retry budget
  /// (`action_failing`, saying why), and goes once snapshots work again.
  @Test func withoutASnapshotTheDeleteWaitsAndAlerts() async throws {
    try await withHarness(settings: Self.retentionSettings()) { harness in
      try await harness.removeAUser()
      var faults = SimulatorFaults()
      faults.failEndpoints = ["POST /volumes/{id}/snapshots"]
      harness.simulator.setFaults(faults)
      harness.controllerClock.jump(by: 86_400 + 1)
      var failing: DriftFinding?
      for _ in 0..<200 where failing == nil {
        let report = await harness.reconciler.pass()
        failing = report.plan?.findings.first { $0.kind == .actionFailing && $0.userID == "u1" }
        await harness.advance(by: 30)
        harness.controllerClock.jump(by: 30)
      }
      let finding = try #require(failing, "the held delete alerts")
      #expect(finding.message.contains("no snapshot"), "\(finding.message)")
      #expect(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")]?.count == 1, "never deleted")
      #expect(!harness.mutations().contains { $0.endpoint == "DELETE /volumes/{id}" })
      harness.simulator.setFaults(SimulatorFaults())
      harness.controllerClock.jump(by: 600)
      await harness.advance(by: 600)
      await harness.converge()
      #expect(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")] == nil)
    }
  }
}

/// Full disks and crash loops, seen as an operator would: findings (alerts) that come and go.
@Suite struct MachineCareTests {
  func findings(_ report: PassReport, _ kind: DriftFinding.Kind) -> [DriftFinding] {
    report.plan?.findings.filter { $0.kind == kind } ?? []
  }

  /// A volume above the threshold is `disk_full`; auto-extend grows it a step at a time (a
  /// snapshot first, each step recorded) up to the cap, where the finding stays.
  @Test func aFullDiskIsReportedAndGrownUpToTheCap() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.store.setVolumePolicy(diskFullPercent: 85, autoExtendToGB: 3, autoExtendStepGB: 1)
      try await harness.addUsers(2)
      await harness.converge()
      let volume = try #require(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")]?.first)
      for size in 1...3 {
        let used = Int(Double(size << 30) * 0.95)
        await harness.drift(#"{"op":"fill_volume","volume_id":"\#(volume.id)","bytes_used":\#(used)}"#)
        if size > 1 {
          // Full again at once: the next step waits out the cooldown (the guest may need a restart).
          let early = await harness.reconciler.pass()
          #expect(!early.results.contains { $0.action.kind == .extendVolume }, "not within the cooldown")
          await harness.advance(by: 601)
        }
        let report = await harness.reconciler.pass()
        let full = findings(report, .diskFull)
        #expect(full.map(\.userID) == ["u1"], "only u1 is full: \(full)")
        #expect(full.first?.message.contains("95% full") == true, "\(full.first?.message ?? "")")
        if size < 3 {
          #expect(report.results.contains { $0.action.kind == .extendVolume && $0.outcome == .ok })
          #expect(try await harness.client.getVolume(volume.id).sizeGB == size + 1)
          let after = await harness.reconciler.pass()
          #expect(findings(after, .diskFull).isEmpty, "no longer full once grown")
        } else {
          #expect(!report.results.contains { $0.action.kind == .extendVolume }, "never past the cap")
          #expect(full.first?.message.contains("cap of 3 GB") == true)
        }
      }
      let events = try await harness.store.events(user: "u1", limit: 200).map(\.eventType)
      #expect(events.filter { $0 == "extend_volume" }.count == 2)
      let firstExtend = try #require(events.firstIndex(of: "extend_volume"))
      #expect(events[..<firstExtend].contains("snapshot_volume"), "a snapshot before each extend: \(events)")
    }
  }

  /// A machine listed `started` whose process keeps exiting is `crash_looping`, with its exit
  /// codes; an OOM kill is `out_of_memory`; both clear once it has run cleanly for the window.
  /// Only machines whose `updated_at` moved have their events read.
  @Test func aCrashLoopAndAnOOMAreFoundAndClearOnceItRunsCleanly() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(2)
      await harness.converge()
      await harness.advance(by: 120)
      let quiet = try #require(harness.fleet().machine("u0")?.id)
      let looping = try #require(harness.fleet().machine("u1")?.id)
      await harness.drift(
        #"{"op":"crash_loop","machine_id":"\#(looping)","every":10,"exit_code":137,"oom_killed":true}"#)
      var last: PassReport?
      for _ in 0..<8 {
        await harness.advance(by: 10)
        last = await harness.reconciler.pass()
      }
      let report = try #require(last)
      let crash = findings(report, .crashLooping)
      #expect(crash.map(\.userID) == ["u1"], "\(report.plan?.findings ?? [])")
      #expect(crash.first?.message.contains("OOM") == true, "\(crash.first?.message ?? "")")
      #expect(findings(report, .outOfMemory).map(\.userID) == ["u1"])
      #expect(harness.fleet().machine("u1")?.state == "started", "listed started all along")
      let reads = harness.simulator.requestLog().filter { $0.endpoint == "GET /machines/{id}/events" }
      #expect(!reads.isEmpty && reads.allSatisfy { !$0.path.contains(quiet) }, "the quiet machine is never read")
      // Fixed: after the crash window without an exit, the findings clear.
      await harness.drift(#"{"op":"heal_machine","machine_id":"\#(looping)"}"#)
      var cleared = false
      for _ in 0..<80 where !cleared {
        await harness.advance(by: 10)
        let pass = await harness.reconciler.pass()
        cleared = findings(pass, .crashLooping).isEmpty && findings(pass, .outOfMemory).isEmpty
      }
      #expect(cleared)
      let events = try await harness.store.events(user: "u1", limit: 200).map(\.eventType)
      #expect(events.contains("drift.crash_looping") && events.contains("drift_resolved.crash_looping"), "\(events)")
    }
  }
}
