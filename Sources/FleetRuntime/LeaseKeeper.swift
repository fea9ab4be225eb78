public import FleetStore
import Foundation
import Synchronization

/// Holds the writer lease for as long as the process runs, between passes too: one attempt every
/// third of the lease's life while held (every `standbyPoll` while not), so a live writer never
/// lets it lapse and a standby takes over within the lease's life plus one poll after the writer dies.
///
/// The lease row holds wall time (processes on two machines share it); whether this process
/// still holds it is judged by the monotonic clock from the start of the last successful renewal,
/// with a margin, so a lease that another process may already have taken is never acted on.
public final class LeaseKeeper: Sendable {
  public struct Status: Sendable, Equatable {
    /// This process holds the lease now.
    public var held: Bool
    /// Increments each time the lease is gained: a writer whose generation changed must read its
    /// state again (another process may have acted meanwhile).
    public var generation: Int
    /// The last renewal failed to reach the database (the error, redacted by the caller's logger).
    public var error: String?
  }

  public let lease: WriterLease
  /// The pause between attempts while another process holds the lease.
  public let standbyPoll: Double
  private let monotonic: @Sendable () -> Double
  private let wall: @Sendable () -> Double
  private struct State {
    var validUntil = -Double.infinity
    var generation = 0
    var error: String?
  }
  private let state = Mutex(State())

  public init(
    lease: WriterLease, standbyPoll: Double = 2,
    monotonic: @escaping @Sendable () -> Double = MonotonicWallClock.continuousSeconds,
    wall: @escaping @Sendable () -> Double = MonotonicWallClock.wallSeconds
  ) {
    self.lease = lease
    self.standbyPoll = standbyPoll
    self.monotonic = monotonic
    self.wall = wall
  }

  /// Held, and renewed recently enough that no other process can have taken it.
  public var status: Status {
    let now = monotonic()
    return state.withLock { Status(held: now < $0.validUntil, generation: $0.generation, error: $0.error) }
  }

  /// One attempt to take or renew the lease. Returns the status after it.
  @discardableResult
  public func renew() async -> Status {
    let started = monotonic()
    do {
      let held = try await lease.acquire(now: wall())
      state.withLock { state in
        state.error = nil
        if held {
          // Not held without a gap since the last renewal: gained (again), so a new generation.
          if !(started < state.validUntil) { state.generation += 1 }
          // Another process may take it once `ttl` has passed since our write; a third of it is margin.
          state.validUntil = started + lease.ttl * 2 / 3
        } else {
          state.validUntil = -.infinity
        }
      }
    } catch {
      // Unreadable database: still held until the margin runs out, then not.
      state.withLock { $0.error = error.description }
    }
    return status
  }

  /// How long to wait before the next attempt.
  public func nextAttempt(after status: Status) -> Double {
    status.held ? lease.ttl / 3 : min(standbyPoll, lease.ttl / 3)
  }

  /// Renews the lease on its schedule until cancelled; `onLost` runs each time it goes from held to
  /// not held (the caller stops starting actions).
  public func keepRenewing(
    sleep: @Sendable (Double) async throws -> Void, onLost: @Sendable () async -> Void
  ) async {
    var wasHeld = status.held
    while !Task.isCancelled {
      let status = await renew()
      if wasHeld && !status.held { await onLost() }
      wasHeld = status.held
      do { try await sleep(nextAttempt(after: status)) } catch { return }
    }
  }

  /// Gives the lease up (on shutdown), so a standby takes over at once.
  public func release() async {
    state.withLock { $0.validUntil = -.infinity }
    try? await lease.release()
  }
}
