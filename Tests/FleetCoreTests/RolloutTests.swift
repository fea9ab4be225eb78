import FleetCore
import Foundation
import Testing

/// The rollout's decisions, pure: canary, waves of max_unavailable, halts, pause, abort, resume,
/// maintenance windows.
struct RolloutTests {
  /// A fleet of `count` users whose members answer from `status` (default: ready).
  final class Fleet {
    var status: [String: Rollout.Member] = [:]
    let users: [String]
    init(_ count: Int) {
      users = (0..<count).map { String(format: "u%04d", $0) }
      for user in users { status[user] = .ready }
    }
    var outdated: [String] { users.filter { status[$0] != .through } }
  }

  func step(
    _ fleet: Fleet, _ previous: RolloutState?, control: RolloutControl = RolloutControl(), now: Double = 1_000
  ) -> Rollout.Output {
    Rollout.step(
      Rollout.Input(
        previous: previous, control: control, target: 7, revision: 2, outdated: fleet.outdated,
        member: { fleet.status[$0] ?? .waiting }, now: now))
  }

  @Test func aCanaryThenWavesOfMaxUnavailableUntilDone() {
    let fleet = Fleet(1000)
    var output = step(fleet, nil)
    // The canary: 1 machine or 1%, whichever is more.
    #expect(output.update.count == 10)
    #expect(output.state?.wave == 0)
    var waves: [Int] = [output.update.count]
    var state = output.state
    for _ in 0..<200 {
      for user in output.update { fleet.status[user] = .through }
      output = step(fleet, state)
      state = output.state
      if output.update.isEmpty { break }
      waves.append(output.update.count)
      // Never more than max_unavailable (10%) at once.
      #expect(output.update.count <= 100)
    }
    #expect(state?.status == .done)
    #expect(waves.first == 10 && waves.dropFirst().allSatisfy { $0 == 100 || $0 == 90 })
    #expect(waves.reduce(0, +) == 1000)
    #expect(state?.through == 1000)
  }

  @Test func aWaveWaitsForItsMachinesBeforeTheNext() {
    let fleet = Fleet(100)
    let first = step(fleet, nil)
    for user in first.update { fleet.status[user] = .underWay }
    let second = step(fleet, first.state)
    #expect(second.update.isEmpty)
    #expect(second.state?.wave == 0)
  }

  @Test func aFailedCanaryHaltsAndLeavesTheRestUntouched() {
    let fleet = Fleet(1000)
    let first = step(fleet, nil)
    for user in first.update { fleet.status[user] = .failed }
    let second = step(fleet, first.state)
    #expect(second.state?.status == .halted)
    #expect(second.update.isEmpty)
    #expect(second.findings.map(\.kind) == [.rolloutHalted])
    #expect(second.state?.failed.count == 10)
    // Stays halted, and loud, pass after pass.
    let third = step(fleet, second.state)
    #expect(third.state?.status == .halted && third.update.isEmpty && third.findings.count == 1)
  }

  @Test func twoFailuresInAWaveHaltButOneDoesNot() {
    let fleet = Fleet(1000)
    var output = step(fleet, nil)
    for user in output.update { fleet.status[user] = .through }
    output = step(fleet, output.state)  // wave 1: 100 machines
    #expect(output.update.count == 100)
    fleet.status[output.update[0]] = .failed
    for user in output.update.dropFirst() { fleet.status[user] = .through }
    let goesOn = step(fleet, output.state)
    #expect(goesOn.state?.status == .running)
    #expect(goesOn.update.count == 100)
    fleet.status[goesOn.update[0]] = .failed
    fleet.status[goesOn.update[1]] = .failed
    let halted = step(fleet, goesOn.state)
    #expect(halted.state?.status == .halted)
  }

