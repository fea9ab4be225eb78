/// Exponential backoff with full jitter (AWS's "full jitter"): a delay drawn uniformly from zero
/// to `min(cap, base × 2^(attempt−1))`. One place decides the retry policy.
public struct RetryPolicy: Sendable, Hashable {
  public var base: Double = 1
  public var cap: Double = 300
  /// Attempts of one action within one pass (retryable errors only).
  public var attemptsPerPass: Int = 3
  /// The longest in-pass wait before giving the action back to the next pass.
  public var maxInPassDelay: Double = 5
  public init() {}

  /// The ceiling of the `attempt`th retry's delay (attempt ≥ 1).
  public func ceiling(attempt: Int) -> Double {
    var ceiling = base
    var doublings = max(0, attempt - 1)
    while doublings > 0 && ceiling < cap {
      ceiling *= 2
      doublings -= 1
    }
    return min(cap, ceiling)
  }

  /// The `attempt`th retry's delay, for a uniform `draw` in 0..<1 (the caller's randomness).
  public func delay(attempt: Int, draw: Double) -> Double {
    ceiling(attempt: attempt) * draw
  }
}
