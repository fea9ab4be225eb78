public import FleetCore
import Synchronization

/// The mutation rate every writer shares: token buckets per kind of call, set just under Fly's
/// documented limits (1 request/s per action and app, bursts of 3), and a pause for everyone when
/// Fly answers 429. One place decides the write budget.
public final class WriteBudget: Sendable {
  public struct Limits: Sendable, Hashable {
    /// Sustained calls per second, per kind (creates are per app on Fly).
    public var perSecond: Double = 0.95
    public var burst: Double = 3
    /// Calls per second for start/stop/destroy, which Fly limits per machine (so across machines
    /// they may go faster): a global ceiling for them.
    public var perMachineKindsPerSecond: Double = 10
    /// Reads by id (GET machine, GET volume) per second and their burst, across machines. Fly
    /// limits Get Machine per machine (5/s, bursts of 10): this is a global ceiling under which a
    /// rollout's reads (one before each update, one to see a machine with health checks through)
    /// keep up with its updates.
    public var readsPerSecond: Double = 20
    public var readBurst: Double = 20
    /// Pause after a 429 without Retry-After.
    public var defaultRetryAfter: Double = 1
    public init() {}
    /// No limits (tests, benchmarks of our own cost).
    public static var unlimited: Limits {
      var limits = Limits()
      limits.perSecond = 1e9
      limits.burst = 1e9
      limits.perMachineKindsPerSecond = 1e9
      limits.readsPerSecond = 1e9
      limits.readBurst = 1e9
      return limits
    }
  }

  private struct Bucket {
    var tokens: Double
    var at: Double
  }
  private struct State {
    var buckets: [String: Bucket] = [:]
    var appPerUser = false
    var pausedUntil: Double = 0
    var throttled = 0
  }

  public let limits: Limits
  private let clock: any FleetClock
  private let state = Mutex(State())

  public init(limits: Limits = .init(), clock: any FleetClock) {
    self.limits = limits
    self.clock = clock
  }

  /// One app per user: volume and machine creates (and volume deletes) go each to its own user's
  /// app, where Fly's per-app limit is never near; only the org-wide app create keeps the per-kind
  /// rate. Set by the reconciler from the topology each pass.
  public func setAppPerUser(_ value: Bool) { state.withLock { $0.appPerUser = value } }

  private func rate(for kind: Action.Kind) -> (key: String, rate: Double, burst: Double) {
    let appPerUser = state.withLock { $0.appPerUser }
    if appPerUser, kind == .createVolume || kind == .createMachine || kind == .deleteVolume || kind == .restoreVolume {
      return (kind.rawValue, limits.perMachineKindsPerSecond, limits.perMachineKindsPerSecond)
    }
    return switch kind {
    case .createVolume, .createMachine, .deleteVolume, .createApp: (kind.rawValue, limits.perSecond, limits.burst)
    // A restore's volume is a volume create: the same bucket.
    case .restoreVolume: (Action.Kind.createVolume.rawValue, limits.perSecond, limits.burst)
    // No call to Fly.
    case .finishRestore: ("none", 1_000_000, 1_000_000)
    // Fly allows 100 app deletions a minute, org-wide.
    case .deleteApp: (kind.rawValue, min(limits.perSecond, 100.0 / 60), min(limits.burst, 10))
    case .assignIPs, .adoptMachine: ("per-machine", limits.perMachineKindsPerSecond, limits.perMachineKindsPerSecond)
    case .start, .stop, .destroyMachine, .updateMachine, .extendVolume, .snapshotVolume:
      ("per-machine", limits.perMachineKindsPerSecond, limits.perMachineKindsPerSecond)
    case .verifyMachine, .verifyVolume, .checkUpdate, .readEvents:
      // Fly's Get Machine: 5 req/s, bursts of 10.
      ("get", limits.readsPerSecond, limits.readBurst)
    }
  }

  /// How long to wait before a `kind` call may go, taking its token if it may go now.
  func reserve(_ kind: Action.Kind) -> Double {
    let now = clock.now()
    let (key, rate, burst) = rate(for: kind)
    return state.withLock { state in
      if state.pausedUntil > now { return state.pausedUntil - now }
      var bucket = state.buckets[key] ?? Bucket(tokens: burst, at: now)
      bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
      bucket.at = now
      if bucket.tokens >= 1 {
        bucket.tokens -= 1
        state.buckets[key] = bucket
        return 0
      }
      state.buckets[key] = bucket
      return (1 - bucket.tokens) / rate
    }
  }

  /// Waits for a token.
  public func acquire(_ kind: Action.Kind) async throws {
    while true {
      let wait = reserve(kind)
      if wait <= 0 { return }
      state.withLock { $0.throttled += 1 }
      try await clock.sleep(seconds: wait)
    }
  }

  /// Fly said 429: every writer waits `retryAfter` (or the default) from now.
  public func pause(retryAfter: Double?) {
    // `retryAfter` comes bounded from FlyAPIError (0 to 300 s, whatever was sent).
    let until = clock.now() + (retryAfter ?? limits.defaultRetryAfter)
    state.withLock { $0.pausedUntil = max($0.pausedUntil, until) }
  }

  /// How many times a writer had to wait for a token.
  public var throttledCount: Int { state.withLock { $0.throttled } }
}
