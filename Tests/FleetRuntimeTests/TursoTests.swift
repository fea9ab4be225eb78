import FleetAlerts
import FleetCore
import FleetRuntime
import FleetStore
import Foundation
import HranaServer
import Testing

/// The desired state on Turso (libSQL over HTTP, here the local Hrana server on loopback).
@Suite(.serialized) struct TursoTests {
  /// Turso goes down in the middle of a pass that wanted to remove users: nothing is destroyed
  /// (nor stopped), the outage is an alert at once (delivered without the database's outbox),
  /// and the next pass after Turso is back does the work.
  @Test func anOutageMidPassDestroysNothingAlertsAndRecovers() async throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("fk-turso-\(UUID().uuidString).sqlite3")
      .path
    let served = try await HranaServer(path: path, token: "turso-test-token").start()
    defer { Task { await served.stop() } }
    let database = try HranaDatabase(url: served.url, token: "turso-test-token")
    let store = FleetStore(database: database)
    try await store.migrate()
    try await withHarness(store: store) { harness in
      try await harness.addUsers(4)
      await harness.converge()
      #expect(harness.fleet().machinesByUser.count == 4)

      try await store.removeUser("u0")
      try await store.removeUser("u1")
      let mutationsBefore = harness.mutations().count
      // The pass reads the version, checks the schema and reads the snapshot (three requests), then
      // Turso stops answering: the pass has planned the removals and cannot record them.
      served.server.setFault(.unavailableAfter(3))
      let report = await harness.reconciler.pass()
      #expect(report.outcome == .couldNotRun)
      #expect(
        report.plan?.actions.contains { $0.isDestructive } == true, "the plan wanted to remove u0 and u1")
      #expect(harness.mutations().count == mutationsBefore, "nothing sent to Fly while the database is down")
      #expect(report.findings.contains { $0.kind == .desiredUnreadable })

      // The alert fires at once, and reaches a receiver although the outbox (in Turso) is down.
      let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fk-turso-alert-\(UUID().uuidString)")
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      let script = folder.appendingPathComponent("page.sh")
      let received = folder.appendingPathComponent("received.json")
      try "#!/bin/sh\ncat > \(received.path)\n".write(to: script, atomically: true, encoding: .utf8)
      try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
      let alerter = Alerter(
        store: store, app: "users-app", receivers: [AlertReceiver(key: "env:0", kind: .command, target: script.path)])
      let notice = await alerter.process(report.findings, now: Date().timeIntervalSince1970)
      #expect(notice?.items.contains { $0.state.kind == "desired_unreadable" && $0.status == "firing" } == true)
      _ = await AlertSender(alerter: alerter, store: store).sweep(now: Date().timeIntervalSince1970)
      let payload = (try? String(contentsOf: received, encoding: .utf8)) ?? ""
      #expect(payload.contains("desired_unreadable"), "delivered: \(payload)")
      #expect(!payload.contains("turso-test-token"))

      // Still down: still nothing. Then Turso is back: the removal proceeds.
      #expect(await harness.reconciler.pass().outcome == .couldNotRun)
      #expect(harness.mutations().count == mutationsBefore)
      served.server.setFault(.none)
      await harness.converge()
      let fleet = harness.fleet()
      #expect(fleet.machinesByUser.keys.sorted() == ["u2", "u3"])
      #expect(fleet.volumesByName.count == 4, "removed users keep their volumes (retention)")
    }
  }

  /// An outage is retried soon, then backed off to the full interval; one good pass resets it.
  @Test func anUnreadableDatabaseIsRetriedWithBackoff() {
    var settings = ReconcilerSettings()
    settings.interval = 30
    settings.busyInterval = 2
    let delays = (1...7).map { ReconcileLoop.couldNotRunDelay(failedInARow: $0, settings: settings) }
    #expect(delays == [2, 4, 8, 16, 30, 30, 30])
    let failed = PassReport(outcome: .couldNotRun, startedAt: 0)
    #expect(ReconcileLoop.nextDelay(after: failed, settings: settings, failedInARow: 3) == 8)
    var quiet = PassReport(outcome: .ok, startedAt: 0)
    quiet.plan = Plan(actions: [], findings: [], waiting: [], states: [:], guardState: GuardState())
    #expect(ReconcileLoop.nextDelay(after: quiet, settings: settings, failedInARow: 0) == 30)
  }
}
