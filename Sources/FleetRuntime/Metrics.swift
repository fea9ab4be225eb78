import FleetCore
import Foundation
import Synchronization

/// fleetkeeper's metrics in the Prometheus text format (version 0.0.4), kept in a small registry of
/// its own: counters, gauges and histograms with labels. Names follow Prometheus conventions
/// (`fleetkeeper_…_total`, `…_seconds`).
public final class FleetMetrics: Sendable {
  private struct Series: Hashable {
    var name: String
    var labels: [String]  // "k=v" pairs, sorted
  }
  private struct Histogram {
    var buckets: [Double]
    var counts: [Int]
    var sum: Double = 0
    var count: Int = 0
  }
  private struct State {
    var counters: [Series: Double] = [:]
    var gauges: [Series: Double] = [:]
    var histograms: [Series: Histogram] = [:]
  }
  private let state = Mutex(State())
  private let help: [String: (type: String, help: String)] = [
    "fleetkeeper_passes_total": ("counter", "Reconcile passes by result."),
    "fleetkeeper_pass_duration_seconds": ("histogram", "Duration of a reconcile pass."),
    "fleetkeeper_actions_total": ("counter", "Actions attempted, by kind and outcome."),
    "fleetkeeper_api_requests_total": ("counter", "Fly Machines API requests, by endpoint and status."),
    "fleetkeeper_api_request_duration_seconds": ("histogram", "Fly Machines API request latency, by endpoint."),
    "fleetkeeper_api_rate_limited_total": ("counter", "Fly API answers with status 429."),
    "fleetkeeper_action_retries_total": ("counter", "Retries of actions within a pass."),
    "fleetkeeper_drift_findings": ("gauge", "Drift findings of the last pass, by kind."),
    "fleetkeeper_desired_users": ("gauge", "Users in the desired-state table, by desired state."),
    "fleetkeeper_observed_machines": ("gauge", "Machines in Fly's last list (ours and foreign)."),
    "fleetkeeper_observed_volumes": ("gauge", "Volumes in Fly's last list."),
    "fleetkeeper_oldest_drift_age_seconds": ("gauge", "Age of the oldest unresolved drift finding."),
    "fleetkeeper_alert_deliveries_total": ("counter", "Alert deliveries, by outcome."),
    "fleetkeeper_last_successful_pass_timestamp_seconds": ("gauge", "Unix time of the last pass that ran."),
    "fleetkeeper_writer_lease_held": ("gauge", "1 while this process holds the writer lease."),
  ]

  public init() {}

  private static func series(_ name: String, _ labels: [String: String]) -> Series {
    Series(name: name, labels: labels.keys.sorted().map { "\($0)=\(labels[$0]!)" })
  }

  public func increment(_ name: String, _ labels: [String: String] = [:], by value: Double = 1) {
    let key = Self.series(name, labels)
    state.withLock { $0.counters[key, default: 0] += value }
  }

  public func set(_ name: String, _ labels: [String: String] = [:], _ value: Double) {
    let key = Self.series(name, labels)
    state.withLock { $0.gauges[key] = value }
  }

  /// Replaces every series of a gauge (for per-kind gauges whose kinds come and go).
  public func replaceGauge(_ name: String, _ values: [[String: String]: Double]) {
    state.withLock { state in
      state.gauges = state.gauges.filter { $0.key.name != name }
      for (labels, value) in values { state.gauges[Self.series(name, labels)] = value }
    }
  }

  public static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

  public func observe(
    _ name: String, _ labels: [String: String] = [:], _ value: Double, buckets: [Double] = latencyBuckets
  ) {
    let key = Self.series(name, labels)
    state.withLock { state in
      var histogram =
        state.histograms[key] ?? Histogram(buckets: buckets, counts: Array(repeating: 0, count: buckets.count))
      for (index, bound) in histogram.buckets.enumerated() where value <= bound { histogram.counts[index] += 1 }
      histogram.sum += value
      histogram.count += 1
      state.histograms[key] = histogram
    }
  }

