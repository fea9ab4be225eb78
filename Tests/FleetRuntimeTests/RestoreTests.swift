import FleetCore
import FleetDevTools
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Testing

/// Issue 17: a user's volume restored from a snapshot. A new volume from the snapshot, a new
/// machine on it, the old machine destroyed only once the new one is started, the old volume kept
/// for the retention; every step recorded; a lost answer or a restart at any step resumes without
/// a duplicate.
@Suite struct RestoreTests {
  static func settings() -> ReconcilerSettings {
    var settings = Harness.testSettings()
    settings.planner.volumeRetention = 86_400
    settings.planner.retentionFloor = 0
    settings.maxClockSkew = .infinity
    return settings
  }

  /// Two users converged; u1's volume holds 1000 bytes, then a snapshot of it, then 5000 bytes (what
  /// the restore goes back from). Answers the snapshot's id and u1's volume id.
  static func prepare(_ harness: Harness) async throws -> (snapshot: String, volume: String) {
    try await harness.addUsers(2)
    await harness.converge()
    let volume = try #require(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")]?.first)
    await harness.drift(#"{"op":"fill_volume","volume_id":"\#(volume.id)","bytes_used":1000}"#)
    let snapshot = try await Snapshots.take(harness.client, volumeID: volume.id)
    await harness.drift(#"{"op":"fill_volume","volume_id":"\#(volume.id)","bytes_used":5000}"#)
    return (snapshot.id, volume.id)
  }

  /// What must hold once a restore of u1 is done: one machine, on a new volume holding the
  /// snapshot's data, the old volume kept (detached), u0 untouched, the request closed.
  static func expectRestored(_ harness: Harness, oldVolume: String, u0Machine: String?) async throws {
    let fleet = harness.fleet()
    let machines = fleet.machinesByUser["u1"] ?? []
    #expect(machines.count == 1, "one machine for u1: \(machines.map(\.id))")
    let machine = try #require(machines.first)
    #expect(machine.state == "started")
    let mounted = try #require(machine.config?.mounts.first?.volume)
    #expect(mounted != oldVolume, "the new machine runs on the restored volume")
    let volumes = fleet.volumesByName[FleetNames.volumeName(forUser: "u1")] ?? []
    #expect(volumes.count == 2, "the restored volume and the old one, kept: \(volumes.map(\.id))")
    #expect(volumes.contains { $0.id == oldVolume && $0.attachedMachineID == nil })
    let restored = try await harness.client.getVolume(mounted)
    #expect(restored.sizeGB == 1)
    #expect(fleet.machine("u0")?.id == u0Machine, "the other user is untouched")
    let rows = try await harness.store.restores(userID: "u1")
    #expect(rows.first?.status == "done", "\(rows)")
  }

  @Test func aRestoreReplacesTheMachineAfterTheNewOneStarts() async throws {
    try await withHarness(settings: Self.settings()) { harness in
      let (snapshot, oldVolume) = try await Self.prepare(harness)
      let u0 = harness.fleet().machine("u0")?.id
      let id = try await harness.store.requestRestore(userID: "u1", snapshotID: snapshot, sizeGB: 1)
      // The plan shows it first.
      let plan = await harness.reconciler.pass(apply: false).plan
      #expect(plan?.actions.first?.kind == .restoreVolume, "\(plan?.actions.map(\.kind) ?? [])")
      await harness.converge()
      try await Self.expectRestored(harness, oldVolume: oldVolume, u0Machine: u0)
      // Every step recorded, in order; the old machine stopped only after the new one started.
      let events = try await harness.store.events(user: "u1", limit: 200).map(\.eventType)
      let steps = ["snapshot_volume", "restore_volume", "create_machine", "stop", "destroy_machine", "restore_done"]
      let tail = Array(events.drop { $0 != "snapshot_volume" }).filter { steps.contains($0) }
      #expect(tail == steps, "\(events)")
      let log = harness.mutations()
      let created = try #require(log.lastIndex { $0.endpoint == "POST /machines" })
      let stopped = try #require(log.lastIndex { $0.endpoint == "POST /machines/{id}/stop" })
      #expect(created < stopped)
      // A second request of the same user may be made now; the first is closed.
      #expect(try await harness.store.restores(userID: "u1").first?.id == id)
      // Quiet once done: the retired volume waits its retention, then goes (a snapshot first).
      harness.controllerClock.jump(by: 86_400 + 1)
      await harness.converge()
      let names = harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")] ?? []
      #expect(names.count == 1 && names.first?.id != oldVolume, "the old volume deleted after its retention")
      #expect(harness.fleet().machinesByUser["u1"]?.count == 1)
    }
  }

  /// Fly's answer lost at each step, and the controller restarted right after (its memory only
  /// what it wrote): the restore resumes, looks up before creating again, and ends with no
  /// duplicate volume or machine.
  @Test(arguments: ["POST /volumes", "POST /machines", "POST /machines/{id}/stop", "DELETE /machines/{id}"])
  func aLostAnswerAndARestartAtAnyStepMakeNoDuplicate(endpoint: String) async throws {
    try await withHarness(settings: Self.settings()) { harness in
      let (snapshot, oldVolume) = try await Self.prepare(harness)
      let u0 = harness.fleet().machine("u0")?.id
      _ = try await harness.store.requestRestore(userID: "u1", snapshotID: snapshot, sizeGB: 1)
      var faults = SimulatorFaults()
      faults.loseAnswers = [endpoint]
      harness.simulator.setFaults(faults)
      var hit = false
      for _ in 0..<60 where !hit {
        _ = await harness.reconciler.pass()
        hit = harness.mutations().contains { $0.endpoint == endpoint && $0.fault == "lost_response" }
        await harness.advance(by: 1)
      }
      #expect(hit, "the step \(endpoint) was reached")
      harness.simulator.setFaults(SimulatorFaults())
      let restarted = harness.restarted()
      await harness.converge(using: restarted)
      try await Self.expectRestored(harness, oldVolume: oldVolume, u0Machine: u0)
      let creates = harness.mutations().filter {
        $0.endpoint == "POST /volumes" && ($0.status < 300 || $0.fault == "lost_response")
      }
      #expect(creates.count == 3, "two users' volumes and one restored, never two: \(creates.count)")
    }
  }

  /// A snapshot Fly does not have: the request is closed as failed, saying so, and nothing changes.
  @Test func aRestoreFromAMissingSnapshotFailsAndChangesNothing() async throws {
    try await withHarness(settings: Self.settings()) { harness in
      let (_, oldVolume) = try await Self.prepare(harness)
      let before = harness.fleet().machine("u1")?.id
      _ = try await harness.store.requestRestore(userID: "u1", snapshotID: "vs_nosuchsnapshot", sizeGB: 1)
      await harness.converge()
      let row = try #require(try await harness.store.restores(userID: "u1").first)
      #expect(row.status == "failed")
      #expect(row.detail?.contains("snapshot") == true, "\(row.detail ?? "")")
      #expect(harness.fleet().machine("u1")?.id == before)
      #expect(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")]?.map(\.id) == [oldVolume])
    }
  }

  /// A closed restore whose row still asks (its close was lost, or someone set it back by hand)
  /// is closed again, never carried out a second time.
  @Test func aClosedRestoreIsNeverCarriedOutTwice() async throws {
    try await withHarness(settings: Self.settings()) { harness in
      let (snapshot, _) = try await Self.prepare(harness)
      let id = try await harness.store.requestRestore(userID: "u1", snapshotID: snapshot, sizeGB: 1)
      await harness.converge()
      let machine = try #require(harness.fleet().machine("u1")?.id)
      _ = try await harness.store.database.write([
        SQLStatement("UPDATE restores SET status = 'requested' WHERE id = ?", [.integer(id)])
      ])
      await harness.converge()
      #expect(harness.fleet().machine("u1")?.id == machine, "not restored again")
      #expect(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")]?.count == 2)
      #expect(try await harness.store.restores(userID: "u1").first?.status == "done", "closed again")
      let creates = harness.mutations().filter { $0.endpoint == "POST /volumes" }
      #expect(creates.count == 3)
    }
  }

  /// Withdrawn once its volume is made: finished all the same (the user keeps one machine, never
  /// loses the running one before the new one is started).
  @Test func aRestoreWithdrawnHalfwayIsFinishedSafely() async throws {
    try await withHarness(settings: Self.settings()) { harness in
      let (snapshot, oldVolume) = try await Self.prepare(harness)
      let u0 = harness.fleet().machine("u0")?.id
      let id = try await harness.store.requestRestore(userID: "u1", snapshotID: snapshot, sizeGB: 1)
      for _ in 0..<20 where harness.fleet().machinesByUser["u1"]?.count != 2 {
        _ = await harness.reconciler.pass()
        await harness.advance(by: 1)
      }
      #expect(harness.fleet().machinesByUser["u1"]?.count == 2, "the new machine is made")
      _ = try await harness.store.database.write([
        SQLStatement("UPDATE restores SET status = 'cancelled' WHERE id = ?", [.integer(id)])
      ])
      for _ in 0..<60 {
        let report = await harness.reconciler.pass()
        let machines = harness.fleet().machinesByUser["u1"] ?? []
        #expect(machines.contains { $0.state == "started" }, "u1 always has a started machine")
        if report.converged { break }
        await harness.advance(by: 1)
      }
      #expect(harness.fleet().machinesByUser["u1"]?.count == 1)
      let machine = try #require(harness.fleet().machine("u1"))
      #expect(machine.config?.mounts.first?.volume != oldVolume, "finished onto the restored volume")
      #expect(harness.fleet().machine("u0")?.id == u0)
    }
  }

  /// A row naming another user's snapshot (the dashboard wrote it, or someone did by hand): refused,
  /// closed as failed, nothing made.
  @Test func anotherUsersSnapshotIsRefused() async throws {
    try await withHarness(settings: Self.settings()) { harness in
      try await harness.addUsers(2)
      await harness.converge()
      let theirs = try #require(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u0")]?.first)
      let snapshot = try await Snapshots.take(harness.client, volumeID: theirs.id)
      _ = try await harness.store.database.write([
        SQLStatement(
          "INSERT INTO restores (user_id, snapshot_id, size_gb) VALUES ('u1', ?, 1)", [.text(snapshot.id)])
      ])
      await harness.converge()
      let row = try #require(try await harness.store.restores(userID: "u1").first)
      #expect(row.status == "failed")
      #expect(row.detail?.contains("not a snapshot of u1's volumes") == true, "\(row.detail ?? "")")
      #expect(harness.fleet().volumesByName[FleetNames.volumeName(forUser: "u1")]?.count == 1)
      #expect(harness.mutations().filter { $0.endpoint == "POST /volumes" }.count == 2, "only the users' own volumes")
    }
  }
}
