import ArgumentParser
import FleetAlerts
import FleetCore
import FleetDevTools
import FleetRuntime
import FleetStore
import FlyMachines
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Fly settings: flags, else `FLY_API_TOKEN`, `FLEET_FLY_APP` or `FLY_APP_NAME`, `FLY_API_BASE_URL`.
/// On Fly, `FLY_APP_NAME` is set by the platform to the controller's own app, so the users' app is
/// named by `FLEET_FLY_APP` there (it wins over `FLY_APP_NAME`).
struct FlyOptions: ParsableArguments {
  @Option(
    name: .customLong("fly-app"), help: "The Fly app holding users' machines (env FLEET_FLY_APP, else FLY_APP_NAME).")
  var app: String?
  @Option(
    name: .customLong("fly-api-base-url"),
    help: "Machines API base URL (env FLY_API_BASE_URL; default https://api.machines.dev).")
  var baseURL: String?
  @Option(
    name: .customLong("fly-api-token"), help: "Fly token (prefer env FLY_API_TOKEN: flags show in process lists).")
  var token: String?

  func client(
    redactions: [String] = [], redactor: Redactor? = nil, observer: (@Sendable (FlyRequestRecord) -> Void)? = nil
  ) throws -> FlyClient {
    let env = ProcessInfo.processInfo.environment
    if app == nil, env["FLEET_FLY_APP"] == nil, env["FLY_MACHINE_ID"] != nil, let own = env["FLY_APP_NAME"] {
      // On Fly the platform sets FLY_APP_NAME to this controller's own app: taking it for the users'
      // app would put every user's machine into the controller's app.
      throw SettingError(
        "FLEET_FLY_APP is not set: on Fly, FLY_APP_NAME (\(own)) is this controller's own app, not the users'; set FLEET_FLY_APP to the users' app"
      )
    }
    guard let app = app ?? env["FLEET_FLY_APP"] ?? env["FLY_APP_NAME"], !app.isEmpty else {
      throw SettingError("no Fly app: set FLEET_FLY_APP (or FLY_APP_NAME off Fly) or --fly-app")
    }
    guard let token = token ?? env["FLY_API_TOKEN"], !token.isEmpty else {
      throw SettingError(
        "no Fly token: set FLY_API_TOKEN (for the built-in simulator, any token it was started with)")
    }
    let base = baseURL ?? env["FLY_API_BASE_URL"] ?? "https://api.machines.dev"
    do {
      try SettingParsers.apiBaseURL(base, name: "FLY_API_BASE_URL")
    } catch {
      throw SettingError("\(error)")
    }
    var configuration = FlyClientConfiguration(
      baseURL: base, appName: app, token: FlyToken(token), redactions: redactions)
    if let redactor { configuration.scrub = { redactor.scrub($0) } }
    return FlyClient(configuration: configuration, observer: observer)
  }
}

/// The loop's knobs: flags, else environment, else defaults.
struct LoopOptions: ParsableArguments {
  @Option(help: "Seconds between full passes, 1 to 3600 (env FLEET_INTERVAL; default 30).") var interval: String?
  @Option(help: "At most this many destroys and volume deletes per pass (env FLEET_MAX_DESTROYS; default 10).")
  var maxDestroys: Int?
  @Option(
    help:
      "How long a removed user's volume is kept: seconds, or 30m, 12h, 7d, or never (env FLEET_VOLUME_RETENTION; default 7d)."
  )
  var volumeRetention: String?
  @Option(help: "Seconds in a transitional state before a machine is reported stuck, 10 to 86400 (default 300).")
  var stuckAfter: String?
  @Option(help: "Fly calls in flight at once (default 8).") var concurrency: Int?
  @Flag(help: "Allow this run to destroy even though the desired set shrank by more than half.") var allowMassDestroy =
    false
  @Option(
    help:
      "Creates and volume deletes per second, shared by every writer (env FLEET_WRITE_RATE; default 0.95, under Fly's 1/s)."
  )
  var writeRate: String?

