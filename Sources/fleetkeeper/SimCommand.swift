import ArgumentParser
import FlySimulator
import Foundation

/// `fleetkeeper sim`: the built-in Fly Machines API simulator.
struct SimCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sim", abstract: "Serve the built-in Fly Machines API simulator on loopback.")

  @Option(help: "Port to listen on; 0 picks a free one and prints it.") var port: Int = 4280
  @Option(help: "Address to bind.") var host: String = "127.0.0.1"
  @Option(help: "The Fly app the simulator serves.") var app: String = "fleet-users"
  @Option(help: "The token requests must carry.") var token: String = "sim-token"
  @Flag(help: "Instant transitions, no replica lag, no rate limits.") var fast = false
  @Flag(help: "Turn Fly's rate limits off.") var noRateLimits = false
  @Flag(help: "Keep Fly's rate limits on with --fast (instant transitions, real limits).") var rateLimits = false
  @Flag(help: "Send Retry-After on rate-limit 429s.") var retryAfter = false
  @Option(help: "Seconds a new machine or volume is missing from lists.") var listLag: Double?
  @Option(help: "Seed for ids and fault draws.") var seed: UInt64 = 0x5EED
  @Option(help: "Fault: share of requests answered with --error-status.") var errorRate: Double = 0
  @Option(help: "Fault: the status of injected errors.") var errorStatus: Int = 503
  @Option(help: "Fault: share of requests answered 429.") var rateLimitRate: Double = 0
  @Option(help: "Fault: share of requests answered 408.") var timeoutRate: Double = 0
  @Option(help: "Fault: share of mutations applied and then answered 502.") var lostResponseRate: Double = 0
  @Option(help: "Fault: milliseconds added to every answer.") var latencyMs: Int = 0
  @Flag(help: "Fault: answer the next list with [] once.") var emptyListOnce = false
  @Flag(help: "Faults only on mutations.") var mutationsOnly = false

  func run() async throws {
    var configuration =
      fast
      ? SimulatorConfiguration.fast(appName: app, token: token) : SimulatorConfiguration(appName: app, token: token)
    if noRateLimits { configuration.rateLimitsEnabled = false }
    if rateLimits { configuration.rateLimitsEnabled = true }
    configuration.rateLimitRetryAfter = retryAfter
    if let listLag { configuration.listLag = listLag }
    configuration.seed = seed
    var faults = SimulatorFaults()
    faults.errorRate = errorRate
    faults.errorStatus = errorStatus
    faults.rateLimitRate = rateLimitRate
    faults.timeoutRate = timeoutRate
    faults.lostResponseRate = lostResponseRate
    faults.latencyMs = latencyMs
    faults.emptyListOnce = emptyListOnce
    faults.mutationsOnly = mutationsOnly
    let simulator = FlySimulator(configuration: configuration, faults: faults)
    let appName = configuration.appName
    let host = host
    try await SimulatorServer.run(simulator, host: host, port: port) { bound in
      print("fly simulator listening on http://\(host):\(bound) (app \(appName))")
      print("FLY_API_BASE_URL=http://\(host):\(bound)")
      fflush(nil)
    }
  }
}