  @Test func resumeRetriesTheFailedThenGoesOn() {
    let fleet = Fleet(200)
    let first = step(fleet, nil)
    let canary = first.update
    for user in canary { fleet.status[user] = .failed }
    let halted = step(fleet, first.state)
    #expect(halted.state?.status == .halted)
    var control = RolloutControl()
    control.resumeRequests = 1
    let resumed = step(fleet, halted.state, control: control)
    #expect(resumed.state?.status == .running)
    #expect(resumed.retry == canary)
    for user in canary { fleet.status[user] = .ready }
    let retried = step(fleet, resumed.state, control: control)
    #expect(retried.update == canary)
  }

  @Test func pauseStopsNewWavesAndAbortEndsTheRollout() {
    let fleet = Fleet(100)
    var control = RolloutControl()
    control.paused = true
    let paused = step(fleet, nil, control: control)
    #expect(paused.state?.status == .paused && paused.update.isEmpty)
    control.paused = false
    let running = step(fleet, paused.state, control: control)
    #expect(running.update.count == 1)
    control.abortRequests = 1
    let aborted = step(fleet, running.state, control: control)
    #expect(aborted.state?.status == .aborted && aborted.update.isEmpty)
    // A new template after the abort is a new rollout, not aborted.
    let next = Rollout.step(
      Rollout.Input(
        previous: aborted.state, control: control, target: 8, revision: 3, outdated: fleet.outdated,
        member: { fleet.status[$0] ?? .waiting }, now: 2_000))
    #expect(next.state?.status == .running && next.update.count == 1)
  }

  @Test func wavesStartOnlyInsideAMaintenanceWindow() throws {
    let fleet = Fleet(100)
    var control = RolloutControl()
    control.windows = [try MaintenanceWindow(parsing: "sat 02:00-06:00 UTC")]
    // 2026-12-05 00:00 UTC, a Saturday.
    let saturday3am = 1_796_428_800.0 + 3 * 3600
    let friday3am = saturday3am - 86_400
    let outside = step(fleet, nil, control: control, now: friday3am)
    #expect(outside.state?.status == .waiting && outside.update.isEmpty)
    let inside = step(fleet, outside.state, control: control, now: saturday3am)
    #expect(inside.update.count == 1)
  }

  @Test func maintenanceWindowsParseAndRefuseNamingTheValue() throws {
    let friday = 1_764_892_800.0  // 2025-12-05 00:00 UTC, a Friday
    #expect(Calendar(identifier: .gregorian).component(.weekday, from: Date(timeIntervalSince1970: friday)) == 6)
    let night = try MaintenanceWindow(parsing: "mon-fri 22:00-02:00 UTC")
    #expect(night.contains(friday - 3600))  // Thursday 23:00, in Thursday's window
    #expect(night.contains(friday + 3600))  // Friday 01:00, its tail
    #expect(!night.contains(friday + 12 * 3600))
    let daily = try MaintenanceWindow(parsing: "daily 03:00-04:00 UTC")
    #expect(daily.contains(friday + 3.5 * 3600) && !daily.contains(friday + 4.5 * 3600))
    for bad in ["someday 02:00-03:00 UTC", "sat 2:00-06:00 UTC", "sat 02:00-06:00 CET", "sat 02:00-02:00 UTC"] {
      #expect(throws: MaintenanceWindow.Problem.self) { try MaintenanceWindow(parsing: bad) }
      do {
        _ = try MaintenanceWindow(parsing: bad)
      } catch {
        #expect(error.description.contains(bad))
      }
    }
  }

  @Test func eventsSayEachStep() {
    let fleet = Fleet(10)
    let first = step(fleet, nil)
    #expect(Rollout.events(from: nil, to: first.state, now: 1).map(\.eventType) == ["rollout_start", "rollout_wave"])
    for user in first.update { fleet.status[user] = .failed }
    let halted = step(fleet, first.state)
    #expect(Rollout.events(from: first.state, to: halted.state, now: 2).map(\.eventType) == ["rollout_halt"])
    #expect(Rollout.events(from: halted.state, to: halted.state, now: 3).isEmpty)
  }
}
