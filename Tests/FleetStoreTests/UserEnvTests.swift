import FleetCore
import FleetStore
import Foundation
import Testing

/// Per-user env values (`desired_machines.env`): through the CLI's path and through plain SQL, as
/// the dashboard writes them.
struct UserEnvTests {
  @Test func setReadBackAndCleared() async throws {
    let (store, _) = try await freshStore()
    try await store.addUser(
      UserInput(userID: "u1", region: "cdg", env: ["PLAN": "pro", "URL": "https://{{hostname}}"]))
    try await store.addUser(UserInput(userID: "u2", region: "cdg"))
    var snapshot = try await store.readDesired()
    #expect(snapshot.machines["u1"]?.overrides.env == ["PLAN": "pro", "URL": "https://{{hostname}}"])
    #expect(snapshot.machines["u2"]?.overrides.env == nil)
    // The user's values win over the template's of the same name; the others stay.
    var template = MachineTemplate()
    template.env = ["PLAN": "free", "KEY": "$AGENT_SECRET"]
    #expect(
      snapshot.machines["u1"]!.spec(from: template).env == [
        "PLAN": "pro", "URL": "https://{{hostname}}", "KEY": "$AGENT_SECRET",
      ])
    // Set replaces the user's env; [:] clears it.
    try await store.setUser(UserInput(userID: "u1", env: ["PLAN": "team"]))
    snapshot = try await store.readDesired()
    #expect(snapshot.machines["u1"]?.overrides.env == ["PLAN": "team"])
    try await store.setUser(UserInput(userID: "u1", env: [:]))
    snapshot = try await store.readDesired()
    #expect(snapshot.machines["u1"]?.overrides.env == nil && snapshot.machines["u1"]?.overrides.isEmpty == true)
  }

  @Test(arguments: [
    (["PLAN": "$OPENAI_KEY"], "env.PLAN", "$OPENAI_KEY"),
    (["bad-name": "x"], "env", "bad-name"),
    (["FLEET_DATABASE": "x"], "env", "FLEET_DATABASE"),
    (["FLY_API_TOKEN": "x"], "env", "FLY_API_TOKEN"),
    (["TOKEN": "{{secret:FLY_API_TOKEN}}"], "env.TOKEN", "{{secret:FLY_API_TOKEN}}"),
    (["TOKEN": "{{usr}}"], "env.TOKEN", "{{usr}}"),
  ])
  func aBadUserEnvIsRefusedNamingFieldAndValue(env: [String: String], field: String, value: String) async throws {
    let (store, _) = try await freshStore()
    try await store.addUser(UserInput(userID: "u1", region: "cdg"))
    let before = try await dump(store)
    do {
      try await store.setUser(UserInput(userID: "u1", env: env))
      Issue.record("accepted \(env)")
    } catch {
      guard case .input(let refusal) = error else {
        Issue.record("not an input error: \(error)")
        return
      }
      #expect(refusal.errors.contains { $0.field == field }, "\(refusal)")
      #expect(refusal.description.contains(value), "\(refusal)")
    }
    #expect(try await dump(store) == before)
  }

  /// The dashboard writes SQL: the column takes only an object of strings, and a value the CLI
  /// would refuse makes that one row invalid (reported, never acted on), not the snapshot.
  @Test func plainSQLIsHeldToTheSameRules() async throws {
    let (store, _) = try await freshStore()
    try await store.addUser(UserInput(userID: "u1", region: "cdg"))
    try await store.addUser(UserInput(userID: "u2", region: "cdg"))
    for bad in [#"["a"]"#, #"{"A":1}"#, #"{"a b":"x"}"#, #"{"1A":"x"}"#, "not json"] {
      do {
        _ = try await store.database.write([
          SQLStatement("UPDATE desired_machines SET env = ? WHERE user_id = 'u1'", [.text(bad)])
        ])
        Issue.record("SQL accepted env \(bad)")
      } catch {
        #expect("\(error)".contains("env"), "\(error)")
      }
    }
    _ = try await store.database.write([
      SQLStatement("UPDATE desired_machines SET env = ? WHERE user_id = 'u1'", [.text(#"{"KEY":"$OPENAI_KEY"}"#)])
    ])
    let snapshot = try await store.readDesired()
    #expect(snapshot.machines["u1"] == nil)
    #expect(snapshot.invalidRows["u1"]?.contains("$OPENAI_KEY") == true, "\(snapshot.invalidRows)")
    #expect(snapshot.machines["u2"] != nil, "the other users are read")
  }
}
