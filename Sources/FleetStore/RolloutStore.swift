public import FleetCore
import Foundation

/// An operator's rollout command.
public enum RolloutCommand: String, Sendable, CaseIterable {
  case pause, resume, abort
}

/// `rollout set`: the knobs to change (nil: unchanged).
public struct RolloutSettingsPatch: Sendable, Hashable {
  public var canaryMachines: Int?
  public var canaryPercent: Double?
  public var maxUnavailablePercent: Double?
  public var waveFailures: Int?
  public var failurePercent: Double?
  public var maxAttempts: Int?
  /// `;`-separated windows; "" clears them (any time).
  public var windows: String?
  public init() {}
}

/// One revision of the template.
public struct TemplateRevision: Sendable, Hashable {
  public var revision: Int
  public var template: MachineTemplate
  public var createdAt: Int64
}

/// Rollouts in the store: the operator's side (`rollout_control`, the template's revisions) and
/// the controller's (its progress, in `fleet_controller` under `rollout`).
extension FleetStore {
  static let rolloutColumns = """
    paused, abort_requests, resume_requests, canary_machines, canary_percent, max_unavailable_percent,
    wave_failures, failure_percent, max_attempts, windows
    """

  /// The operator's rollout settings. No row (deleted by hand) reads as paused.
  static func rolloutControl(from row: [SQLValue]?) -> RolloutControl {
    var control = RolloutControl()
    guard let row, row.count >= 10 else {
      control.paused = true
      control.problem = "rollout_control has no row 1 (run `fleetkeeper migrate`)"
      return control
    }
    control.paused = row[0].int != 0
    control.abortRequests = Int(row[1].int ?? 0)
    control.resumeRequests = Int(row[2].int ?? 0)
    control.canaryMachines = Int(row[3].int ?? 1)
    control.canaryPercent = row[4].double ?? 1
    control.maxUnavailablePercent = row[5].double ?? 10
    control.waveFailures = Int(row[6].int ?? 2)
    control.failurePercent = row[7].double ?? 5
    control.maxAttempts = Int(row[8].int ?? 2)
    do {
      control.windows = try MaintenanceWindow.parseList(row[9].string ?? "")
    } catch {
      control.problem = "\(error)"
    }
    return control
  }

  /// The operator's rollout settings (`rollout status`).
  public func rolloutControl() async throws(StoreError) -> RolloutControl {
    let rows = try await database.read([
      SQLStatement("SELECT \(Self.rolloutColumns) FROM rollout_control WHERE id = 1")
    ])
    return Self.rolloutControl(from: rows[0].rows.first)
  }

  /// `rollout pause` / `rollout resume` (a resume also continues a halted rollout) / `rollout abort`.
  public func rolloutCommand(_ command: RolloutCommand) async throws(StoreError) {
    let sql: String
    switch command {
    case .pause: sql = "UPDATE rollout_control SET paused = 1, updated_at = unixepoch() WHERE id = 1"
    case .resume:
      sql =
        "UPDATE rollout_control SET paused = 0, resume_requests = resume_requests + 1, updated_at = unixepoch() WHERE id = 1"
    case .abort:
      sql = "UPDATE rollout_control SET abort_requests = abort_requests + 1, updated_at = unixepoch() WHERE id = 1"
    }
    _ = try await database.write([SQLStatement(sql)])
  }

  /// `rollout set`: the knobs, validated (each refusal names its field and value).
  public func setRolloutSettings(_ patch: RolloutSettingsPatch) async throws(InputErrorOrStore) {
    var errors: [FieldError] = []
    var sets: [(String, SQLValue)] = []
    func percent(_ name: String, _ value: Double?, allowZero: Bool) {
      guard let value else { return }
      guard value.isFinite, value <= 100, allowZero ? value >= 0 : value > 0 else {
        errors.append(
          FieldError(
            field: name, value: "\(value)",
            reason: allowZero ? "a percentage, 0 to 100" : "a percentage above 0, up to 100"))
        return
      }
      sets.append((name, .real(value)))
    }
    func count(_ name: String, _ value: Int?, _ range: ClosedRange<Int>) {
      guard let value else { return }
      guard range.contains(value) else {
        errors.append(FieldError(field: name, value: "\(value)", reason: "\(range.lowerBound) to \(range.upperBound)"))
        return
      }
      sets.append((name, .integer(Int64(value))))
    }
    count("canary_machines", patch.canaryMachines, 1...100_000)
    percent("canary_percent", patch.canaryPercent, allowZero: true)
    percent("max_unavailable_percent", patch.maxUnavailablePercent, allowZero: false)
    count("wave_failures", patch.waveFailures, 1...100_000)
    percent("failure_percent", patch.failurePercent, allowZero: true)
    count("max_attempts", patch.maxAttempts, 1...10)
    if let windows = patch.windows {
      do {
        _ = try MaintenanceWindow.parseList(windows)
        sets.append(("windows", .text(windows)))
      } catch {
        errors.append(FieldError(field: "window", value: windows, reason: error.reason))
      }
    }
    guard errors.isEmpty else { throw .input(InputError(errors)) }
    guard !sets.isEmpty else { return }
    do {
      _ = try await database.write([
        SQLStatement(
          "UPDATE rollout_control SET \(sets.map { "\($0.0) = ?" }.joined(separator: ", ")), updated_at = unixepoch() WHERE id = 1",
          sets.map(\.1))
      ])
    } catch { throw .store(error) }
  }

