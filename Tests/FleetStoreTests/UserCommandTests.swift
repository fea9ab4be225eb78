import FleetCore
import FleetStore
import Foundation
import Testing

struct UserCommandTests {
  @Test(arguments: Backend.allCases) func addSetRemoveList(backend: Backend) async throws {
    let (store, _) = try await freshStore(backend)
    try await store.addUser(UserInput(userID: "u1", email: "u1@example.com", region: "cdg", image: "nginx:1"))
    try await store.addUser(UserInput(userID: "u2", state: "stopped", region: "ams", memoryMB: 512))
    try await store.setUser(UserInput(userID: "u1", region: "ams", image: "default", cpus: 2, memoryMB: 4096))
    try await store.removeUser("u2")
    let users = try await store.listUsers()
    #expect(users.map(\.userID) == ["u1", "u2"])
    #expect(users[0].region == "ams")
    #expect(users[0].overrides == TemplateOverrides(cpus: 2, memoryMB: 4096))
    #expect(users[0].email == "u1@example.com")
    #expect(users[1].state == .absent)
  }

  /// Every refused command: the message names the field and the value, and the database is unchanged.
  @Test(
    arguments: [
      (UserInput(userID: "", region: "cdg"), "user_id", "\"\""),
      (UserInput(userID: String(repeating: "x", count: 129), region: "cdg"), "user_id", "xxxx"),
      (UserInput(userID: "a b", region: "cdg"), "user_id", "a b"),
      (UserInput(userID: "x'; DROP TABLE users; --", region: "cdg"), "user_id", "DROP TABLE"),
      (UserInput(userID: "tab\there", region: "cdg"), "user_id", "\\u{9}"),
      (UserInput(userID: "nul\u{0}", region: "cdg"), "user_id", "\\u{0}"),
      (UserInput(userID: "u9", region: "xyz"), "region", "xyz"),
      (UserInput(userID: "u9", region: "CDG"), "region", "CDG"),
      (UserInput(userID: "u9", region: "cdg'--"), "region", "cdg'--"),
      (UserInput(userID: "u9"), "region", "\"\""),
      (UserInput(userID: "u9", state: "sideways", region: "cdg"), "state", "sideways"),
      (UserInput(userID: "u9", state: "running; DELETE FROM users", region: "cdg"), "state", "DELETE"),
      (UserInput(userID: "u9", region: "cdg", image: "not an image"), "image", "not an image"),
      (UserInput(userID: "u9", region: "cdg", image: "nginx\n"), "image", "\\u{a}"),
      (UserInput(userID: "u9", region: "cdg", cpuKind: "gpu"), "cpu_kind", "gpu"),
      (UserInput(userID: "u9", region: "cdg", cpus: 3), "cpus", "3"),
      (UserInput(userID: "u9", region: "cdg", memoryMB: 0), "memory_mb", "0"),
      (UserInput(userID: "u9", region: "cdg", memoryMB: -256), "memory_mb", "-256"),
      (UserInput(userID: "u9", region: "cdg", memoryMB: 300), "memory_mb", "300"),
      (UserInput(userID: "u9", region: "cdg", memoryMB: 4096), "memory_mb", "4096"),
      (UserInput(userID: "u9", region: "cdg", volumeSizeGB: 0), "volume_size_gb", "0"),
      (UserInput(userID: "u9", region: "cdg", volumeSizeGB: -1), "volume_size_gb", "-1"),
      (UserInput(userID: "u9", email: "nope", region: "cdg"), "email", "nope"),
      (UserInput(userID: "u9", email: "a@b\u{1b}[31m", region: "cdg"), "email", "\\u{1b}"),
      (UserInput(userID: "u1", region: "cdg"), "user_id", "u1"),
    ], Backend.allCases)
  func badAddIsRefusedAndChangesNothing(_ c: (UserInput, String, String), backend: Backend) async throws {
    let (input, field, valueFragment) = c
    let (store, _) = try await freshStore(backend)
    try await store.addUser(UserInput(userID: "u1", region: "cdg"))
    let before = try await dump(store)
    do {
      try await store.addUser(input)
      Issue.record("accepted \(input)")
    } catch {
      guard case .input(let refusal) = error else { Issue.record("not an input error: \(error)"); return }
      #expect(refusal.errors.contains { $0.field == field }, "\(refusal)")
      #expect(refusal.description.contains(valueFragment), "\(refusal)")
    }
    #expect(try await dump(store) == before)
  }

