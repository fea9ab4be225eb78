public import FleetCore
import Foundation

/// The fields of a `users add`, `users set` or import line; nil leaves a value as it is (or, on
/// add, takes the default). The override `"default"` clears a per-user override.
public struct UserInput: Sendable, Hashable {
  public var userID: String
  public var email: String?
  public var state: String?
  public var region: String?
  public var image: String?
  public var cpuKind: String?
  public var cpus: Int?
  public var memoryMB: Int?
  public var volumeSizeGB: Int?
  /// Per-user env values; `[:]` clears them.
  public var env: [String: String]?
  /// The line of an import file this came from.
  public var line: Int?

  public init(
    userID: String, email: String? = nil, state: String? = nil, region: String? = nil, image: String? = nil,
    cpuKind: String? = nil, cpus: Int? = nil, memoryMB: Int? = nil, volumeSizeGB: Int? = nil,
    env: [String: String]? = nil, line: Int? = nil
  ) {
    self.env = env
    self.userID = userID
    self.email = email
    self.state = state
    self.region = region
    self.image = image
    self.cpuKind = cpuKind
    self.cpus = cpus
    self.memoryMB = memoryMB
    self.volumeSizeGB = volumeSizeGB
    self.line = line
  }
}

/// A change to the machine template; nil leaves a field as it is.
public struct TemplatePatch: Sendable, Hashable {
  public var image: String?
  public var cpuKind: String?
  public var cpus: Int?
  public var memoryMB: Int?
  public var initCommand: [String]?
  public var servicesJSON: String?
  public var env: [String: String]?
  public var mountPath: String?
  public var volumeSizeGB: Int?
  public var encrypted: Bool?
  public var restartPolicy: String?
  public init() {}
}

/// Refusals of an operator command: every bad field at once, the database unchanged.
public struct InputError: Error, Sendable, CustomStringConvertible {
  public var errors: [FieldError]
  public init(_ errors: [FieldError]) { self.errors = errors }
  public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// fleetkeeper's store: the desired state, the audit log, the dashboard's `machines` rows and the
/// controller's memory, over any ``SQLDatabase``.
public final class FleetStore: Sendable {
  public let database: any SQLDatabase

  public init(database: any SQLDatabase) { self.database = database }

  /// Opens an SQLite file (created only when `create` is true).
  public static func sqlite(path: String, create: Bool = false) throws(StoreError) -> FleetStore {
    FleetStore(database: try SQLiteDatabase(path: path, create: create))
  }

  /// Opens `location`: a `libsql://`, `https://` or `http://` URL is libSQL over HTTP (Turso),
  /// with `authToken`; anything else is an SQLite file path.
  public static func open(
    _ location: String, authToken: String? = nil, create: Bool = false
  ) throws(StoreError) -> FleetStore {
    if HranaDatabase.handles(location) {
      return FleetStore(database: try HranaDatabase(url: location, token: authToken))
    }
    return try sqlite(path: location, create: create)
  }

  /// Whether `location` names a local SQLite file (not a libSQL/Turso URL).
  public static func isLocalFile(_ location: String) -> Bool { !HranaDatabase.handles(location) }

  /// Where the store is, for messages (never with credentials).
  public var displayName: String { database.displayName }

  // MARK: Migrations

