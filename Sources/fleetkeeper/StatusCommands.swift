import ArgumentParser
import FleetAlerts
import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import Foundation
import Logging

/// What `status` and `describe` read: one planning pass (nothing done), the users' states, the
/// active alerts.
struct FleetView {
  var report: PassReport
  var desired: DesiredSnapshot
  var observation: Observation
  var plan: Plan
  var states: UserMap<UserState>
  var alerts: [AlertState]
  var store: FleetStore
  var reconciler: Reconciler
  var retryBudget: Int
  var now: Double

  static func read(db: DatabaseOptions, fly: FlyOptions, loop: LoopOptions) async throws -> FleetView {
    let (reconciler, store, settings) = try await makeReconciler(
      db: db, fly: fly, loop: loop, logger: makeLogger(level: .critical))
    let report = await reconciler.pass(apply: false)
    guard let desired = report.desired, let observation = report.observation, let plan = report.plan else {
      complain("error: \(report.error ?? "could not read the desired state or Fly")")
      throw ExitCode(1)
    }
    let alerts = (try? await Alerter(store: store, app: "", receivers: []).activeAlerts()) ?? []
    return FleetView(
      report: report, desired: desired, observation: observation, plan: plan,
      states: await reconciler.userStates(), alerts: alerts, store: store, reconciler: reconciler,
      retryBudget: settings.planner.retryBudget, now: report.startedAt)
  }

  func statuses() -> [UserStatus] {
    var since: [String: Double] = [:]
    for alert in alerts { since[alert.fingerprint] = alert.startsAt }
    return FleetStatus.users(
      plan: plan, desired: desired, observation: observation, states: states, alertsSince: since,
      retryBudget: retryBudget, now: now)
  }

  /// The user's last action event (not a finding), as `kind outcome at time: error`.
  func lastAction(_ user: String) async -> FleetStore.StoredEvent? {
    let events = (try? await store.events(user: user, limit: 30)) ?? []
    return events.last { !$0.eventType.hasPrefix("drift") && !$0.eventType.hasPrefix("rollout_") }
  }
}

/// "3m ago", "2h ago", "in 40s".
func age(_ seconds: Double, now: Double) -> String {
  let delta = now - seconds
  let magnitude = abs(delta)
  let text =
    magnitude < 120
    ? "\(Int(magnitude))s"
    : magnitude < 7200
      ? "\(Int(magnitude / 60))m"
      : magnitude < 172_800
        ? "\(Int(magnitude / 3600))h" : "\(Int(magnitude / 86_400))d"
  return delta >= 0 ? "\(text) ago" : "in \(text)"
}

/// One detail of an event: its outcome and error, as `describe` and `status` print them.
func eventSummary(_ event: FleetStore.StoredEvent, now: Double) -> String {
  let details =
    (try? JSONSerialization.jsonObject(with: Data(event.detailsJSON.utf8)) as? [String: Any]) ?? [:]
  var text = "\(event.eventType) \(details["outcome"] as? String ?? "") \(age(Double(event.createdAt), now: now))"
  if let error = details["error"] as? String {
    text += ": \(error)"
  } else if let message = details["message"] as? String, !message.isEmpty {
    text += ": \(message)"
  }
  return text
}

