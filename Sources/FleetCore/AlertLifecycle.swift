/// One alert's state, as Alertmanager keeps it: pending until it has persisted long enough, then
/// firing (notified once, repeated at most every `repeatInterval`), then resolved.
public struct AlertState: Sendable, Hashable, Codable {
  public var fingerprint: String
  public var kind: String
  public var userID: String?
  public var resourceID: String?
  public var message: String
  /// Unix seconds when first seen in this episode.
  public var startsAt: Double
  /// Passes in a row it has been seen.
  public var seenPasses: Int
  /// Unix seconds of the last firing notice; nil while pending.
  public var lastNotifiedAt: Double?

  public var isFiring: Bool { lastNotifiedAt != nil }

  public init(
    fingerprint: String, kind: String, userID: String?, resourceID: String?, message: String, startsAt: Double,
    seenPasses: Int, lastNotifiedAt: Double?
  ) {
    self.fingerprint = fingerprint
    self.kind = kind
    self.userID = userID
    self.resourceID = resourceID
    self.message = message
    self.startsAt = startsAt
    self.seenPasses = seenPasses
    self.lastNotifiedAt = lastNotifiedAt
  }
}

/// A notice to send: the alerts of one pass, grouped.
public struct AlertNotice: Sendable, Hashable {
  public struct Item: Sendable, Hashable {
    public var state: AlertState
    /// `firing` or `resolved`.
    public var status: String
    /// Unix seconds; set when resolved.
    public var endsAt: Double?
    public init(state: AlertState, status: String, endsAt: Double? = nil) {
      self.state = state
      self.status = status
      self.endsAt = endsAt
    }
  }
  public var items: [Item]
  public var createdAt: Double
  public var isTest: Bool = false
  public init(items: [Item], createdAt: Double, isTest: Bool = false) {
    self.items = items
    self.createdAt = createdAt
    self.isTest = isTest
  }
}

/// The alert lifecycle as a pure function: (active alerts, this pass's findings, now) → (active
/// alerts, notice to send). Modeled on Alertmanager: `for`, `repeat_interval`, resolved notices,
/// one grouped notice per pass.
public enum AlertLifecycle {
  public struct Settings: Sendable, Hashable {
    /// Repeat a firing alert at most this often.
    public var repeatInterval: Double = 4 * 3600
    /// Passes a finding must be seen before it fires (2 = "after one pass"), except the kinds in
    /// `immediate`.
    public var passesBeforeFiring: Int = 2
    public var immediate: Set<DriftFinding.Kind> = [.destroyGuardTripped, .desiredUnreadable]
    public init() {}
  }

  public static func step(
    active: [String: AlertState], findings: [DriftFinding], now: Double, settings: Settings = .init()
  ) -> (active: [String: AlertState], notice: AlertNotice?) {
    var next: [String: AlertState] = [:]
    var items: [AlertNotice.Item] = []
    var seen: Set<String> = []
    for finding in findings {
      let key = finding.fingerprint
      guard seen.insert(key).inserted else { continue }
      var state =
        active[key]
        ?? AlertState(
          fingerprint: key, kind: finding.kind.rawValue, userID: finding.userID, resourceID: finding.resourceID,
          message: finding.message, startsAt: now, seenPasses: 0, lastNotifiedAt: nil)
      state.seenPasses += 1
      state.message = finding.message
      let due = settings.immediate.contains(finding.kind) || state.seenPasses >= settings.passesBeforeFiring
      if due {
        if let last = state.lastNotifiedAt {
          if now - last >= settings.repeatInterval {
            state.lastNotifiedAt = now
            items.append(.init(state: state, status: "firing"))
          }
        } else {
          state.lastNotifiedAt = now
          items.append(.init(state: state, status: "firing"))
        }
      }
      next[key] = state
    }
    for (key, state) in active where next[key] == nil && state.isFiring {
      items.append(.init(state: state, status: "resolved", endsAt: now))
    }
    items.sort { ($0.status, $0.state.fingerprint) < ($1.status, $1.state.fingerprint) }
    return (next, items.isEmpty ? nil : AlertNotice(items: items, createdAt: now))
  }
}
