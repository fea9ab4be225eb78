import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Testing

/// What runs on each machine, end to end against the simulator: a template change reaches every
/// machine, a user's own change reaches theirs, a human's `fly machine update` is found and put
/// back, a silent revert is found and retried, a stopped machine stays stopped.
@Suite(.serialized) struct ConfigDriftTests {
  func images(_ harness: Harness) -> [String: String] {
    harness.fleet().machinesByUser.compactMapValues { $0.count == 1 ? $0[0].config?.image : nil }
  }

  func updates(_ harness: Harness) -> [SimulatorLogEntry] {
    harness.simulator.requestLog().filter { $0.endpoint == "POST /machines/{id}" }
  }

  @Test func aTemplateChangeReachesEveryMachineOnceAndIsRecorded() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(3)
      await harness.converge()
      #expect(Set(images(harness).values) == ["registry.fly.io/agent:1"])
      // A converged fleet's machines already run the desired config: nothing is read or sent.
      let quiet = await harness.converge()
      #expect(quiet.allSatisfy { $0.plan?.actions.isEmpty == true })
      #expect(updates(harness).isEmpty)
      let versions = harness.fleet().machinesByUser.mapValues { $0.first?.version }

      var patch = TemplatePatch()
      patch.image = "registry.fly.io/agent:2"
      try await harness.store.setTemplate(patch)
      await harness.converge()
      #expect(
        images(harness) == [
          "u0": "registry.fly.io/agent:2", "u1": "registry.fly.io/agent:2", "u2": "registry.fly.io/agent:2",
        ])
      #expect(updates(harness).count == 3)
      for (user, machines) in harness.fleet().machinesByUser {
        #expect(machines.first?.version != versions[user] ?? nil, "a new version for \(user)")
        #expect(machines.first?.state == "started")
        // The full config: the env, the mount and the tags are still there.
        #expect(machines.first?.config?.env["AGENT_KEY"] == "s3cr3t-agent-value")
        #expect(machines.first?.config?.mounts.count == 1)
        #expect(machines.first?.config?.metadata[FleetNames.userMetadataKey] == user)
      }
      // Sent with the current_version guard; recorded with what changed, and seen through.
      #expect(updates(harness).allSatisfy { $0.guards.contains("current_version") })
      let events = try await harness.store.events(limit: 1_000)
      let sent = events.filter { $0.eventType == "update_machine" }
      #expect(sent.count == 3)
      #expect(sent.allSatisfy { $0.detailsJSON.contains("image: registry.fly.io/agent:1 → registry.fly.io/agent:2") })
      #expect(
        events.filter { $0.eventType == "check_update" && $0.detailsJSON.contains(#""outcome":"ok""#) }.count == 3)
      // Nothing more to do.
      await harness.converge()
      #expect(updates(harness).count == 3)
      #expect(!events.contains { $0.detailsJSON.contains("s3cr3t-agent-value") })
    }
  }

  @Test func aUsersOwnChangeUpdatesOnlyThatUser() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(3)
      await harness.converge()
      try await harness.store.setUser(UserInput(userID: "u1", memoryMB: 512, env: ["MODE": "fast"]))
      await harness.converge()
      #expect(updates(harness).count == 1)
      let config = try #require(harness.fleet().machine("u1")?.config)
      #expect(config.guest?.memoryMB == 512)
      #expect(config.env["MODE"] == "fast")
      #expect(harness.fleet().machine("u0")?.config?.guest?.memoryMB == 256)
      let event = try #require(try await harness.store.events(limit: 100).first { $0.eventType == "update_machine" })
      #expect(event.userID == "u1")
      #expect(event.detailsJSON.contains("guest: shared 1 cpu 256 MB → shared 1 cpu 512 MB"))
      #expect(event.detailsJSON.contains("env MODE: added"))
    }
  }

  @Test func aHumansUpdateIsFoundReportedAndPutBackWithItsValuesMasked() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(2)
      await harness.converge()
      let machine = try #require(harness.fleet().machine("u0"))
      await harness.drift(
        #"{"op":"update_machine","machine_id":"\#(machine.id)","image":"registry.fly.io/agent:hotfix","env":{"AGENT_KEY":"pasted-by-hand-secret"}}"#
      )
      let reports = await harness.converge()
      #expect(images(harness)["u0"] == "registry.fly.io/agent:1")
      #expect(harness.fleet().machine("u0")?.config?.env["AGENT_KEY"] == "s3cr3t-agent-value")
      #expect(updates(harness).count == 1, "only the drifted machine")
      #expect(
        reports.contains { $0.findings.contains { $0.kind == .configDrift && $0.userID == "u0" } },
        "config_drift reported")
      let events = try await harness.store.events(limit: 1_000)
      let put = try #require(events.first { $0.eventType == "update_machine" })
      #expect(put.detailsJSON.contains(#""drift":true"#))
      #expect(put.detailsJSON.contains("image: registry.fly.io/agent:hotfix → registry.fly.io/agent:1"))
      #expect(put.detailsJSON.contains("env AGENT_KEY: changed (value masked)"))
      #expect(events.contains { $0.eventType == "drift.config_drift" })
      #expect(events.contains { $0.eventType == "drift_resolved.config_drift" })
      for text in ["pasted-by-hand-secret", "s3cr3t-agent-value"] {
        #expect(!events.contains { $0.detailsJSON.contains(text) })
        #expect(!reports.contains { "\($0.findings)".contains(text) })
      }
    }
  }

  @Test func aMigrationsNewVersionWithTheSameConfigChangesNothing() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(1)
      await harness.converge()
      let machine = try #require(harness.fleet().machine("u0"))
      await harness.drift(#"{"op":"migrate_machine","machine_id":"\#(machine.id)"}"#)
      let reports = await harness.converge()
      #expect(updates(harness).isEmpty, "the same config at a new version is not drift")
      #expect(!reports.contains { $0.findings.contains { $0.kind == .configDrift } })
      // Read once to compare, then at rest.
      #expect(harness.simulator.requestLog().filter { $0.endpoint == "GET /machines/{id}" }.count == 1)
    }
  }

  @Test func aSilentRevertIsFoundNeverReportedDoneAndRetried() async throws {
    var faults = SimulatorFaults()
    faults.revertImages = ["registry.fly.io/agent:2"]
    try await withHarness(simulator: Harness.instant, faults: faults) { harness in
      try await harness.addUsers(1)
      await harness.converge()
      var patch = TemplatePatch()
      patch.image = "registry.fly.io/agent:2"
      try await harness.store.setTemplate(patch)
      let reports = await harness.converge(maxPasses: 8)
      #expect(images(harness)["u0"] == "registry.fly.io/agent:1", "Fly went back")
      #expect(harness.fleet().machine("u0")?.state == "started")
      let events = try await harness.store.events(limit: 1_000)
      let checks = events.filter { $0.eventType == "check_update" }
      #expect(checks.contains { $0.detailsJSON.contains(#""outcome":"reverted""#) })
      #expect(!checks.contains { $0.detailsJSON.contains(#""outcome":"ok""#) }, "never reported done")
      #expect(reports.contains { $0.findings.contains { $0.kind == .updateReverted && $0.userID == "u0" } })
      // Reverted on every attempt: the canary failed, the rollout halted, the rest untouched.
      let rollout = try #require(try await harness.store.loadRollout())
      #expect(rollout.status == .halted)
      #expect(rollout.failed == ["u0"])
      #expect(events.contains { $0.eventType == "rollout_halt" })
      // Fly can pull it again; the operator resumes: the retry goes through.
      harness.simulator.setFaults(SimulatorFaults())
      try await harness.store.rolloutCommand(.resume)
      await harness.advance(by: 5)
      await harness.converge()
      #expect(images(harness)["u0"] == "registry.fly.io/agent:2")
      let after = try await harness.store.events(limit: 1_000)
      #expect(after.contains { $0.eventType == "check_update" && $0.detailsJSON.contains(#""outcome":"ok""#) })
      #expect(after.contains { $0.eventType == "drift_resolved.update_reverted" })
    }
  }

  @Test func aStoppedMachineIsUpdatedAndStaysStopped() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(1)
      await harness.converge()
      try await harness.store.setUser(UserInput(userID: "u0", state: "stopped"))
      await harness.converge()
      let starts = harness.simulator.requestLog().filter { $0.endpoint == "POST /machines/{id}/start" }.count
      #expect(harness.fleet().machine("u0")?.state == "stopped")
      var patch = TemplatePatch()
      patch.image = "registry.fly.io/agent:2"
      try await harness.store.setTemplate(patch)
      await harness.converge()
      let machine = try #require(harness.fleet().machine("u0"))
      #expect(machine.config?.image == "registry.fly.io/agent:2")
      #expect(machine.state == "stopped")
      #expect(updates(harness).allSatisfy { $0.guards.contains("skip_launch") })
      #expect(harness.simulator.requestLog().filter { $0.endpoint == "POST /machines/{id}/start" }.count == starts)
    }
  }

  @Test func aPausedUserIsNotUpdated() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(2)
      await harness.converge()
      try await harness.store.setUserPaused("u1", true)
      var patch = TemplatePatch()
      patch.image = "registry.fly.io/agent:2"
      try await harness.store.setTemplate(patch)
      await harness.converge(maxPasses: 5)
      #expect(images(harness) == ["u0": "registry.fly.io/agent:2", "u1": "registry.fly.io/agent:1"])
      // Resumed, it gets the template the rollout brought the others.
      try await harness.store.setUserPaused("u1", false)
      await harness.converge()
      #expect(images(harness) == ["u0": "registry.fly.io/agent:2", "u1": "registry.fly.io/agent:2"])
    }
  }

  @Test func aNewImageThatDoesNotBootHaltsTheRolloutAtTheCanary() async throws {
    var faults = SimulatorFaults()
    faults.crashImages = ["registry.fly.io/agent:2"]
    try await withHarness(simulator: Harness.instant, faults: faults) { harness in
      try await harness.addUsers(30)
      await harness.converge()
      var patch = TemplatePatch()
      patch.image = "registry.fly.io/agent:2"
      try await harness.store.setTemplate(patch)
      let reports = await harness.converge(maxPasses: 40)
      // The canary (1 machine, or 1% of 30) got it and failed; the other 29 were never touched.
      #expect(updates(harness).count == 1)
      #expect(images(harness).values.filter { $0 == "registry.fly.io/agent:2" }.count == 1)
      let rollout = try #require(try await harness.store.loadRollout())
      #expect(rollout.status == .halted)
      #expect(rollout.failed.count == 1 && rollout.wave == 0)
      #expect(reports.last?.findings.contains { $0.kind == .rolloutHalted } == true)
      #expect(reports.last?.findings.contains { $0.kind == .updateUnhealthy } == true)
      let events = try await harness.store.events(limit: 1_000)
      #expect(events.contains { $0.eventType == "rollout_halt" })
      // Undo: the template goes back, the canary with it; nobody else is touched.
      _ = try await harness.store.undoTemplate()
      await harness.converge()
      #expect(Set(images(harness).values) == ["registry.fly.io/agent:1"])
      #expect(updates(harness).count == 2)
    }
  }

  @Test func aBiggerVolumeIsExtendedAndTheMachineRestartedInTheRollout() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(3)
      await harness.converge()
      try await harness.store.setUser(UserInput(userID: "u2", state: "stopped"))
      await harness.converge()
      var patch = TemplatePatch()
      patch.volumeSizeGB = 3
      try await harness.store.setTemplate(patch)
      await harness.converge()
      let fleet = harness.fleet()
      for user in ["u0", "u1", "u2"] {
        #expect(fleet.volumesByName["fk_\(user)"]?.first?.sizeGB == 3, "\(user)")
      }
      #expect(fleet.machine("u2")?.state == "stopped", "a stopped machine stays stopped")
      #expect(harness.simulator.requestLog().filter { $0.endpoint == "PUT /volumes/{id}/extend" }.count == 3)
      // The running ones were restarted (an update: a new version, seen through); the stopped one was not.
      #expect(updates(harness).count == 2)
      let events = try await harness.store.events(limit: 1_000)
      let extends = events.filter { $0.eventType == "extend_volume" }
      #expect(extends.count == 3)
      #expect(extends.allSatisfy { $0.detailsJSON.contains(#""from_gb":1"#) && $0.detailsJSON.contains(#""to_gb":3"#) })
      #expect(
        events.filter { $0.eventType == "check_update" && $0.detailsJSON.contains(#""outcome":"ok""#) }.count == 2)
      // Done: nothing more is extended or sent.
      await harness.converge()
      #expect(harness.simulator.requestLog().filter { $0.endpoint == "PUT /volumes/{id}/extend" }.count == 3)
    }
  }

  @Test func aLeaseSomeoneElseHoldsIsWaitedOutNeverClobbered() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(1)
      await harness.converge()
      let machine = try #require(harness.fleet().machine("u0"))
      await harness.drift(
        #"{"op":"lease_machine","machine_id":"\#(machine.id)","owner":"ops@example.com","seconds":30}"#)
      try await harness.store.setUser(UserInput(userID: "u0", memoryMB: 512))
      await harness.converge(maxPasses: 6)
      // Refused while the lease is held: the machine is as it was.
      #expect(harness.fleet().machine("u0")?.config?.guest?.memoryMB == 256)
      #expect(updates(harness).contains { $0.status == 409 })
      // Once it expires, the update goes through.
      await harness.advance(by: 31)
      await harness.converge()
      #expect(harness.fleet().machine("u0")?.config?.guest?.memoryMB == 512)
      let events = try await harness.store.events(limit: 100)
      #expect(events.contains { $0.eventType == "update_machine" && $0.detailsJSON.contains("ops@example.com") })
    }
  }
}
