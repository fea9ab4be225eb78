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
    try await store.commit(events: [], statements: statements)

    let memory = try await store.loadUserStates()
    #expect(memory.count == users + 2)
    #expect(memory["u0"]?.volumeID == "vol_0" && memory["u10002"]?.volumeID == "vol_10002")
    #expect(memory["u9999"]?.pending == nil && memory["u9999"]?.failures == 0)
    #expect(memory["rich"] == rich)
    #expect(memory["odd"] == odd)
    let rows = try await store.machineRows()
    #expect(rows.count == users)
    #expect(rows["u10002"]?.id == "m10002" && rows["u5000"]?.volumeID == "vol_5000")
  }
}
