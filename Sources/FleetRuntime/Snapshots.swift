public import FleetCore
public import FlyMachines

/// Snapshots of users' volumes: taken on demand (`users snapshot`) and before any step that
/// destroys data (a volume's delete, an extend, a restore). Fly's answer to a snapshot's create
/// names no snapshot, so the list before and after tell which one is new.
public enum Snapshots {
  /// A snapshot is "fresh" for a destructive step when taken this recently and complete: one taken
  /// by an earlier attempt (whose step then failed) is used instead of taking another.
  public static let freshFor: Double = 600

  /// Fly's status of a complete snapshot (the only one seen; anything else is still being taken or
  /// failed, and is not trusted with data).
  public static func isComplete(_ snapshot: FlySnapshot) -> Bool {
    snapshot.status == nil || snapshot.status == "created" || snapshot.status == "complete"
  }

  /// Takes one now and answers it.
  public static func take(_ client: any FlyMachinesAPI, volumeID: String) async throws(FlyAPIError) -> FlySnapshot {
    let before = Set(try await client.listSnapshots(volumeID: volumeID).map(\.id))
    try await client.createSnapshot(volumeID: volumeID)
    let after = try await client.listSnapshots(volumeID: volumeID)
    let made = after.filter { !before.contains($0.id) }
    guard let newest = made.max(by: { (created($0) ?? 0, $0.id) < (created($1) ?? 0, $1.id) }) else {
      throw FlyAPIError(
        code: .invalidResponse, message: "a snapshot of volume \(volumeID) was taken, but Fly's list shows no new one",
        operation: "GET /volumes/\(volumeID)/snapshots")
    }
    return newest
  }

  /// What a destructive step stands on: a complete snapshot of `volumeID` taken within
  /// ``freshFor`` seconds of `now` (Fly's clock when it said), or a new one. Throws (the step then
  /// waits) when none can be had, or the new one is not complete yet.
  public static func fresh(
    _ client: any FlyMachinesAPI, volumeID: String, now: Double
  ) async throws(FlyAPIError) -> (snapshot: FlySnapshot, reused: Bool) {
    let now = client.serverNow() ?? now
    let listed = try await client.listSnapshots(volumeID: volumeID)
    let recent = listed.filter { (created($0) ?? -.infinity) >= now - freshFor }
    if let done = recent.filter(isComplete).max(by: { (created($0) ?? 0) < (created($1) ?? 0) }) {
      return (done, true)
    }
    if let taking = recent.first {
      throw notComplete(taking, volumeID: volumeID)
    }
    let made = try await take(client, volumeID: volumeID)
    guard isComplete(made) else { throw notComplete(made, volumeID: volumeID) }
    return (made, false)
  }

  static func notComplete(_ snapshot: FlySnapshot, volumeID: String) -> FlyAPIError {
    FlyAPIError(
      code: .precondition,
      message: "snapshot \(snapshot.id) of volume \(volumeID) is \(snapshot.status ?? "not complete"): waiting for it",
      operation: "GET /volumes/\(volumeID)/snapshots")
  }

  /// Newest first (by `created_at`; one without comes last).
  public static func newestFirst(_ snapshots: [FlySnapshot]) -> [FlySnapshot] {
    snapshots.sorted { (created($0) ?? -.infinity, $0.id) > (created($1) ?? -.infinity, $1.id) }
  }

  /// The snapshot's `created_at`, as Unix seconds.
  public static func created(_ snapshot: FlySnapshot) -> Double? {
    snapshot.createdAt.flatMap(parseRFC3339)
  }
}
