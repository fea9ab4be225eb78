public import FleetCore
import Foundation
import Prometheus
import Synchronization

/// fleetkeeper's metrics, in a swift-prometheus registry (text format 0.0.4). Names follow
/// Prometheus conventions (`fleetkeeper_…_total`, `…_seconds`); each name has one set of label
/// names and one help text, fixed here (the registry refuses a name used two ways).
public final class FleetMetrics: Sendable {
  private let registry = PrometheusCollectorRegistry()
  /// The label sets of the gauges ``replaceGauge(_:_:)`` manages, to unregister the ones that went.
  private let replaced = Mutex<[String: [[String: String]: Gauge]]>([:])
  public static let help: [String: String] = [
    "fleetkeeper_passes_total": "Reconcile passes by result.",
    "fleetkeeper_pass_duration_seconds": "Duration of a reconcile pass.",
    "fleetkeeper_actions_total": "Actions attempted, by kind and outcome.",
    "fleetkeeper_api_requests_total": "Fly Machines API requests, by endpoint and status.",
    "fleetkeeper_api_request_duration_seconds": "Fly Machines API request latency, by endpoint.",
    "fleetkeeper_api_rate_limited_total": "Fly API answers with status 429.",
    "fleetkeeper_action_retries_total": "Retries of actions within a pass.",
    "fleetkeeper_drift_findings": "Drift findings of the last pass, by kind.",
    "fleetkeeper_desired_users": "Users in the desired-state table, by desired state.",
    "fleetkeeper_observed_machines": "Machines in Fly's last list (ours and foreign).",
    "fleetkeeper_observed_volumes": "Volumes in Fly's last list.",
    "fleetkeeper_oldest_drift_age_seconds": "Age of the oldest unresolved drift finding.",
    "fleetkeeper_alert_deliveries_total": "Alert deliveries, by outcome.",
    "fleetkeeper_last_successful_pass_timestamp_seconds": "Unix time of the last pass that ran.",
    "fleetkeeper_writer_lease_held": "1 while this process holds the writer lease.",
    "fleetkeeper_build_info": "Always 1; the labels say which build is running.",
    "fleetkeeper_resync_corrections_total":
      "Items a full read of Fly's org-wide lists found different from the incremental view (believed).",
    "fleetkeeper_unreadable_regions": "1 per region Fly's org-wide lists could not read in the last pass.",
    "fleetkeeper_paused_users": "Users paused (one by one, or all by a fleet-wide pause): observed, never changed.",
    "fleetkeeper_fleet_paused": "1 while the whole fleet is paused (`fleetkeeper pause`).",
    "fleetkeeper_rollout_status":
      "1 for the current rollout's status (running, waiting, paused, halted, aborted, done).",
    "fleetkeeper_rollout_machines": "Machines of the current rollout: total, through, failed, remaining.",
    "fleetkeeper_rollout_wave": "The current rollout's wave (0 is the canary; -1 before it).",
    "fleetkeeper_updates_total": "Machine updates by result (updated, through, reverted, unhealthy, unchanged).",
    "fleetkeeper_users": "Users by condition after the last pass (in_sync, pending, failing, paused, rolling_out).",
    "fleetkeeper_active_alerts": "Active alerts, by state (pending, firing).",
    "fleetkeeper_machine_events_read_total": "Machines whose events were read (their updated_at moved).",
    "process_resident_memory_bytes": "Resident memory of this process.",
    "process_cpu_seconds_total": "CPU time this process used (user and system).",
    "process_open_fds": "Open file descriptors of this process.",
    "process_start_time_seconds": "Unix time this process started.",
  ]

  public init() {
    set("fleetkeeper_build_info", ["version": BuildInfo.version, "swift": BuildInfo.swiftVersion], 1)
  }

  private static func pairs(_ labels: [String: String]) -> [(String, String)] {
    labels.keys.sorted().map { ($0, labels[$0]!) }
  }

  private static func helpText(_ name: String) -> String { help[name] ?? name }

  public func increment(_ name: String, _ labels: [String: String] = [:], by value: Double = 1) {
    registry.makeCounter(name: name, labels: Self.pairs(labels), help: Self.helpText(name)).increment(by: value)
  }

  public func set(_ name: String, _ labels: [String: String] = [:], _ value: Double) {
    registry.makeGauge(name: name, labels: Self.pairs(labels), help: Self.helpText(name)).set(to: value)
  }

  /// Replaces every series of a gauge (for per-kind gauges whose kinds come and go).
  public func replaceGauge(_ name: String, _ values: [[String: String]: Double]) {
    replaced.withLock { all in
      var current = all[name] ?? [:]
      for (labels, gauge) in current where values[labels] == nil {
        registry.unregisterGauge(gauge)
        current[labels] = nil
      }
      for (labels, value) in values {
        let gauge = registry.makeGauge(name: name, labels: Self.pairs(labels), help: Self.helpText(name))
        gauge.set(to: value)
        current[labels] = gauge
      }
      all[name] = current
    }
  }

  public static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

  public func observe(
    _ name: String, _ labels: [String: String] = [:], _ value: Double, buckets: [Double] = latencyBuckets
  ) {
    registry.makeValueHistogram(name: name, labels: Self.pairs(labels), buckets: buckets, help: Self.helpText(name))
      .record(value)
  }

