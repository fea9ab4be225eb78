public import FleetCore
import Foundation

/// A receiver row of `alert_receivers`.
public struct AlertReceiverRow: Sendable, Hashable {
  public var id: Int64?
  public var kind: String
  public var target: String
  public var secretEnv: String?
  public init(id: Int64? = nil, kind: String, target: String, secretEnv: String? = nil) {
    self.id = id
    self.kind = kind
    self.target = target
    self.secretEnv = secretEnv
  }
}

/// One queued delivery.
public struct OutboxItem: Sendable, Hashable {
  public var id: Int64
  /// The HMAC the controller queued the notice with (nil for rows written by anything else).
  public var mac: String?
  /// The receiver's description (`webhook https://…`); its target is looked up again at send time.
  public var receiver: String
  public var payload: String
  public var attempts: Int
  public var status: String
  public var lastError: String?
}

extension FleetStore {
  public func alertReceivers() async throws(StoreError) -> [AlertReceiverRow] {
    try await database.read([
      SQLStatement("SELECT id, kind, target, secret_env FROM alert_receivers WHERE enabled = 1 ORDER BY id")
    ])[0]
    .rows.map {
      AlertReceiverRow(id: $0[0].int, kind: $0[1].string ?? "", target: $0[2].string ?? "", secretEnv: $0[3].string)
    }
  }

  public func addAlertReceiver(_ row: AlertReceiverRow) async throws(StoreError) {
    _ = try await database.write([
      SQLStatement(
        "INSERT INTO alert_receivers (kind, target, secret_env) VALUES (?, ?, ?)",
        [.text(row.kind), .text(row.target), SQLValue(row.secretEnv)])
    ])
  }

  public func loadAlerts() async throws(StoreError) -> [String: AlertState] {
    let rows = try await database.read([SQLStatement("SELECT fingerprint, state FROM fleet_alerts")])[0].rows
    var result: [String: AlertState] = [:]
    for row in rows {
      if let key = row[0].string, let text = row[1].string,
        let state = try? JSONDecoder().decode(AlertState.self, from: Data(text.utf8))
      {
        result[key] = state
      }
    }
    return result
  }

  /// Saves the active alerts and queues one delivery per receiver, in one transaction.
  public func saveAlerts(
    _ active: [String: AlertState], previous: [String: AlertState], deliveries: [(receiver: String, payload: String)],
    now: Double, mac: @Sendable (String, String) -> String? = { _, _ in nil }
  ) async throws(StoreError) {
    var statements: [SQLStatement] = []
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    for (key, state) in active where previous[key] != state {
      let text = String(decoding: (try? encoder.encode(state)) ?? Data("{}".utf8), as: UTF8.self)
      statements.append(
        SQLStatement(
          "INSERT INTO fleet_alerts (fingerprint, state, updated_at) VALUES (?, ?, unixepoch()) ON CONFLICT (fingerprint) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
          [.text(key), .text(text)]))
    }
    for key in previous.keys where active[key] == nil {
      statements.append(SQLStatement("DELETE FROM fleet_alerts WHERE fingerprint = ?", [.text(key)]))
    }
    for delivery in deliveries {
      statements.append(
        SQLStatement(
          "INSERT INTO fleet_alert_outbox (receiver, payload, next_attempt_at, mac) VALUES (?, ?, ?, ?)",
          [
            .text(delivery.receiver), .text(delivery.payload), .real(now),
            SQLValue(mac(delivery.receiver, delivery.payload)),
          ]))
    }
    guard !statements.isEmpty else { return }
    _ = try await database.write(statements)
  }

  /// Deliveries due by `now`.
  public func dueDeliveries(now: Double, limit: Int = 50) async throws(StoreError) -> [OutboxItem] {
    try await database.read([
      SQLStatement(
        "SELECT id, receiver, payload, attempts, status, last_error, mac FROM fleet_alert_outbox WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
        [.real(now), .integer(Int64(limit))])
    ])[0].rows.map {
      OutboxItem(
        id: $0[0].int ?? 0, mac: $0[6].string, receiver: $0[1].string ?? "", payload: $0[2].string ?? "",
        attempts: Int($0[3].int ?? 0), status: $0[4].string ?? "", lastError: $0[5].string)
    }
  }

  /// Records one delivery attempt's outcome.
  public func recordDelivery(id: Int64, delivered: Bool, giveUp: Bool, error: String?, nextAttemptAt: Double)
    async throws(StoreError)
  {
    let status = delivered ? "delivered" : (giveUp ? "failed" : "pending")
    _ = try await database.write([
      SQLStatement(
        "UPDATE fleet_alert_outbox SET attempts = attempts + 1, status = ?, last_error = ?, next_attempt_at = ?, delivered_at = CASE WHEN ? = 'delivered' THEN unixepoch() ELSE delivered_at END WHERE id = ?",
        [.text(status), SQLValue(error), .real(nextAttemptAt), .text(status), .integer(id)])
    ])
  }

  public func outbox(limit: Int = 100) async throws(StoreError) -> [OutboxItem] {
    try await database.read([
      SQLStatement(
        "SELECT id, receiver, payload, attempts, status, last_error FROM fleet_alert_outbox ORDER BY id DESC LIMIT ?",
        [.integer(Int64(limit))])
    ])[0].rows.map {
      OutboxItem(
        id: $0[0].int ?? 0, mac: nil, receiver: $0[1].string ?? "", payload: $0[2].string ?? "",
        attempts: Int($0[3].int ?? 0), status: $0[4].string ?? "", lastError: $0[5].string)
    }
  }
}
