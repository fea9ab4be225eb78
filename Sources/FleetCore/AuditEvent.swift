/// One value in an audit event's details.
public enum AuditField: Sendable, Hashable {
  case string(String)
  case int(Int64)
  case double(Double)
  case bool(Bool)
}

/// One row of `machine_events`: an action attempted, its outcome, or a finding.
public struct AuditEvent: Sendable, Hashable {
  /// The row id (set once stored).
  public var id: Int64?
  public var machineID: String?
  public var userID: String?
  public var volumeID: String?
  /// What happened; stored as its text (``EventType/rawValue``).
  public var type: EventType
  /// The `event_type` column: `create_volume`, `adopt_machine`, `drift.machine_missing`, …
  public var eventType: String { type.rawValue }
  /// The details, stored as a JSON object: attempt, duration_ms, http_status, fly_request_id, error…
  public var details: [String: AuditField]
  /// Unix seconds.
  public var createdAt: Int64

  public init(
    id: Int64? = nil, type: EventType, userID: String? = nil, machineID: String? = nil, volumeID: String? = nil,
    details: [String: AuditField] = [:], createdAt: Int64
  ) {
    self.id = id
    self.type = type
    self.userID = userID
    self.machineID = machineID
    self.volumeID = volumeID
    self.details = details
    self.createdAt = createdAt
  }

  /// The details as a JSON object, keys sorted.
  public var detailsJSON: String {
    var out = "{"
    for (index, key) in details.keys.sorted().enumerated() {
      if index > 0 { out += "," }
      out += JSONText.quote(key) + ":"
      switch details[key]! {
      case .string(let v): out += JSONText.quote(v)
      case .int(let v): out += String(v)
      case .double(let v): out += v.isFinite ? String(v) : "null"
      case .bool(let v): out += v ? "true" : "false"
      }
    }
    return out + "}"
  }
}

/// Every `event_type` the controller writes to `machine_events`: an action attempted (its outcome
/// in `details.outcome`), a resource adopted after a lost create's answer, a finding raised or
/// cleared.
public enum EventType: Sendable, Hashable, CustomStringConvertible {
  /// `create_volume`, `create_machine`, `start`, `stop`, `destroy_machine`, `delete_volume`,
  /// `verify_machine`, `verify_volume`.
  case action(Action.Kind)
  /// `adopt_volume`, `adopt_machine`: a look-up after a lost answer found what the create made.
  case adopted(PendingCreate.Kind)
  /// `drift.<finding kind>`: a finding appeared.
  case drift(DriftFinding.Kind)
  /// `drift_resolved.<finding kind>`: it cleared.
  case driftResolved(DriftFinding.Kind)
  /// `rollout_start`, `rollout_wave`, `rollout_pause`, `rollout_resume`, `rollout_waiting`,
  /// `rollout_halt`, `rollout_abort`, `rollout_finish`: a rollout's steps.
  case rollout(RolloutStep)

  public var rawValue: String {
    switch self {
    case .action(let kind): kind.rawValue
    case .adopted(.machine): "adopt_machine"
    case .adopted(.volume): "adopt_volume"
    case .drift(let kind): "drift.\(kind.rawValue)"
    case .driftResolved(let kind): "drift_resolved.\(kind.rawValue)"
    case .rollout(let step): "rollout_\(step.rawValue)"
    }
  }

  public init?(rawValue: String) {
    if let kind = Action.Kind(rawValue: rawValue) {
      self = .action(kind)
    } else if rawValue == "adopt_machine" {
      self = .adopted(.machine)
    } else if rawValue == "adopt_volume" {
      self = .adopted(.volume)
    } else if rawValue.hasPrefix("drift."), let kind = DriftFinding.Kind(rawValue: String(rawValue.dropFirst(6))) {
      self = .drift(kind)
    } else if rawValue.hasPrefix("rollout_"), let step = RolloutStep(rawValue: String(rawValue.dropFirst(8))) {
      self = .rollout(step)
    } else if rawValue.hasPrefix("drift_resolved."),
      let kind = DriftFinding.Kind(rawValue: String(rawValue.dropFirst(15)))
    {
      self = .driftResolved(kind)
    } else {
      return nil
    }
  }

  public var description: String { rawValue }
}

/// A rollout's step, as its event says.
public enum RolloutStep: String, Sendable, Hashable, CaseIterable {
  case start, wave, pause, resume, waiting, halt, abort, finish
}

/// Minimal JSON text helpers for the core (which imports nothing).
public enum JSONText {
  /// `value` as a JSON string literal.
  public static func quote(_ value: String) -> String {
    var out = "\""
    for scalar in value.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20:
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}
