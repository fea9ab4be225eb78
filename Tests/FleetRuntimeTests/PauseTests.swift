import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Testing

/// A paused user, or a paused fleet: observed and reported, never changed; what it holds is shown.
@Suite(.serialized) struct PauseTests {
  @Test func aPausedUserIsObservedAndReportedButNeverChanged() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(2)
      await harness.converge()
      let machine = try #require(harness.fleet().machine("u1"))
      try await harness.store.setUserPaused("u1", true)
      // Stopped behind our back: seen and reported, not started.
      await harness.drift(#"{"op":"stop_machine","machine_id":"\#(machine.id)"}"#)
      let before = harness.simulator.requestLog().count
      var report = await harness.reconciler.pass()
      let plan = try #require(report.plan)
      #expect(plan.pausedUsers == 1)
      #expect(plan.held.map(\.kind) == [.start] && plan.held.map(\.userID) == ["u1"])
      #expect(!report.results.contains { $0.action.userID == "u1" })
      #expect(report.findings.contains { $0.kind == .stoppedWhileDesiredRunning && $0.userID == "u1" })
      #expect(
        harness.simulator.requestLog().dropFirst(before).allSatisfy { $0.endpoint.hasPrefix("GET") },
        "a paused user's pass only reads")
      #expect(harness.fleet().machine("u1")?.state == "stopped")
      // The other user is still reconciled.
      try await harness.store.setUser(UserInput(userID: "u0", state: "stopped"))
      await harness.converge(maxPasses: 20)
      #expect(harness.fleet().machine("u0")?.state == "stopped")
      #expect(harness.fleet().machine("u1")?.state == "stopped")
      // Resumed: converged at once.
      try await harness.store.setUserPaused("u1", false)
      report = await harness.reconciler.pass()
      #expect(report.results.contains { $0.action.userID == "u1" && $0.action.kind == .start })
      #expect(report.plan?.held.isEmpty == true && report.plan?.pausedUsers == 0)
    }
  }

  @Test func aPausedFleetCreatesNothingUntilResumed() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(1)
      await harness.converge()
      try await harness.store.setFleetPaused(true)
      #expect(try await harness.store.fleetPaused())
      try await harness.store.importUsers([UserInput(userID: "new1", region: "cdg")])
      try await harness.store.removeUser("u0")
      // The first pass plans and holds the create and the removal's stop; none that follow acts.
      let first = await harness.reconciler.pass()
      #expect(Set(first.plan?.held.map(\.kind) ?? []) == [.createVolume, .stop], "\(first.plan?.held ?? [])")
      #expect(first.plan?.pausedUsers == 2)
      for _ in 0..<3 {
        let report = await harness.reconciler.pass()
        #expect(report.results.allSatisfy { $0.action.kind.isRead })
        await harness.advance(by: 1)
      }
      #expect(first.results.allSatisfy { $0.action.kind.isRead })
      #expect(harness.fleet().machine("new1") == nil && harness.fleet().machine("u0") != nil)
      try await harness.store.setFleetPaused(false)
      await harness.converge()
      #expect(harness.fleet().machine("new1")?.state == "started")
      #expect(harness.fleet().machine("u0") == nil)
    }
  }

  @Test func pausingAnUnknownUserIsRefused() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      do {
        try await harness.store.setUserPaused("ghost", true)
        Issue.record("paused a user that does not exist")
      } catch {
        #expect("\(error)".contains("ghost"))
      }
    }
  }
}
