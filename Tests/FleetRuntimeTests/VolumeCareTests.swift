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
