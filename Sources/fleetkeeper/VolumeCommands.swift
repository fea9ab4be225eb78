import ArgumentParser
import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import Foundation

/// The user's volume and the API of the app it lives in, for the snapshot commands.
private func userVolume(
  _ userID: String, db: DatabaseOptions, fly: FlyOptions
) async throws -> (store: FleetStore, client: any FlyMachinesAPI, volumeID: String) {
  let store = try await db.open()
  guard let volumeID = try await store.recordedVolume(userID) else {
    throw FieldError(field: "user_id", value: userID, reason: "no volume on record for this user (none made yet?)")
  }
  let redactor = Redactor()
  let client = try fly.client(redactor: redactor)
  let placement = AppPlacement(
    topology: try await store.topology() ?? .sharedApp,
    mapping: Dictionary(try await store.appMapping().map { ($0.app, $0.user) }, uniquingKeysWith: { a, _ in a }))
  let scoped = placement.app(forUser: userID).map { client.forApp($0) } ?? client
  return (store, scoped, volumeID)
}

/// Runs a command that talks to Fly: its errors said (redacted by the client), exit 1.
private func runFlyCommand(_ body: () async throws -> Void) async throws {
  try await runStoreCommand {
    do {
      try await body()
    } catch let error as FlyAPIError {
      complain("error: \(error)")
      throw ExitCode(1)
    }
  }
}

func snapshotLine(_ snapshot: FlySnapshot) -> String {
  let size = snapshot.size.map { String(format: "%.1f MB", Double($0) / 1_048_576) } ?? "? MB"
  return
    "\(snapshot.id)\t\(snapshot.createdAt ?? "-")\t\(snapshot.status ?? "-")\t\(size) of a \(snapshot.volumeSize.map { "\($0) GB" } ?? "?") volume\tkept \(snapshot.retentionDays.map { "\($0) days" } ?? "?")"
}

extension UsersCommand {
  struct TakeSnapshot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "snapshot", abstract: "Take a snapshot of the user's volume now (recorded in machine_events).")
    @OptionGroup var db: DatabaseOptions
    @OptionGroup var fly: FlyOptions
    @Argument(help: "The user id.") var userID: String
    func run() async throws {
      try await runFlyCommand {
        let (store, client, volumeID) = try await userVolume(userID, db: db, fly: fly)
        let snapshot = try await Snapshots.take(client, volumeID: volumeID)
        try await store.commit(
          events: [
            AuditEvent(
              type: .action(.snapshotVolume), userID: userID, volumeID: volumeID,
              details: [
                "outcome": .string("ok"), "snapshot_id": .string(snapshot.id),
                "reason": .string("asked for by an operator (users snapshot)"),
              ], createdAt: Int64(Date().timeIntervalSince1970))
          ], statements: [])
        print("snapshot \(snapshot.id) of volume \(volumeID) taken")
        print(snapshotLine(snapshot))
      }
    }
  }

  struct ListSnapshots: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "snapshots", abstract: "List the snapshots of the user's volume, newest first.")
    @OptionGroup var db: DatabaseOptions
    @OptionGroup var fly: FlyOptions
    @Argument(help: "The user id.") var userID: String
    func run() async throws {
      try await runFlyCommand {
        let (_, client, volumeID) = try await userVolume(userID, db: db, fly: fly)
        let snapshots = Snapshots.newestFirst(try await client.listSnapshots(volumeID: volumeID))
        print("volume \(volumeID): \(snapshots.count) snapshot(s)")
        for snapshot in snapshots { print(snapshotLine(snapshot)) }
      }
    }
  }

  struct Restores: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The user's restores, newest first, and how each ended.")
    @OptionGroup var db: DatabaseOptions
    @Argument(help: "The user id.") var userID: String
    func run() async throws {
      try await runStoreCommand {
        for row in try await db.open().restores(userID: userID) {
          print(
            "#\(row.id)\t\(rfc3339(Double(row.requestedAt)))\t\(row.status)\tsnapshot=\(row.snapshotID)\tsize=\(row.sizeGB.map { "\($0) GB" } ?? "-")\t\(row.detail ?? "")"
          )
        }
      }
    }
  }

  struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract:
        "Restore the user's volume from a snapshot: a new volume from it, a new machine on that, then the old machine destroyed (the old volume kept for the retention). The loop carries it out; `plan` shows it."
    )
    @OptionGroup var db: DatabaseOptions
    @OptionGroup var fly: FlyOptions
    @Argument(help: "The user id.") var userID: String
    @Option(help: "The snapshot's id (see `users snapshots ID`).") var snapshot: String?
    @Flag(help: "The newest complete snapshot of the user's volume.") var latest = false
    @Option(help: "Wait up to this many seconds for the loop to finish it (0: do not wait).") var wait: Int = 0
    func run() async throws {
      guard (snapshot == nil) != (!latest) else {
        throw ValidationError("give one of --snapshot ID or --latest")
      }
      try await runFlyCommand {
        let (store, client, volumeID) = try await userVolume(userID, db: db, fly: fly)
        // The snapshot is read first: its size sets the new volume's (never smaller), and a wrong
        // id is refused here rather than by the loop.
        let listed = try await client.listSnapshots(volumeID: volumeID).filter(Snapshots.isComplete)
        let chosen: FlySnapshot
        if latest {
          guard let newest = Snapshots.newestFirst(listed).first else {
            throw FieldError(field: "snapshot", value: "latest", reason: "volume \(volumeID) has no complete snapshot")
          }
          chosen = newest
        } else {
          guard let found = listed.first(where: { $0.id == snapshot }) else {
            throw FieldError(
              field: "snapshot", value: snapshot ?? "",
              reason: "not a complete snapshot of the user's volume \(volumeID) (see `users snapshots \(userID)`)")
          }
          chosen = found
        }
        let desired = try await store.desiredMachine(userID)
        let template = try await store.template()
        let wanted = desired?.spec(from: template).volumeSizeGB ?? template.volumeSizeGB
        let size = max(wanted, chosen.volumeSize ?? 0)
        let id = try await store.requestRestore(userID: userID, snapshotID: chosen.id, sizeGB: size)
        print(
          "restore #\(id) of \(userID) from snapshot \(chosen.id) (\(chosen.createdAt ?? "?")) asked: a new \(size) GB volume from it, a new machine on that, then the old machine destroyed; volume \(volumeID) kept for the retention"
        )
        guard wait > 0 else {
          print("the loop carries it out (`fleetkeeper plan` shows the steps; `fleetkeeper events --user \(userID)`)")
          return
        }
        let deadline = Date().addingTimeInterval(Double(min(wait, 3600)))
        while Date() < deadline {
          if let row = try await store.restores(userID: userID, limit: 5).first(where: { $0.id == id }),
            row.status != "requested"
          {
            print("restore #\(id): \(row.status)\(row.detail.map { ": \($0)" } ?? "")")
            if row.status != "done" { throw ExitCode(1) }
            return
          }
          try await Task.sleep(for: .milliseconds(500))
        }
        complain("restore #\(id) is still under way after \(wait) s (the loop goes on with it)")
        throw ExitCode(2)
      }
    }
  }
}
