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
///
/// One alert per user and condition: every finding about a user (a machine missing, an action
/// failing, a region mismatch…) is a cause of that user's `not_as_desired` alert, an annotation
/// that may change while it fires; it resolves only when no finding names the user. Findings about
/// the fleet (a guard tripped, Fly unreachable) are one alert per kind. While the controller cannot
/// see (the desired state unreadable, Fly's lists failing or not trusted), no user's alert
/// resolves, repeats or starts again: that outage is its own alert.
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

  /// The kind of every user's alert.
  public static let userCondition = "not_as_desired"
  /// Findings that mean the controller cannot see the fleet this pass.
  public static let blind: Set<DriftFinding.Kind> = [
    .desiredUnreadable, .flyUnreachable, .listSuspect, .leaseLost, .regionsUnreadable,
  ]

  /// This pass's findings as alerts: one per user (its causes in the message), one per fleet kind.
  static func alerts(_ findings: [DriftFinding]) -> [(key: String, immediate: Bool, finding: DriftFinding)] {
    var byUser: [String: [DriftFinding]] = [:]
    var fleet: [String: DriftFinding] = [:]
    for finding in findings {
      if let user = finding.userID {
        byUser[user, default: []].append(finding)
      } else if fleet[finding.kind.rawValue] == nil {
        fleet[finding.kind.rawValue] = finding
      }
    }
    var out: [(key: String, immediate: Bool, finding: DriftFinding)] = []
    for (user, causes) in byUser {
      let sorted = causes.sorted { ($0.kind.rawValue, $0.resourceID ?? "") < ($1.kind.rawValue, $1.resourceID ?? "") }
      var seen: Set<String> = []
      let message = sorted.filter { seen.insert($0.fingerprint).inserted }.map { "\($0.kind.rawValue): \($0.message)" }
        .joined(separator: "; ")
      let summary = DriftFinding(kind: sorted[0].kind, userID: user, resourceID: sorted[0].resourceID, message: message)
      out.append(("\(userCondition)|\(user)", false, summary))
    }
    for (kind, finding) in fleet { out.append(("\(kind)||", false, finding)) }
    return out
  }

  /// `unsettled`: users with something still to do or under way this pass (an action planned, a
  /// create settling, a backoff): their alert is not resolved by a pass that happens to have no
  /// finding for them.
  public static func step(
    active: [String: AlertState], findings: [DriftFinding], unsettled: Set<String> = [], now: Double,
    settings: Settings = .init()
  ) -> (active: [String: AlertState], notice: AlertNotice?) {
    var next: [String: AlertState] = [:]
    var items: [AlertNotice.Item] = []
    let cannotSee = findings.contains { blind.contains($0.kind) }
    for (key, _, finding) in alerts(findings) {
      let isUser = finding.userID != nil
      var state =
        active[key]
        ?? AlertState(
          fingerprint: key, kind: isUser ? userCondition : finding.kind.rawValue, userID: finding.userID,
          resourceID: finding.resourceID, message: finding.message, startsAt: now, seenPasses: 0, lastNotifiedAt: nil)
      state.seenPasses += 1
      state.message = finding.message  // the causes may change while it fires
      state.resourceID = finding.resourceID
      let due =
        (!isUser && settings.immediate.contains(finding.kind)) || state.seenPasses >= settings.passesBeforeFiring
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
    for (key, state) in active where next[key] == nil {
      if let user = state.userID, cannotSee || unsettled.contains(user) {
        next[key] = state  // unseen is not resolved: held as it was until the controller sees again
      } else if state.isFiring {
        items.append(.init(state: state, status: "resolved", endsAt: now))
      }
    }
    items.sort { ($0.status, $0.state.fingerprint) < ($1.status, $1.state.fingerprint) }
    return (next, items.isEmpty ? nil : AlertNotice(items: items, createdAt: now))
  }
}
