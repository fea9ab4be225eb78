import Synchronization

/// Time as the client waits on it (a Retry-After is waited out on this clock). Injected, so that a
/// test on a virtual clock waits out a 30 s Retry-After in no time.
public struct FlyClientClock: Sendable {
  public var now: @Sendable () -> Double
  public var sleep: @Sendable (Double) async throws -> Void

  public init(now: @escaping @Sendable () -> Double, sleep: @escaping @Sendable (Double) async throws -> Void) {
    self.now = now
    self.sleep = sleep
  }

  /// The monotonic clock and `Task.sleep`.
  public static let continuous = FlyClientClock(
    now: {
      let elapsed = ContinuousClock.now - origin
      return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    },
    sleep: { seconds in try await Task.sleep(for: .milliseconds(Int(min(seconds, 3600) * 1000))) })
  private static let origin = ContinuousClock.now
}

/// Fly's rate limits are per action and per app or machine. After a 429, no request of that kind
/// (the same endpoint, and for a machine's actions the same machine) is sent again before the
/// Retry-After it announced: a list walk, a look-up or a retry in the next pass all wait here,
/// the one place that knows.
final class RateLimitGate: Sendable {
  private let until = Mutex<[String: Double]>([:])
  /// Client-side token buckets (``pace(_:rate:burst:)``): tokens left (negative: reserved ahead) and when.
  private let buckets = Mutex<[String: (tokens: Double, at: Double)]>([:])
  private let clock: FlyClientClock

  init(clock: FlyClientClock) { self.clock = clock }

  /// The bucket of a request: its endpoint, and the path for a resource's own actions.
  static func key(endpoint: String, operation: String) -> String {
    endpoint.contains("{id}") ? operation : endpoint
  }

  /// Waits until `key` may be sent again.
  func wait(_ key: String) async throws {
    while true {
      let now = clock.now()
      guard let until = until.withLock({ $0[key] }), until > now else { return }
      try await clock.sleep(until - now)
    }
  }

  /// Takes a token from `key`'s bucket (`rate` per second, `burst` at most), waiting for it when the
  /// bucket is empty. Each caller reserves its own slot, so concurrent requests of one kind go out
  /// one refill apart, in the order they asked.
  func pace(_ key: String, rate: Double, burst: Double) async throws {
    let now = clock.now()
    let wait = buckets.withLock { all in
      var bucket = all[key] ?? (tokens: burst, at: now)
      bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
      bucket.at = now
      bucket.tokens -= 1
      all[key] = bucket
      return bucket.tokens >= 0 ? 0 : -bucket.tokens / rate
    }
    // A little past the refill: the server's bucket, counting from a request's arrival in its own
    // floating point, must not find 0.99999 of a token.
    if wait > 0 { try await clock.sleep(wait + 0.02) }
  }

  /// Holds `key` for `seconds` from now (a later hold is never shortened).
  func pause(_ key: String, seconds: Double) {
    let until = clock.now() + max(0, seconds)
    self.until.withLock { all in
      all[key] = max(all[key] ?? 0, until)
      if all.count > 10_000 {
        // Per-machine keys come and go: drop the ones that have passed.
        let now = clock.now()
        all = all.filter { $0.value > now }
      }
    }
  }
}
