import Foundation
import Testing

@testable import FlySimulator

/// The simulator's state machine and timings, driven through `handle` with a manual clock: no
/// sockets, no sleeps.
struct SimulatorStateMachineTests {
  let clock = ManualSimulatorClock()
  let simulator: FlySimulator

  init() {
    var configuration = SimulatorConfiguration(appName: "app", token: "t")
    configuration.rateLimitsEnabled = false
    simulator = FlySimulator(configuration: configuration, clock: clock)
  }

  static func request(
    _ method: String, _ target: String, body: String? = nil, token: String = "t", headers: [String: String] = [:]
  ) -> SimulatorRequest {
    var all = headers
    all["authorization"] = "Bearer \(token)"
    return SimulatorRequest(method: method, target: target, headers: all, body: Data((body ?? "").utf8))
  }

  func call(_ method: String, _ target: String, body: String? = nil, headers: [String: String] = [:]) async -> (
    Int, SimJSON?
  ) {
    let response = await simulator.handle(Self.request(method, target, body: body, headers: headers))
    return (response.status, SimJSON.parse(response.body))
  }

  func createVolume(name: String = "fk_u1", region: String = "ord") async -> String {
    let (status, json) = await call(
      "POST", "/v1/apps/app/volumes", body: #"{"name":"\#(name)","region":"\#(region)","size_gb":1}"#)
    #expect(status == 200)
    return json?.object?["id"]?.string ?? ""
  }

  func createMachine(volume: String? = nil, region: String = "ord", skipLaunch: Bool = false) async -> String {
    let mounts = volume.map { #","mounts":[{"volume":"\#($0)","path":"/data"}]"# } ?? ""
    let body =
      #"{"region":"\#(region)","skip_launch":\#(skipLaunch),"config":{"image":"nginx:1","metadata":{"fleet_user_id":"u1"}\#(mounts)}}"#
    let (status, json) = await call("POST", "/v1/apps/app/machines", body: body)
    #expect(status == 200, "\(String(describing: json))")
    return json?.object?["id"]?.string ?? ""
  }

  func state(_ id: String) async -> String? {
    await call("GET", "/v1/apps/app/machines/\(id)").1?.object?["state"]?.string
  }

  @Test func createdMachineSettlesThenStarts() async {
    let id = await createMachine()
    #expect(id.count == 14)
    #expect(await state(id) == "created")
    #expect(await call("POST", "/v1/apps/app/machines/\(id)/start").0 == 412)
    clock.advance(by: 1.0)
    #expect(await state(id) == "starting")
    clock.advance(by: 0.5)
    #expect(await state(id) == "started")
  }

  @Test func stopThenImmediateStartIsRefusedAsStillActive() async {
    let id = await createMachine()
    clock.advance(by: 2)
    #expect(await call("POST", "/v1/apps/app/machines/\(id)/stop").0 == 200)
    #expect(await state(id) == "stopping")
    #expect(await call("POST", "/v1/apps/app/machines/\(id)/stop").0 == 412)
    clock.advance(by: 0.5)
    #expect(await state(id) == "stopped")
    let (status, json) = await call("POST", "/v1/apps/app/machines/\(id)/start")
    #expect(status == 412)
    #expect(json?.object?["error"]?.string == "failed_precondition: machine still active, refusing to start")
    clock.advance(by: 0.5)
    #expect(await call("POST", "/v1/apps/app/machines/\(id)/start").0 == 200)
  }

  @Test func destroyNeedsForceWhileRunningAndLingers() async {
    let volume = await createVolume()
    let id = await createMachine(volume: volume)
    clock.advance(by: 2)
    #expect(await call("DELETE", "/v1/apps/app/machines/\(id)").0 == 412)
    #expect(await call("DELETE", "/v1/apps/app/machines/\(id)?force=true").0 == 200)
    #expect(await state(id) == "destroying")
    clock.advance(by: 0.5)
    #expect(await state(id) == "destroyed")
    // Still listed, and the volume still bound, for a while.
    let (_, list) = await call("GET", "/v1/apps/app/machines")
    #expect(list?.array?.count == 1)
    #expect(await call("DELETE", "/v1/apps/app/volumes/\(volume)").0 == 412)
    clock.advance(by: 5)
    #expect(await call("GET", "/v1/apps/app/volumes/\(volume)").1?.object?["attached_machine_id"] == .null)
    clock.advance(by: 30)
    #expect(await call("GET", "/v1/apps/app/machines").1?.array?.count == 0)
    #expect(await call("GET", "/v1/apps/app/machines?include_deleted=true").1?.array?.count == 1)
    #expect(await call("GET", "/v1/apps/app/machines/\(id)").0 == 404)
    #expect(await call("DELETE", "/v1/apps/app/machines/\(id)?force=true").0 == 404)
    // Deleted volumes stay listed as pending_destroy for a while.
    #expect(await call("DELETE", "/v1/apps/app/volumes/\(volume)").0 == 200)
    #expect(await call("GET", "/v1/apps/app/volumes").1?.array?.first?.object?["state"]?.string == "pending_destroy")
    clock.advance(by: 61)
    #expect(await call("GET", "/v1/apps/app/volumes").1?.array?.count == 0)
  }

  @Test func volumeRulesRegionClaimAndNames() async {
    let volume = await createVolume(name: "same")
    let second = await createVolume(name: "same")
    #expect(volume != second, "volume names are not unique on Fly")
    let (status, json) = await call(
      "POST", "/v1/apps/app/machines",
      body: #"{"region":"ams","config":{"image":"i","mounts":[{"volume":"\#(volume)","path":"/d"}]}}"#)
    #expect(status == 412)
    #expect(json?.object?["error"]?.string?.hasPrefix("failed_precondition:") == true)
    _ = await createMachine(volume: volume)
    let (claimed, claimedJSON) = await call(
      "POST", "/v1/apps/app/machines",
      body: #"{"region":"ord","config":{"image":"i","mounts":[{"volume":"\#(volume)","path":"/d"}]}}"#)
    #expect(claimed == 412)
    #expect(claimedJSON?.object?["error"]?.string == "failed_precondition: volume already claimed by machine")
    #expect(await call("POST", "/v1/apps/app/volumes", body: #"{"name":"bad-name","region":"ord"}"#).0 == 400)
  }

  /// Lists skip re-applying transitions while nothing is due; read through lists alone (no GET by id
  /// to apply them on the way), every timed transition still shows when its time comes.
  @Test func listsAloneShowEveryTimedTransition() async {
    let volume = await createVolume()
    let id = await createMachine(volume: volume)
    func machineState() async -> String? {
      await call("GET", "/v1/apps/app/machines").1?.array?.first?.object?["state"]?.string
    }
    func attached() async -> SimJSON? {
      await call("GET", "/v1/apps/app/volumes").1?.array?.first?.object?["attached_machine_id"]
    }
    clock.advance(by: 0.6)
    #expect(await machineState() == "created")
    #expect(await machineState() == "created")
    clock.advance(by: 0.5)
    #expect(await machineState() == "starting")
    #expect(await attached() == .string(id))
    clock.advance(by: 0.5)
    #expect(await machineState() == "started")
    #expect(await call("DELETE", "/v1/apps/app/machines/\(id)?force=true").0 == 200)
    #expect(await machineState() == "destroying")
    clock.advance(by: 0.5)
    #expect(await machineState() == "destroyed")
    #expect(await attached() == .string(id))
    clock.advance(by: 5)
    #expect(await attached() == .null, "detached when its time came, seen by a list alone")
  }

  @Test func listsLagBehindCreates() async {
    _ = await createVolume()
    _ = await createMachine()
    #expect(await call("GET", "/v1/apps/app/machines").1?.array?.count == 0)
    #expect(await call("GET", "/v1/apps/app/volumes").1?.array?.count == 0)
    clock.advance(by: 0.5)
    #expect(await call("GET", "/v1/apps/app/machines").1?.array?.count == 1)
    #expect(await call("GET", "/v1/apps/app/volumes").1?.array?.count == 1)
  }

  @Test func wrongTokenIs401AndEveryAnswerHasARequestID() async {
    let response = await simulator.handle(Self.request("GET", "/v1/apps/app/machines", token: "nope"))
    #expect(response.status == 401)
    #expect(SimJSON.parse(response.body)?.object?["error"]?.string == "Authenticate: token validation error")
    #expect(response.headers.contains { $0.0 == "fly-request-id" && $0.1.count == 26 })
    let flyV1 = await simulator.handle(
      SimulatorRequest(method: "GET", target: "/v1/apps/app/machines", headers: ["authorization": "FlyV1 t"]))
    #expect(flyV1.status == 200)
    #expect(await call("GET", "/v1/apps/other/machines").0 == 404)
  }

  @Test func wrongTypeIs400AndUnknownFieldsAreRecorded() async {
    let (status, json) = await call(
      "POST", "/v1/apps/app/machines", body: #"{"region":"ord","config":{"image":"i","guest":{"cpus":"two"}}}"#)
    #expect(status == 400)
    #expect(json?.object?["error"]?.string?.contains("cannot unmarshal string") == true)
    let (ok, _) = await call(
      "POST", "/v1/apps/app/machines", body: #"{"region":"ord","bogus":1,"config":{"image":"i","nonsense":{"a":1}}}"#)
    #expect(ok == 200)
    let log = simulator.requestLog()
    #expect(log.last?.unknownFields == ["bogus", "config.nonsense"])
    #expect(log.first?.unknownFields == [])
  }

  @Test func rateLimitBucketsRefillWithTime() async {
    var configuration = SimulatorConfiguration(appName: "app", token: "t")
    configuration.rateLimitRetryAfter = true
    let limited = FlySimulator(configuration: configuration, clock: clock)
    var statuses: [Int] = []
    for index in 0..<5 {
      let body = #"{"name":"v\#(index)","region":"ord"}"#
      statuses.append(await limited.handle(Self.request("POST", "/v1/apps/app/volumes", body: body)).status)
    }
    #expect(statuses == [200, 200, 200, 429, 429])
    let limitedResponse = await limited.handle(
      Self.request("POST", "/v1/apps/app/volumes", body: #"{"name":"x","region":"ord"}"#))
    #expect(limitedResponse.headers.contains { $0.0 == "Retry-After" })
    clock.advance(by: 1)
    #expect(
      await limited.handle(Self.request("POST", "/v1/apps/app/volumes", body: #"{"name":"y","region":"ord"}"#)).status
        == 200)
  }

  @Test func leasesGuardMutations() async {
    let id = await createMachine()
    clock.advance(by: 2)
    let (status, json) = await call("POST", "/v1/apps/app/machines/\(id)/lease", body: #"{"ttl":30}"#)
    #expect(status == 200)
    let nonce = json?.object?["data"]?.object?["nonce"]?.string ?? ""
    #expect(await call("POST", "/v1/apps/app/machines/\(id)/lease", body: #"{"ttl":30}"#).0 == 409)
    let (stopStatus, stopJSON) = await call("POST", "/v1/apps/app/machines/\(id)/stop")
    #expect(stopStatus == 409)
    #expect(stopJSON?.object?["error"]?.string?.hasPrefix("aborted: machine ID \(id) lease currently held by") == true)
    #expect(
      await call("POST", "/v1/apps/app/machines/\(id)/stop", headers: ["fly-machine-lease-nonce": nonce]).0 == 200)
    #expect(
      await call("DELETE", "/v1/apps/app/machines/\(id)/lease", headers: ["fly-machine-lease-nonce": nonce]).0 == 200)
    #expect(await call("POST", "/v1/apps/app/machines/\(id)/lease", body: #"{"ttl":30}"#).0 == 200)
  }

  @Test func waitAnswersWhenReachedOr408AtTheTimeout() async {
    let id = await createMachine()
    async let reached = call("GET", "/v1/apps/app/machines/\(id)/wait?state=started&timeout=10")
    while clock.sleeperCount == 0 { await Task.yield() }
    clock.advance(by: 2)
    let (status, json) = await reached
    #expect(status == 200)
    #expect(json?.object?["state"]?.string == "started")

    async let timedOut = call("GET", "/v1/apps/app/machines/\(id)/wait?state=stopped&timeout=1")
    while clock.sleeperCount == 0 { await Task.yield() }
    for _ in 0..<8 {
      clock.advance(by: 0.25)
      while clock.sleeperCount == 0 {
        await Task.yield()
        if simulator.requestLog().last?.endpoint == "GET /machines/{id}/wait" { break }
      }
    }
    let (timeoutStatus, timeoutJSON) = await timedOut
    #expect(timeoutStatus == 408)
    #expect(timeoutJSON?.object?["error"]?.string?.hasPrefix("deadline_exceeded:") == true)
    #expect(await call("GET", "/v1/apps/app/machines/\(id)/wait?state=started&timeout=61").0 == 400)
  }

  @Test func driftOperationsChangeStateBehindTheAPI() async {
    let volume = await createVolume()
    let id = await createMachine(volume: volume)
    clock.advance(by: 2)
    for (op, expected) in [("stop_machine", "stopped"), ("fail_machine", "failed"), ("destroy_machine", "destroyed")] {
      let (status, _) = await call("POST", "/_sim/drift", body: #"{"op":"\#(op)","machine_id":"\#(id)"}"#)
      #expect(status == 200)
      #expect(await state(id) == expected)
    }
    #expect(await call("POST", "/_sim/drift", body: #"{"op":"delete_volume","volume_id":"\#(volume)"}"#).0 == 200)
    #expect(await call("GET", "/v1/apps/app/volumes/\(volume)").1?.object?["state"]?.string == "pending_destroy")
    let (foreign, json) = await call("POST", "/_sim/drift", body: #"{"op":"create_foreign_machine","region":"ams"}"#)
    #expect(foreign == 200)
    #expect(json?.object?["region"]?.string == "ams")
    let snapshot = SimJSON.parse(simulator.stateJSON())
    #expect(snapshot?.object?["machines"]?.array?.count == 2)
  }

  @Test func faultsAtRuntime() async {
    _ = await createMachine()
    clock.advance(by: 1)
    #expect(await call("POST", "/_sim/faults", body: #"{"empty_list_once":true}"#).0 == 200)
    #expect(await call("GET", "/v1/apps/app/machines").1?.array?.count == 0)
    #expect(await call("GET", "/v1/apps/app/machines").1?.array?.count == 1)
    #expect(await call("POST", "/_sim/faults", body: #"{"error_rate":1,"error_status":500}"#).0 == 200)
    #expect(await call("GET", "/v1/apps/app/machines").0 == 500)
    #expect(await call("POST", "/_sim/faults", body: #"{"lost_response_rate":1}"#).0 == 200)
    let before = SimJSON.parse(simulator.stateJSON())?.object?["volumes"]?.array?.count
    #expect(await call("POST", "/v1/apps/app/volumes", body: #"{"name":"lost","region":"ord"}"#).0 == 502)
    let after = SimJSON.parse(simulator.stateJSON())?.object?["volumes"]?.array?.count
    #expect(after == (before ?? 0) + 1, "a lost response still applies the mutation")
    #expect(await call("POST", "/_sim/faults", body: #"{"capacity_exhausted_regions":["ord"]}"#).0 == 200)
    let (status, json) = await call("POST", "/v1/apps/app/volumes", body: #"{"name":"c","region":"ord"}"#)
    #expect(status == 412)
    #expect(json?.object?["status"]?.string == "volume_placement_capacity")
    #expect(await call("POST", "/_sim/faults", body: #"{"error_rate":"lots"}"#).0 == 400)
  }
}