  @Test(
    arguments: [
      (UserInput(userID: "ghost", state: "stopped"), "user_id"),
      (UserInput(userID: "u1", state: "off"), "state"),
      (UserInput(userID: "u1", region: "mars"), "region"),
      (UserInput(userID: "u1", memoryMB: 1000), "memory_mb"),
      (UserInput(userID: "u1", cpuKind: "performance", memoryMB: 9000), "memory_mb"),
      (UserInput(userID: "u1", image: "UPPER/case"), "image"),
    ], Backend.allCases)
  func badSetIsRefusedAndChangesNothing(_ c: (UserInput, String), backend: Backend) async throws {
    let (input, field) = c
    let (store, _) = try await freshStore(backend)
    try await store.addUser(UserInput(userID: "u1", region: "cdg"))
    let before = try await dump(store)
    await #expect { () async throws in try await store.setUser(input) } throws: { error in
      guard case .input(let refusal) = error as? InputErrorOrStore else { return false }
      return refusal.errors.contains { $0.field == field }
    }
    #expect(try await dump(store) == before)
  }

  @Test(arguments: Backend.allCases) func templateSetValidatesAndStoresSecretNamesOnly(backend: Backend) async throws {
    let (store, _) = try await freshStore(backend)
    var patch = TemplatePatch()
    patch.image = "registry.fly.io/agent:v2"
    patch.memoryMB = 1024
    patch.env = ["ANTHROPIC_API_KEY": "$ANTHROPIC_API_KEY", "MODE": "always-on"]
    patch.initCommand = ["/bin/agent"]
    patch.servicesJSON = #"[{"protocol":"tcp","internal_port":8080}]"#
    try await store.setTemplate(patch)
    let template = try await store.template()
    #expect(template.memoryMB == 1024)
    #expect(template.env["ANTHROPIC_API_KEY"] == "$ANTHROPIC_API_KEY")
    #expect(template.initCommand == ["/bin/agent"])

    let before = try await dump(store)
    let bads: [TemplatePatch] = [
      {
        var p = TemplatePatch(); p.memoryMB = 4096; return p
      }(),
      {
        var p = TemplatePatch(); p.image = "bad image"; return p
      }(),
      {
        var p = TemplatePatch(); p.servicesJSON = "{}"; return p
      }(),
      {
        var p = TemplatePatch(); p.env = ["1BAD": "x"]; return p
      }(),
      {
        var p = TemplatePatch(); p.mountPath = "relative"; return p
      }(),
      // Env that can never resolve (before: accepted, then every create failed): the controller's
      // own token, and a `$` value that is not a whole secret name.
      {
        var p = TemplatePatch(); p.env = ["TOKEN": "$FLY_API_TOKEN"]; return p
      }(),
      {
        var p = TemplatePatch(); p.env = ["PATH": "$PATH:/x"]; return p
      }(),
      {
        var p = TemplatePatch(); p.volumeSizeGB = 0; return p
      }(),
    ]
    for bad in bads {
      await #expect(throws: InputErrorOrStore.self) { try await store.setTemplate(bad) }
    }
    #expect(try await dump(store) == before)
  }

  @Test(arguments: Backend.allCases) func importCSVAndJSONLines(backend: Backend) async throws {
    let (store, _) = try await freshStore(backend)
    let csv = """
      user_id,email,region,state,image
      u1,u1@example.com,cdg,running,
      "u2","u2@example.com",ams,stopped,nginx:1
      u3,,,,

      """
    try await store.importUsers(try ImportParser.parse(csv, defaultRegion: "ord"))
    let jsonl = """
      {"user_id":"j1","region":"cdg"}
      {"user_id":"j2","region":"ams","state":"absent","email":"j2@example.com"}
      """
    try await store.importUsers(try ImportParser.parse(jsonl))
    let users = try await store.listUsers()
    #expect(users.map(\.userID) == ["j1", "j2", "u1", "u2", "u3"])
    #expect(users.first { $0.userID == "u3" }?.region == "ord")
    #expect(users.first { $0.userID == "u2" }?.overrides.image == "nginx:1")
    #expect(users.first { $0.userID == "j2" }?.state == .absent)
  }

  @Test(
    arguments: [
      ("user_id,region\nu1,cdg\nu1,ams\n", 3, "duplicate of line 2"),
      ("user_id,region\nu1,cdg\nu2,xyz\n", 3, "region"),
      ("user_id,region\nu1,cdg\nu2\n", 3, "fields"),
      ("email,region\na@b.c,cdg\n", 1, "user_id"),
      ("user_id,region,colour\nu1,cdg,red\n", 1, "colour"),
      ("user_id,region\nu1,cdg\n\"u2,cdg\n", 3, "not closed"),
      (
        "{\"user_id\":\"u1\",\"region\":\"cdg\"}\n{\"user_id\":\"u2\",\"region\":\"cdg\",\"state\":\"on\"}\n", 2,
        "state"
      ),
      ("{\"user_id\":\"u1\",\"region\":\"cdg\"}\nnot json\n", 2, "JSON"),
      ("{\"user_id\":\"u1\",\"region\":\"cdg\"}\n{\"user_id\":7,\"region\":\"cdg\"}\n", 2, "string"),
      ("user_id,region\nexisting,cdg\n", 2, "already exists"),
    ], Backend.allCases)
  func badImportIsAllOrNothingWithLineNumbers(_ c: (String, Int, String), backend: Backend) async throws {
    let (text, line, fragment) = c
    let (store, _) = try await freshStore(backend)
    try await store.addUser(UserInput(userID: "existing", region: "cdg"))
    let before = try await dump(store)
    do {
      try await store.importUsers(try ImportParser.parse(text))
      Issue.record("accepted")
    } catch {
      let message = "\(error)"
      #expect(message.contains("line \(line):"), "\(message)")
      #expect(message.contains(fragment), "\(message)")
    }
    #expect(try await dump(store) == before)
  }

  /// Files as people make them (issue 13): Excel's byte-order mark is accepted; quotes that RFC 4180
  /// does not allow, a JSON key given twice, and a header of thousands of columns are refused, the
  /// last with a short message. Before: an invisible unknown column, `abc` and `ab"c` imported, the
  /// last key kept silently, megabytes of errors.
  @Test func importTakesTheBOMAndRefusesWhatItCannotReadRight() throws {
    #expect(try ImportParser.parse("\u{feff}user_id,region\nu1,cdg\n").map(\.userID) == ["u1"])
    #expect(try ImportParser.parse("\u{feff}{\"user_id\":\"u2\"}\n").map(\.userID) == ["u2"])
    func refusal(_ text: String) -> String {
      do {
        _ = try ImportParser.parse(text)
        return "accepted"
      } catch {
        return error.description
      }
    }
    #expect(refusal("user_id\n\"ab\"c\n").contains("after a closing quote"))
    #expect(refusal("user_id\nab\"c\n").contains("quote inside an unquoted field"))
    #expect(refusal("user_id\n\"a,b\",\n").contains("fields"), "a quoted field then a comma is still a field")
    #expect(refusal(#"{"user_id":"a","user_id":"b"}"#).contains("appears twice"))
    #expect(refusal(#"{"user_id":"a","email":"x@y.z"}"#) == "accepted")
    let wide = "user_id," + (0..<200_000).map { "c\($0)" }.joined(separator: ",") + "\n"
    let said = refusal(wide)
    #expect(said.contains("199990 more unknown columns") && said.utf8.count < 4000, "\(said.utf8.count) bytes")
  }

  @Test(arguments: Backend.allCases) func auditEventsRoundTrip(backend: Backend) async throws {
    let (store, _) = try await freshStore(backend)
    try await store.commit(
      events: [
        AuditEvent(
          type: .action(.createVolume), userID: "u1", volumeID: "vol_1", details: ["attempt": .int(1)], createdAt: 10),
        AuditEvent(
          type: .action(.createMachine), userID: "u1", machineID: "m1", details: ["error": .string("x\"y")],
          createdAt: 11),
        AuditEvent(type: .action(.start), userID: "u2", machineID: "m2", createdAt: 12),
      ], statements: [])
    let all = try await store.events()
    #expect(all.map(\.eventType) == ["create_volume", "create_machine", "start"])
    #expect(all[1].detailsJSON == #"{"error":"x\"y"}"#)
    #expect(try await store.events(user: "u1").count == 2)
    #expect(try await store.events(afterID: all[0].id).map(\.eventType) == ["create_machine", "start"])
    #expect(try await store.events(notBefore: 11).map(\.eventType) == ["create_machine", "start"])
    #expect(try await store.events(notBefore: 12).map(\.eventType) == ["start"])
    #expect(try await store.events(limit: 1).map(\.eventType) == ["start"])
  }
}