  public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
    let key = Self.series(name, labels)
    return state.withLock { $0.counters[key] ?? $0.gauges[key] }
  }

  private static func escape(_ value: String) -> String {
    value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
      .replacingOccurrences(of: "\n", with: "\\n")
  }

  private static func labelText(_ labels: [String], extra: String? = nil) -> String {
    var parts = labels.map { pair -> String in
      let eq = pair.firstIndex(of: "=")!
      return "\(pair[..<eq])=\"\(escape(String(pair[pair.index(after: eq)...])))\""
    }
    if let extra { parts.append(extra) }
    return parts.isEmpty ? "" : "{" + parts.joined(separator: ",") + "}"
  }

  private static func number(_ value: Double) -> String {
    if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
    return String(value)
  }

  /// The exposition text.
  public func render() -> String {
    let snapshot = state.withLock { $0 }
    var out = ""
    let names = Set(snapshot.counters.keys.map(\.name)).union(snapshot.gauges.keys.map(\.name)).union(
      snapshot.histograms.keys.map(\.name)
    )
    .union(help.keys)
    for name in names.sorted() {
      let meta = help[name] ?? ("untyped", name)
      out += "# HELP \(name) \(meta.help)\n# TYPE \(name) \(meta.type)\n"
      for (key, value) in snapshot.counters.filter({ $0.key.name == name }).sorted(by: {
        $0.key.labels.joined() < $1.key.labels.joined()
      }) {
        out += "\(name)\(Self.labelText(key.labels)) \(Self.number(value))\n"
      }
      for (key, value) in snapshot.gauges.filter({ $0.key.name == name }).sorted(by: {
        $0.key.labels.joined() < $1.key.labels.joined()
      }) {
        out += "\(name)\(Self.labelText(key.labels)) \(Self.number(value))\n"
      }
      for (key, histogram) in snapshot.histograms.filter({ $0.key.name == name }).sorted(by: {
        $0.key.labels.joined() < $1.key.labels.joined()
      }) {
        for (index, bound) in histogram.buckets.enumerated() {
          out +=
            "\(name)_bucket\(Self.labelText(key.labels, extra: "le=\"\(Self.number(bound))\"")) \(histogram.counts[index])\n"
        }
        out += "\(name)_bucket\(Self.labelText(key.labels, extra: "le=\"+Inf\"")) \(histogram.count)\n"
        out += "\(name)_sum\(Self.labelText(key.labels)) \(histogram.sum)\n"
        out += "\(name)_count\(Self.labelText(key.labels)) \(histogram.count)\n"
      }
    }
    return out
  }

  /// Records a finished pass.
  public func record(_ report: PassReport, now: Double, oldestDriftAge: Double) {
    increment("fleetkeeper_passes_total", ["result": report.outcome.rawValue])
    observe("fleetkeeper_pass_duration_seconds", [:], report.duration)
    for result in report.results {
      increment("fleetkeeper_actions_total", ["kind": result.action.kind.rawValue, "outcome": result.outcome.rawValue])
      if result.attempts > 1 {
        increment(
          "fleetkeeper_action_retries_total", ["kind": result.action.kind.rawValue], by: Double(result.attempts - 1))
      }
    }
    var byKind: [[String: String]: Double] = [:]
    for finding in report.findings { byKind[["kind": finding.kind.rawValue], default: 0] += 1 }
    replaceGauge("fleetkeeper_drift_findings", byKind)
    set("fleetkeeper_oldest_drift_age_seconds", [:], oldestDriftAge)
    if report.outcome != .couldNotRun {
      var desired: [[String: String]: Double] = [:]
      for state in ["running", "stopped", "absent"] { desired[["state": state]] = 0 }
      for machine in report.desired?.machines.values ?? [] {
        desired[["state": machine.state.rawValue], default: 0] += 1
      }
      replaceGauge("fleetkeeper_desired_users", desired)
      set("fleetkeeper_observed_machines", [:], Double(report.observedMachines))
      set("fleetkeeper_observed_volumes", [:], Double(report.observedVolumes))
      set("fleetkeeper_last_successful_pass_timestamp_seconds", [:], now)
    }
  }
}
