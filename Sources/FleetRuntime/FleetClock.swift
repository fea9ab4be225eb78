public import FleetCore
import Foundation
import Synchronization

/// Time as the controller sees it: Unix seconds and sleeping. Injected so tests drive backoff,
/// retention and the loop's schedule without sleeping.
public protocol FleetClock: Sendable {
  func now() -> Double
  func sleep(seconds: Double) async throws
}

/// Unix seconds that advance with the monotonic clock: the wall clock read once, when the process
/// started, plus the monotonic time since. A step of the wall clock (NTP, an operator, a VM
/// resumed) moves neither a backoff nor a retention nor a grace period while the process runs.
public struct SystemFleetClock: FleetClock {
  public init() {}
  public func now() -> Double { Self.anchor.now() }
  static let anchor = MonotonicWallClock()
  public func sleep(seconds: Double) async throws {
    guard seconds > 0 else { return }
    // Bounded (a day): no value, however it was computed, overflows the conversion.
    try await Task.sleep(for: .milliseconds(Int(min(seconds, 86_400) * 1000)))
  }
}

/// A random source for backoff jitter, injectable for reproducible tests.
public struct Jitter: Sendable {
  private let draw: @Sendable () -> Double
  public init(_ draw: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }) { self.draw = draw }
  /// A value in 0..<1.
  public func next() -> Double { draw() }
}

extension RetryPolicy {
  /// A delay with a draw from `jitter`.
  public func delay(attempt: Int, jitter: Jitter) -> Double { delay(attempt: attempt, draw: jitter.next()) }
}

/// Wall time anchored once and advanced by a monotonic source (both injectable, for tests).
public struct MonotonicWallClock: Sendable {
  private let wallAtStart: Double
  private let monotonicAtStart: Double
  private let monotonic: @Sendable () -> Double

  public init(
    wall: @Sendable () -> Double = MonotonicWallClock.wallSeconds,
    monotonic: @escaping @Sendable () -> Double = MonotonicWallClock.continuousSeconds
  ) {
    self.monotonic = monotonic
    monotonicAtStart = monotonic()
    wallAtStart = wall()
  }

  public func now() -> Double { wallAtStart + (monotonic() - monotonicAtStart) }

  /// Unix seconds by the wall clock.
  public static let wallSeconds: @Sendable () -> Double = { Date().timeIntervalSince1970 }
  /// Seconds on Swift's continuous clock (CLOCK_BOOTTIME on Linux: never steps, counts suspension).
  public static let continuousSeconds: @Sendable () -> Double = { (ContinuousClock.now - origin).seconds }
  private static let origin = ContinuousClock.now
}

extension Duration {
  /// The duration in seconds, as a `Double`.
  public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