  /// Users by condition (the status board after a pass).
  public func recordConditions(_ summary: [UserCondition: Int]) {
    for condition in UserCondition.allCases {
      set("fleetkeeper_users", ["condition": condition.rawValue], Double(summary[condition] ?? 0))
    }
  }

  /// Active alerts, by state.
  public func recordAlerts(pending: Int, firing: Int) {
    set("fleetkeeper_active_alerts", ["state": "pending"], Double(pending))
    set("fleetkeeper_active_alerts", ["state": "firing"], Double(firing))
  }

  private let started = Date().timeIntervalSince1970
  private let cpuSeen = Mutex(0.0)

  /// The process's own figures, read from /proc at each scrape (Linux; nothing elsewhere).
  func sampleProcess() {
    set("process_start_time_seconds", [:], started)
    if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
      let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
    {
      set("process_resident_memory_bytes", [:], pages * Double(sysconf(Int32(_SC_PAGESIZE))))
    }
    if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    {
      // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
      let fields = stat[stat.index(after: close)...].split(separator: " ")
      if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let total = (user + system) / max(1, ticks)
        let delta = cpuSeen.withLock { seen -> Double in
          let delta = max(0, total - seen)
          seen = max(seen, total)
          return delta
        }
        increment("process_cpu_seconds_total", [:], by: delta)
      }
    }
    if let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
      set("process_open_fds", [:], Double(fds.count))
    }
  }

  /// The exposition text.
  public func render() -> String {
    sampleProcess()
    var buffer: [UInt8] = []
    registry.emit(into: &buffer)
    return String(decoding: buffer, as: UTF8.self)
  }

  /// Records a finished pass.
  public func record(_ report: PassReport, now: Double, oldestDriftAge: Double) {
    increment("fleetkeeper_passes_total", ["result": report.outcome.rawValue])
    if report.eventsRead > 0 { increment("fleetkeeper_machine_events_read_total", [:], by: Double(report.eventsRead)) }
    observe("fleetkeeper_pass_duration_seconds", [:], report.duration)
    for result in report.results {
      increment("fleetkeeper_actions_total", ["kind": result.action.kind.rawValue, "outcome": result.outcome.rawValue])
      switch (result.action.kind, result.outcome) {
      case (.updateMachine, .ok):
        increment(
          "fleetkeeper_updates_total",
          ["result": result.message == UserLifecycle.configMatchesMessage ? "unchanged" : "updated"])
      case (.checkUpdate, .ok): increment("fleetkeeper_updates_total", ["result": "through"])
      case (.checkUpdate, .reverted): increment("fleetkeeper_updates_total", ["result": "reverted"])
      case (.checkUpdate, .failed): increment("fleetkeeper_updates_total", ["result": "unhealthy"])
      default: break
      }
      if result.attempts > 1 {
        increment(
          "fleetkeeper_action_retries_total", ["kind": result.action.kind.rawValue], by: Double(result.attempts - 1))
      }
    }
    var byKind: [[String: String]: Double] = [:]
    for finding in report.findings { byKind[["kind": finding.kind.rawValue], default: 0] += 1 }
    replaceGauge("fleetkeeper_drift_findings", byKind)
    set("fleetkeeper_oldest_drift_age_seconds", [:], oldestDriftAge)
    if report.resyncCorrections > 0 {
      increment("fleetkeeper_resync_corrections_total", by: Double(report.resyncCorrections))
    }
    if report.outcome != .couldNotRun {
      replaceGauge(
        "fleetkeeper_unreadable_regions",
        Dictionary(uniqueKeysWithValues: report.unreadableRegions.map { (["region": $0], 1.0) }))
    }
    if let rollout = report.rollout {
      replaceGauge(
        "fleetkeeper_rollout_status",
        Dictionary(
          uniqueKeysWithValues: ["running", "waiting", "paused", "halted", "aborted", "done"].map {
            (["status": $0], rollout.status.rawValue == $0 ? 1.0 : 0.0)
          }))
      replaceGauge(
        "fleetkeeper_rollout_machines",
        [
          ["state": "total"]: Double(rollout.total), ["state": "through"]: Double(rollout.through),
          ["state": "failed"]: Double(rollout.failed.count), ["state": "remaining"]: Double(rollout.remaining),
        ])
      set("fleetkeeper_rollout_wave", [:], Double(rollout.wave))
    }
    if report.outcome != .couldNotRun {
      var desired: [[String: String]: Double] = [:]
      for state in ["running", "stopped", "absent"] { desired[["state": state]] = 0 }
      for machine in report.desired?.machines.values ?? [] {
        desired[["state": machine.state.rawValue], default: 0] += 1
      }
      replaceGauge("fleetkeeper_desired_users", desired)
      if let snapshot = report.desired {
        let paused =
          snapshot.fleetPaused ? snapshot.machines.count : snapshot.machines.values.lazy.filter(\.paused).count
        set("fleetkeeper_paused_users", [:], Double(paused))
        set("fleetkeeper_fleet_paused", [:], snapshot.fleetPaused ? 1 : 0)
      }
      set("fleetkeeper_observed_machines", [:], Double(report.observedMachines))
      set("fleetkeeper_observed_volumes", [:], Double(report.observedVolumes))
      set("fleetkeeper_last_successful_pass_timestamp_seconds", [:], now)
    }
  }
}