struct StatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status",
    abstract:
      "The fleet at a glance: users by condition, then the users not in sync (why, since when, the last action and its error, the next try). Exit 0: all in sync; 2: some pending; 1: some failing."
  )
  @OptionGroup var db: DatabaseOptions
  @OptionGroup var fly: FlyOptions
  @OptionGroup var loop: LoopOptions
  @Flag(help: "Every user, in sync too.") var all = false
  @Flag(help: "JSON lines: a summary, then one line per user shown.") var json = false

  func run() async throws {
    let view = try await FleetView.read(db: db, fly: fly, loop: loop)
    let users = view.statuses().sorted { $0.userID < $1.userID }
    let summary = FleetStatus.summary(users)
    let shown = users.filter { all || $0.condition != .inSync }
    if json {
      var counts: [String: JSONValue] = [:]
      for (condition, count) in summary { counts[condition.rawValue] = .int(Int64(count)) }
      JSONOutput.print(
        JSONValue.object([
          "summary": .object(counts), "fleet_paused": .bool(view.desired.fleetPaused),
          "rollout": view.report.rollout.map { .string(rolloutLine($0)) } ?? .null,
        ]))
      for user in shown {
        let last = user.condition == .inSync ? nil : await view.lastAction(user.userID)
        JSONOutput.print(StatusJSON(user, last: last, now: view.now))
      }
    } else {
      print(FleetStatus.summaryLine(summary))
      if view.desired.fleetPaused {
        print("the fleet is PAUSED: nothing is changed until `fleetkeeper resume`")
      }
      if let rollout = view.report.rollout, rollout.status != .done { print(rolloutLine(rollout)) }
      if shown.isEmpty { print("every user is in sync") }
      for user in shown {
        var line = "\(user.userID)  \(user.condition.rawValue.uppercased())"
        if let since = user.since { line += " since \(rfc3339(since)) (\(age(since, now: view.now)))" }
        line += "  desired \(user.desired?.rawValue ?? "-")"
        line += ", machine \(user.machineID ?? "-") \(user.observed?.rawValue ?? "")"
        if let region = user.region { line += " in \(region)" }
        print(line)
        guard user.condition != .inSync else { continue }
        for finding in user.findings { print("    why: \(finding.kind.rawValue): \(finding.message)") }
        if let last = await view.lastAction(user.userID) {
          print("    last: \(eventSummary(last, now: view.now))")
        }
        for action in user.planned { print("    next: \(describe(action))") }
        if let retry = user.nextRetry {
          print(
            "    retry: \(age(retry, now: view.now)) (\(user.failures) failure(s)\(user.lastError.map { "; \($0)" } ?? ""))"
          )
        }
      }
    }
    let code = FleetStatus.exitCode(summary)
    if code != 0 { throw ExitCode(code) }
  }
}

struct StatusJSON: JSONLine {
  let fields: [String: JSONValue]
  init(_ user: UserStatus, last: FleetStore.StoredEvent?, now: Double) {
    fields = [
      "user_id": .string(user.userID), "condition": .string(user.condition.rawValue),
      "since": user.since.map { JSONValue.string(rfc3339($0)) } ?? .null,
      "desired": .text(user.desired?.rawValue), "observed": .text(user.observed?.rawValue),
      "region": .text(user.region), "machine_id": .text(user.machineID), "volume_id": .text(user.volumeID),
      "paused": .bool(user.condition == .paused),
      "findings": .array(user.findings.map { .string("\($0.kind.rawValue): \($0.message)") }),
      "next": .array(user.planned.map { .string(describe($0)) }),
      "next_retry": user.nextRetry.map { JSONValue.string(rfc3339($0)) } ?? .null,
      "last_error": .text(user.lastError),
      "last_action": last.map { JSONValue.string(eventSummary($0, now: now)) } ?? .null,
    ]
  }
}

