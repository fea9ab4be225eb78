import FleetCore
import FleetDevTools
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Testing

/// Fly's lists lie (empty for long enough to be believed, then one list back before the other):
/// no user loses a volume, gets a second one, or loses its `machines` row.
@Suite(.serialized) struct ListsLieTests {
  func snapshot(_ harness: Harness) -> (machines: [String: String], volumes: [String: [String]]) {
    let fleet = harness.fleet()
    var machines: [String: String] = [:]
    for (user, list) in fleet.machinesByUser { machines[user] = list.first?.id }
    var volumes: [String: [String]] = [:]
    for (name, list) in fleet.volumesByName { volumes[name] = list.map(\.id).sorted() }
    return (machines, volumes)
  }

  func passes(_ harness: Harness, _ count: Int) async -> [PassReport] {
    var reports: [PassReport] = []
    for _ in 0..<count { reports.append(await harness.reconciler.pass()) }
    return reports
  }

  @Test func emptyListsBelievedThenVolumesBackFirstLoseNothing() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(4)
      await harness.converge()
      let before = snapshot(harness)
      #expect(before.machines.count == 4 && before.volumes.count == 4)
      let rowsBefore = try await harness.store.machineRows()
      #expect(rowsBefore.count == 4)
      let mutationsBefore = harness.mutations().count

      // Both lists answer [] for long enough to be believed (more than the suspect passes).
      var faults = harness.simulator.faults
      faults.emptyMachineLists = true
      faults.emptyVolumeLists = true
      harness.simulator.setFaults(faults)
      let lying = await passes(harness, 8)
      #expect(lying.contains { $0.listsTrusted }, "the empty lists came to be believed")
      #expect(try await harness.store.machineRows().count == 4, "a list never wipes the machines rows")
      // The volume list comes back first.
      faults.emptyVolumeLists = false
      harness.simulator.setFaults(faults)
      _ = await passes(harness, 6)
      #expect(try await harness.store.machineRows().count == 4)
      faults.emptyMachineLists = false
      harness.simulator.setFaults(faults)
      await harness.converge()

