import FleetCore
import FleetRuntime
import FleetStore
import FlySimulator
import Foundation
import Logging
import Synchronization
import Testing

@Suite(.serialized) struct OpsTests {
  @Test func readyzFollowsPassesAndTheDatabase() async throws {
    try await withHarness { harness in
      let readiness = Readiness()
      var (ready, reason) = await OpsServer.check(store: harness.store, readiness: readiness, interval: 30, now: 1000)
      #expect(!ready && reason.contains("no pass"))
      readiness.passSucceeded(at: 1000)
      (ready, _) = await OpsServer.check(store: harness.store, readiness: readiness, interval: 30, now: 1060)
      #expect(ready)
      (ready, reason) = await OpsServer.check(store: harness.store, readiness: readiness, interval: 30, now: 1100)
      #expect(!ready && reason.contains("3 intervals"))
      readiness.passSucceeded(at: 1100)
      _ = try await harness.store.database.write([SQLStatement("DROP TABLE fleet_desired_version")])
      (ready, reason) = await OpsServer.check(store: harness.store, readiness: readiness, interval: 30, now: 1100)
      #expect(!ready && reason.contains("database unreadable"))
    }
  }

  /// A failed action is logged at warning with its error, code, HTTP status and Fly request id
  /// (before: at info, with the outcome only), and the secret in the template is not in it.
  @Test func aFailedActionIsAWarningThatSaysWhy() async throws {
    var faults = SimulatorFaults()
    faults.badImages = ["registry.fly.io/broken:1"]
    try await withHarness(simulator: Harness.instant, faults: faults) { harness in
      try await harness.addUsers(1)
      try await harness.store.setUser(UserInput(userID: "u0", image: "registry.fly.io/broken:1"))
      let lines = Mutex<[String]>([])
      let logger = Logger(label: "test") { label in
        FleetLogHandler(
          label: label, format: .logfmt, level: .info, redactor: Redactor(),
          write: { line in lines.withLock { $0.append(line) } })
      }
      let reconciler = harness.restarted(logger: logger)
      for _ in 0..<3 { _ = await reconciler.pass() }
      let failed = lines.withLock { $0 }.filter { $0.contains("msg=create_machine") && $0.contains("outcome=failed") }
      let line = try #require(failed.first, "no failed create_machine line in \(lines.withLock { $0 })")
      #expect(line.contains("level=warning"))
      for field in ["error=", "error_code=", "http_status=4", "fly_request_id=", "user=u0"] {
        #expect(line.contains(field), "\(field) missing: \(line)")
      }
      #expect(!lines.withLock { $0 }.joined().contains("s3cr3t-agent-value"))
    }
  }

