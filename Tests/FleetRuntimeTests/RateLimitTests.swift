import FleetCore
import FleetRuntime
import FlyMachines
import FlySimulator
import Testing

/// Fly's rate limits are per action and app or machine: after a 429 with a Retry-After, no request
/// of that kind goes out before it, whoever sends it (issue 13, item 3).
@Suite struct RateLimitTests {
  /// Both lists answer 429 with `Retry-After: 30` (longer than the loop's 2 s busy interval). The
  /// next pass and a look-up racing it (`GET /machines?metadata…`, the same bucket as the list)
  /// wait the 30 s out. Before, both went to Fly at once, into the same closed bucket.
  @Test func aRetryAfterIsWaitedOutByEveryRequestOfItsKind() async throws {
    try await withHarness(simulator: Harness.instant) { harness in
      try await harness.addUsers(2)
      await harness.converge()
      var faults = SimulatorFaults()
      faults.rateLimitRate = 1
      faults.retryAfterSeconds = 30
      harness.simulator.setFaults(faults)
      let limited = await harness.reconciler.pass()
      #expect(limited.outcome == .couldNotRun)
      harness.simulator.setFaults(SimulatorFaults())
      let log = harness.simulator.requestLog()
      let refused = try #require(log.last { $0.status == 429 && $0.endpoint == "GET /machines" })
      let seen = log.count
      async let lookUp = harness.client.listMachines(ListMachinesQuery(metadata: ["fleet_user_id": "u0"]))
      let next = await harness.reconciler.pass()
      #expect(try await lookUp.count == 1)
      #expect(next.outcome == .ok)
      let later = harness.simulator.requestLog().dropFirst(seen).filter {
        $0.endpoint == "GET /machines" || $0.endpoint == "GET /volumes"
      }
      #expect(later.count >= 3, "the pass's two lists and the look-up")
      for request in later {
        #expect(
          request.time >= refused.time + 30, "\(request.endpoint) sent \(request.time - refused.time) s after the 429")
      }
    }
  }
}
