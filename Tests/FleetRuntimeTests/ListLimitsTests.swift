import FleetCore
import FleetDevTools
import FleetRuntime
import FlyMachines
import FlySimulator
import Foundation
import Testing

/// Fly limits every action, lists included, to about 1 request a second with bursts of 3 (issue 14).
/// Before, a list walk that met a 429 on its 4th page abandoned the pass and started again from
/// page 1: at 10k users no pass ever completed.
@Suite struct ListLimitsTests {
  /// Fly's documented limits on every action, transitions at once.
  static let limited: SimulatorConfiguration = {
    var configuration = Harness.instant
    configuration.rateLimitsEnabled = true
    configuration.rateLimitRetryAfter = true
    return configuration
  }()

  static func seed(_ simulator: FlySimulator, users: Int) async {
    let body = #"{"users":\#(users),"prefix":"u","volume_prefix":"fk_","region":"ord"}"#
    let answer = await simulator.handle(
      SimulatorRequest(method: "POST", target: "/_sim/seed", headers: [:], body: Data(body.utf8)))
    #expect(answer.status == 200)
  }

  /// 10k users, converged, the simulator enforcing Fly's limits: pass after pass reads both lists
  /// whole (10 pages each), paced under the bucket: no 429, no pass given up, no page read twice.
  @Test func aTenThousandUserFleetIsReadWholeUnderFlysLimits() async throws {
    try await withHarness(simulator: Self.limited) { harness in
      await Self.seed(harness.simulator, users: 10_000)
      try await harness.addUsers(10_000, regions: ["ord"])
      let started = harness.time.now()
      for index in 0..<3 {
        let report = await harness.reconciler.pass()
        #expect(report.outcome == .ok, "pass \(index): \(report.outcome)")
      }
      let lists = harness.simulator.requestLog().filter {
        $0.endpoint == "GET /machines" || $0.endpoint == "GET /volumes"
      }
      #expect(lists.filter { $0.status == 429 }.isEmpty, "paced under the bucket, never refused")
      #expect(lists.count == 3 * 2 * 10, "3 passes × 2 lists × 10 pages of 1000: \(lists.count)")
      // 60 list requests through two buckets of 1/s with bursts of 3: about 27 s of Fly's time, no less.
      let elapsed = harness.time.now() - started
      #expect(elapsed >= 26, "paced: \(elapsed) s")
      #expect(harness.fleet().machinesByUser.count == 10_000)
    }
  }

  /// Not paced (as a client of another process sharing the bucket would find it): the 4th page is
  /// refused with a Retry-After; the walk waits it out and asks for the same page again. Every page
  /// is read once, the first never again, and the list is whole.
  @Test func aRefusedPageIsWaitedOutAndTheWalkGoesOn() async throws {
    let clock = VirtualClock()
    let simulator = FlySimulator(configuration: Self.limited, clock: clock)
    await Self.seed(simulator, users: 10_000)
    var configuration = FlyClient.inProcess(simulator).configuration
    configuration.listPacing = nil
    let client = FlyClient(
      configuration: configuration, transport: SimulatorTransport(simulator),
      clock: FlyClientClock(now: { clock.now() }, sleep: { try await clock.sleep(seconds: $0) }))
    let machines = try await client.listMachines()
    #expect(machines.count == 10_000)
    let log = simulator.requestLog().filter { $0.endpoint == "GET /machines" }
    let refused = log.filter { $0.status == 429 }
    #expect(!refused.isEmpty, "the bucket refused some pages")
    let answered = log.filter { $0.status == 200 }
    #expect(answered.count == 10, "each page answered once: \(answered.count)")
    #expect(log.filter { !$0.query.contains("cursor=") }.count == 1, "the walk never started over")
    // A bucket that never opens ends the walk: 30 refusals of one page, then the 429 is the answer.
    var faults = SimulatorFaults()
    faults.rateLimitRate = 1
    faults.retryAfterSeconds = 2
    simulator.setFaults(faults)
    let before = simulator.requestLog().count
    await #expect(throws: FlyAPIError.self) { _ = try await client.listMachines() }
    #expect(simulator.requestLog().dropFirst(before).count == 30)
    // Each refused page was asked again, with the same cursor, after the Retry-After.
    for refusal in refused {
      let retry = log.first { $0.seq > refusal.seq }
      #expect(retry?.query == refusal.query)
      #expect((retry?.time ?? 0) >= refusal.time + 1)
    }
  }
}
