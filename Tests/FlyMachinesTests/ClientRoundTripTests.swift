import FlySimulator
import Foundation
import Testing

@testable import FlyMachines

/// The client against the simulator over loopback: every endpoint round-trips.
struct ClientRoundTripTests {
  @Test func machineAndVolumeLifecycle() async throws {
    try await withSimulator { client, simulator in
      let volume = try await client.createVolume(CreateVolumeRequest(name: "fk_u1", region: "cdg", sizeGB: 2))
      #expect(volume.id.hasPrefix("vol_"))
      #expect(volume.encrypted == true)
      #expect(try await client.getVolume(volume.id).sizeGB == 2)

      let created = try await client.createMachine(
        CreateMachineRequest(name: "fk-u1", region: "cdg", config: machineConfig(volume: volume.id)))
      #expect(created.config?.metadata["fleet_user_id"] == "u1")
      #expect(created.config?.mounts == [FlyMount(volume: volume.id, path: "/data")])
      try await client.waitMachine(created.id, state: "started", timeout: .seconds(5))
      #expect(try await client.getMachine(created.id).state == "started")
      #expect(try await client.getVolume(volume.id).attachedMachineID == created.id)

      let mine = try await client.listMachines(ListMachinesQuery(metadata: ["fleet_user_id": "u1"]))
      #expect(mine.map(\.id) == [created.id])
      #expect(try await client.listMachines(ListMachinesQuery(metadata: ["fleet_user_id": "u2"])).isEmpty)
      #expect(try await client.listMachines(ListMachinesQuery(region: "ams")).isEmpty)
      #expect(try await client.listMachines(ListMachinesQuery(states: ["started"])).count == 1)
      let summary = try await client.listMachines(ListMachinesQuery(summary: true))
      #expect(summary.first?.config == nil)

      try await client.stopMachine(created.id, StopMachineRequest(signal: "SIGTERM", timeout: "10s"))
      try await client.waitMachine(created.id, state: "stopped", timeout: .seconds(5), instanceID: created.instanceID)
      let start = try await client.startMachine(created.id)
      #expect(start.previousState == "stopped")
      try await client.waitMachine(created.id, state: "started")

      let lease = try await client.acquireLease(created.id, ttl: 30, description: "fleetkeeper")
      #expect(!lease.nonce.isEmpty)
      let held = await flyError { _ = try await client.acquireLease(created.id, ttl: 30) }
      #expect(held?.code == .conflict)
      let blocked = await flyError { try await client.stopMachine(created.id) }
      #expect(blocked?.code == .conflict)
      try await client.stopMachine(created.id, leaseNonce: lease.nonce)
      try await client.releaseLease(created.id, nonce: lease.nonce)

      try await client.destroyMachine(created.id, force: true)
      try await client.waitMachine(created.id, state: "destroyed")
      #expect(try await client.listMachines(ListMachinesQuery(includeDeleted: true)).first?.state == "destroyed")
      let deleted = try await client.deleteVolume(volume.id)
      #expect(deleted?.state == "pending_destroy")
      #expect(simulator.requestLog().allSatisfy { $0.unknownFields.isEmpty })
    }
  }

