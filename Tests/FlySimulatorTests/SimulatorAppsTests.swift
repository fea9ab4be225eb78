import Foundation
import Testing

@testable import FlySimulator

/// Apps as API-FACTS-2 describes them, driven through `handle` with a manual clock: create with
/// `idempotency_key`, `name_taken`, ids answered only under their own app, IPs, secrets with
/// versions and `min_secrets_version`, metadata without a new version, delete cascading and
/// limited to 100 a minute, and a fleet seeded the old way.
struct SimulatorAppsTests {
  let clock = ManualSimulatorClock()
  let simulator: FlySimulator

  init() {
    var configuration = SimulatorConfiguration(appName: "shared", token: "t")
    configuration.rateLimitsEnabled = false
    configuration.orgSlug = "acme"
    simulator = FlySimulator(configuration: configuration, clock: clock)
  }

  func call(_ method: String, _ target: String, body: String? = nil) async -> (Int, SimJSON?) {
    await simulator.call(method, target, body: body)
  }

  func appNames() async -> [String] {
    let (_, list) = await call("GET", "/v1/apps?org_slug=acme")
    return (list?.object?["apps"]?.array ?? []).compactMap { $0.object?["name"]?.string }
  }

  /// A started machine on its own volume in `app`.
  func machine(in app: String) async -> (machine: String, volume: String) {
    let (_, volume) = await call(
      "POST", "/v1/apps/\(app)/volumes", body: #"{"name":"data","region":"ord","size_gb":1}"#)
    let volumeID = volume?.object?["id"]?.string ?? ""
    let (status, machine) = await call(
      "POST", "/v1/apps/\(app)/machines",
      body: #"{"region":"ord","config":{"image":"agent:1","mounts":[{"volume":"\#(volumeID)","path":"/data"}]}}"#)
    #expect(status == 200)
    clock.advance(by: 2)
    return (machine?.object?["id"]?.string ?? "", volumeID)
  }

  @Test func createIsIdempotentByKeyAndRefusesTakenNames() async {
    let body = #"{"name":"agents-u-ada","org_slug":"acme","network":"default","idempotency_key":"k-ada"}"#
    let (first, app) = await call("POST", "/v1/apps", body: body)
    #expect(first == 201)
    // The answer was lost: the same request again answers the same app, and there is one.
    let (again, same) = await call("POST", "/v1/apps", body: body)
    #expect(again == 201)
    #expect(same?.object?["id"]?.string == app?.object?["id"]?.string)
    #expect(await appNames() == ["shared", "agents-u-ada"])
    // The same key with another name is refused, not answered with the first app.
    let (reused, _) = await call(
      "POST", "/v1/apps", body: #"{"name":"agents-u-bob","org_slug":"acme","idempotency_key":"k-ada"}"#)
    #expect(reused == 422)
    // A name someone else holds: 422 name_taken.
    let (_, _) = await call(
      "POST", "/_sim/drift", body: #"{"op":"create_foreign_app","app":"agents-u-eve","org":"evil"}"#)
    let (taken, error) = await call(
      "POST", "/v1/apps", body: #"{"name":"agents-u-eve","org_slug":"acme","idempotency_key":"k-eve"}"#)
    #expect(taken == 422)
    #expect(error?.object?["status"]?.string == "name_taken")
    #expect(await call("GET", "/v1/apps/agents-u-eve").0 == 404)
    // Names Fly refuses.
    for name in ["Agents", "-a", "a-", String(repeating: "a", count: 64), "a_b"] {
      let (status, _) = await call("POST", "/v1/apps", body: #"{"name":"\#(name)","org_slug":"acme"}"#)
      #expect(status == 400, "\(name)")
    }
  }

  @Test func idsAnswerOnlyUnderTheirOwnApp() async {
    _ = await call("POST", "/v1/apps", body: #"{"name":"one","org_slug":"acme"}"#)
    _ = await call("POST", "/v1/apps", body: #"{"name":"two","org_slug":"acme"}"#)
    let (machine, volume) = await machine(in: "one")
    #expect(await call("GET", "/v1/apps/one/machines/\(machine)").0 == 200)
    #expect(await call("GET", "/v1/apps/two/machines/\(machine)").0 == 404)
    #expect(await call("POST", "/v1/apps/two/machines/\(machine)/stop").0 == 404)
    #expect(await call("GET", "/v1/apps/two/volumes/\(volume)").0 == 404)
    #expect(await call("DELETE", "/v1/apps/two/volumes/\(volume)").0 == 404)
    #expect(await call("GET", "/v1/apps/two/machines").1?.array?.count == 0)
    #expect(await call("GET", "/v1/apps/one/machines").1?.array?.count == 1)
    // A machine cannot mount another app's volume.
    let (refused, _) = await call(
      "POST", "/v1/apps/two/machines",
      body: #"{"region":"ord","config":{"image":"agent:1","mounts":[{"volume":"\#(volume)","path":"/data"}]}}"#)
    #expect(refused == 404)
    // The org-wide list names each item's app.
    let (_, org) = await call("GET", "/v1/orgs/acme/machines")
    let listed = org?.object?["machines"]?.array?.first?.object
    #expect(listed?["app_name"]?.string == "one")
    // An app that does not exist.
    #expect(await call("GET", "/v1/apps/three/machines").0 == 404)
  }

  @Test func ipsAndSecrets() async {
    _ = await call("POST", "/v1/apps", body: #"{"name":"one","org_slug":"acme"}"#)
    let (_, v4) = await call("POST", "/v1/apps/one/ip_assignments", body: #"{"type":"shared_v4"}"#)
    let (_, v4again) = await call("POST", "/v1/apps/one/ip_assignments", body: #"{"type":"shared_v4"}"#)
    #expect(v4?.object?["ip"]?.string == v4again?.object?["ip"]?.string)
    #expect(v4?.object?["shared"] == .bool(true))
    let (_, v6) = await call("POST", "/v1/apps/one/ip_assignments", body: #"{"type":"v6"}"#)
    let (_, v6again) = await call("POST", "/v1/apps/one/ip_assignments", body: #"{"type":"v6"}"#)
    #expect(v6?.object?["ip"]?.string != v6again?.object?["ip"]?.string)
    #expect(await call("GET", "/v1/apps/one/ip_assignments").1?.object?["ips"]?.array?.count == 3)
    #expect(await call("POST", "/v1/apps/one/ip_assignments", body: #"{"type":"v5"}"#).0 == 400)

    let (status, set) = await call(
      "POST", "/v1/apps/one/secrets", body: #"{"values":{"GATEWAY_TOKEN":"s3cr3t-value","OLD":null}}"#)
    #expect(status == 200)
    #expect(set?.object?["version"] == .int(1))
    let (_, listed) = await call("GET", "/v1/apps/one/secrets")
    #expect(listed?.object?["secrets"]?.array?.first?.object?["name"]?.string == "GATEWAY_TOKEN")
    // A machine asking for secrets the app does not have yet is refused; one at the version sees them.
    let (_, volume) = await call(
      "POST", "/v1/apps/one/volumes", body: #"{"name":"data","region":"ord","size_gb":1}"#)
    let volumeID = volume?.object?["id"]?.string ?? ""
    let body = { (version: Int) in
      #"{"region":"ord","min_secrets_version":\#(version),"config":{"image":"a:1","mounts":[{"volume":"\#(volumeID)","path":"/d"}]}}"#
    }
    #expect(await call("POST", "/v1/apps/one/machines", body: body(2)).0 == 400)
    let (created, machine) = await call("POST", "/v1/apps/one/machines", body: body(1))
    #expect(created == 200)
    let id = machine?.object?["id"]?.string ?? ""
    #expect(simulator.machineSecrets(id) == ["GATEWAY_TOKEN": "s3cr3t-value"])
    // Values never show: not in the secrets list, not in the state.
    let state = String(decoding: simulator.stateJSON(), as: UTF8.self)
    #expect(!state.contains("s3cr3t-value"))
    #expect(
      !String(
        decoding: await simulator.handle(
          SimulatorRequest(method: "GET", target: "/v1/apps/one/secrets", headers: ["authorization": "Bearer t"])
        ).body, as: UTF8.self
      ).contains("s3cr3t"))
    // A new version: the machine sees it only once updated.
    _ = await call("POST", "/v1/apps/one/secrets", body: #"{"values":{"GATEWAY_TOKEN":"rotated"}}"#)
    #expect(simulator.machineSecrets(id) == nil)
  }

  @Test func metadataIsWrittenWithoutANewVersion() async {
    _ = await call("POST", "/v1/apps", body: #"{"name":"one","org_slug":"acme"}"#)
    let (machine, _) = await machine(in: "one")
    let before = await call("GET", "/v1/apps/one/machines/\(machine)").1?.object
    let (status, _) = await call(
      "POST", "/v1/apps/one/machines/\(machine)/metadata/fleet_user_id", body: #"{"value":"ada"}"#)
    #expect(status == 204)
    let after = await call("GET", "/v1/apps/one/machines/\(machine)").1?.object
    #expect(after?["version"] == before?["version"])
    #expect(after?["state"]?.string == "started")
    #expect(after?["config"]?.object?["metadata"]?.object?["fleet_user_id"]?.string == "ada")
    #expect(await call("GET", "/v1/apps/one/machines?metadata.fleet_user_id=ada").1?.array?.count == 1)
  }

  @Test func deleteCascadesAndIsLimitedTo100AMinute() async {
    _ = await call("POST", "/v1/apps", body: #"{"name":"one","org_slug":"acme"}"#)
    let (machine, volume) = await machine(in: "one")
    #expect(await call("DELETE", "/v1/apps/one").0 == 202)
    #expect(await call("GET", "/v1/apps/one").0 == 404)
    clock.advance(by: 1)
    let state = simulator.stateJSON()
    let parsed = SimJSON.parse(state)?.object
    let machineState = parsed?["machines"]?.array?.first { $0.object?["id"]?.string == machine }?.object?["state"]
    let volumeState = parsed?["volumes"]?.array?.first { $0.object?["id"]?.string == volume }?.object?["state"]
    #expect(machineState == .string("destroyed"))
    #expect(volumeState == .string("pending_destroy") || volumeState == .string("destroyed"))
    // The name is free again.
    #expect(await call("POST", "/v1/apps", body: #"{"name":"one","org_slug":"acme"}"#).0 == 201)
    #expect(await call("DELETE", "/v1/apps/one").0 == 202)
    for index in 0..<98 {
      _ = await call("POST", "/v1/apps", body: #"{"name":"x\#(index)","org_slug":"acme"}"#)
      #expect(await call("DELETE", "/v1/apps/x\(index)").0 == 202)
    }
    _ = await call("POST", "/v1/apps", body: #"{"name":"last","org_slug":"acme"}"#)
    #expect(await call("DELETE", "/v1/apps/last").0 == 429)
    clock.advance(by: 61)
    #expect(await call("DELETE", "/v1/apps/last").0 == 202)
  }

  @Test func aFleetSeededTheOldWay() async {
    _ = await call(
      "POST", "/_sim/seed", body: #"{"users":3,"topology":"app-per-user","app_prefix":"agents","prefix":"user"}"#)
    #expect(await appNames() == ["shared", "agents-u-user0", "agents-u-user1", "agents-u-user2"])
    let (_, org) = await call("GET", "/v1/orgs/acme/machines")
    let machines = org?.object?["machines"]?.array ?? []
    #expect(machines.count == 3)
    for item in machines {
      #expect(item.object?["config"]?.object?["metadata"]?.object?.isEmpty == true)
      #expect(item.object?["app_name"]?.string?.hasPrefix("agents-u-user") == true)
    }
    #expect(await call("GET", "/v1/apps/agents-u-user1/ip_assignments").1?.object?["ips"]?.array?.count == 2)
    let (_, list) = await call("GET", "/v1/apps?org_slug=acme")
    let counts = list?.object?["apps"]?.array?.last?.object
    #expect(counts?["machine_count"] == .int(1))
    #expect(counts?["volume_count"] == .int(1))
    // Paged: two at a time.
    let (_, page) = await call("GET", "/v1/apps?org_slug=acme&limit=2")
    #expect(page?.object?["apps"]?.array?.count == 2)
    #expect(page?.object?["total_apps"] == .int(4))
    let cursor = page?.object?["next_cursor"]?.string ?? ""
    let (_, next) = await call("GET", "/v1/apps?org_slug=acme&limit=2&cursor=\(cursor)")
    #expect(
      next?.object?["apps"]?.array?.compactMap { $0.object?["name"]?.string } == ["agents-u-user1", "agents-u-user2"])
    #expect(next?.object?["next_cursor"] == nil)
  }
}
