public import FleetCore
import Foundation

extension FleetStore {
  /// Every user's remembered state, read a chunk at a time (at 100k users the rows are not all
  /// held at once). Only the controller writes this table, so chunks cannot disagree.
  public func loadUserStates() async throws(StoreError) -> UserMap<UserState> {
    var result = UserMap<UserState>()
    let count = try await database.read([SQLStatement("SELECT count(*) FROM fleet_user_state")])[0].scalar?.int ?? 0
    result.reserveCapacity(Int(count))
    let decoder = JSONDecoder()
    try await readInChunks("SELECT user_id, state FROM fleet_user_state", key: "user_id") { row in
      guard let user = row[0].string, let text = row[1].string else { return }
      if let state = Self.plainState(text) ?? (try? decoder.decode(UserState.self, from: Data(text.utf8))) {
        result[user] = state
      }
    }
    return result
  }

  /// Runs `select` (which must have no WHERE or ORDER BY) in chunks of `chunk` rows ordered by
  /// `key`, a unique text column, calling `each` for every row.
  func readInChunks(
    _ select: String, key: String, chunk: Int = 10_000, _ each: ([SQLValue]) -> Void
  ) async throws(StoreError) {
    var after = ""
    while true {
      let rows = try await database.read([
        SQLStatement("\(select) WHERE \(key) > ? ORDER BY \(key) LIMIT ?", [.text(after), .integer(Int64(chunk))])
      ])[0].rows
      for row in rows { each(row) }
      guard rows.count == chunk, let last = rows.last?[0].string else { return }
      after = last
    }
  }

  /// The common state, `{"volume_id":"<id>"}` or, once its config is recorded,
  /// `{"applied":{"o":"<hex>","t":"<hex>","v":"<hex>"},"volume_id":"<id>"}`, without a JSON
  /// decoder (a restart at 100k users reads 100k of them).
  static func plainState(_ text: String) -> UserState? {
    var rest = Substring(text)
    var state = UserState()
    guard rest.hasPrefix("{") else { return nil }
    rest = rest.dropFirst()
    let appliedPrefix = #""applied":{"o":""#
    if rest.hasPrefix(appliedPrefix) {
      rest = rest.dropFirst(appliedPrefix.count)
      func hex(_ terminator: String) -> UInt64? {
        guard let end = rest.range(of: terminator) else { return nil }
        let digits = rest[..<end.lowerBound]
        guard !digits.isEmpty, digits.count <= 16, let value = UInt64(digits, radix: 16) else { return nil }
        rest = rest[end.upperBound...]
        return value
      }
      guard let overrides = hex(#"","t":""#), let template = hex(#"","v":""#), let version = hex(#""},"#) else {
        return nil
      }
      state.applied = AppliedConfig(template: template, overrides: overrides, version: version)
    }
    let prefix = #""volume_id":""#
    let suffix = #""}"#
    guard rest.hasPrefix(prefix), rest.hasSuffix(suffix), rest.utf8.count > prefix.utf8.count + suffix.utf8.count
    else { return nil }
    let id = rest.utf8.dropFirst(prefix.utf8.count).dropLast(suffix.utf8.count)
    guard !id.contains(UInt8(ascii: "\"")), !id.contains(UInt8(ascii: "\\")) else { return nil }
    state.volumeID = String(decoding: id, as: UTF8.self)
    return state
  }

  /// The statement that saves (or, when empty, forgets) one user's state.
  public static func saveUserState(_ user: String, _ state: UserState) -> SQLStatement {
    if state.isEmpty { return SQLStatement("DELETE FROM fleet_user_state WHERE user_id = ?", [.text(user)]) }
    var plain = UserState()
    plain.volumeID = state.volumeID
    plain.applied = state.applied
    let text: String
    if state == plain, let id = state.volumeID,
      !id.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5c || $0 == 0x2f })
    {
      let applied = state.applied
      let head =
        applied.isUnknown
        ? "{"
        : #"{"applied":{"o":""# + String(applied.overrides, radix: 16) + #"","t":""#
          + String(applied.template, radix: 16) + #"","v":""# + String(applied.version, radix: 16) + #""},"#
      text = head + #""volume_id":""# + id + #""}"#
    } else {
      let encoder = JSONEncoder()
      encoder.outputFormatting = .sortedKeys
      text = String(decoding: (try? encoder.encode(state)) ?? Data("{}".utf8), as: UTF8.self)
    }
    return SQLStatement(
      """
      INSERT INTO fleet_user_state (user_id, state, updated_at) VALUES (?, ?, unixepoch())
      ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
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

  public func loadGuardState() async throws(StoreError) -> GuardState {
    guard let text = try await controllerValue("guard"),
      let state = try? JSONDecoder().decode(GuardState.self, from: Data(text.utf8))
    else { return GuardState() }
    return state
  }

  public static func saveGuardState(_ state: GuardState) -> SQLStatement {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return setControllerValue(
      "guard", String(decoding: (try? encoder.encode(state)) ?? Data("{}".utf8), as: UTF8.self))
  }

  /// The findings whose `drift.*` event was recorded and whose `drift_resolved.*` was not; nil when
  /// none were stored (or the value cannot be read: the next pass records them again).
  public func loadOpenFindings() async throws(StoreError) -> [DriftFinding]? {
    guard let text = try await controllerValue("open_findings") else { return nil }
    return try? JSONDecoder().decode([DriftFinding].self, from: Data(text.utf8))
  }

  public static func saveOpenFindings(_ findings: [DriftFinding]) -> SQLStatement {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return setControllerValue(
      "open_findings", String(decoding: (try? encoder.encode(findings)) ?? Data("[]".utf8), as: UTF8.self))
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