  func settings() throws -> ReconcilerSettings {
    let env = ProcessInfo.processInfo.environment
    var settings = ReconcilerSettings()
    do {
      // Flags are read as text by the same strict parsers as the variables (`--interval 0x10` too).
      if let value = interval ?? env["FLEET_INTERVAL"] {
        settings.interval = try SettingParsers.number(value, name: "FLEET_INTERVAL", bounds: 1...3600)
      }
      if let value = maxDestroys.map(String.init) ?? env["FLEET_MAX_DESTROYS"] {
        settings.planner.maxDestroysPerPass = try SettingParsers.integer(
          value, name: "FLEET_MAX_DESTROYS", bounds: 0...10_000)
      }
      if let value = volumeRetention ?? env["FLEET_VOLUME_RETENTION"] {
        settings.planner.volumeRetention = try SettingParsers.duration(
          value, name: "FLEET_VOLUME_RETENTION", bounds: 60...(3650 * 86_400))
      }
      if let value = writeRate ?? env["FLEET_WRITE_RATE"] {
        let rate = try SettingParsers.number(
          value, name: "FLEET_WRITE_RATE", bounds: 0.01...100, unit: "calls per second")
        settings.writeLimits.perSecond = rate
        settings.writeLimits.burst = max(settings.writeLimits.burst, rate)
      }
      if let value = stuckAfter {
        settings.planner.stuckAfter = try SettingParsers.number(value, name: "--stuck-after", bounds: 10...86_400)
      }
      if let concurrency {
        settings.concurrency = try SettingParsers.integer(String(concurrency), name: "--concurrency", bounds: 1...64)
      }
      if let value = env["FLEET_RESYNC"] {
        settings.resyncInterval =
          try SettingParsers.duration(value, name: "FLEET_RESYNC", bounds: 60...86_400) ?? .infinity
      }
      if let value = env["FLEET_OBSERVE_OVERLAP"] {
        settings.observeOverlap =
          try SettingParsers.duration(value, name: "FLEET_OBSERVE_OVERLAP", bounds: 1...3600) ?? settings.observeOverlap
      }
      if let value = env["FLEET_LEASE_SECONDS"] {
        // At most 25 s: a standby takes over within the lease's life plus its 2 s poll, under 30 s.
        settings.leaseSeconds = try SettingParsers.number(value, name: "FLEET_LEASE_SECONDS", bounds: 3...25)
      }
    } catch {
      throw SettingError(error.description)
    }
    settings.planner.allowMassDestroy = allowMassDestroy || env["FLEET_ALLOW_MASS_DESTROY"] == "1"
    // Template env values `$NAME` resolve from the controller's environment, except its own
    // credentials and settings: a template must not be able to copy the Fly token into a machine.
    settings.secrets = SecretValues(env.filter { !FleetNames.isControllerVariable($0.key) })
    return settings
  }
}