  /// The template's revisions, newest first.
  public func templateRevisions(limit: Int = 20) async throws(StoreError) -> [TemplateRevision] {
    let rows = try await database.read([
      SQLStatement(
        """
        SELECT revision, created_at, json_extract(template, '$.image'), json_extract(template, '$.cpu_kind'),
          json_extract(template, '$.cpus'), json_extract(template, '$.memory_mb'), json_extract(template, '$.init_cmd'),
          json_extract(template, '$.services'), json_extract(template, '$.env'), json_extract(template, '$.mount_path'),
          json_extract(template, '$.volume_size_gb'), json_extract(template, '$.encrypted'),
          json_extract(template, '$.restart_policy')
        FROM template_revisions ORDER BY revision DESC LIMIT ?
        """, [.integer(Int64(limit))])
    ])[0].rows
    return rows.compactMap { row in
      guard let revision = row[0].int, let template = Self.template(from: Array(row.dropFirst(2))) else { return nil }
      return TemplateRevision(revision: Int(revision), template: template, createdAt: row[1].int ?? 0)
    }
  }

  /// `rollout undo`: the template goes back to the revision before the current one (as a new
  /// revision, rolled out like any change). A volume size never goes back down (volumes only grow).
  public func undoTemplate() async throws(InputErrorOrStore) -> (from: Int, to: Int) {
    let revisions: [TemplateRevision]
    do { revisions = try await templateRevisions(limit: 2) } catch { throw .store(error) }
    guard revisions.count == 2 else {
      throw .input(
        InputError([
          FieldError(
            field: "template", value: "revision \(revisions.first?.revision ?? 0)",
            reason: "there is no earlier revision to go back to")
        ]))
    }
    let (current, previous) = (revisions[0], revisions[1])
    let back = previous.template
    let initCommand = back.initCommand.flatMap { try? JSONEncoder().encode($0) }.map {
      String(decoding: $0, as: UTF8.self)
    }
    let env = String(decoding: (try? JSONEncoder().encode(back.env)) ?? Data("{}".utf8), as: UTF8.self)
    let values: [SQLValue] = [
      .text(back.image), .text(back.cpuKind), .integer(Int64(back.cpus)), .integer(Int64(back.memoryMB)),
      initCommand.map { .text($0) } ?? .null, back.servicesJSON.map { .text($0) } ?? .null, .text(env),
      .text(back.mountPath), .integer(Int64(back.volumeSizeGB)), .integer(back.encrypted ? 1 : 0),
      .text(back.restartPolicy),
    ]
    do {
      _ = try await database.write([
        SQLStatement(
          """
          UPDATE machine_template SET image = ?, cpu_kind = ?, cpus = ?, memory_mb = ?, init_cmd = ?, services = ?,
            env = ?, mount_path = ?, volume_size_gb = max(volume_size_gb, ?), encrypted = ?, restart_policy = ?,
            updated_at = unixepoch()
          WHERE id = 1
          """, values)
      ])
    } catch { throw .store(error) }
    return (current.revision, previous.revision)
  }

  /// Some users' states (what a rollout's failed machines last said), by user.
  public func userStates(_ users: [String]) async throws(StoreError) -> [String: UserState] {
    guard !users.isEmpty else { return [:] }
    let rows = try await database.read([
      SQLStatement(
        "SELECT user_id, state FROM fleet_user_state WHERE user_id IN (\(users.map { _ in "?" }.joined(separator: ",")))",
        users.map { .text($0) })
    ])[0].rows
    var states: [String: UserState] = [:]
    for row in rows {
      guard let user = row[0].string, let text = row[1].string else { continue }
      states[user] = Self.plainState(text) ?? (try? JSONDecoder().decode(UserState.self, from: Data(text.utf8)))
    }
    return states
  }

  /// The rollout as the controller last saved it.
  public func loadRollout() async throws(StoreError) -> RolloutState? {
    guard let text = try await controllerValue("rollout") else { return nil }
    return try? JSONDecoder().decode(RolloutState.self, from: Data(text.utf8))
  }

  public static func saveRollout(_ rollout: RolloutState) -> SQLStatement {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return setControllerValue(
      "rollout", String(decoding: (try? encoder.encode(rollout)) ?? Data("{}".utf8), as: UTF8.self))
  }
}
