import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The dashboard's API through a real HTTP client against `fleetkeeper run`: bad tokens, bad
/// bodies and ids refused with the field and the value; a user put and read; many concurrent
/// `ensure` calls for a new user making one machine and answering once it is started.
@Suite(.serialized) struct DashboardAPITests {
  static let token = "test-api-token-0123456789abcdef"

  static func call(
    _ method: HTTPMethod, _ url: String, token: String? = DashboardAPITests.token, body: String? = nil
  ) async throws -> (status: Int, json: [String: Any], text: String) {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    if let body { request.body = .bytes(ByteBuffer(string: body)) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(90))
    let data = Data(try await response.body.collect(upTo: 1 << 20).readableBytesView)
    let json = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    return (Int(response.status.code), json, String(decoding: data, as: UTF8.self))
  }

  static func fields(_ json: [String: Any]) -> [String] {
    (json["errors"] as? [[String: Any]] ?? []).compactMap { $0["field"] as? String }
  }

  @Test func theDashboardPutsReadsAndEnsuresUsers() async throws {
    let dir = temporaryDirectory()
    let db = dir.appendingPathComponent("fleet.sqlite3").path
    let sim = try Background(["sim", "--port", "0", "--app", "app", "--token", "tok", "--fast"])
    defer { sim.signal(SIGTERM) }
    let simLine = try #require(await sim.readLine(containing: "FLY_API_BASE_URL="))
    let base = String(simLine.split(separator: "=").last!)
    let env = [
      "FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok", "FLEET_DATABASE": db,
      "FLEET_LISTEN": "127.0.0.1:0", "FLEET_INTERVAL": "30", "FLEET_API_TOKEN": Self.token,
    ]
    try await fleetkeeper(["migrate"], env: env)
    let run = try Background(["run"], env: env)
    defer { run.signal(SIGTERM) }
    let listening = try #require(await run.readLine(containing: "ops server listening", fromStandardError: true))
    let port = try #require(listening.split(separator: ":").last.map { String($0.prefix { $0.isNumber }) })
    let api = "http://127.0.0.1:\(port)/v1"

    let spec = try await Self.call(.GET, api + "/openapi.json", token: nil)
    #expect(spec.status == 200 && spec.json["openapi"] as? String == "3.0.3")
    // No token, a wrong one, one a byte longer: 401, and the token is never echoed.
    for token in [nil, "wrong", Self.token + "x"] {
      let refused = try await Self.call(.GET, api + "/users/ada", token: token)
      #expect(refused.status == 401, "token \(token ?? "none")")
      #expect(!refused.text.contains(Self.token))
    }
    // Bad bodies and ids: every bad field named with its value; nothing written.
    let bad = try await Self.call(.PUT, api + "/users/ada", body: #"{"region":"cdg","memory_mb":"lots","colour":1}"#)
    #expect(bad.status == 400)
    #expect(Set(Self.fields(bad.json)) == ["memory_mb", "colour"], "\(bad.text)")
    #expect(bad.text.contains("lots"))
    #expect(try await Self.call(.PUT, api + "/users/ada", body: "not json").status == 400)
    let region = try await Self.call(.PUT, api + "/users/ada", body: #"{"region":"nowhere"}"#)
    #expect(region.status == 400 && Self.fields(region.json) == ["region"], "\(region.text)")
    let id = try await Self.call(.GET, api + "/users/a%20b")
    #expect(id.status == 400 && Self.fields(id.json) == ["user_id"], "\(id.text)")
    #expect(try await Self.call(.GET, api + "/users/ada").status == 404)

    // Put, then read: an env value (possibly the user's secret) is never answered, only its name.
    let made = try await Self.call(
      .PUT, api + "/users/ada", body: #"{"region":"cdg","memory_mb":512,"env":{"NOTE":"private-value-42"}}"#)
    #expect(made.status == 201, "\(made.text)")
    #expect(made.text.contains("NOTE") && !made.text.contains("private-value-42"), "\(made.text)")
    #expect(made.json["condition"] as? String == "pending" || made.json["condition"] as? String == "unknown")
    #expect(try await Self.call(.GET, api + "/users/ada/extra/segments").status == 404)
    let read = try await Self.call(.GET, api + "/users/ada")
    #expect(read.status == 200)
    #expect((read.json["desired"] as? [String: Any])?["region"] as? String == "cdg")
    #expect(((read.json["desired"] as? [String: Any])?["overrides"] as? [String: Any])?["memory_mb"] as? Int == 512)

    // Ensure: refused without a region for a new user, or with a wait out of bounds.
    let noRegion = try await Self.call(.POST, api + "/users/bob/ensure?wait=1")
    #expect(noRegion.status == 400 && Self.fields(noRegion.json) == ["region"])
    let long = try await Self.call(.POST, api + "/users/bob/ensure?wait=61&region=ams")
    #expect(long.status == 400 && Self.fields(long.json) == ["wait"])
    // Ten at once for a new user: one machine, every answer started, the same machine.
    let texts = try await withThrowingTaskGroup(of: (Int, String).self) { group in
      for _ in 0..<10 {
        group.addTask {
          let answer = try await Self.call(.POST, api + "/users/bob/ensure?wait=30&region=ams")
          return (answer.status, answer.text)
        }
      }
      var all: [(Int, String)] = []
      for try await answer in group { all.append(answer) }
      return all
    }
    let answers = texts.map {
      ($0.0, (try? JSONSerialization.jsonObject(with: Data($0.1.utf8)) as? [String: Any]) ?? [:])
    }
    #expect(answers.allSatisfy { $0.0 == 200 && $0.1["ready"] as? Bool == true }, "\(answers.map { $0.1 })")
    let machines = Set(answers.compactMap { $0.1["machine_id"] as? String })
    #expect(machines.count == 1, "\(machines)")
    // A paused user is not ensured: 409, nothing written.
    _ = try await fleetkeeper(["users", "pause", "ada"], env: env)
    let paused = try await Self.call(.POST, api + "/users/ada/ensure?wait=1")
    #expect(paused.status == 409, "\(paused.text)")
    let held = try await census(base)
    #expect(held.machines["bob"] == 1 && held.volumes["fk_bob"] == 1)
    #expect(answers.first?.1["state"] as? String == "started")
  }
}