/// The logger of a one-shot command: the same lines as `run` writes (FLEET_LOG_FORMAT, logfmt by
/// default; secrets scrubbed), at `level` unless FLEET_LOG_LEVEL asks for more.
func makeLogger(level: Logger.Level = .info, redactor: Redactor = Redactor()) -> Logger {
  let env = ProcessInfo.processInfo.environment
  let format = FleetLogHandler.Format(rawValue: env["FLEET_LOG_FORMAT"] ?? "logfmt") ?? .logfmt
  let wanted = env["FLEET_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)).map { min($0, level) } ?? level
  redactor.add([env["FLY_API_TOKEN"] ?? "", env["FLEET_DATABASE_AUTH_TOKEN"] ?? ""])
  return Logger(label: "fleetkeeper") { label in
    FleetLogHandler(label: label, format: format, level: wanted, redactor: redactor)
  }
}

/// Builds the reconciler from the common options.
extension DatabaseOptions {
  /// Opens the store for the long-running service. A local SQLite file that does not exist yet (a
  /// first deploy, on an empty volume) is created and migrated, and the log says so; a URL, or a
  /// folder that does not exist, is never created.
  func openCreatingIfMissing(logger: Logger) async throws -> FleetStore {
    guard FleetStore.isLocalFile(path), !FileManager.default.fileExists(atPath: path) else { return try await open() }
    let store = try await open(create: true)
    let version = try await store.schemaVersion()
    logger.notice(
      "no database file: created it and applied the schema",
      metadata: ["database": "\(path)", "schema_version": "\(version)"])
    return store
  }
}

func makeReconciler(
  db: DatabaseOptions, fly: FlyOptions, loop: LoopOptions, logger: Logger,
  onEvent: (@Sendable (AuditEvent) -> Void)? = nil
) async throws -> (Reconciler, FleetStore, ReconcilerSettings) {
  var settings = try loop.settings()
  let redactor = Redactor()
  let client = try fly.client(redactor: redactor)
  settings.observe = try observeMode(app: client.configuration.appName)
  let store = try await db.open()
  return (
    Reconciler(
      client: client, store: store, settings: settings, redactor: redactor, logger: logger, onEvent: onEvent),
    store, settings
  )
}

/// How Fly is read: `FLEET_OBSERVE=org` (the default when `FLEET_FLY_ORG` names the org) reads the
/// org-wide lists incrementally; `app` reads the app's lists whole every pass.
func observeMode(app: String) throws -> ObserveMode {
  let env = ProcessInfo.processInfo.environment
  let org = env["FLEET_FLY_ORG"].flatMap { $0.isEmpty ? nil : $0 }
  switch env["FLEET_OBSERVE"] ?? (org == nil ? "app" : "org") {
  case "app": return .app
  case "org":
    guard let org else {
      throw SettingError("FLEET_OBSERVE=org needs FLEET_FLY_ORG (the organization's slug, e.g. personal)")
    }
    guard org.utf8.count <= 100, org.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
      throw SettingError("FLEET_FLY_ORG: \(org.debugDescription) is not an organization slug (letters, digits, dashes)")
    }
    return .org(slug: org, app: app)
  case let other:
    throw SettingError("FLEET_OBSERVE: \(other.debugDescription) is not app or org")
  }
}

/// One line on a rollout, for `plan` and `status` (`rollout status` says more).
func rolloutLine(_ rollout: RolloutState) -> String {
  let wave = rollout.wave < 0 ? "no wave yet" : rollout.wave == 0 ? "canary" : "wave \(rollout.wave)"
  var line =
    "rollout of template revision \(rollout.revision.map(String.init) ?? "?"): \(rollout.status.rawValue.uppercased()), \(wave), \(rollout.through) of \(rollout.total) through, \(rollout.failed.count) failed, \(rollout.remaining) to go"
  if let message = rollout.message { line += " (\(message))" }
  return line
}

func describe(_ action: Action) -> String {
  var parts = [action.kind.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0), action.userID]
  if let machine = action.machineID { parts.append("machine=\(machine)") }
  if let volume = action.volumeID { parts.append("volume=\(volume)") }
  if let region = action.region { parts.append("region=\(region)") }
  if action.lookUpFirst { parts.append("(look up first)") }
  parts.append("— \(action.reason)")
  return parts.joined(separator: " ")
}

struct PlanCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract:
      "Show what a pass would do and the drift it sees. Exit 0: nothing to do; 2: changes pending (actions, users waiting or backing off, destroys held); 1: error."
  )

  @OptionGroup var db: DatabaseOptions
  @OptionGroup var fly: FlyOptions
  @OptionGroup var loop: LoopOptions
  @Flag(help: "JSON output.") var json = false

  func run() async throws {
    let (reconciler, _, _) = try await makeReconciler(
      db: db, fly: fly, loop: loop, logger: makeLogger(level: .critical))
    let report = await reconciler.pass(apply: false)
    if report.outcome == .couldNotRun {
      complain("error: \(report.error ?? "pass could not run")")
      throw ExitCode(1)
    }
    let plan = report.plan!
    if json {
      JSONOutput.print(
        PlanJSON(
          actions: plan.actions.map(ActionJSON.init), findings: plan.findings.map(FindingJSON.init),
          waiting: plan.waiting.count, lists_trusted: report.listsTrusted, held: plan.held.map(ActionJSON.init),
          paused_users: plan.pausedUsers, rollout: plan.rollout))
    } else {
      print(
        "\(report.desiredUsers) users desired running or stopped; Fly lists \(report.observedMachines) machines, \(report.observedVolumes) volumes"
      )
      if plan.actions.isEmpty { print("nothing to do") }
      for action in plan.actions { print("  " + describe(action)) }
      if !plan.waiting.isEmpty { print("waiting on \(plan.waiting.count) user(s) (something settling)") }
      if let rollout = plan.rollout, rollout.status != .done { print(rolloutLine(rollout)) }
      if plan.pausedUsers > 0 {
        print(
          "\(plan.pausedUsers) user(s) paused: \(plan.held.count) change(s) held until resumed (`fleetkeeper resume`, `users resume ID`)"
        )
        for action in plan.held { print("  held (paused): " + describe(action)) }
      }
      for finding in plan.findings {
        print("  drift \(finding.kind.rawValue) \(finding.userID.map { "user=\($0)" } ?? "fleet"): \(finding.message)")
      }
    }
    if plan.hasPendingChanges { throw ExitCode(2) }
  }
}