  @Test func listsOfManyPagesAreReadWhole() async throws {
    var faults = SimulatorFaults()
    faults.shortPageRate = 0.4
    try await withSimulator(faults: faults, timeout: .seconds(60), pageSize: 7) { client, simulator in
      try await withThrowingTaskGroup(of: Void.self) { group in
        for index in 0..<120 {
          group.addTask {
            _ = try await client.createVolume(CreateVolumeRequest(name: "v\(index)", region: "ord", sizeGB: 1))
            _ = try await client.createMachine(
              CreateMachineRequest(region: "ord", config: machineConfig(user: "u\(index)")))
          }
        }
        try await group.waitForAll()
      }
      let machines = try await client.listMachines()
      let volumes = try await client.listVolumes()
      #expect(Set(machines.map(\.id)).count == 120)
      #expect(Set(volumes.map(\.id)).count == 120)
      let pages = simulator.requestLog().filter { $0.endpoint == "GET /machines" }.count
      #expect(pages >= 120 / 7 + 1, "short pages must be followed, not taken as the end")
      #expect(
        simulator.requestLog().filter { $0.endpoint == "GET /machines" }.allSatisfy { $0.query.contains("limit=7") })
    }
  }

  /// One version of Fly's spec does not page the app's list: every machine in one response, no
  /// `fly-next-cursor`, whatever `limit` says. The client reads it whole all the same.
  @Test func anUnpagedListIsReadWhole() async throws {
    var configuration = SimulatorConfiguration.fast(appName: "app", token: "tok")
    configuration.paginatesAppLists = false
    try await withSimulator(configuration, pageSize: 7) { client, simulator in
      let seed = #"{"users":30,"prefix":"u","volume_prefix":"fk_","region":"ord"}"#
      _ = await simulator.handle(SimulatorRequest(method: "POST", path: "/_sim/seed", body: Data(seed.utf8)))
      let machines = try await client.listMachines()
      #expect(machines.count == 30)
      #expect(simulator.requestLog().filter { $0.endpoint == "GET /machines" }.count == 1)
      #expect(try await client.listVolumes().count == 30)
    }
  }

  @Test func configRoundTripsFieldsWeDoNotModel() throws {
    let json =
      #"{"image":"i","dns":{"skip_registration":true},"metadata":{"fleet_user_id":"u"},"stop_config":{"timeout":"10s"},"guest":{"cpus":2,"memory_mb":1024,"cpu_kind":"performance","kernel_args":["x"]}}"#
    var config = try JSONDecoder().decode(FlyMachineConfig.self, from: Data(json.utf8))
    config.image = "j"
    let encoded = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(config))
    let original = try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
    guard case .object(var expected) = original else { Issue.record("not an object"); return }
    expected["image"] = .string("j")
    #expect(encoded == .object(expected))
    #expect(config.guest == FlyGuest(cpuKind: "performance", cpus: 2, memoryMB: 1024))
  }

  @Test func unknownResponseFieldsAreTolerated() throws {
    let json = #"{"id":"abc","state":"started","region":"ord","brand_new_field":{"x":[1,2]},"config":{"image":"i"}}"#
    let machine = try JSONDecoder().decode(FlyMachine.self, from: Data(json.utf8))
    #expect(machine.id == "abc")
  }

  @Test(arguments: [
    ("plain-token", "Bearer plain-token"),
    ("fm2_lJPECAAAAAAAA", "FlyV1 fm2_lJPECAAAAAAAA"),
    ("FlyV1 fm2_abc,fm2_def", "FlyV1 fm2_abc,fm2_def"),
    ("  spaced\n", "Bearer spaced"),
  ])
  func tokenHeaderAsFlyExpects(token: String, header: String) {
    let flyToken = FlyToken(token)
    #expect(flyToken.authorization == header)
    #expect("\(flyToken)" == "<redacted>")
  }
}

/// The listing scanner against the simulator's real pages and against bad bytes.
struct ListingScannerTests {
  @Test func listingsMatchTheFullDecode() async throws {
    try await withSimulator(pageSize: 3) { client, _ in
      let volume = try await client.createVolume(CreateVolumeRequest(name: "fk_u1", region: "cdg", sizeGB: 1))
      _ = try await client.createMachine(
        CreateMachineRequest(
          name: "fk-u1", region: "cdg", config: machineConfig(user: "u\"1\\é\u{1F600}", volume: volume.id)))
      for index in 0..<7 {
        _ = try await client.createMachine(
          CreateMachineRequest(region: "ord", config: machineConfig(user: "x\(index)")))
      }
      var foreign = FlyMachineConfig()
      foreign.image = "nginx"
      _ = try await client.createMachine(CreateMachineRequest(region: "ams", config: foreign))
      let full = try await client.listMachines()
      let listings = try await client.listMachineListings(ownerKey: "fleet_user_id")
      #expect(listings.count == full.count)
      for (listing, machine) in zip(listings, full) {
        #expect(listing.id == machine.id)
        #expect(listing.state == machine.state && listing.region == machine.region && listing.name == machine.name)
        #expect(listing.owner == machine.config?.metadata["fleet_user_id"])
        #expect(listing.volumeID == machine.config?.mounts.first?.volume)
        #expect(listing.privateIP == machine.privateIP && listing.createdAt == machine.createdAt)
      }
      #expect(listings.first?.owner == "u\"1\\é\u{1F600}")
      #expect(listings.last?.owner == nil)
    }
  }

