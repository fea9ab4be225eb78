import FleetCore
import FleetStore
import Foundation
import Testing

/// Fly extends volumes and never shrinks them: a smaller size is refused everywhere it can be set.
struct VolumeGrowsTests {
  @Test func aSmallerSizeIsRefusedByTheCLIPath() async throws {
    let (store, _) = try await freshStore()
    var template = TemplatePatch()
    template.volumeSizeGB = 3
    try await store.setTemplate(template)
    try await store.addUser(UserInput(userID: "u1", region: "cdg"))
    try await store.addUser(UserInput(userID: "u2", region: "cdg", volumeSizeGB: 2))  // new: any size
    let before = try await dump(store)
    for (call, text) in [
      ({ try await store.setUser(UserInput(userID: "u1", volumeSizeGB: 2)) }, "this user's is 3 GB"),
      ({ try await store.setUser(UserInput(userID: "u2", volumeSizeGB: 1)) }, "this user's is 2 GB"),
      (
        {
          var smaller = TemplatePatch()
          smaller.volumeSizeGB = 2
          try await store.setTemplate(smaller)
        }, "the template's is 3 GB"
      ),
    ] as [(() async throws -> Void, String)] {
      do {
        try await call()
        Issue.record("a smaller volume was accepted")
      } catch {
        #expect("\(error)".contains("volume_size_gb") && "\(error)".contains(text), "\(error)")
        #expect("\(error)".contains("only grow"), "\(error)")
      }
    }
    #expect(try await dump(store) == before)
    // Growing is fine.
    try await store.setUser(UserInput(userID: "u1", volumeSizeGB: 5))
    #expect(try await store.readDesired().machines["u1"]?.overrides.volumeSizeGB == 5)
  }

  @Test func plainSQLCannotShrinkEither() async throws {
    let (store, _) = try await freshStore()
    try await store.addUser(UserInput(userID: "u1", region: "cdg", volumeSizeGB: 4))
    do {
      _ = try await store.database.write([
        SQLStatement("UPDATE desired_machines SET volume_size_gb = 2 WHERE user_id = 'u1'")
      ])
      Issue.record("SQL shrank a user's volume")
    } catch {
      #expect("\(error)".contains("volume_size_gb: volumes only grow"), "\(error)")
    }
    // Clearing an override to a smaller template default is a shrink too.
    do {
      _ = try await store.database.write([
        SQLStatement("UPDATE desired_machines SET volume_size_gb = NULL WHERE user_id = 'u1'")
      ])
      Issue.record("SQL cleared a 4 GB override to the 1 GB template")
    } catch {
      #expect("\(error)".contains("only grow"))
    }
    _ = try await store.database.write([SQLStatement("UPDATE machine_template SET volume_size_gb = 6 WHERE id = 1")])
    do {
      _ = try await store.database.write([SQLStatement("UPDATE machine_template SET volume_size_gb = 5 WHERE id = 1")])
      Issue.record("SQL shrank the template's volume size")
    } catch {
      #expect("\(error)".contains("only grow"))
    }
  }
}
