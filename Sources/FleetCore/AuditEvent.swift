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
  /// What happened: `create_volume`, `create_machine.failed`, `drift.machine_stopped`, …
  public var eventType: String
  /// The details, stored as a JSON object: attempt, duration_ms, http_status, fly_request_id, error…
  public var details: [String: AuditField]
  /// Unix seconds.
  public var createdAt: Int64

  public init(
    id: Int64? = nil, eventType: String, userID: String? = nil, machineID: String? = nil, volumeID: String? = nil,
    details: [String: AuditField] = [:], createdAt: Int64
  ) {
    self.id = id
    self.eventType = eventType
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
