import FleetCore
import FleetStore
import FlyMachines
import Foundation

/// Every `--json` output: an `Encodable` value per line, written by one encoder (keys sorted,
/// slashes not escaped). Field names are the snake_case of the tables they come from.
enum JSONOutput {
  static func line(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(value) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
  }

  static func print(_ value: some Encodable) { Swift.print(line(value)) }
}

struct ActionJSON: Encodable {
  var action: String
  var user_id: String
  var machine_id: String?
  var volume_id: String?
  var region: String?
  var reason: String
  init(_ action: Action) {
    self.action = action.kind.rawValue
    user_id = action.userID
    machine_id = action.machineID
    volume_id = action.volumeID
    region = action.region
    reason = action.reason
  }
  func encode(to encoder: any Encoder) throws {
    // nil fields are written as null (not left out): a reader sees every field of every line.
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(action, forKey: .action)
    try c.encode(user_id, forKey: .user_id)
    try c.encode(machine_id, forKey: .machine_id)
    try c.encode(volume_id, forKey: .volume_id)
    try c.encode(region, forKey: .region)
    try c.encode(reason, forKey: .reason)
  }
  enum CodingKeys: String, CodingKey { case action, user_id, machine_id, volume_id, region, reason }
}

struct FindingJSON: Encodable {
  var kind: String
  var user_id: String?
  var resource_id: String?
  var message: String
  init(_ finding: DriftFinding) {
    kind = finding.kind.rawValue
    user_id = finding.userID
    resource_id = finding.resourceID
    message = finding.message
  }
  func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(kind, forKey: .kind)
    try c.encode(user_id, forKey: .user_id)
    try c.encode(resource_id, forKey: .resource_id)
    try c.encode(message, forKey: .message)
  }
  enum CodingKeys: String, CodingKey { case kind, user_id, resource_id, message }
}

struct PlanJSON: Encodable {
  var actions: [ActionJSON]
  var findings: [FindingJSON]
  var waiting: Int
  var lists_trusted: Bool
}

struct EventJSON: Encodable {
  var id: Int64
  var created_at: Int64
  var event_type: String
  var user_id: String?
  var machine_id: String?
  var volume_id: String?
  /// The stored details object; a value that is not JSON (a row another writer made) as a string.
  var details: JSONValue
  init(_ event: FleetStore.StoredEvent) {
    id = event.id
    created_at = event.createdAt
    event_type = event.eventType
    user_id = event.userID
    machine_id = event.machineID
    volume_id = event.volumeID
    details =
      (try? JSONDecoder().decode(JSONValue.self, from: Data(event.detailsJSON.utf8))) ?? .string(event.detailsJSON)
  }
  func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(id, forKey: .id)
    try c.encode(created_at, forKey: .created_at)
    try c.encode(event_type, forKey: .event_type)
    try c.encode(user_id, forKey: .user_id)
    try c.encode(machine_id, forKey: .machine_id)
    try c.encode(volume_id, forKey: .volume_id)
    try c.encode(details, forKey: .details)
  }
  enum CodingKeys: String, CodingKey { case id, created_at, event_type, user_id, machine_id, volume_id, details }
}

struct AlertJSON: Encodable {
  var fingerprint: String
  var kind: String
  var user_id: String?
  var resource: String?
  var status: String
  var starts_at: String
  var message: String
  func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(fingerprint, forKey: .fingerprint)
    try c.encode(kind, forKey: .kind)
    try c.encode(user_id, forKey: .user_id)
    try c.encode(resource, forKey: .resource)
    try c.encode(status, forKey: .status)
    try c.encode(starts_at, forKey: .starts_at)
    try c.encode(message, forKey: .message)
  }
  enum CodingKeys: String, CodingKey { case fingerprint, kind, user_id, resource, status, starts_at, message }
}

struct StatusJSON: Encodable {
  var user_id: String
  var desired: String?
  var observed: String?
  var region: String
  var machine_id: String?
  var volume_id: String?
  func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(user_id, forKey: .user_id)
    try c.encode(desired, forKey: .desired)
    try c.encode(observed, forKey: .observed)
    try c.encode(region, forKey: .region)
    try c.encode(machine_id, forKey: .machine_id)
    try c.encode(volume_id, forKey: .volume_id)
  }
  enum CodingKeys: String, CodingKey { case user_id, desired, observed, region, machine_id, volume_id }
}
