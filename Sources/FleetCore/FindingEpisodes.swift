/// Findings as episodes: one `drift.<kind>` event when a finding appears, one
/// `drift_resolved.<kind>` when it is gone, nothing while it lasts.
public struct FindingEpisodes: Sendable {
  /// The findings of the last pass, by fingerprint.
  public private(set) var active: [String: DriftFinding] = [:]

  public init() {}

  /// Episodes that were open when the controller last recorded them (read back at start, so a
  /// restart or a one-shot `reconcile` does not record the same findings again).
  public init(open findings: [DriftFinding]) {
    for finding in findings { active[finding.fingerprint] = finding }
  }

  /// The open episodes, in a stable order (what is stored).
  public var open: [DriftFinding] { active.values.sorted { $0.fingerprint < $1.fingerprint } }

  /// The findings new since the last call, and the events of what appeared and cleared, sorted.
  public mutating func update(_ findings: [DriftFinding], now: Double) -> (
    appeared: [DriftFinding], events: [AuditEvent]
  ) {
    var current: [String: DriftFinding] = [:]
    for finding in findings { current[finding.fingerprint] = finding }
    var appeared: [DriftFinding] = []
    var events: [AuditEvent] = []
    for (key, finding) in current where active[key] == nil {
      appeared.append(finding)
      events.append(Self.event(.drift(finding.kind), finding, details: ["message": .string(finding.message)], now: now))
    }
    for (key, finding) in active where current[key] == nil {
      events.append(Self.event(.driftResolved(finding.kind), finding, details: [:], now: now))
    }
    active = current
    return (appeared, events.sorted { ($0.eventType, $0.userID ?? "") < ($1.eventType, $1.userID ?? "") })
  }

  static func event(_ type: EventType, _ finding: DriftFinding, details: [String: AuditField], now: Double)
    -> AuditEvent
  {
    let volume = finding.resourceID.flatMap { $0.hasPrefix("vol_") ? $0 : nil }
    let machine = finding.resourceID.flatMap { $0.hasPrefix("vol_") ? nil : $0 }
    return AuditEvent(
      type: type, userID: finding.userID, machineID: machine, volumeID: volume, details: details,
      createdAt: Int64(now))
  }
}
