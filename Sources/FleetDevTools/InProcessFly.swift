public import FleetRuntime
public import FlyMachines
public import FlySimulator
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// The client's requests handed straight to a simulator's handler: no socket, no server, the
/// simulator's clock. The client still builds, pages, decodes and maps errors exactly as over
/// HTTP; only the bytes do not cross a socket. (Over loopback, `SimulatorServer` serves the same
/// handler.)
public struct SimulatorTransport: FlyTransport {
  public let simulator: FlySimulator

  public init(_ simulator: FlySimulator) { self.simulator = simulator }

  public func exchange(_ request: FlyHTTPRequest, maxBytes: Int, deadline: ContinuousClock.Instant) async throws
    -> FlyHTTPResponse
  {
    var headers: [String: String] = [:]
    for (name, value) in request.headers { headers[name.lowercased()] = value }
    let answer = await simulator.handle(
      SimulatorRequest(method: request.method, target: request.target, headers: headers, body: request.body ?? Data()))
    var fields = HTTPHeaders(answer.headers)
    let requestID = fields.first(name: "fly-request-id")
    guard answer.body.count <= maxBytes else { throw FlyBodyTooLarge(status: answer.status, requestID: requestID) }
    // A server dates its answers by its own clock: the simulator's, here.
    if fields.first(name: "Date") == nil { fields.add(name: "Date", value: Self.httpDate(simulator.clock.now())) }
    return FlyHTTPResponse(status: answer.status, headers: fields, body: ByteBuffer(bytes: answer.body))
  }

  static func httpDate(_ seconds: Double) -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "GMT")
    formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
    return formatter.string(from: Date(timeIntervalSince1970: seconds))
  }
}

extension FlyClient {
  /// A client of `simulator` in this process (see ``SimulatorTransport``).
  public static func inProcess(
    _ simulator: FlySimulator, requestTimeout: Duration = .seconds(3)
  ) -> FlyClient {
    var configuration = FlyClientConfiguration(
      baseURL: "http://in-process.invalid", appName: simulator.configuration.appName,
      token: FlyToken(simulator.configuration.token), requestTimeout: requestTimeout)
    configuration.listPacing = simulator.configuration.listPacing
    return FlyClient(
      configuration: configuration,
      transport: SimulatorTransport(simulator),
      clock: FlyClientClock(
        now: { simulator.clock.now() }, sleep: { seconds in try await simulator.clock.sleep(seconds: seconds) }))
  }
}

extension SimulatorConfiguration {
  /// How a client of this simulator paces its lists: as the simulator limits them, not at all when
  /// its limits are off.
  public var listPacing: FlyClientConfiguration.Pacing? {
    rateLimitsEnabled ? FlyClientConfiguration.Pacing(rate: listRate, burst: listBurst) : nil
  }
}

/// Time that moves only when something sleeps on it or a test advances it: one clock for the
/// simulated Fly and the controller, so a test runs a week of retention, backoffs and list lag in
/// milliseconds, and the same way every time. Sleeping advances the clock by the sleep.
public final class VirtualClock: FleetClock, SimulatorClock {
  private let time: Mutex<Double>

  public init(now: Double = 1_800_000_000) { time = Mutex(now) }

  public func now() -> Double { time.withLock { $0 } }

  /// Moves time forward (never back).
  public func advance(by seconds: Double) {
    guard seconds > 0 else { return }
    time.withLock { $0 += seconds }
  }

  public func sleep(seconds: Double) async throws {
    advance(by: seconds)
    try Task.checkCancellation()
    await Task.yield()
  }
}

/// The controller's clock as another clock plus an offset a test moves: the controller's notion
/// of time jumps (a wall clock step, a VM booted before NTP) while Fly's does not.
public final class OffsetClock: FleetClock {
  private let base: any FleetClock
  private let offset = Mutex(0.0)

  public init(base: any FleetClock) { self.base = base }

  public func jump(by seconds: Double) { offset.withLock { $0 += seconds } }
  public func now() -> Double { base.now() + offset.withLock { $0 } }
  public func sleep(seconds: Double) async throws { try await base.sleep(seconds: seconds) }
}
