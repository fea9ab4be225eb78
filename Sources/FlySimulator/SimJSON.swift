import Foundation

/// The simulator's own JSON tree. The simulator deliberately shares no code with the client
/// (`FlyMachines`), so that a misreading of Fly's API cannot hide in both at once.
enum SimJSON: Sendable, Equatable, Decodable {
  case null
  case bool(Bool)
  case int(Int64)
  case double(Double)
  case string(String)
  case array([SimJSON])
  case object([String: SimJSON])

  init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Int64.self) {
      self = .int(value)
    } else if let value = try? container.decode(Double.self) {
      self = .double(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if let value = try? container.decode([SimJSON].self) {
      self = .array(value)
    } else {
      self = .object(try container.decode([String: SimJSON].self))
    }
  }

  static func parse(_ data: Data) -> SimJSON? { try? JSONDecoder().decode(SimJSON.self, from: data) }

  var object: [String: SimJSON]? { if case .object(let v) = self { v } else { nil } }
  var array: [SimJSON]? { if case .array(let v) = self { v } else { nil } }
  var string: String? { if case .string(let v) = self { v } else { nil } }
  var bool: Bool? { if case .bool(let v) = self { v } else { nil } }
  var int: Int64? {
    switch self {
    case .int(let v): v
    case .double(let v) where v.rounded() == v: Int64(v)
    default: nil
    }
  }
  var double: Double? {
    switch self {
    case .int(let v): Double(v)
    case .double(let v): v
    default: nil
    }
  }

  /// The name Go's encoding/json gives this kind of value in its unmarshal errors.
  var goKind: String {
    switch self {
    case .null: "null"
    case .bool: "bool"
    case .int, .double: "number"
    case .string: "string"
    case .array: "array"
    case .object: "object"
    }
  }

  /// Compact JSON text, keys sorted so that output is stable.
  func write(into out: inout String) {
    switch self {
    case .null: out += "null"
    case .bool(let v): out += v ? "true" : "false"
    case .int(let v): out += String(v)
    case .double(let v): out += v.isFinite ? String(v) : "null"
    case .string(let v): SimJSON.writeString(v, into: &out)
    case .array(let items):
      out += "["
      for (index, item) in items.enumerated() {
        if index > 0 { out += "," }
        item.write(into: &out)
      }
      out += "]"
    case .object(let members):
      out += "{"
      for (index, key) in members.keys.sorted().enumerated() {
        if index > 0 { out += "," }
        SimJSON.writeString(key, into: &out)
        out += ":"
        members[key]!.write(into: &out)
      }
      out += "}"
    }
  }

  var text: String {
    var out = ""
    write(into: &out)
    return out
  }

  static func writeString(_ value: String, into out: inout String) {
    out += "\""
    for scalar in value.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20:
        out +=
          "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
          + String(scalar.value, radix: 16)
      default: out.unicodeScalars.append(scalar)
      }
    }
    out += "\""
  }
}

/// A small builder for the JSON the simulator answers with.
struct JSONWriter {
  private(set) var text = "{"
  private var first = true

  private mutating func key(_ name: String) {
    if !first { text += "," }
    first = false
    SimJSON.writeString(name, into: &text)
    text += ":"
  }
  mutating func add(_ name: String, _ value: String?) {
    key(name)
    if let value { SimJSON.writeString(value, into: &text) } else { text += "null" }
  }
  mutating func add(_ name: String, _ value: Int) {
    key(name)
    text += String(value)
  }
  mutating func add(_ name: String, _ value: Bool) {
    key(name)
    text += value ? "true" : "false"
  }
  mutating func add(_ name: String, raw: String) {
    key(name)
    text += raw
  }
  func finished() -> String { text + "}" }
}

/// Unix seconds as Fly's timestamps (`2023-09-01T19:47:14.774Z`).
func isoTimestamp(_ seconds: Double) -> String {
  let whole = Int64(seconds.rounded(.down))
  let millis = Int((seconds - Double(whole)) * 1000)
  var days = whole / 86_400
  var rest = whole % 86_400
  if rest < 0 {
    rest += 86_400
    days -= 1
  }
  // Civil from days (Howard Hinnant's algorithm).
  let z = days + 719_468
  let era = (z >= 0 ? z : z - 146_096) / 146_097
  let doe = z - era * 146_097
  let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
  let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
  let mp = (5 * doy + 2) / 153
  let day = doy - (153 * mp + 2) / 5 + 1
  let month = mp < 10 ? mp + 3 : mp - 9
  let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
  func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
  let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
  return "\(year)-\(two(month))-\(two(day))T\(two(rest / 3600)):\(two(rest % 3600 / 60)):\(two(rest % 60)).\(ms)Z"
}

/// An RFC 3339 timestamp (`2026-12-05T01:02:03Z`, `…03.456Z`, `…03+01:00`) as Unix seconds.
func parseISOTimestamp(_ text: String) -> Double? {
  let plain = ISO8601DateFormatter()
  if let date = plain.date(from: text) { return date.timeIntervalSince1970 }
  let fractional = ISO8601DateFormatter()
  fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
  return fractional.date(from: text)?.timeIntervalSince1970
}