  /// deploy/grafana-dashboard.json is JSON, and every metric its queries name is one fleetkeeper
  /// exports (a renamed metric would leave a panel silently empty).
  @Test func theGrafanaDashboardQueriesOnlyMetricsWeExport() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let data = try Data(contentsOf: root.appendingPathComponent("deploy/grafana-dashboard.json"))
    let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let panels = try #require(dashboard["panels"] as? [[String: Any]])
    #expect(panels.count >= 10)
    var named: Set<String> = []
    for panel in panels {
      for target in panel["targets"] as? [[String: Any]] ?? [] {
        let expr = try #require(target["expr"] as? String)
        var rest = Substring(expr)
        while let range = rest.range(of: #"(fleetkeeper|process)_[a-z_]+"#, options: .regularExpression) {
          var name = String(rest[range])
          if name.hasSuffix("_bucket") { name = String(name.dropLast(7)) }
          named.insert(name)
          rest = rest[range.upperBound...]
        }
      }
    }
    let known = Set(FleetMetrics.help.keys)
    #expect(named.subtracting(known).isEmpty, "unknown metrics: \(named.subtracting(known).sorted())")
    #expect(named.contains("fleetkeeper_users") && named.contains("fleetkeeper_active_alerts"))
  }

  @Test func metricsAreValidPrometheusText() async throws {
    try await withHarness { harness in
      try await harness.addUsers(3)
      let metrics = FleetMetrics()
      for report in await harness.converge() { metrics.record(report, now: 1000, oldestDriftAge: 0) }
      metrics.increment("fleetkeeper_api_requests_total", ["endpoint": "GET /machines", "status": "200"])
      metrics.observe("fleetkeeper_api_request_duration_seconds", ["endpoint": "GET /machines"], 0.02)
      metrics.increment("fleetkeeper_alert_deliveries_total", ["outcome": "delivered"])
      metrics.recordConditions([.inSync: 2, .failing: 1])
      metrics.recordAlerts(pending: 0, firing: 1)
      let text = metrics.render()
      #expect(text.contains(#"fleetkeeper_users{condition="failing"} 1"#), "users by condition")
      #expect(text.contains(#"fleetkeeper_users{condition="rolling_out"} 0"#))
      #expect(text.contains(#"fleetkeeper_active_alerts{state="firing"} 1"#))
      for name in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"] {
        #expect(text.contains(name + " "), "\(name) missing")
      }
      for name in [
        "fleetkeeper_passes_total", "fleetkeeper_pass_duration_seconds_bucket", "fleetkeeper_actions_total",
        "fleetkeeper_api_requests_total", "fleetkeeper_api_request_duration_seconds_bucket",
        "fleetkeeper_desired_users",
        "fleetkeeper_observed_machines", "fleetkeeper_oldest_drift_age_seconds", "fleetkeeper_alert_deliveries_total",
        "fleetkeeper_build_info{swift=\"\(BuildInfo.swiftVersion)\",version=\"\(BuildInfo.version)\"}",
      ] {
        #expect(text.contains(name), "\(name) missing")
      }
      #expect(text.contains(#"fleetkeeper_actions_total{kind="create_volume",outcome="ok"} 3"#))
      let promtool = ["/usr/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }
      try #require(promtool != nil, "promtool (Debian's prometheus package) is installed by .ci/run")
      let process = Process()
      process.executableURL = URL(fileURLWithPath: promtool!)
      process.arguments = ["check", "metrics"]
      let input = Pipe()
      let output = Pipe()
      process.standardInput = input
      process.standardOutput = output
      process.standardError = output
      try process.run()
      input.fileHandleForWriting.write(Data(text.utf8))
      try input.fileHandleForWriting.close()
      let said = await offload {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
      }
      #expect(process.terminationStatus == 0, "promtool: \(said)")
    }
  }

  @Test(arguments: [FleetLogHandler.Format.logfmt, .json])
  func logLinesAreStructuredAndRedacted(format: FleetLogHandler.Format) {
    let lines = Mutex<[String]>([])
    let redactor = Redactor(["fm2_secret-token-value"])
    let handler = FleetLogHandler(label: "t", format: format, level: .info, redactor: redactor) { line in
      lines.withLock { $0.append(line) }
    }
    let logger = Logger(label: "t", factory: { _ in handler })
    logger.error(
      "call failed with token fm2_secret-token-value",
      metadata: ["error": "Bearer fm2_secret-token-value rejected", "user": "u 1"])
    let line = lines.withLock { $0.first ?? "" }
    #expect(!line.contains("fm2_secret-token-value"))
    #expect(line.contains("<redacted>"))
    if format == .json {
      #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil)
    } else {
      #expect(line.contains(#"user="u 1""#) && line.contains("level=error"))
    }
  }
}

@Suite(.serialized) struct LoopTests {
  @Test func anEditIsActedOnWithinAboutASecondAheadOfTheInterval() async throws {
    var settings = Harness.testSettings()
    settings.interval = 30
    settings.busyInterval = 30
    settings.desiredPollInterval = 0.2
    try await withHarness(settings: settings, loopback: true) { harness in
      let passes = Mutex(0)
      let loop = ReconcileLoop(
        reconciler: harness.reconciler, store: harness.store, settings: settings,
        onPass: { _ in passes.withLock { $0 += 1 } })
      let task = Task { try await loop.run() }
      defer { task.cancel() }
      while passes.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(20)) }
      let edited = ContinuousClock.now
      try await harness.store.addUser(UserInput(userID: "quick", region: "cdg"))
      var created = false
      while !created && ContinuousClock.now - edited < .seconds(25) {
        created = harness.mutations().contains { $0.endpoint == "POST /volumes" }
        if !created { try await Task.sleep(for: .milliseconds(20)) }
      }
      #expect(created)
      // Measured at ~1 s when idle; the bound leaves room for a loaded CI machine and still proves the
      // edit did not wait for the 30 s interval.
      #expect(ContinuousClock.now - edited < .seconds(15), "acted on well before the 30 s interval")
    }
  }
}
