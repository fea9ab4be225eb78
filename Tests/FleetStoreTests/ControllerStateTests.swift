import FleetCore
import FleetStore
import Foundation
import Testing

/// The controller's own tables read back whole: across chunk boundaries, plain and rich memories.
struct ControllerStateTests {
  @Test func memoryAndRowsReadBackWholeAcrossChunks() async throws {
    let (store, _) = try await freshStore()
    let users = 10_003  // one chunk of 10,000 and a few more
    var statements: [SQLStatement] = []
    for index in 0..<users {
      var memory = UserState()
      memory.volumeID = "vol_\(index)"
      statements.append(FleetStore.saveUserState("u\(index)", memory))
      statements.append(
        FleetStore.upsertMachineRow(
          MachineRow(
            id: "m\(index)", userID: "u\(index)", region: "ord", volumeID: "vol_\(index)", status: "started",
            ipAddress: nil, createdAt: 1, updatedAt: 2)))
    }
    // Memories the fast path must not take: a pending create, an id JSON escapes.
    var rich = UserState()
    rich.volumeID = "vol_rich"
    rich.pending = PendingCreate(kind: .machine, since: 5, resourceID: "m-new")
    rich.failures = 2
    statements.append(FleetStore.saveUserState("rich", rich))
    var odd = UserState()
    odd.volumeID = #"vol_"q"/\x"#
    statements.append(FleetStore.saveUserState("odd", odd))
    // Recorded configs, on the fast path and off it (an update under way).
    var applied = UserState()
    applied.volumeID = "vol_applied"
    applied.applied = AppliedConfig(template: .max, overrides: 0, version: 0x0123_4567_89ab_cdef)
    statements.append(FleetStore.saveUserState("applied", applied))
    var updating = applied
    updating.update = UpdateWatch(since: 7, from: 1, to: 2, launched: true)
    statements.append(FleetStore.saveUserState("updating", updating))
    var noVolume = UserState()
    noVolume.applied = AppliedConfig(template: 3, overrides: 4, version: 5)
    statements.append(FleetStore.saveUserState("novolume", noVolume))
    try await store.commit(events: [], statements: statements)

    let memory = try await store.loadUserStates()
    #expect(memory.count == users + 5)
    #expect(memory["applied"] == applied)
    #expect(memory["updating"] == updating)
    #expect(memory["novolume"] == noVolume)
    // The common recorded state is written in the plain form the restart reads without a decoder.
    #expect(
      FleetStore.saveUserState("applied", applied).arguments.last
        == .text(#"{"applied":{"o":"0","t":"ffffffffffffffff","v":"123456789abcdef"},"volume_id":"vol_applied"}"#))
    let rows = try await store.machineRows()
    #expect(rows.count == users)
    #expect(rows["u10002"]?.id == "m10002" && rows["u5000"]?.volumeID == "vol_5000")
  }
}
