import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Testing

/// The org-wide lists, read like an informer: whole at start, then what changed (issue 14).
@Suite struct OrgObserveTests {
  static func settings(overlap: Double = 60, resync: Double = 600) -> ReconcilerSettings {
    var settings = Harness.testSettings()
    settings.observe = .org(slug: "personal", app: "app")
    settings.observeOverlap = overlap
    settings.resyncInterval = resync
    return settings
  }

  /// Half the updates from now on are listed only 10 s late; then every user's machine is stopped
  /// behind the controller's back.
  static func stopEveryMachineSomeListedLate(_ harness: Harness, users: Int) async throws {
    var faults = SimulatorFaults()
    faults.lateRate = 0.5
    faults.lateSeconds = 10
    harness.simulator.setFaults(faults)
    for user in 0..<users {
      let machine = try #require(harness.fleet().machine("u\(user)"))
      await harness.drift(#"{"op":"stop_machine","machine_id":"\#(machine.id)"}"#)
    }
  }

  static func orgLists(_ log: [SimulatorLogEntry]) -> [SimulatorLogEntry] {
    log.filter { $0.endpoint.hasPrefix("GET /orgs/") }
  }

  /// Converges on the org lists alone; a quiet pass then makes two small incremental requests
  /// (`updated_after`, no cursor walk) and plans nothing; a machine stopped behind the controller's
  /// back is seen by the next incremental read and started.
  @Test func convergesAndNoticesDriftIncrementally() async throws {
    try await withHarness(simulator: Harness.instant, settings: Self.settings()) { harness in
      try await harness.addUsers(3)
      let passes = await harness.converge()
      #expect(passes.last?.converged == true)
      #expect(harness.fleet().machinesByUser.count == 3)
      let appLists = harness.simulator.requestLog().filter {
        $0.endpoint == "GET /machines" || $0.endpoint == "GET /volumes"
      }
      #expect(appLists.isEmpty, "the app's lists are not read: \(appLists.map(\.query))")

      await harness.advance(by: 1)
      _ = await harness.reconciler.pass()
      let seen = harness.simulator.requestLog().count
      await harness.advance(by: 1)
      let quiet = await harness.reconciler.pass()
      #expect(quiet.steady, "nothing changed: the plan is not computed again")
      let requests = harness.simulator.requestLog().dropFirst(seen)
      #expect(requests.count == 2, "\(requests.map { "\($0.endpoint)?\($0.query)" })")
      #expect(requests.allSatisfy { $0.query.contains("updated_after=") && !$0.query.contains("cursor=") })

      let victim = try #require(harness.fleet().machine("u1"))
      await harness.drift(#"{"op":"stop_machine","machine_id":"\#(victim.id)"}"#)
      await harness.advance(by: 1)
      let drifted = await harness.reconciler.pass()
      #expect(drifted.results.map(\.action.kind) == [.start], "\(drifted.results.map(\.action.kind))")
      #expect(harness.fleet().machine("u1")?.state == "started")
    }
  }

  /// A machine someone else made in the users' app is in the org list like any other (it is the
  /// app's): reported as foreign, never touched, as with the app's lists.
  @Test func aForeignMachineInTheAppIsSeenAndLeftAlone() async throws {
    try await withHarness(simulator: Harness.instant, settings: Self.settings()) { harness in
      try await harness.addUsers(1)
      await harness.converge()
      await harness.drift(#"{"op":"create_foreign_machine","region":"ord"}"#)
      await harness.advance(by: 1)
      let before = harness.mutations().count
      let report = await harness.reconciler.pass()
      #expect(report.findings.contains { $0.kind == .foreignMachine })
      #expect(harness.mutations().count == before)
      #expect(harness.fleet().foreign == 1)
    }
  }

  /// Late items: Fly lists some updates only 10 s after they happened, with their true `updated_at`.
  /// With the overlap (60 s) every stopped machine is seen and started once it shows; without it
  /// (0.5 s) the late ones are skipped for good, since the newest update seen is already past them.
  @Test(arguments: [60.0, 0.5])
  func aLateUpdateInsideTheOverlapIsStillSeen(overlap: Double) async throws {
    try await withHarness(simulator: Harness.instant, settings: Self.settings(overlap: overlap)) { harness in
      try await harness.addUsers(10)
      await harness.converge()
      try await Self.stopEveryMachineSomeListedLate(harness, users: 10)
      await harness.advance(by: 1)
      let first = await harness.reconciler.pass()
      let startedAtOnce = first.results.filter { $0.action.kind == .start }.count
      #expect(startedAtOnce > 0 && startedAtOnce < 10, "some updates are late: \(startedAtOnce) seen at once")
      for _ in 0..<15 {
        await harness.advance(by: 2)
        _ = await harness.reconciler.pass()
      }
      let stopped = (0..<10).filter { harness.fleet().machine("u\($0)")?.state == "stopped" }.count
      if overlap >= 10 {
        #expect(stopped == 0, "every late update seen inside the overlap")
      } else {
        #expect(stopped == 10 - startedAtOnce, "without the overlap the late ones are missed")
      }
    }
  }

  /// A partial answer (`error_regions`) makes its regions untrusted for the pass: a user removed
  /// there is not destroyed and a new user there is not created; other regions go on; a finding
  /// says so. Once the region answers again, both happen.
  @Test func anUnreadableRegionHoldsCreatesAndDestroysThere() async throws {
    var settings = Self.settings()
    settings.planner.volumeRetention = 3600
    try await withHarness(simulator: Harness.instant, settings: settings) { harness in
      try await harness.addUsers(4, regions: ["ord", "cdg"])  // u0, u2 in ord; u1, u3 in cdg
      await harness.converge()
      var faults = SimulatorFaults()
      faults.errorRegions = ["ord"]
      harness.simulator.setFaults(faults)
      try await harness.store.removeUser("u0")
      try await harness.store.removeUser("u1")
      try await harness.addUsers(1, prefix: "new-ord", regions: ["ord"])
      try await harness.addUsers(1, prefix: "new-cdg", regions: ["cdg"])
      await harness.advance(by: 1)
      var reports: [PassReport] = []
      for _ in 0..<6 {
        reports.append(await harness.reconciler.pass())
        await harness.advance(by: 1)
      }
      #expect(reports.allSatisfy { $0.unreadableRegions == ["ord"] })
      #expect(reports.first?.findings.contains { $0.kind == .regionsUnreadable } == true)
      let fleet = harness.fleet()
      #expect(fleet.machine("u0")?.state == "started", "nothing stopped or destroyed in the unreadable region")
      #expect(fleet.machine("new-ord0") == nil, "nothing created in the unreadable region")
      #expect(fleet.volumesByName[FleetNames.volumeName(forUser: "new-ord0")] == nil, "not even its volume")
      #expect(fleet.machine("u1") == nil, "the readable region goes on (destroy)")
      #expect(fleet.machine("new-cdg0") != nil, "the readable region goes on (create)")
      harness.simulator.setFaults(SimulatorFaults())
      await harness.converge()
      #expect(harness.fleet().machine("u0") == nil)
      #expect(harness.fleet().machine("new-ord0") != nil)
    }
  }

  /// The list guard works on the org view: a full read that comes back empty (Fly's list lying) is
  /// read again, whole, and held as suspect; nothing is created again for users whose machines it
  /// left out, and nothing is destroyed.
  @Test func anEmptyFullReadIsSuspectAndCreatesNothing() async throws {
    try await withHarness(simulator: Harness.instant, settings: Self.settings()) { harness in
      try await harness.addUsers(5)
      await harness.converge()
      let before = harness.mutations().count
      var faults = SimulatorFaults()
      faults.emptyMachineLists = true
      faults.emptyVolumeLists = true
      harness.simulator.setFaults(faults)
      await harness.reconciler.resync()
      var reports: [PassReport] = []
      for _ in 0..<2 {
        reports.append(await harness.reconciler.pass())
        await harness.advance(by: 2)
      }
      #expect(reports.allSatisfy { !$0.listsTrusted }, "an empty full read is suspect")
      #expect(harness.mutations().count == before, "\(harness.mutations().dropFirst(before).map(\.path))")
      let full = Self.orgLists(harness.simulator.requestLog()).filter { !$0.query.contains("updated_after") }
      #expect(full.count >= 2 * 2 * 2, "the guard re-read whole: \(full.count)")
      harness.simulator.setFaults(SimulatorFaults())
      let passes = await harness.converge()
      #expect(passes.last?.converged == true)
      #expect(harness.mutations().count == before, "the truth back: nothing to do")
    }
  }

  /// An incremental answer holding an item not newer than the `updated_after` asked (a server that
  /// does not filter) is an error, not data: the pass does nothing, and the view is kept.
  @Test func anItemOlderThanAskedIsAnError() async throws {
    try await withHarness(simulator: Harness.instant, settings: Self.settings()) { harness in
      try await harness.addUsers(3)
      await harness.converge()
      await harness.advance(by: 120)
      // One machine updated now: the newest item seen moves 120 s past the others.
      let machine = try #require(harness.fleet().machine("u0"))
      await harness.drift(#"{"op":"stop_machine","machine_id":"\#(machine.id)"}"#)
      await harness.converge()
      var faults = SimulatorFaults()
      faults.ignoreUpdatedAfter = true
      harness.simulator.setFaults(faults)
      let before = harness.mutations().count
      let report = await harness.reconciler.pass()
      #expect(report.outcome == .couldNotRun)
      #expect(report.error?.contains("not after the updated_after") == true, "\(report.error ?? "")")
      #expect(harness.mutations().count == before)
      harness.simulator.setFaults(SimulatorFaults())
      let seen = harness.simulator.requestLog().count
      let next = await harness.reconciler.pass()
      #expect(next.outcome == .ok)
      let reads = Self.orgLists(Array(harness.simulator.requestLog().dropFirst(seen)))
      #expect(reads.allSatisfy { $0.query.contains("updated_after=") }, "the view was kept: no full read")
    }
  }

  /// A full read every resync interval; one that finds the incremental view wrong is believed and
  /// counted. Here the view misses an update (late beyond a tiny overlap); the resync corrects it.
  @Test func aResyncCorrectsWhatTheIncrementalViewMissed() async throws {
    try await withHarness(simulator: Harness.instant, settings: Self.settings(overlap: 0.5, resync: 60)) { harness in
      try await harness.addUsers(10)
      await harness.converge()
      try await Self.stopEveryMachineSomeListedLate(harness, users: 10)
      var corrections = 0
      for _ in 0..<40 {
        await harness.advance(by: 2)
        corrections += await harness.reconciler.pass().resyncCorrections
      }
      #expect(corrections > 0, "the resync found the missed updates")
      #expect((0..<10).allSatisfy { harness.fleet().machine("u\($0)")?.state == "started" })
      let full = Self.orgLists(harness.simulator.requestLog()).filter { !$0.query.contains("updated_after") }
      #expect(full.count >= 4, "a full read at start and after 60 s: \(full.count)")
    }
  }
}