struct DescribeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "describe",
    abstract:
      "One user in full: desired against observed, the config difference (no secret shown), backoff, alerts, rollout, restores, and the recent machine_events: why it is so."
  )
  @OptionGroup var db: DatabaseOptions
  @OptionGroup var fly: FlyOptions
  @OptionGroup var loop: LoopOptions
  @Argument(help: "The user id.") var userID: String
  @Option(help: "How many recent events.") var events: Int = 15

  func run() async throws {
    let view = try await FleetView.read(db: db, fly: fly, loop: loop)
    guard let user = view.statuses().first(where: { $0.userID == userID }) else {
      complain("refused: user_id \"\(userID)\": no desired row and no machine on Fly")
      throw ExitCode(1)
    }
    let now = view.now
    let want = view.desired.machines[userID]
    let state = view.states[userID] ?? UserState()
    print("User:        \(userID)")
    print(
      "Condition:   \(user.condition.rawValue.uppercased())\(user.since.map { " since \(rfc3339($0)) (\(age($0, now: now)))" } ?? "")"
    )
    if let want {
      var line = "Desired:     \(want.state.rawValue) in \(want.region)"
      if want.paused { line += ", PAUSED" }
      let overrides = want.overrides
      var parts: [String] = []
      if let image = overrides.image { parts.append("image=\(image)") }
      if let memory = overrides.memoryMB { parts.append("memory_mb=\(memory)") }
      if let cpus = overrides.cpus { parts.append("cpus=\(cpus)") }
      if let size = overrides.volumeSizeGB { parts.append("volume_size_gb=\(size)") }
      if let env = overrides.env { parts.append("env: \(env.keys.sorted().joined(separator: ", "))") }
      if !parts.isEmpty { line += " (overrides: \(parts.joined(separator: "; ")))" }
      print(line)
    } else if let reason = view.desired.invalidRows[userID] {
      print("Desired:     unreadable row: \(reason)")
    } else {
      print("Desired:     no row (treated as absent)")
    }
    if let app = view.desired.placement.app(forUser: userID) {
      print("App:         \(app) (\(FleetNames.hostname(app: app)))")
    }
    let machines = view.observation.machines.filter { $0.userID == userID && !$0.isGone }
    if machines.isEmpty { print("Machine:     none listed") }
    for machine in machines {
      print(
        "Machine:     \(machine.id) \(machine.state.rawValue) in \(machine.region)\(machine.updatedAt.map { ", changed \(age($0, now: now))" } ?? "")\(machine.privateIP.map { ", \($0)" } ?? "")"
      )
    }
    let volumeIDs = Set(machines.compactMap(\.volumeID) + [state.volumeID].compactMap { $0 } + state.retired.map(\.id))
    for volume in view.observation.volumes where volumeIDs.contains(volume.id) && !volume.isGone {
      var line = "Volume:      \(volume.id) \(volume.state.rawValue), \(volume.sizeGB.map { "\($0) GB" } ?? "? GB")"
      if let used = volume.usedPercent { line += ", \(Int(used))% full" }
      if state.retired.contains(where: { $0.id == volume.id }) {
        line += " (replaced by a restore; kept for the retention)"
      }
      print(line)
    }
    if let machine = machines.first {
      let diff = await view.reconciler.configDiff(user: userID, machineID: machine.id, desired: view.desired)
      print("Config:      " + (diff.first ?? ""))
      for line in diff.dropFirst() { print("             \(line)") }
    }
    if state.failures > 0 || state.backoffUntil != nil {
      print(
        "Backoff:     \(state.failures) failure(s)\(state.backoffUntil.map { ", next try \(age($0, now: now))" } ?? "")\(state.lastError.map { "; last: \($0)" } ?? "")"
      )
    }
    if let update = state.update {
      print(
        "Update:      under way since \(age(update.since, now: now)) (\(update.launched ? "rebooting" : "stays stopped"))"
      )
    }
    if let rollout = view.report.rollout, rollout.status != .done {
      print("Rollout:     \(rolloutLine(rollout))")
    }
    if let restore = state.restore {
      print(
        "Restore:     #\(restore.requestID) from \(restore.snapshotID), begun \(age(restore.since, now: now))\(restore.newVolumeID.map { ", new volume \($0)" } ?? "")"
      )
    }
    for row in (try? await view.store.restores(userID: userID, limit: 3)) ?? [] {
      print(
        "Restores:    #\(row.id) \(row.status) \(rfc3339(Double(row.requestedAt)))\(row.detail.map { ": \($0)" } ?? "")"
      )
    }
    for finding in user.findings { print("Finding:     \(finding.kind.rawValue): \(finding.message)") }
    for alert in view.alerts where alert.userID == userID {
      print(
        "Alert:       \(alert.isFiring ? "FIRING" : "pending") \(alert.kind) since \(rfc3339(alert.startsAt)): \(alert.message)"
      )
    }
    for action in user.planned { print("Next:        \(describe(action))") }
    print("Events (newest last):")
    for event in (try? await view.store.events(user: userID, limit: max(1, events))) ?? [] {
      print("  \(rfc3339(Double(event.createdAt)))  \(eventSummary(event, now: now))")
    }
  }
}