struct ReconcileCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "reconcile",
    abstract: "Run one pass, then exit. Exit 0: done; 3: some actions failed; 1: could not run.")
  @OptionGroup var db: DatabaseOptions
  @OptionGroup var fly: FlyOptions
  @OptionGroup var loop: LoopOptions

  func run() async throws {
    let logger = makeLogger(level: .warning)
    let (reconciler, store, settings) = try await makeReconciler(
      db: db, fly: fly, loop: loop, logger: logger,
      onEvent: { event in
        print(
          "\(event.eventType) user=\(event.userID ?? "-") machine=\(event.machineID ?? "-") volume=\(event.volumeID ?? "-") \(event.detailsJSON)"
        )
      })
    // One writer: a pass beside a running `fleetkeeper run` would race it (two creates for one
    // user). The lease is taken for the pass, renewed while it runs, and given back after.
    let keeper = LeaseKeeper(
      lease: WriterLease(store: store, holder: writerIdentity("reconcile"), ttl: settings.leaseSeconds))
    let status = await keeper.renew()
    await reconciler.setWriterCheck { keeper.status.held }
    guard status.held else {
      if let error = status.error {
        complain("error: cannot take the writer lease: \(error); nothing was done")
      } else {
        let current = try? await keeper.lease.current()
        complain(
          "refused: another fleetkeeper (\(current?.holder ?? "unknown")) holds the writer lease until \(current.map { rfc3339($0.expiresAt) } ?? "?"); a second writer would race it. Nothing was done. Stop it first, or see what it will do with `fleetkeeper plan`."
        )
      }
      throw ExitCode(1)
    }
    let report = await withTaskGroup(of: Void.self) { group in
      group.addTask {
        await keeper.keepRenewing(sleep: { try await SystemFleetClock().sleep(seconds: $0) }) {
          logger.error("writer lease lost during the pass: no new action")
          await reconciler.drain()
        }
      }
      let report = await reconciler.pass()
      group.cancelAll()
      return report
    }
    await keeper.release()
    switch report.outcome {
    case .couldNotRun:
      // Already said once, in the log line of the pass ("… nothing done", with the error).
      throw ExitCode(1)
    case .actionsFailed:
      print(
        "pass done: \(report.results.count) action(s), \(report.results.filter { $0.outcome == .failed }.count) failed")
      throw ExitCode(3)
    case .ok:
      print("pass done: \(report.results.count) action(s)")
    }
  }
}

