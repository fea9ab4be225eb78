import FleetCore
import Foundation

/// One writer among several fleetkeeper processes on one database: a lease row in
/// `fleet_controller` with a holder and an expiry, taken and renewed by one atomic statement each.
/// Works the same over any ``SQLDatabase`` (embedded SQLite, or libSQL over HTTP).
public struct WriterLease: Sendable {
  public let store: FleetStore
  /// This process's identity (host and pid, unique per start).
  public let holder: String
  /// How long a lease lasts without renewal.
  public let ttl: Double

  public init(store: FleetStore, holder: String, ttl: Double = 15) {
    self.store = store
    self.holder = holder
    self.ttl = ttl
  }

  /// Takes the lease if it is free or expired, or renews it if this process holds it. Returns
  /// whether this process holds it now. An expiry further ahead than twice the lease's life (a
  /// holder's clock far ahead, or a row written by hand) or not a number counts as expired, so
  /// nothing written in the table can block a takeover for longer than that.
  public func acquire(now: Double) async throws(StoreError) -> Bool {
    let value = "{\"holder\":\(JSONText.quote(holder)),\"expires_at\":\(now + ttl)}"
    let rows = try await store.database.write([
      SQLStatement(
        """
        INSERT INTO fleet_controller (key, value, updated_at) VALUES ('writer_lease', ?, unixepoch())
        ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
        WHERE CASE WHEN json_valid(fleet_controller.value) THEN
          json_extract(fleet_controller.value, '$.holder') = ? OR json_extract(fleet_controller.value, '$.expires_at') < ?
          OR json_extract(fleet_controller.value, '$.expires_at') > ?
          OR coalesce(json_type(fleet_controller.value, '$.expires_at'), 'null') NOT IN ('real', 'integer')
        ELSE 1 END
        """, [.text(value), .text(holder), .real(now), .real(now + ttl * 2)]),
      SQLStatement("SELECT json_extract(value, '$.holder') FROM fleet_controller WHERE key = 'writer_lease'"),
    ])
    return rows[1].scalar?.string == holder
  }

  /// Gives the lease up (on shutdown), so a standby takes over at once.
  public func release() async throws(StoreError) {
    _ = try await store.database.write([
      SQLStatement(
        "DELETE FROM fleet_controller WHERE key = 'writer_lease' AND json_extract(value, '$.holder') = ?",
        [.text(holder)])
    ])
  }

  /// Who holds the lease, and until when.
  public func current() async throws(StoreError) -> (holder: String, expiresAt: Double)? {
    let rows = try await store.database.read([
      SQLStatement(
        "SELECT json_extract(value, '$.holder'), json_extract(value, '$.expires_at') FROM fleet_controller WHERE key = 'writer_lease'"
      )
    ])[0].rows
    guard let row = rows.first, let holder = row[0].string else { return nil }
    let expires: Double
    switch row[1] {
    case .real(let v): expires = v
    case .integer(let v): expires = Double(v)
    default: expires = 0
    }
    return (holder, expires)
  }
}