      let after = snapshot(harness)
      #expect(after.machines == before.machines, "every user keeps its machine")
      #expect(after.volumes == before.volumes, "every user keeps its one volume, no second one")
      let mutations = harness.mutations().dropFirst(mutationsBefore)
      #expect(mutations.isEmpty, "nothing created, stopped or destroyed: \(mutations.map(\.endpoint))")
      let rows = try await harness.store.machineRows()
      for (user, machine) in before.machines { #expect(rows[user]?.id == machine) }
      // The reads by id said what the lists did not, and the audit log says so once per resource.
      let events = try await harness.store.events(limit: 500).filter { $0.eventType.hasPrefix("verify_") }
      #expect(!events.isEmpty)
      #expect(events.allSatisfy { $0.detailsJSON.contains("\"present\"") })
    }
  }

  /// Both the machine and the volume of a user are left out, read by id and found, over and
  /// over: each is reported (`list_omits`) and recorded once, not once per read.
  @Test func aMachineAndAVolumeLeftOutAreEachReportedAndRecordedOnce() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(1)
      await harness.converge()
      var faults = harness.simulator.faults
      faults.emptyMachineLists = true
      faults.emptyVolumeLists = true
      harness.simulator.setFaults(faults)
      var last: PassReport?
      for _ in 0..<8 {
        last = await harness.reconciler.pass()
        harness.controllerClock.jump(by: 20)  // past the 15 s wait: every pass reads both again
      }
      let omitted = (last?.findings ?? []).filter { $0.kind == .listOmits }.compactMap(\.resourceID)
      #expect(omitted.count == 2 && Set(omitted).count == 2, "the machine and the volume: \(omitted)")
      let reads = try await harness.store.events(user: "u0", limit: 500).filter { $0.eventType.hasPrefix("verify_") }
      #expect(reads.count == 2, "one event per resource, not per read: \(reads.count)")
      #expect(harness.mutations().filter { $0.endpoint.hasPrefix("POST") }.count == 2, "only the first create pair")
    }
  }

  /// The lists leave everything out and the reads by id answer 404 once each (as right after a
  /// create, or in an incident): one 404 is not proof; the second read finds everything there.
  @Test func aBrief404IsNotProof() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(3)
      await harness.converge()
      let before = snapshot(harness)
      let mutationsBefore = harness.mutations().count
      var faults = harness.simulator.faults
      faults.emptyMachineLists = true
      faults.emptyVolumeLists = true
      faults.notFoundGets = 6  // the first read of each machine and volume
      harness.simulator.setFaults(faults)
      // Ten passes a second apart by the controller's clock: every read by id is made, then made
      // again after the 0.3 s wait.
      for _ in 0..<10 {
        _ = await harness.reconciler.pass()
        harness.controllerClock.jump(by: 1)
      }
      #expect(harness.simulator.faults.notFoundGets == 0, "the 404s were served")
      #expect(try await harness.store.machineRows().count == 3)
      faults.emptyMachineLists = false
      faults.emptyVolumeLists = false
      faults.notFoundGets = 0
      harness.simulator.setFaults(faults)
      await harness.converge()
      #expect(snapshot(harness).machines == before.machines && snapshot(harness).volumes == before.volumes)
      #expect(harness.mutations().dropFirst(mutationsBefore).isEmpty, "nothing replaced on one 404")
    }
  }

  @Test func aMachineReallyGoneIsReplacedAfterAReadByIdSaysSo() async throws {
    var configuration = Harness.instant
    configuration.destroyedLinger = 0  // forgotten by lists and GETs at once
    try await withHarness(simulator: configuration) { harness in
      try await harness.addUsers(2)
      await harness.converge()
      let before = snapshot(harness)
      let victim = try #require(before.machines["u0"])
      // Destroyed behind our back, and forgotten by Fly's list at once.
      let volume = try #require(before.volumes[FleetNames.volumeName(forUser: "u0")]?.first)
      await harness.drift(#"{"op":"destroy_machine","machine_id":"\#(victim)"}"#)
      await harness.drift(#"{"op":"detach_volume","volume_id":"\#(volume)"}"#)
      await harness.converge()
      let after = snapshot(harness)
      #expect(after.machines["u0"] != nil && after.machines["u0"] != victim, "replaced")
      #expect(after.volumes == before.volumes, "on the same volume")
      let events = try await harness.store.events(user: "u0", limit: 100).map(\.eventType)
      #expect(events.contains("verify_machine"), "read by id before it was replaced")
      #expect(events.contains("drift.machine_missing"), "and reported")
    }
  }

  /// Fly moves a machine to another host (issue 13, item 5): same machine id, a fork of its volume
  /// under a new id, a new private IP, the old volume `pending_destroy`. The controller follows the
  /// machine's mount: the `machines` row and the user's state take the new volume id and IP, and
  /// nothing is created, destroyed or reported.
  @Test func aHostMigrationIsFollowedWithoutActionOrDrift() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(2)
      await harness.converge()
      let before = try #require(harness.fleet().machine("u0"))
      let oldVolume = try #require(before.config?.mounts.first?.volume)
      let mutations = harness.mutations().count
      await harness.drift(#"{"op":"migrate_machine","machine_id":"\#(before.id)"}"#)
      let after = try #require(harness.fleet().machine("u0"))
      let newVolume = try #require(after.config?.mounts.first?.volume)
      #expect(after.id == before.id && newVolume != oldVolume && after.privateIP != before.privateIP)
      let reports = await harness.converge()
      #expect(reports.allSatisfy { $0.findings.isEmpty }, "\(reports.flatMap(\.findings).map(\.message))")
      #expect(harness.mutations().count == mutations, "no action")
      let row = try #require(try await harness.store.machineRows()["u0"])
      #expect(row.id == before.id && row.volumeID == newVolume && row.ipAddress == after.privateIP)
      #expect(try await harness.store.loadUserStates()["u0"]?.volumeID == newVolume)
      let events = try await harness.store.events(user: "u0", limit: 100).map(\.eventType)
      #expect(!events.contains { $0.hasPrefix("drift") || $0.hasPrefix("verify") }, "\(events)")
    }
  }
}