struct RunCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Run the reconcile loop, the alert sender and the ops HTTP server until SIGTERM or SIGINT.")
  @OptionGroup var db: DatabaseOptions
  @OptionGroup var fly: FlyOptions
  @OptionGroup var loop: LoopOptions
  @Option(help: "Address of /healthz, /readyz, /metrics (env FLEET_LISTEN; default 127.0.0.1:9090; port 0 picks one).")
  var listen: String?
  @Option(help: "Seconds in-flight actions get to finish after SIGTERM (env FLEET_DRAIN_SECONDS; default 20).")
  var drainSeconds: String?

  func run() async throws {
    let env = ProcessInfo.processInfo.environment
    let redactor = Redactor([
      env["FLY_API_TOKEN"] ?? "", fly.token ?? "", env["FLEET_ALERT_WEBHOOK_SECRET"] ?? "",
      env["FLEET_DATABASE_AUTH_TOKEN"] ?? "",
    ])
    let logger = try bootstrapLogging(redactor: redactor)
    let host: String
    let port: Int
    let drain: Double
    do {
      (host, port) = try SettingParsers.listen(listen ?? env["FLEET_LISTEN"] ?? "127.0.0.1:9090", name: "FLEET_LISTEN")
      drain =
        try (drainSeconds ?? env["FLEET_DRAIN_SECONDS"]).map {
          try SettingParsers.number($0, name: "FLEET_DRAIN_SECONDS", bounds: 0...600)
        } ?? 20
    } catch {
      throw SettingError("\(error)")
    }

    let metrics = FleetMetrics()
    var settings = try loop.settings()
    let client = try fly.client(
      redactor: redactor,
      observer: { record in
        let status = record.status.map(String.init) ?? "error"
        metrics.increment("fleetkeeper_api_requests_total", ["endpoint": record.endpoint, "status": status])
        metrics.observe(
          "fleetkeeper_api_request_duration_seconds", ["endpoint": record.endpoint], record.duration.seconds)
        if record.status == 429 { metrics.increment("fleetkeeper_api_rate_limited_total") }
      })
    settings.observe = try observeMode(app: client.configuration.appName)
    let store = try await db.openCreatingIfMissing(logger: logger)
    let reconciler = Reconciler(client: client, store: store, settings: settings, redactor: redactor, logger: logger)
    let alerter = Alerter(
      store: store, app: client.configuration.appName, receivers: try envReceivers(), logger: logger,
      outboxKey: outboxKey())
    let sender = AlertSenderService(
      sender: AlertSender(
        alerter: alerter, store: store, logger: logger,
        metrics: { outcome in
          metrics.increment("fleetkeeper_alert_deliveries_total", ["outcome": outcome])
        }))
    let readiness = Readiness()
    let lease = WriterLease(store: store, holder: writerIdentity("run"), ttl: settings.leaseSeconds)
    let ages = DriftAges()
    let board = StatusBoard()
    let waker = LoopWaker()
    let retryBudget = settings.planner.retryBudget
    // The dashboard's API, only with its own token (never the Fly token).
    let apiToken = env["FLEET_API_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    if let apiToken {
      guard apiToken.utf8.count >= 16 else {
        throw SettingError("FLEET_API_TOKEN: at least 16 characters (a random token: openssl rand -hex 32)")
      }
      guard apiToken != env["FLY_API_TOKEN"] else {
        throw SettingError("FLEET_API_TOKEN: must differ from the Fly token")
      }
      redactor.add([apiToken])
    }
    let api = apiToken.map {
      DashboardAPI(store: store, board: board, waker: waker, client: client, token: $0)
    }
    // The operator's pages, only with their own token.
    let uiToken = env["FLEET_UI_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    if let uiToken {
      guard uiToken.utf8.count >= 16,
        uiToken.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != 0x3B && $0 != 0x2C && $0 != 0x22 && $0 != 0x5C })
      else {
        throw SettingError(
          "FLEET_UI_TOKEN: at least 16 printable characters without spaces, commas, semicolons, quotes or backslashes (openssl rand -hex 32)"
        )
      }
      guard uiToken != apiToken, uiToken != env["FLY_API_TOKEN"] else {
        throw SettingError("FLEET_UI_TOKEN: must differ from FLEET_API_TOKEN and from the Fly token")
      }
      redactor.add([uiToken])
    }
    let pageState = PageState()
    let pages = uiToken.map {
      Pages(
        store: store, board: board, state: pageState, token: $0,
        alerts: { (try? await alerter.activeAlerts()) ?? [] })
    }
    let service = ReconcileLoop(
      reconciler: reconciler, store: store, settings: settings, logger: logger, lease: lease, waker: waker,
      onStandby: { standby in
        if standby != readiness.isStandby {
          logger.info(standby ? "standby: another process holds the writer lease" : "holding the writer lease")
        }
        readiness.setStandby(standby)
        pageState.setStandby(standby)
        metrics.set("fleetkeeper_writer_lease_held", [:], standby ? 0 : 1)
      },
      onPass: { report in
        let now = report.startedAt + report.duration
        if report.outcome != .couldNotRun { readiness.passSucceeded(at: now) }
        pageState.passed(report, at: now)
        metrics.record(report, now: now, oldestDriftAge: ages.update(report.findings, now: now))
        logger.info(
          "pass",
          metadata: [
            "outcome": "\(report.outcome.rawValue)", "actions": "\(report.results.count)",
            "findings": "\(report.findings.count)",
            "duration_ms": "\(Int(report.duration * 1000))",
          ])
        await alerter.process(report.findings, unsettled: report.unsettledUsers, now: now)
        // Who is not in sync, for the API (a steady pass changed nothing).
        if let plan = report.plan, let desired = report.desired, let observation = report.observation,
          !report.steady || board.updatedAt == nil
        {
          board.update(
            FleetStatus.board(
              plan: plan, desired: desired, observation: observation, states: await reconciler.userStates(),
              retryBudget: retryBudget, now: now), at: now)
          metrics.recordConditions(board.summary)
        }
        if let alerts = try? await alerter.activeAlerts() {
          let firing = alerts.filter(\.isFiring).count
          metrics.recordAlerts(pending: alerts.count - firing, firing: firing)
        }
      })
    let ops = OpsServer.application(
      host: host, port: port, store: store, metrics: metrics, readiness: readiness, interval: settings.interval,
      logger: logger, api: api, pages: pages
    ) { bound in
      logger.info("ops server listening", metadata: ["address": "\(host):\(bound)"])
    }
    var configuration = ServiceGroupConfiguration(
      services: [
        .init(service: ops), .init(service: sender),
        .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup),
      ],
      gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger)
    configuration.maximumGracefulShutdownDuration = .milliseconds(Int(drain * 1000))
    try await ServiceGroup(configuration: configuration).run()
  }
}