  /// The volume scanner gives what `JSONDecoder` gives: on the simulator's pages and on odd ones.
  @Test func volumesMatchTheDecoder() throws {
    let pages = [
      #"[]"#,
      #"[{"id":"vol_1","name":"fk_u1","state":"created","size_gb":1,"region":"cdg","zone":"z","encrypted":true,"attached_machine_id":"m1","attached_alloc_id":null,"created_at":"2026-01-01T00:00:00Z","fstype":"ext4","snapshot_retention":5,"auto_backup_enabled":true,"host_status":"ok"}]"#,
      #"[ {"name":"fk_\u0075\"2\/","id":"vol_2","region":"ord","state":"pending_destroy","size_gb":10.0,"encrypted":null,"attached_machine_id":null,"extra":{"a":[1,{"b":null}]}} , {"id":"vol_3","name":"n","state":"s","region":"r"} ]"#,
    ]
    for page in pages {
      let bytes = Array(page.utf8)
      let scanned = try bytes.withUnsafeBytes { try ListingScanner.scanVolumes($0) }
      let decoded = try JSONDecoder().decode([FlyVolume].self, from: Data(bytes))
      #expect(scanned == decoded, "\(page)")
    }
    for bad in [
      #"[{"id":"vol_1","state":"created","region":"cdg"}]"#,
      #"[{"id":"v","name":"n","state":"s","region":"r","size_gb":1.5}]"#,
      #"[{"id":"v","name":"n","state":"s","region":"r","encrypted":"yes"}]"#,
      #"[{"id":"v","name":"n","state":"s","region":"r"}"#,
    ] {
      let bytes = Array(bad.utf8)
      #expect(throws: ListingScanner.Malformed.self, "\(bad)") {
        try bytes.withUnsafeBytes { try ListingScanner.scanVolumes($0) }
      }
    }
  }

  @Test(arguments: [
    "", "[", "[{}]", #"[{"id":"a"}]"#, #"[{"id":"a","state":"started"},]"#, #"[{"id":"a","state":"started"}] x"#,
    #"[{"id":"a\u00","state":"s"}]"#, #"[{"id":"a","state":"s","config":{"metadata":{"k":tru}}}]"#, "<html>",
  ])
  func malformedPagesAreErrors(text: String) {
    let bytes = Array(text.utf8)
    let outcome = bytes.withUnsafeBytes { raw -> Bool in
      do {
        _ = try ListingScanner.scan(raw, ownerKey: "k")
        return true
      } catch { return false }
    }
    #expect(outcome == false)
  }
}

/// Update and extend over loopback: the client's bodies pass the spec check, and its errors say
/// what Fly said.
struct ClientUpdateRoundTripTests {
  @Test func updateWithCurrentVersionAndExtend() async throws {
    try await withSimulator { client, simulator in
      let volume = try await client.createVolume(CreateVolumeRequest(name: "fk_u1", region: "ord", sizeGB: 1))
      let created = try await client.createMachine(
        CreateMachineRequest(name: "fk-u1", region: "ord", config: machineConfig(volume: volume.id)))
      try await client.waitMachine(created.id, state: "started", timeout: .seconds(5))
      let v1 = try #require(try await client.getMachine(created.id).version)
      let updated = try await client.updateMachine(
        created.id,
        UpdateMachineRequest(
          config: machineConfig(image: "registry.fly.io/agent:2", volume: volume.id), currentVersion: v1))
      #expect(updated.version != nil && updated.version != v1)
      #expect(updated.config?.image == "registry.fly.io/agent:2")
      let stale = await flyError {
        _ = try await client.updateMachine(
          created.id, UpdateMachineRequest(config: machineConfig(volume: volume.id), currentVersion: v1))
      }
      #expect(stale?.code == .conflict)
      let extended = try await client.extendVolume(volume.id, sizeGB: 2)
      #expect(extended.volume?.sizeGB == 2)
      #expect(extended.needsRestart == true)
      let shrink = await flyError { _ = try await client.extendVolume(volume.id, sizeGB: 1) }
      #expect(shrink?.status == 400)
      #expect(simulator.requestLog().allSatisfy { $0.unknownFields.isEmpty })
    }
  }
}
