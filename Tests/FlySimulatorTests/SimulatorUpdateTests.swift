import Foundation
import Testing

@testable import FlySimulator

/// The update endpoint as Fly's docs and API-FACTS-2 describe it, driven through `handle` with a
/// manual clock: the full config, immutable region, name and volume, a new version per update,
/// `current_version`, `skip_launch`, the silent revert, volume extend and a lease held by someone else.
struct SimulatorUpdateTests {
  let clock = ManualSimulatorClock()
  let simulator: FlySimulator

  init() {
    var configuration = SimulatorConfiguration(appName: "app", token: "t")
    configuration.rateLimitsEnabled = false
    var faults = SimulatorFaults()
    faults.revertImages = ["agent:unpullable"]
    faults.crashImages = ["agent:crashes"]
    simulator = FlySimulator(configuration: configuration, faults: faults, clock: clock)
  }

  func call(_ method: String, _ target: String, body: String? = nil, headers: [String: String] = [:]) async -> (
    Int, SimJSON?
  ) {
    var all = headers
    all["authorization"] = "Bearer t"
    let response = await simulator.handle(
      SimulatorRequest(method: method, target: target, headers: all, body: Data((body ?? "").utf8)))
    return (response.status, SimJSON.parse(response.body))
  }

  /// A started machine on volume `fk_u1`, and both ids.
  func startedMachine() async -> (machine: String, volume: String, version: String) {
    let (_, volume) = await call(
      "POST", "/v1/apps/app/volumes", body: #"{"name":"fk_u1","region":"ord","size_gb":1}"#)
    let volumeID = volume?.object?["id"]?.string ?? ""
    let (status, machine) = await call(
      "POST", "/v1/apps/app/machines",
      body:
        #"{"name":"fk-u1","region":"ord","config":{"image":"agent:1","env":{"A":"1"},"mounts":[{"volume":"\#(volumeID)","path":"/data"}]}}"#
    )
    #expect(status == 200)
    clock.advance(by: 2)
    let id = machine?.object?["id"]?.string ?? ""
    return (id, volumeID, await machineField(id, "version") ?? "")
  }

  func machineField(_ id: String, _ field: String) async -> String? {
    await call("GET", "/v1/apps/app/machines/\(id)").1?.object?[field]?.string
  }

  func image(_ id: String) async -> String? {
    await call("GET", "/v1/apps/app/machines/\(id)").1?.object?["config"]?.object?["image"]?.string
  }

  func update(
    _ id: String, image: String, volume: String, extra: String = "", config: String = ""
  ) async -> (Int, SimJSON?) {
    await call(
      "POST", "/v1/apps/app/machines/\(id)",
      body:
        #"{"config":{"image":"\#(image)","mounts":[{"volume":"\#(volume)","path":"/data"}]\#(config)}\#(extra)}"#)
  }

  @Test func anUpdateMakesANewVersionAndRebootsOnIt() async {
    let (id, volume, v1) = await startedMachine()
    #expect(await machineField(id, "state") == "started")
    let (status, answer) = await update(id, image: "agent:2", volume: volume, extra: #","current_version":"\#(v1)""#)
    #expect(status == 200)
    let v2 = answer?.object?["version"]?.string
    #expect(v2 != nil && v2 != v1)
    #expect(answer?.object?["instance_id"]?.string == v2)
    #expect(await machineField(id, "state") == "updating")
    clock.advance(by: 2)
    #expect(await machineField(id, "state") == "starting")
    clock.advance(by: 0.5)
    #expect(await machineField(id, "state") == "started")
    #expect(await image(id) == "agent:2")
    // The full config replaced the old one: the env it did not name is gone.
    let config = await call("GET", "/v1/apps/app/machines/\(id)").1?.object?["config"]?.object
    #expect(config?["env"] == nil)
    // Both versions, newest first; the old one readable by `?version=`.
    let versions = await call("GET", "/v1/apps/app/machines/\(id)/versions").1?.array ?? []
    #expect(versions.map { $0.object?["version"]?.string } == [v2, v1])
    let old = await call("GET", "/v1/apps/app/machines/\(id)?version=\(v1)").1?.object
    #expect(old?["config"]?.object?["image"]?.string == "agent:1")
    #expect(old?["state"]?.string == "replaced")
  }

  @Test func aStaleCurrentVersionIsRefusedAndChangesNothing() async {
    let (id, volume, v1) = await startedMachine()
    #expect(await update(id, image: "agent:2", volume: volume).0 == 200)
    clock.advance(by: 3)
    let (status, answer) = await update(id, image: "agent:3", volume: volume, extra: #","current_version":"\#(v1)""#)
    #expect(status == 409)
    #expect(answer?.object?["error"]?.string?.contains("current_version") == true)
    #expect(await image(id) == "agent:2")
    #expect(await machineField(id, "state") == "started")
  }

  @Test func regionNameAndVolumeCannotChangeAndTheConfigMustBeWhole() async {
    let (id, volume, v1) = await startedMachine()
    #expect(await update(id, image: "agent:2", volume: volume, extra: #","region":"ams""#).0 == 400)
    #expect(await update(id, image: "agent:2", volume: volume, extra: #","name":"other""#).0 == 400)
    #expect(await update(id, image: "agent:2", volume: "vol_other").0 == 400)
    let (status, answer) = await call("POST", "/v1/apps/app/machines/\(id)", body: #"{"config":{"env":{"A":"2"}}}"#)
    #expect(status == 400)
    #expect(answer?.object?["error"]?.string?.contains("image is required") == true)
    // Nothing of it changed the machine.
    #expect(await machineField(id, "version") == v1)
    // The same region and name are fine.
    #expect(await update(id, image: "agent:2", volume: volume, extra: #","region":"ord","name":"fk-u1""#).0 == 200)
  }

  @Test func aStoppedMachineStaysStoppedWithSkipLaunchAndStartsWithout() async {
    let (id, volume, _) = await startedMachine()
    #expect(await call("POST", "/v1/apps/app/machines/\(id)/stop").0 == 200)
    clock.advance(by: 1)
    #expect(await machineField(id, "state") == "stopped")
    #expect(await update(id, image: "agent:2", volume: volume, extra: #","skip_launch":true"#).0 == 200)
    clock.advance(by: 5)
    #expect(await machineField(id, "state") == "stopped")
    #expect(await image(id) == "agent:2")
    #expect(await update(id, image: "agent:3", volume: volume).0 == 200)
    clock.advance(by: 3)
    #expect(await machineField(id, "state") == "started")
  }

  @Test func anUnpullableImageIsAcceptedThenSilentlyReverted() async {
    let (id, volume, v1) = await startedMachine()
    let (status, answer) = await update(id, image: "agent:unpullable", volume: volume)
    #expect(status == 200)
    let v2 = answer?.object?["version"]?.string
    #expect(v2 != nil && v2 != v1)
    #expect(await machineField(id, "version") == v2)
    clock.advance(by: 2)
    // Started, as if nothing happened, on the old version and image.
    #expect(await machineField(id, "state") == "started")
    #expect(await machineField(id, "version") == v1)
    #expect(await image(id) == "agent:1")
  }

  @Test func anImageThatDiesAtBootEndsFailed() async {
    let (id, volume, _) = await startedMachine()
    #expect(await update(id, image: "agent:crashes", volume: volume).0 == 200)
    clock.advance(by: 3)
    #expect(await machineField(id, "state") == "failed")
    #expect(await image(id) == "agent:crashes")
  }

  @Test func volumesExtendOnlyUpAndSayWhenARestartIsNeeded() async {
    let (_, volume, _) = await startedMachine()
    let (status, answer) = await call("PUT", "/v1/apps/app/volumes/\(volume)/extend", body: #"{"size_gb":3}"#)
    #expect(status == 200)
    #expect(answer?.object?["needs_restart"]?.bool == true)
    #expect(answer?.object?["volume"]?.object?["size_gb"]?.int == 3)
    let (shrink, refusal) = await call("PUT", "/v1/apps/app/volumes/\(volume)/extend", body: #"{"size_gb":2}"#)
    #expect(shrink == 400)
    #expect(refusal?.object?["error"]?.string?.contains("only grow") == true)
  }

  @Test func aLeaseHeldBySomeoneElseRefusesTheUpdate() async {
    let (id, volume, v1) = await startedMachine()
    let drift = await simulator.handle(
      SimulatorRequest(
        method: "POST", target: "/_sim/drift", headers: [:],
        body: Data(#"{"op":"lease_machine","machine_id":"\#(id)","owner":"ops@example.com","seconds":60}"#.utf8)))
    #expect(drift.status == 200)
    let (status, answer) = await update(id, image: "agent:2", volume: volume)
    #expect(status == 409)
    #expect(answer?.object?["error"]?.string?.contains("ops@example.com") == true)
    #expect(await machineField(id, "version") == v1)
    clock.advance(by: 61)
    #expect(await update(id, image: "agent:2", volume: volume).0 == 200)
  }

  @Test func someoneElsesUpdateMakesAVersionTheControllerDidNotMake() async {
    let (id, _, v1) = await startedMachine()
    let drift = await simulator.handle(
      SimulatorRequest(
        method: "POST", target: "/_sim/drift", headers: [:],
        body: Data(#"{"op":"update_machine","machine_id":"\#(id)","image":"agent:manual"}"#.utf8)))
    #expect(drift.status == 200)
    #expect(await machineField(id, "version") != v1)
    #expect(await image(id) == "agent:manual")
  }
}
