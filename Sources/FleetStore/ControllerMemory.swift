public import FleetCore
import Foundation

extension FleetStore {
  /// Every user's remembered state.
  public func loadUserMemory() async throws(StoreError) -> [String: UserMemory] {
    let rows = try await database.read([SQLStatement("SELECT user_id, memory FROM fleet_user_state")])[0].rows
    var result: [String: UserMemory] = [:]
    let decoder = JSONDecoder()
    for row in rows {
      guard let user = row[0].string, let text = row[1].string,
        let memory = try? decoder.decode(UserMemory.self, from: Data(text.utf8))
      else { continue }
      result[user] = memory
    }
    return result
  }

  /// The statement that saves (or, when empty, forgets) one user's memory.
  public static func saveUserMemory(_ user: String, _ memory: UserMemory) -> SQLStatement {
    if memory.isEmpty { return SQLStatement("DELETE FROM fleet_user_state WHERE user_id = ?", [.text(user)]) }
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    let text = String(decoding: (try? encoder.encode(memory)) ?? Data("{}".utf8), as: UTF8.self)
    return SQLStatement(
      """
      INSERT INTO fleet_user_state (user_id, memory, updated_at) VALUES (?, ?, unixepoch())
      ON CONFLICT (user_id) DO UPDATE SET memory = excluded.memory, updated_at = excluded.updated_at
      """, [.text(user), .text(text)])
  }

  public func controllerValue(_ key: String) async throws(StoreError) -> String? {
    try await database.read([SQLStatement("SELECT value FROM fleet_controller WHERE key = ?", [.text(key)])])[0].scalar?
      .string
  }

  public static func setControllerValue(_ key: String, _ value: String) -> SQLStatement {
    SQLStatement(
      """
      INSERT INTO fleet_controller (key, value, updated_at) VALUES (?, ?, unixepoch())
      ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
      """, [.text(key), .text(value)])
  }

  public func loadGuardMemory() async throws(StoreError) -> GuardMemory {
    guard let text = try await controllerValue("guard"),
      let memory = try? JSONDecoder().decode(GuardMemory.self, from: Data(text.utf8))
    else { return GuardMemory() }
    return memory
  }

  public static func saveGuardMemory(_ memory: GuardMemory) -> SQLStatement {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return setControllerValue(
      "guard", String(decoding: (try? encoder.encode(memory)) ?? Data("{}".utf8), as: UTF8.self))
  }

  /// Appends events and applies other statements in one transaction.
  public func commit(events: [AuditEvent], statements: [SQLStatement]) async throws(StoreError) {
    let inserts = events.map {
      SQLStatement(
        "INSERT INTO machine_events (machine_id, event_type, details, created_at, user_id, volume_id) VALUES (?, ?, ?, ?, ?, ?)",
        [
          SQLValue($0.machineID), .text($0.eventType), .text($0.detailsJSON), .integer($0.createdAt),
          SQLValue($0.userID), SQLValue($0.volumeID),
        ])
    }
    let all = statements + inserts
    guard !all.isEmpty else { return }
    _ = try await database.write(all)
  }
}