  /// Applies the migrations not yet applied; returns their versions.
  @discardableResult
  public func migrate() async throws(StoreError) -> [Int] {
    try await database.executeScript(
      "CREATE TABLE IF NOT EXISTS fleet_schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    let current = try await schemaVersion()
    var applied: [Int] = []
    for migration in Schema.migrations where migration.version > current {
      try await database.executeScript(
        migration.sql
          + "\nINSERT INTO fleet_schema_migrations (version, name, applied_at) VALUES (\(migration.version), \(JSONText.sqlQuote(migration.name)), unixepoch());"
      )
      applied.append(migration.version)
    }
    return applied
  }

  /// The highest migration applied (0 for none).
  public func schemaVersion() async throws(StoreError) -> Int {
    let rows = try await database.read([SQLStatement("SELECT coalesce(max(version), 0) FROM fleet_schema_migrations")])
    return Int(rows[0].scalar?.int ?? 0)
  }

  private func requireSchema() async throws(StoreError) {
    let version: Int
    do { version = try await schemaVersion() } catch  where error.code == .malformed || error.code == .failed {
      throw StoreError(
        code: .malformed, message: "no fleetkeeper schema; run `fleetkeeper migrate`", database: database.displayName)
    }
    guard version >= Schema.migrations.last!.version else {
      throw StoreError(
        code: .malformed,
        message:
          "schema version \(version) is older than \(Schema.migrations.last!.version); run `fleetkeeper migrate`",
        database: database.displayName)
    }
  }

  // MARK: Desired state

  static let templateColumns =
    "image, cpu_kind, cpus, memory_mb, init_cmd, services, env, mount_path, volume_size_gb, encrypted, restart_policy"

  static func template(from row: [SQLValue]) -> MachineTemplate? {
    guard row.count >= 11, let image = row[0].string, let cpuKind = row[1].string, let cpus = row[2].int,
      let memory = row[3].int, let envText = row[6].string, let mountPath = row[7].string, let size = row[8].int,
      let encrypted = row[9].int, let restart = row[10].string,
      let env = try? JSONDecoder().decode([String: String].self, from: Data(envText.utf8))
    else { return nil }
    var initCommand: [String]?
    if let text = row[4].string {
      // Not dropped when it cannot be read: a machine without its command is not the one desired.
      guard let command = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else { return nil }
      initCommand = command
    }
    return MachineTemplate(
      image: image, cpuKind: cpuKind, cpus: Int(cpus), memoryMB: Int(memory), initCommand: initCommand,
      servicesJSON: row[5].string, env: env, mountPath: mountPath, volumeSizeGB: Int(size), encrypted: encrypted != 0,
      restartPolicy: restart)
  }

  /// The whole desired set and the template, as one consistent snapshot. Fails (never returns an
  /// empty set) when the database is missing, locked or malformed.
  public func readDesired() async throws(StoreError) -> DesiredSnapshot {
    try await requireSchema()
    let results = try await database.read([
      SQLStatement("SELECT \(Self.templateColumns) FROM machine_template WHERE id = 1"),
      SQLStatement(Self.desiredSelect),
      SQLStatement("SELECT paused FROM fleet_pause WHERE id = 1"),
      SQLStatement("SELECT \(Self.rolloutColumns) FROM rollout_control WHERE id = 1"),
      SQLStatement("SELECT max(revision) FROM template_revisions"),
      SQLStatement("SELECT topology, app_prefix, org FROM fleet_topology WHERE id = 1"),
      SQLStatement("SELECT app_name, user_id FROM app_owners ORDER BY app_name"),
      SQLStatement("SELECT \(Self.volumePolicyColumns) FROM volume_policy WHERE id = 1"),
      SQLStatement(
        "SELECT id, user_id, snapshot_id, size_gb, requested_at FROM restores WHERE status = 'requested' ORDER BY id"),
    ])
    guard let templateRow = results[0].rows.first, let template = Self.template(from: templateRow) else {
      throw StoreError(
        code: .malformed,
        message:
          "machine_template has no valid row 1 (init_cmd must be a JSON array of strings, env a JSON object of strings)",
        database: database.displayName)
    }
    do {
      _ = try FleetValidation.image(template.image)
    } catch {
      // Written around the CLI (SQL): the same rule as `template set`, said as it says it.
      throw StoreError(code: .malformed, message: "machine_template.\(error)", database: database.displayName)
    }
    var machines = UserMap<DesiredMachine>(minimumCapacity: results[1].rows.count)
    var invalid: [String: String] = [:]
    for row in results[1].rows {
      guard let userID = row[0].string else { continue }
      guard let machine = Self.desiredMachine(from: row) else {
        invalid[userID] = "state, region or env unreadable"
        continue
      }
      if let env = machine.overrides.env {
        // Written around the CLI (SQL): held to the same rules as `users set --env`, and reported.
        do throws(FieldError) {
          try FleetValidation.envOverrides(env)
        } catch {
          invalid[userID] = "\(error)"
          continue
        }
      }
      if let image = machine.overrides.image {
        // Written around the CLI (SQL): held to the same rule as `users set --image`, and reported.
        do {
          _ = try FleetValidation.image(image)
        } catch {
          invalid[userID] = "\(error)"
          continue
        }
      }
      machines[userID] = machine
    }
    var snapshot = DesiredSnapshot(template: template, machines: machines, invalidRows: invalid)
    // No row (deleted by hand) reads as paused: "cannot read" means "do nothing".
    snapshot.fleetPaused = results[2].rows.first?[0].int != 0
    snapshot.rolloutControl = Self.rolloutControl(from: results[3].rows.first)
    snapshot.templateRevision = results[4].rows.first?[0].int.map(Int.init)
    // Where users live cannot be guessed: no row, or one that does not read, is "cannot read".
    guard let topologyRow = results[5].rows.first, let topology = Self.topology(from: topologyRow) else {
      throw StoreError(
        code: .malformed,
        message:
          "fleet_topology has no valid row 1 (topology shared-app, or app-per-user with app_prefix and org): run `fleetkeeper fleet set`",
        database: database.displayName)
    }
    snapshot.placement = Self.placement(
      topology, mapping: results[6].rows, desired: { machines.contains($0) }, invalid: &snapshot.invalidRows)
    guard let policyRow = results[7].rows.first, let policy = Self.volumePolicy(from: policyRow) else {
      throw StoreError(
        code: .malformed, message: "volume_policy has no valid row 1: run `fleetkeeper template set`",
        database: database.displayName)
    }
    snapshot.volumePolicy = policy
    for row in results[8].rows {
      guard let request = Self.restore(from: row) else { continue }
      if machines.contains(request.userID) { snapshot.restores[request.userID] = request }
    }
    return snapshot
  }

  static let volumePolicyColumns =
    "snapshot_retention_days, auto_backup, disk_full_percent, auto_extend_to_gb, auto_extend_step_gb"

  static func volumePolicy(from row: [SQLValue]) -> VolumePolicy? {
    guard let backup = row[1].int, let percent = row[2].int, let step = row[4].int else { return nil }
    let retention = row[0].int.map(Int.init)
    let extendTo = row[3].int.map(Int.init)
    // Written around the CLI: the table's checks hold, but a value out of range is "cannot read".
    guard retention.map({ (1...60).contains($0) }) ?? true, (50...99).contains(percent), (1...100).contains(step),
      extendTo.map({ (1...500).contains($0) }) ?? true
    else { return nil }
    return VolumePolicy(
      snapshotRetentionDays: retention, autoBackup: backup != 0, diskFullPercent: Int(percent),
      autoExtendToGB: extendTo, autoExtendStepGB: Int(step))
  }

  static func restore(from row: [SQLValue]) -> RestoreRequest? {
    guard let id = row[0].int, let user = row[1].string, let snapshot = row[2].string,
      FleetValidation.snapshotIDProblem(snapshot) == nil
    else { return nil }
    return RestoreRequest(
      id: id, userID: user, snapshotID: snapshot, sizeGB: row[3].int.map(Int.init), requestedAt: row[4].int ?? 0)
  }

  /// The user's volume as the controller last recorded it: its `machines` row, else its state.
  public func recordedVolume(_ userID: String) async throws(StoreError) -> String? {
    try await requireSchema()
    let rows = try await database.read([
      SQLStatement("SELECT volume_id FROM machines WHERE user_id = ?", [.text(userID)]),
      SQLStatement("SELECT state FROM fleet_user_state WHERE user_id = ?", [.text(userID)]),
    ])
    if let volume = rows[0].rows.first?[0].string { return volume }
    guard let text = rows[1].rows.first?[0].string else { return nil }
    return (Self.plainState(text) ?? (try? JSONDecoder().decode(UserState.self, from: Data(text.utf8))))?.volumeID
  }

  /// `fleetkeeper users restore`: asks the loop to restore the user's volume from `snapshotID`.
  /// Refused for a user who is not desired running or stopped, a bad snapshot id, or while another
  /// restore of the user is open. Answers the request's id.
  public func requestRestore(
    userID: String, snapshotID: String, sizeGB: Int?
  ) async throws(InputErrorOrStore) -> Int64 {
    if let problem = FleetValidation.snapshotIDProblem(snapshotID) {
      throw .input(InputError([FieldError(field: "snapshot_id", value: snapshotID, reason: problem)]))
    }
    let existing: DesiredMachine?
    do { existing = try await desiredMachine(userID) } catch { throw .store(error) }
    guard let existing, existing.state != .absent else {
      throw .input(
        InputError([
          FieldError(
            field: "user_id", value: userID,
            reason: existing == nil ? "no such user" : "desired absent: nothing to restore into")
        ]))
    }
    do {
      if let open = try await restores(userID: userID).first(where: { $0.status == "requested" }) {
        throw InputErrorOrStore.input(
          InputError([
            FieldError(
              field: "user_id", value: userID,
              reason: "restore #\(open.id) from snapshot \(open.snapshotID) is still under way")
          ]))
      }
      let rows = try await database.write([
        SQLStatement(
          "INSERT INTO restores (user_id, snapshot_id, size_gb) VALUES (?, ?, ?)",
          [.text(userID), .text(snapshotID), sizeGB.map { .integer(Int64($0)) } ?? .null]),
        SQLStatement("SELECT max(id) FROM restores WHERE user_id = ?", [.text(userID)]),
      ])
      return rows.last?.scalar?.int ?? 0
    } catch let error as InputErrorOrStore {
      throw error
    } catch let error as StoreError {
      throw .store(error)
    } catch {
      throw .store(StoreError(code: .malformed, message: "\(error)", database: database.displayName))
    }
  }

  /// A user's restores, newest first (or every user's, when `userID` is nil).
  public func restores(userID: String? = nil, limit: Int = 20) async throws(StoreError) -> [RestoreRow] {
    try await requireSchema()
    let filter = userID == nil ? "" : "WHERE user_id = ?"
    let rows = try await database.read([
      SQLStatement(
        "SELECT id, user_id, snapshot_id, size_gb, requested_at, status, finished_at, detail FROM restores \(filter) ORDER BY id DESC LIMIT ?",
        (userID.map { [SQLValue.text($0)] } ?? []) + [.integer(Int64(limit))])
    ])[0].rows
    return rows.map {
      RestoreRow(
        id: $0[0].int ?? 0, userID: $0[1].string ?? "", snapshotID: $0[2].string ?? "",
        sizeGB: $0[3].int.map(Int.init), requestedAt: $0[4].int ?? 0, status: $0[5].string ?? "",
        finishedAt: $0[6].int, detail: $0[7].string)
    }
  }

  /// The statement that closes a restore request (in the same write as its last step's events).
  public static func finishRestoreStatement(id: Int64, status: String, detail: String, at: Int64) -> SQLStatement {
    SQLStatement(
      "UPDATE restores SET status = ?, finished_at = ?, detail = ? WHERE id = ? AND status = 'requested'",
      [.text(status), .integer(at), .text(String(detail.prefix(2000))), .integer(id)])
  }

  /// How users' volumes are looked after (`fleetkeeper template show`).
  public func volumePolicy() async throws(StoreError) -> VolumePolicy? {
    try await requireSchema()
    let rows = try await database.read([
      SQLStatement("SELECT \(Self.volumePolicyColumns) FROM volume_policy WHERE id = 1")
    ])
    return rows[0].rows.first.flatMap(Self.volumePolicy(from:))
  }

  /// `fleetkeeper template set --snapshot-retention-days … --auto-extend-to-gb …`: every field
  /// checked first, nothing written when one is refused. `autoExtendToGB` 0 turns auto-extend off.
  public func setVolumePolicy(
    snapshotRetentionDays: Int? = nil, autoBackup: Bool? = nil, diskFullPercent: Int? = nil,
    autoExtendToGB: Int? = nil, autoExtendStepGB: Int? = nil, dryRun: Bool = false
  ) async throws(InputErrorOrStore) {
    var errors: [FieldError] = []
    if let days = snapshotRetentionDays, !(1...60).contains(days) {
      errors.append(FieldError(field: "snapshot_retention_days", value: "\(days)", reason: "must be 1 to 60 days"))
    }
    if let percent = diskFullPercent, !(50...99).contains(percent) {
      errors.append(FieldError(field: "disk_full_percent", value: "\(percent)", reason: "must be 50 to 99"))
    }
    if let size = autoExtendToGB, !(0...500).contains(size) {
      errors.append(
        FieldError(field: "auto_extend_to_gb", value: "\(size)", reason: "must be 1 to 500 GB (0 turns it off)"))
    }
    if let step = autoExtendStepGB, !(1...100).contains(step) {
      errors.append(FieldError(field: "auto_extend_step_gb", value: "\(step)", reason: "must be 1 to 100 GB"))
    }
    guard errors.isEmpty else { throw .input(InputError(errors)) }
    if dryRun { return }
    var sets: [String] = []
    var values: [SQLValue] = []
    if let days = snapshotRetentionDays {
      sets.append("snapshot_retention_days = ?")
      values.append(.integer(Int64(days)))
    }
    if let autoBackup {
      sets.append("auto_backup = ?")
      values.append(.integer(autoBackup ? 1 : 0))
    }
    if let percent = diskFullPercent {
      sets.append("disk_full_percent = ?")
      values.append(.integer(Int64(percent)))
    }
    if let size = autoExtendToGB {
      sets.append("auto_extend_to_gb = ?")
      values.append(size == 0 ? .null : .integer(Int64(size)))
    }
    if let step = autoExtendStepGB {
      sets.append("auto_extend_step_gb = ?")
      values.append(.integer(Int64(step)))
    }
    guard !sets.isEmpty else { return }
    do {
      try await requireSchema()
      _ = try await database.write([
        SQLStatement(
          "UPDATE volume_policy SET \(sets.joined(separator: ", ")), updated_at = unixepoch() WHERE id = 1", values)
      ])
    } catch {
      throw .store(error)
    }
  }

  /// The topology with the apps mapped by hand. A mapping is used only for an app with the fleet's
  /// prefix that the naming rule does not already give another desired user (a row written around
  /// the CLI must not put two users in one app); the rest are reported on the mapped user's row.
  static func placement(
    _ topology: Topology, mapping rows: [[SQLValue]], desired: (String) -> Bool, invalid: inout [String: String]
  ) -> AppPlacement {
    guard case .appPerUser(let prefix, _) = topology else { return AppPlacement(topology: topology) }
    let rule = AppPlacement(topology: topology)
    var mapping: [String: String] = [:]
    for row in rows {
      guard let app = row[0].string, let user = row[1].string else { continue }
      if !app.hasPrefix(prefix + "-") {
        invalid[user] = "app_owners maps app \(app), which does not start with the fleet's prefix \(prefix)-"
      } else if app.hasPrefix(prefix + "-h-"), app != rule.app(forUser: user) {
        invalid[user] = "app_owners maps app \(app), a name the naming rule gives another user's id"
      } else if let other = rule.user(ofApp: app), other != user, desired(other) {
        invalid[user] = "app_owners maps app \(app), which the naming rule gives user \(other)"
      } else {
        mapping[app] = user
      }
    }
    return AppPlacement(topology: topology, mapping: mapping)
  }

  /// `fleetkeeper fleet map`: apps whose names do not follow the rule, by user (replacing any
  /// earlier mapping of the same app or user).
  public func mapApps(_ pairs: [(app: String, user: String)]) async throws(StoreError) {
    try await requireSchema()
    var statements: [SQLStatement] = []
    for pair in pairs {
      statements.append(
        SQLStatement("DELETE FROM app_owners WHERE app_name = ? OR user_id = ?", [.text(pair.app), .text(pair.user)]))
      statements.append(
        SQLStatement("INSERT INTO app_owners (app_name, user_id) VALUES (?, ?)", [.text(pair.app), .text(pair.user)]))
    }
    _ = try await database.write(statements)
  }

  /// The apps mapped by hand, app → user.
  public func appMapping() async throws(StoreError) -> [(app: String, user: String)] {
    try await requireSchema()
    return try await database.read([SQLStatement("SELECT app_name, user_id FROM app_owners ORDER BY app_name")])[0]
      .rows.compactMap { row in row[0].string.flatMap { app in row[1].string.map { (app, $0) } } }
  }

  static func topology(from row: [SQLValue]) -> Topology? {
    switch row[0].string {
    case "shared-app": return .sharedApp
    case "app-per-user":
      guard let prefix = row[1].string, Topology.prefixProblem(prefix) == nil, let org = row[2].string, !org.isEmpty
      else { return nil }
      return .appPerUser(prefix: prefix, org: org)
    default: return nil
    }
  }

  /// How many `machines` rows there are (users with a machine on record).
  public func machineRowCount() async throws(StoreError) -> Int {
    try await requireSchema()
    return Int(try await database.read([SQLStatement("SELECT count(*) FROM machines")])[0].scalar?.int ?? 0)
  }

  /// Where users' machines live (`fleetkeeper fleet show`).
  public func topology() async throws(StoreError) -> Topology? {
    try await requireSchema()
    let rows = try await database.read([
      SQLStatement("SELECT topology, app_prefix, org FROM fleet_topology WHERE id = 1")
    ])
    return rows[0].rows.first.flatMap(Self.topology(from:))
  }

  /// `fleetkeeper fleet set`: where users' machines live.
  public func setTopology(_ topology: Topology) async throws(StoreError) {
    try await requireSchema()
    var values: [SQLValue] = [.text(topology.name), .null, .null]
    if case .appPerUser(let prefix, let org) = topology { values = [.text(topology.name), .text(prefix), .text(org)] }
    _ = try await database.write([
      SQLStatement(
        "UPDATE fleet_topology SET topology = ?, app_prefix = ?, org = ?, updated_at = unixepoch() WHERE id = 1", values
      )
    ])
  }

  /// `fleetkeeper pause|resume`: the whole fleet.
  public func setFleetPaused(_ paused: Bool) async throws(StoreError) {
    _ = try await database.write([
      SQLStatement(
        "UPDATE fleet_pause SET paused = ?, updated_at = unixepoch() WHERE id = 1", [.integer(paused ? 1 : 0)])
    ])
  }

  /// Whether the whole fleet is paused, the row read as `readDesired` reads it (no row: paused).
  public func fleetPausedOrThrow() async throws(StoreError) -> Bool {
    try await database.read([SQLStatement("SELECT paused FROM fleet_pause WHERE id = 1")])[0].rows.first?[0].int != 0
  }

  /// Whether the whole fleet is paused.
  public func fleetPaused() async throws(StoreError) -> Bool {
    try await database.read([SQLStatement("SELECT paused FROM fleet_pause WHERE id = 1")])[0].rows.first?[0].int != 0
  }

  /// `users pause|resume ID`.
  public func setUserPaused(_ userID: String, _ paused: Bool) async throws(InputErrorOrStore) {
    let existing: DesiredMachine?
    do { existing = try await desiredMachine(userID) } catch { throw .store(error) }
    guard existing != nil else {
      throw .input(InputError([FieldError(field: "user_id", value: userID, reason: "no such user")]))
    }
    do {
      _ = try await database.write([
        SQLStatement(
          "UPDATE desired_machines SET paused = ? WHERE user_id = ?", [.integer(paused ? 1 : 0), .text(userID)])
      ])
    } catch { throw .store(error) }
  }

  /// A counter bumped by every edit of the desired state (triggers keep it), cheap to poll. Any
  /// schema change (a renamed or dropped table) changes it too, so a cached snapshot is never
  /// trusted across one.
  public func desiredVersion() async throws(StoreError) -> Int64 {
    let row = try await database.read([
      SQLStatement(
        "SELECT version, (SELECT schema_version FROM pragma_schema_version) FROM fleet_desired_version WHERE id = 1")
    ])[0].rows.first
    guard let row, let version = row[0].int else {
      throw StoreError(
        code: .malformed, message: "fleet_desired_version has no row; run `fleetkeeper migrate`",
        database: database.displayName)
    }
    return version &* 1_000_003 &+ (row[1].int ?? 0)
  }

  /// The region codes desired rows may use.
  public func knownRegions() async throws(StoreError) -> Set<String> {
    Set(try await database.read([SQLStatement("SELECT code FROM fly_regions")])[0].rows.compactMap { $0[0].string })
  }

  /// Allows a region code Fly has that the built-in list lacks.
  public func addRegion(_ code: String) async throws(InputErrorOrStore) {
    guard code.utf8.count == 3, code.utf8.allSatisfy({ $0 >= 0x61 && $0 <= 0x7a }) else {
      throw .input(
        InputError([FieldError(field: "region", value: code, reason: "a Fly region is three lowercase letters")]))
    }
    do {
      _ = try await database.write([SQLStatement("INSERT OR IGNORE INTO fly_regions (code) VALUES (?)", [.text(code)])])
    } catch { throw .store(error) }
  }

  public func template() async throws(StoreError) -> MachineTemplate {
    try await requireSchema()
    let rows = try await database.read([
      SQLStatement("SELECT \(Self.templateColumns) FROM machine_template WHERE id = 1")
    ])
    guard let row = rows[0].rows.first, let template = Self.template(from: row) else {
      throw StoreError(code: .malformed, message: "machine_template has no valid row 1", database: database.displayName)
    }
    return template
  }

  /// Validates and applies a template change.
  public func setTemplate(_ patch: TemplatePatch) async throws(InputErrorOrStore) {
    let current: MachineTemplate
    do { current = try await template() } catch { throw .store(error) }
    var next = current
    var errors: [FieldError] = []
    func check<T>(_ body: () throws(FieldError) -> T) -> T? {
      do { return try body() } catch {
        errors.append(error)
        return nil
      }
    }
    if let image = patch.image, let v = check({ () throws(FieldError) in try FleetValidation.image(image) }) {
      next.image = v
    }
    if let kind = patch.cpuKind, let v = check({ () throws(FieldError) in try FleetValidation.cpuKind(kind) }) {
      next.cpuKind = v
    }
    if let cpus = patch.cpus, let v = check({ () throws(FieldError) in try FleetValidation.cpus(cpus) }) {
      next.cpus = v
    }
    if let memory = patch.memoryMB { next.memoryMB = memory }
    if let size = patch.volumeSizeGB, let v = check({ () throws(FieldError) in try FleetValidation.volumeSize(size) }) {
      if v < current.volumeSizeGB {
        errors.append(
          FieldError(
            field: "volume_size_gb", value: String(v),
            reason: "volumes only grow: the template's is \(current.volumeSizeGB) GB and Fly cannot shrink a volume"))
      }
      next.volumeSizeGB = v
    }
    if let path = patch.mountPath, let v = check({ () throws(FieldError) in try FleetValidation.mountPath(path) }) {
      next.mountPath = v
    }
    if let policy = patch.restartPolicy,
      let v = check({ () throws(FieldError) in try FleetValidation.restartPolicy(policy) })
    {
      next.restartPolicy = v
    }
    if let encrypted = patch.encrypted { next.encrypted = encrypted }
    if let command = patch.initCommand {
      for argument in command {
        do throws(Placeholders.Problem) {
          _ = try Placeholders.parse(argument)
        } catch {
          errors.append(FieldError(field: "init_cmd", value: argument, reason: error.reason))
        }
      }
      next.initCommand = command.isEmpty ? nil : command
    }
    if let env = patch.env {
      for key in env.keys.sorted() { _ = check({ () throws(FieldError) in try FleetValidation.envName(key) }) }
      for (key, value) in env where value.unicodeScalars.contains(where: { $0.value < 0x20 }) {
        errors.append(FieldError(field: "env.\(key)", value: "<hidden>", reason: "control characters are not allowed"))
      }
      // A value starting with `$` names a secret the controller holds: one it can never resolve would
      // fail every create later, so it is refused now.
      for key in env.keys.sorted() where env[key]!.hasPrefix("$") {
        let value = env[key]!
        let name = String(value.dropFirst())
        if (try? FleetValidation.envName(name)) == nil {
          errors.append(
            FieldError(
              field: "env.\(key)", value: value,
              reason: "a value starting with $ names a secret of the controller's environment ($NAME); this names none")
          )
        } else if FleetNames.isControllerVariable(name) {
          errors.append(
            FieldError(
              field: "env.\(key)", value: value,
              reason:
                "names the controller's own setting \(name): FLY_* and FLEET_* are never passed to users' machines"))
        }
      }
      // Placeholders ({{user_id}}, {{secret:NAME}}, …) must name something that exists.
      for key in env.keys.sorted() where !env[key]!.hasPrefix("$") {
        do throws(Placeholders.Problem) {
          _ = try Placeholders.parse(env[key]!)
        } catch {
          errors.append(FieldError(field: "env.\(key)", value: env[key]!, reason: error.reason))
        }
      }
      next.env = env
    }
    if let services = patch.servicesJSON {
      if services.isEmpty {
        next.servicesJSON = nil
      } else if let data = services.data(using: .utf8), (try? JSONSerialization.jsonObject(with: data)) is [Any] {
        next.servicesJSON = services
      } else {
        errors.append(FieldError(field: "services", value: services, reason: "must be a JSON array of Fly services"))
      }
    }
    if patch.memoryMB != nil || patch.cpus != nil || patch.cpuKind != nil {
      _ = check({ () throws(FieldError) in
        try FleetValidation.memory(next.memoryMB, cpus: next.cpus, cpuKind: next.cpuKind)
      })
    }
    guard errors.isEmpty else { throw .input(InputError(errors)) }
    let env = String(decoding: try! JSONEncoder.sorted.encode(next.env), as: UTF8.self)
    let initCmd = next.initCommand.map { String(decoding: try! JSONEncoder.sorted.encode($0), as: UTF8.self) }
    do {
      _ = try await database.write([
        SQLStatement(
          """
          UPDATE machine_template SET image = ?, cpu_kind = ?, cpus = ?, memory_mb = ?, init_cmd = ?, services = ?, env = ?,
            mount_path = ?, volume_size_gb = ?, encrypted = ?, restart_policy = ?, updated_at = unixepoch() WHERE id = 1
          """,
          [
            .text(next.image), .text(next.cpuKind), SQLValue(next.cpus), SQLValue(next.memoryMB), SQLValue(initCmd),
            SQLValue(next.servicesJSON), .text(env), .text(next.mountPath), SQLValue(next.volumeSizeGB),
            .integer(next.encrypted ? 1 : 0), .text(next.restartPolicy),
          ])
      ])
    } catch { throw .store(error) }
  }

  // MARK: Users

  /// Checks every given field of `input`; collects all refusals.
  func validate(
    _ input: UserInput, isNew: Bool, regions: Set<String>, template: MachineTemplate, existing: DesiredMachine?
  ) -> [FieldError] {
    var errors: [FieldError] = []
    func check(_ body: () throws(FieldError) -> Void) {
      do { try body() } catch {
        var error = error
        error.line = input.line
        errors.append(error)
      }
    }
    check { () throws(FieldError) in _ = try FleetValidation.userID(input.userID) }
    if let email = input.email, !email.isEmpty {
      check { () throws(FieldError) in _ = try FleetValidation.email(email) }
    }
    if let state = input.state { check { () throws(FieldError) in _ = try FleetValidation.state(state) } }
    if let region = input.region {
      check { () throws(FieldError) in _ = try FleetValidation.region(region, known: regions) }
    } else if isNew {
      errors.append(FieldError(field: "region", value: "", reason: "is required for a new user", line: input.line))
    }
    if let image = input.image, image != "default" {
      check { () throws(FieldError) in _ = try FleetValidation.image(image) }
    }
    if let kind = input.cpuKind, kind != "default" {
      check { () throws(FieldError) in _ = try FleetValidation.cpuKind(kind) }
    }
    if let cpus = input.cpus { check { () throws(FieldError) in _ = try FleetValidation.cpus(cpus) } }
    if let size = input.volumeSizeGB {
      check { () throws(FieldError) in _ = try FleetValidation.volumeSize(size) }
      let now = existing?.overrides.volumeSizeGB ?? template.volumeSizeGB
      if !isNew, size < now {
        errors.append(
          FieldError(
            field: "volume_size_gb", value: String(size),
            reason: "volumes only grow: this user's is \(now) GB and Fly cannot shrink a volume", line: input.line))
      }
    }
    if let env = input.env { check { () throws(FieldError) in try FleetValidation.envOverrides(env) } }
    if input.memoryMB != nil || input.cpus != nil || input.cpuKind != nil {
      let cpus = input.cpus ?? existing?.overrides.cpus ?? template.cpus
      let kind = (input.cpuKind == "default" ? nil : input.cpuKind) ?? existing?.overrides.cpuKind ?? template.cpuKind
      let memory = input.memoryMB ?? existing?.overrides.memoryMB ?? template.memoryMB
      check { () throws(FieldError) in _ = try FleetValidation.memory(memory, cpus: cpus, cpuKind: kind) }
    }
    return errors
  }

  private static let upsertUserSQL = """
    INSERT INTO users (id, email, created_at, updated_at) VALUES (?, ?, unixepoch(), unixepoch())
    ON CONFLICT (id) DO UPDATE SET email = coalesce(excluded.email, users.email), updated_at = unixepoch()
    """
  private static let insertDesiredSQL = """
    INSERT INTO desired_machines (user_id, state, region, image, cpu_kind, cpus, memory_mb, volume_size_gb, env)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    """

  private func insertArguments(_ input: UserInput) -> [SQLValue] {
    [
      .text(input.userID), .text(input.state ?? "running"), SQLValue(input.region),
      SQLValue(input.image == "default" ? nil : input.image),
      SQLValue(input.cpuKind == "default" ? nil : input.cpuKind),
      SQLValue(input.cpus), SQLValue(input.memoryMB), SQLValue(input.volumeSizeGB), Self.envColumn(input.env),
    ]
  }

  private func context() async throws(InputErrorOrStore) -> (Set<String>, MachineTemplate) {
    do {
      return (try await knownRegions(), try await template())
    } catch { throw .store(error) }
  }

  /// `users add`: a new user with its desired row. Refuses an existing user.
  public func addUser(_ input: UserInput) async throws(InputErrorOrStore) {
    let (regions, template) = try await context()
    var errors = validate(input, isNew: true, regions: regions, template: template, existing: nil)
    if errors.isEmpty, (try? await desiredMachine(input.userID)) != nil {
      errors.append(FieldError(field: "user_id", value: input.userID, reason: "already exists (use `users set`)"))
    }
    guard errors.isEmpty else { throw .input(InputError(errors)) }
    do {
      _ = try await database.write([
        SQLStatement(Self.upsertUserSQL, [.text(input.userID), SQLValue(input.email)]),
        SQLStatement(Self.insertDesiredSQL, insertArguments(input)),
      ])
    } catch { throw Self.refusal(error) }
  }

  /// `users set`: changes the given fields of an existing user.
  public func setUser(_ input: UserInput) async throws(InputErrorOrStore) {
    let (regions, template) = try await context()
    let existing: DesiredMachine?
    do { existing = try await desiredMachine(input.userID) } catch { throw .store(error) }
    guard let existing else {
      throw .input(
        InputError([FieldError(field: "user_id", value: input.userID, reason: "no such user (use `users add`)")]))
    }
    let errors = validate(input, isNew: false, regions: regions, template: template, existing: existing)
    guard errors.isEmpty else { throw .input(InputError(errors)) }
    var sets: [String] = []
    var args: [SQLValue] = []
    func set(_ column: String, _ value: SQLValue?) {
      guard let value else { return }
      sets.append("\(column) = ?")
      args.append(value)
    }
    set("state", input.state.map(SQLValue.text))
    set("region", input.region.map(SQLValue.text))
    set("image", input.image.map { $0 == "default" ? .null : .text($0) })
    set("cpu_kind", input.cpuKind.map { $0 == "default" ? .null : .text($0) })
    set("cpus", input.cpus.map { SQLValue($0) })
    set("memory_mb", input.memoryMB.map { SQLValue($0) })
    set("volume_size_gb", input.volumeSizeGB.map { SQLValue($0) })
    if input.env != nil { set("env", Self.envColumn(input.env)) }
    var statements: [SQLStatement] = []
    if let email = input.email {
      statements.append(
        SQLStatement(
          "UPDATE users SET email = ?, updated_at = unixepoch() WHERE id = ?",
          [SQLValue(email.isEmpty ? nil : email), .text(input.userID)]))
    }
    if !sets.isEmpty {
      statements.append(
        SQLStatement(
          "UPDATE desired_machines SET \(sets.joined(separator: ", ")), updated_at = unixepoch() WHERE user_id = ?",
          args + [.text(input.userID)]))
    }
    guard !statements.isEmpty else { return }
    do { _ = try await database.write(statements) } catch { throw Self.refusal(error) }
  }

  /// `users remove`: the desired state becomes `absent`; the user and its history stay.
  public func removeUser(_ userID: String) async throws(InputErrorOrStore) {
    try await setUser(UserInput(userID: userID, state: "absent"))
  }

  public func desiredMachine(_ userID: String) async throws(StoreError) -> DesiredMachine? {
    let rows = try await database.read([
      SQLStatement(Self.desiredSelect + " WHERE d.user_id = ?", [.text(userID)])
    ])
    return rows[0].rows.first.flatMap(Self.desiredMachine(from:))
  }

  /// The columns of a desired row, in the order ``desiredMachine(from:)`` reads them.
  static let desiredSelect = """
    SELECT d.user_id, u.email, d.state, d.region, d.image, d.cpu_kind, d.cpus, d.memory_mb, d.volume_size_gb, d.updated_at,
      d.env, d.paused
    FROM desired_machines d LEFT JOIN users u ON u.id = d.user_id
    """

  /// A desired row, or nil when its user, state or region cannot be read.
  static func desiredMachine(from row: [SQLValue]) -> DesiredMachine? {
    guard let userID = row[0].string, let state = row[2].string.flatMap(DesiredState.init(rawValue:)),
      let region = row[3].string
    else { return nil }
    var env: [String: String]?
    if let text = row[10].string {
      // The column's constraints keep it an object of strings; anything else is an unreadable row.
      guard let decoded = try? JSONDecoder().decode([String: String].self, from: Data(text.utf8)) else { return nil }
      env = decoded
    }
    return DesiredMachine(
      userID: userID, email: row[1].string, state: state, region: region,
      overrides: TemplateOverrides(
        image: row[4].string, cpuKind: row[5].string, cpus: row[6].int.map(Int.init),
        memoryMB: row[7].int.map(Int.init), volumeSizeGB: row[8].int.map(Int.init), env: env),
      updatedAt: row[9].int ?? 0, paused: row[11].int != 0)
  }

  /// `desired_machines.env`: NULL for none (or `[:]`, which clears), else sorted JSON.
  static func envColumn(_ env: [String: String]?) -> SQLValue {
    guard let env, !env.isEmpty else { return .null }
    return .text(String(decoding: try! JSONEncoder.sorted.encode(env), as: UTF8.self))
  }

  /// Every desired row, by user id.
  public func listUsers() async throws(StoreError) -> [DesiredMachine] {
    try await readDesired().machines.values.sorted { $0.userID < $1.userID }
  }

  /// `users import`: new users, all or nothing, in one transaction. Every refusal names its line.
  public func importUsers(_ inputs: [UserInput]) async throws(InputErrorOrStore) {
    let (regions, template) = try await context()
    var errors: [FieldError] = []
    var seen: [String: Int] = [:]
    let existing: Set<String>
    do {
      existing = Set(
        try await database.read([SQLStatement("SELECT user_id FROM desired_machines")])[0].rows.compactMap {
          $0[0].string
        })
    } catch { throw .store(error) }
    for input in inputs {
      errors += validate(input, isNew: true, regions: regions, template: template, existing: nil)
      if let first = seen[input.userID] {
        errors.append(
          FieldError(field: "user_id", value: input.userID, reason: "duplicate of line \(first)", line: input.line))
      } else {
        seen[input.userID] = input.line ?? 0
      }
      if existing.contains(input.userID) {
        errors.append(FieldError(field: "user_id", value: input.userID, reason: "already exists", line: input.line))
      }
      if errors.count >= 50 { break }
    }
    guard errors.isEmpty else { throw .input(InputError(errors)) }
    do {
      try await database.writeMany(
        [Self.upsertUserSQL, Self.insertDesiredSQL],
        arguments: [inputs.map { [.text($0.userID), SQLValue($0.email)] }, inputs.map(insertArguments)])
    } catch { throw Self.refusal(error) }
  }

  /// A constraint failure from SQL (a rule only the schema knows, or a race) as a field refusal.
  static func refusal(_ error: StoreError) -> InputErrorOrStore {
    guard error.code == .constraint else { return .store(error) }
    let message = error.message
    var field = "row"
    if let range = message.range(of: "CHECK constraint failed: ") {
      field = String(message[range.upperBound...].prefix { $0 != " " && $0 != "\n" })
    } else if let colon = message.firstIndex(of: ":") {
      field = String(message[..<colon])
    }
    return .input(InputError([FieldError(field: field, value: "", reason: message)]))
  }

  // MARK: Audit log

  /// A row of `machine_events` as read back.
  public struct StoredEvent: Sendable, Hashable {
    public var id: Int64
    public var machineID: String?
    public var userID: String?
    public var volumeID: String?
    public var eventType: String
    public var detailsJSON: String
    public var createdAt: Int64
  }

  /// `events`: newest last; `since` is an event id (exclusive).
  /// Events, oldest first: the newest `limit`, or the first `limit` after an event id (`afterID`,
  /// for following the log) or from a time on (`notBefore`, Unix seconds).
  public func events(
    user: String? = nil, afterID: Int64? = nil, notBefore: Int64? = nil, limit: Int = 100
  ) async throws(StoreError) -> [StoredEvent] {
    var conditions: [String] = []
    var args: [SQLValue] = []
    if let user {
      conditions.append("user_id = ?")
      args.append(.text(user))
    }
    if let afterID {
      conditions.append("id > ?")
      args.append(.integer(afterID))
    }
    if let notBefore {
      conditions.append("created_at >= ?")
      args.append(.integer(notBefore))
    }
    let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
    let forward = afterID != nil || notBefore != nil
    let order = forward ? "ASC" : "DESC"
    let rows = try await database.read([
      SQLStatement(
        "SELECT id, machine_id, user_id, volume_id, event_type, details, created_at FROM machine_events \(filter) ORDER BY id \(order) LIMIT ?",
        args + [.integer(Int64(max(1, limit)))])
    ])[0].rows
    let events = rows.map {
      StoredEvent(
        id: $0[0].int ?? 0, machineID: $0[1].string, userID: $0[2].string, volumeID: $0[3].string,
        eventType: $0[4].string ?? "", detailsJSON: $0[5].string ?? "{}", createdAt: $0[6].int ?? 0)
    }
    return forward ? events : events.reversed()
  }

  // MARK: machines rows

  /// The dashboard's `machines` rows, by user id.
  public func machineRows() async throws(StoreError) -> UserMap<MachineRow> {
    try await machineRows { $0 }
  }

  /// Every `machines` row, as `transform` keeps it, read a chunk at a time (at 100k users neither
  /// the rows nor the full values are all held at once).
  public func machineRows<T: Sendable>(_ transform: (MachineRow) -> T) async throws(StoreError) -> UserMap<T> {
    let count = try await database.read([SQLStatement("SELECT count(*) FROM machines")])[0].scalar?.int ?? 0
    var result = UserMap<T>(minimumCapacity: Int(count))
    try await readInChunks(
      "SELECT user_id, id, region, volume_id, status, ip_address, created_at, updated_at, app_name, hostname FROM machines",
      key: "user_id"
    ) { row in
      guard let user = row[0].string, let id = row[1].string else { return }
      result[user] = transform(
        MachineRow(
          id: id, userID: user, region: row[2].string ?? "", volumeID: row[3].string, status: row[4].string,
          ipAddress: row[5].string, createdAt: row[6].int, updatedAt: row[7].int, appName: row[8].string,
          hostname: row[9].string))
    }
    return result
  }

  /// One user's `machines` row (the dashboard API).
  public func machineRow(_ userID: String) async throws(StoreError) -> MachineRow? {
    let rows = try await database.read([
      SQLStatement(
        "SELECT user_id, id, region, volume_id, status, ip_address, created_at, updated_at, app_name, hostname FROM machines WHERE user_id = ?",
        [.text(userID)])
    ])[0].rows
    guard let row = rows.first, let user = row[0].string, let id = row[1].string else { return nil }
    return MachineRow(
      id: id, userID: user, region: row[2].string ?? "", volumeID: row[3].string, status: row[4].string,
      ipAddress: row[5].string, createdAt: row[6].int, updatedAt: row[7].int, appName: row[8].string,
      hostname: row[9].string)
  }

  /// Statements that make a user's `machines` row follow reality (one row per user).
  public static func upsertMachineRow(_ row: MachineRow) -> SQLStatement {
    SQLStatement(
      """
      INSERT INTO machines (id, user_id, region, volume_id, status, ip_address, created_at, updated_at, app_name, hostname)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (user_id) DO UPDATE SET id = excluded.id, region = excluded.region, volume_id = excluded.volume_id,
        status = excluded.status, ip_address = coalesce(excluded.ip_address, machines.ip_address),
        updated_at = excluded.updated_at, app_name = excluded.app_name, hostname = excluded.hostname
      """,
      [
        .text(row.id), .text(row.userID), .text(row.region), SQLValue(row.volumeID), SQLValue(row.status),
        SQLValue(row.ipAddress), SQLValue(row.createdAt), SQLValue(row.updatedAt), SQLValue(row.appName),
        SQLValue(row.hostname),
      ])
  }

  public static func updateMachineStatus(userID: String, status: String, updatedAt: Int64) -> SQLStatement {
    SQLStatement(
      "UPDATE machines SET status = ?, updated_at = ? WHERE user_id = ?",
      [.text(status), .integer(updatedAt), .text(userID)])
  }

  public static func deleteMachineRow(userID: String) -> SQLStatement {
    SQLStatement("DELETE FROM machines WHERE user_id = ?", [.text(userID)])
  }
}

/// A command's failure: refused input (nothing changed) or a store failure.
public enum InputErrorOrStore: Error, Sendable, CustomStringConvertible {
  case input(InputError)
  case store(StoreError)
  public var description: String {
    switch self {
    case .input(let error): error.description
    case .store(let error): error.description
    }
  }
}

extension JSONText {
  /// `value` as a SQL string literal.
  static func sqlQuote(_ value: String) -> String { "'" + value.replacingOccurrences(of: "'", with: "''") + "'" }
}

extension JSONEncoder {
  static var sorted: JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
  }
}

/// One `restores` row.
public struct RestoreRow: Sendable, Hashable {
  public var id: Int64
  public var userID: String
  public var snapshotID: String
  public var sizeGB: Int?
  public var requestedAt: Int64
  /// `requested`, `done`, `failed` or `cancelled`.
  public var status: String
  public var finishedAt: Int64?
  public var detail: String?
}
