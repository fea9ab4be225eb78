import Foundation
import Synchronization

/// Time as the simulator sees it, in seconds. Injected so that tests drive the state machine's
/// timed transitions without sleeping.
public protocol SimulatorClock: Sendable {
  /// Seconds since the Unix epoch.
  func now() -> Double
  /// Suspends until `seconds` of this clock's time have passed.
  func sleep(seconds: Double) async throws
}

/// The wall clock.
public struct WallSimulatorClock: SimulatorClock {
  public init() {}
  public func now() -> Double { Date().timeIntervalSince1970 }
  public func sleep(seconds: Double) async throws {
    try await Task.sleep(for: .milliseconds(max(0, Int(seconds * 1000))))
  }
}

/// A clock that moves only when a test calls ``advance(by:)``.
public final class ManualSimulatorClock: SimulatorClock {
  private struct State {
    var now: Double
    var sleepers: [(until: Double, continuation: CheckedContinuation<Void, Never>)] = []
  }
  private let state: Mutex<State>

  public init(now: Double = 1_800_000_000) { state = Mutex(State(now: now)) }

  public func now() -> Double { state.withLock { $0.now } }

  public func advance(by seconds: Double) {
    let due = state.withLock { state -> [CheckedContinuation<Void, Never>] in
      state.now += seconds
      let now = state.now
      let due = state.sleepers.filter { $0.until <= now }.map(\.continuation)
      state.sleepers.removeAll { $0.until <= now }
      return due
    }
    for continuation in due { continuation.resume() }
  }

  /// How many tasks are sleeping on this clock (lets a test wait for a handler to block).
  public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

  public func sleep(seconds: Double) async throws {
    await withCheckedContinuation { continuation in
      let resumeNow = state.withLock { state -> Bool in
        if seconds <= 0 { return true }
        state.sleepers.append((state.now + seconds, continuation))
        return false
      }
      if resumeNow { continuation.resume() }
    }
  }
}