/// This process as a lease holder: what it is, host, pid, and a random part (unique per start).
func writerIdentity(_ command: String) -> String {
  "\(command)@\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
}

/// When each current finding was first seen, for `fleetkeeper_oldest_drift_age_seconds`.
final class DriftAges: Sendable {
  private let firstSeen = Mutex<[String: Double]>([:])
  func update(_ findings: [DriftFinding], now: Double) -> Double {
    firstSeen.withLock { seen in
      var next: [String: Double] = [:]
      for finding in findings { next[finding.fingerprint] = seen[finding.fingerprint] ?? now }
      seen = next
      return next.values.min().map { now - $0 } ?? 0
    }
  }
}

/// Logs as logfmt (default) or JSON lines (`FLEET_LOG_FORMAT`), at `FLEET_LOG_LEVEL` (info), redacted.
func bootstrapLogging(redactor: Redactor) throws -> Logger {
  let env = ProcessInfo.processInfo.environment
  guard let format = FleetLogHandler.Format(rawValue: env["FLEET_LOG_FORMAT"] ?? "logfmt") else {
    throw SettingError("FLEET_LOG_FORMAT \"\(env["FLEET_LOG_FORMAT"] ?? "")\": logfmt or json")
  }
  guard let level = Logger.Level(rawValue: env["FLEET_LOG_LEVEL"] ?? "info") else {
    throw SettingError(
      "FLEET_LOG_LEVEL \"\(env["FLEET_LOG_LEVEL"] ?? "")\": trace, debug, info, notice, warning, error or critical")
  }
  LoggingSystem.bootstrap { label in FleetLogHandler(label: label, format: format, level: level, redactor: redactor) }
  return Logger(label: "fleetkeeper")
}

struct DemoCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo", abstract: "Run the loop against the built-in simulator and a temporary SQLite database.")
  @Flag(help: "Keep the demo's database folder.") var keep = false
  @Option(help: "shared-app, or app-per-user (each user's own app: adoption, creation, drift, removal).")
  var topology: String = "shared-app"
  func run() async throws {
    let say: @Sendable (String) -> Void = { line in
      print(line)
      fflush(nil)
    }
    let status: Int32
    switch topology {
    case "shared-app": status = try await Demo.run(print: say, keepDatabase: keep)
    case "app-per-user": status = try await Demo.runAppPerUser(print: say, keepDatabase: keep)
    default:
      complain("refused: topology \"\(topology)\": must be shared-app or app-per-user")
      throw ExitCode(1)
    }
    if status != 0 { throw ExitCode(status) }
  }
}
