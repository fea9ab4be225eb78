import FleetCore
import FleetStore
import FlyMachines
import Foundation

/// Every `--json` output: one JSON object per line, written by one encoder (keys sorted, slashes
/// not escaped). Field names are the snake_case of the tables they come from; an absent value is an
/// explicit null, so a reader sees every field of every line.
enum JSONOutput {
  static func line(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(value) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
  }

  static func print(_ value: some Encodable) { Swift.print(line(value)) }
}

/// A line of `--json` output: its fields, encoded as one object.
protocol JSONLine: Encodable {
  var fields: [String: JSONValue] { get }
}

extension JSONLine {
  func encode(to encoder: any Encoder) throws { try JSONValue.object(fields).encode(to: encoder) }
}

extension JSONValue {
  /// A string, or null.
  static func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
}

struct ActionJSON: JSONLine {
  let fields: [String: JSONValue]
  init(_ action: Action) {
    fields = [
      "action": .string(action.kind.rawValue), "user_id": .string(action.userID), "machine_id": .text(action.machineID),
      "volume_id": .text(action.volumeID), "region": .text(action.region), "reason": .string(action.reason),
    ]
  }
}

struct FindingJSON: JSONLine {
  let fields: [String: JSONValue]
  init(_ finding: DriftFinding) {
    fields = [
      "kind": .string(finding.kind.rawValue), "user_id": .text(finding.userID),
      "resource_id": .text(finding.resourceID), "message": .string(finding.message),
    ]
  }
}

struct PlanJSON: JSONLine {
  let fields: [String: JSONValue]
  init(
    actions: [ActionJSON], findings: [FindingJSON], waiting: Int, lists_trusted: Bool, held: [ActionJSON] = [],
    paused_users: Int = 0, rollout: RolloutState? = nil
  ) {
    fields = [
      "actions": .array(actions.map { .object($0.fields) }), "findings": .array(findings.map { .object($0.fields) }),
      "waiting": .int(Int64(waiting)), "lists_trusted": .bool(lists_trusted),
      "held": .array(held.map { .object($0.fields) }), "paused_users": .int(Int64(paused_users)),
      "rollout": rollout.map { rollout in
        .object([
          "status": .string(rollout.status.rawValue), "revision": rollout.revision.map { .int(Int64($0)) } ?? .null,
          "wave": .int(Int64(rollout.wave)), "total": .int(Int64(rollout.total)),
          "through": .int(Int64(rollout.through)), "failed": .int(Int64(rollout.failed.count)),
          "remaining": .int(Int64(rollout.remaining)),
        ])
      } ?? .null,
    ]
  }
}

struct EventJSON: JSONLine {
  let fields: [String: JSONValue]
  init(_ event: FleetStore.StoredEvent) {
    fields = [
      "id": .int(event.id), "created_at": .int(event.createdAt), "event_type": .string(event.eventType),
      "user_id": .text(event.userID), "machine_id": .text(event.machineID), "volume_id": .text(event.volumeID),
      // The stored details object; a value that is not JSON (a row another writer made) as a string.
      "details": (try? JSONDecoder().decode(JSONValue.self, from: Data(event.detailsJSON.utf8)))
        ?? .string(event.detailsJSON),
    ]
  }
}

struct AlertJSON: JSONLine {
  let fields: [String: JSONValue]
  init(
    fingerprint: String, kind: String, user_id: String?, resource: String?, status: String, starts_at: String,
    message: String
  ) {
    fields = [
      "fingerprint": .string(fingerprint), "kind": .string(kind), "user_id": .text(user_id),
      "resource": .text(resource),
      "status": .string(status), "starts_at": .string(starts_at), "message": .string(message),
    ]
  }
}
