import Foundation
import Testing

@testable import FlySimulator

/// Volume snapshots as API-FACTS-2 describes them (issue 17's simulator side): on demand and
/// daily, kept their retention, restored into a new volume at least as big, scoped to their app;
/// and `bytes_used` a test can fill.
struct SimulatorSnapshotTests {
  let clock = ManualSimulatorClock()
  let simulator: FlySimulator

  init() {
    var configuration = SimulatorConfiguration(appName: "app", token: "t")
    configuration.rateLimitsEnabled = false
    configuration.orgSlug = "acme"
    simulator = FlySimulator(configuration: configuration, clock: clock)
  }

  func call(_ method: String, _ target: String, body: String? = nil) async -> (Int, SimJSON?) {
    await simulator.call(method, target, body: body)
  }

  func bytesUsed(_ volume: String) async -> SimJSON? {
    await call("GET", "/v1/orgs/acme/volumes").1?.object?["volumes"]?.array?
      .first { $0.object?["id"]?.string == volume }?.object?["bytes_used"]
  }

  @Test func snapshotsAreTakenKeptAndRestored() async {
    let (status, volume) = await call(
      "POST", "/v1/apps/app/volumes",
      body: #"{"name":"fk_ada","region":"ord","size_gb":2,"snapshot_retention":2,"auto_backup_enabled":true}"#)
    #expect(status == 200)
    #expect(volume?.object?["snapshot_retention"] == .int(2))
    let id = volume?.object?["id"]?.string ?? ""
    clock.advance(by: 1)
    _ = await simulator.handle(
      SimulatorRequest(
        method: "POST", path: "/_sim/drift",
        body: Data(#"{"op":"fill_volume","volume_id":"\#(id)","bytes_used":1000}"#.utf8)))
    #expect(await bytesUsed(id) == .int(1000))
    let (taken, answer) = await call("POST", "/v1/apps/app/volumes/\(id)/snapshots")
    #expect(taken == 200)
    #expect(answer == nil, "Fly's spec documents no body: the snapshot is found by listing")
    let snapshot = await call("GET", "/v1/apps/app/volumes/\(id)/snapshots").1?.array?.first
    #expect(snapshot?.object?["size"] == .int(1000))
    #expect(snapshot?.object?["retention_days"] == .int(2))
    // A day later Fly has taken its daily one too.
    clock.advance(by: 86_400)
    #expect(await call("GET", "/v1/apps/app/volumes/\(id)/snapshots").1?.array?.count == 2)
    // Restored: a new volume at least as big, holding the snapshot's data.
    let snapshotID = snapshot?.object?["id"]?.string ?? ""
    let small = await call(
      "POST", "/v1/apps/app/volumes",
      body: #"{"name":"fk_ada","region":"ord","size_gb":1,"snapshot_id":"\#(snapshotID)"}"#)
    #expect(small.0 == 400)
    let (restoredStatus, restored) = await call(
      "POST", "/v1/apps/app/volumes",
      body: #"{"name":"fk_ada","region":"ord","size_gb":2,"snapshot_id":"\#(snapshotID)"}"#)
    #expect(restoredStatus == 200)
    clock.advance(by: 1)
    #expect(await bytesUsed(restored?.object?["id"]?.string ?? "") == .int(1000))
    // Kept their retention, then gone (after the volume is deleted too).
    _ = await call("DELETE", "/v1/apps/app/volumes/\(id)")
    clock.advance(by: 2 * 86_400)
    #expect(await call("GET", "/v1/apps/app/volumes/\(id)/snapshots").1?.array?.count == 0)
    #expect(
      await call(
        "POST", "/v1/apps/app/volumes", body: #"{"name":"x","region":"ord","size_gb":2,"snapshot_id":"\#(snapshotID)"}"#
      ).0 == 404)
    #expect(
      await call(
        "POST", "/v1/apps/app/volumes", body: #"{"name":"x","region":"ord","size_gb":1,"snapshot_retention":0}"#
      )
      .0 == 400)
  }

  @Test func snapshotsAreScopedToTheirApp() async {
    _ = await call("POST", "/v1/apps", body: #"{"name":"other","org_slug":"acme"}"#)
    let (_, volume) = await call("POST", "/v1/apps/app/volumes", body: #"{"name":"fk_ada","region":"ord","size_gb":1}"#)
    let id = volume?.object?["id"]?.string ?? ""
    let (_, snapshot) = await call("POST", "/v1/apps/app/volumes/\(id)/snapshots")
    #expect(await call("GET", "/v1/apps/other/volumes/\(id)/snapshots").0 == 404)
    let snapshotID = snapshot?.object?["id"]?.string ?? ""
    let (status, _) = await call(
      "POST", "/v1/apps/other/volumes", body: #"{"name":"x","region":"ord","size_gb":1,"snapshot_id":"\#(snapshotID)"}"#
    )
    #expect(status == 404, "another app's snapshot is not restored here")
  }
}
