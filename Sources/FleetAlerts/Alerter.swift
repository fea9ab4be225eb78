public import AsyncHTTPClient
public import FleetCore
public import FleetStore
import Foundation
public import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Synchronization

/// Turns each pass's findings into alerts (the lifecycle in ``AlertLifecycle``), queues one notice
/// per receiver in the store, and delivers the queue with retries, never blocking the loop.
public actor Alerter {
  public let store: FleetStore
  public let app: String
  private var envReceivers: [AlertReceiver]
  private let settings: AlertLifecycle.Settings
  private let logger: Logger
  private var active: [String: AlertState]?
  /// Notices that could not be queued (the database itself unreadable): delivered from memory.
  private var fallback: [(receiver: String, payload: String)] = []
  /// The key queued notices are authenticated with (see ``mac(receiver:payload:)``); nil queues and
  /// delivers without (tests, one-off commands without credentials).
  public nonisolated let outboxKey: [UInt8]?

  public init(
    store: FleetStore, app: String, receivers: [AlertReceiver], settings: AlertLifecycle.Settings = .init(),
    logger: Logger = Logger(label: "fleetkeeper.alerts"), outboxKey: [UInt8]? = nil
  ) {
    self.outboxKey = outboxKey
    self.store = store
    self.app = app
    self.envReceivers = receivers
    self.settings = settings
    self.logger = logger
  }

  /// The env receivers plus those in `alert_receivers` (secrets from the named env variables).
  public func receivers() async -> [AlertReceiver] {
    var all = envReceivers
    if let rows = try? await store.alertReceivers() {
      let env = ProcessInfo.processInfo.environment
      var refused: Set<Int64> = []
      for row in rows {
        do {
          all.append(try AlertReceiver.fromDatabase(row, environment: env))
        } catch {
          refused.insert(row.id ?? 0)
          if !refusedReceivers.contains(row.id ?? 0) {
            logger.error("alert receiver refused", metadata: ["error": "\(error)"])
          }
        }
      }
      refusedReceivers = refused
    }
    return all
  }

  /// Database receivers refused at the last look (each is logged once, not on every notice).
  private var refusedReceivers: Set<Int64> = []

  /// The HMAC of a queued notice: receiver and payload under the outbox key.
  public nonisolated func mac(receiver: String, payload: String) -> String? {
    guard let outboxKey else { return nil }
    return Digests.hex(Digests.hmacSHA256(key: outboxKey, message: Array((receiver + "\n" + payload).utf8)))
  }

  /// The outbox key from the controller's own secrets (never from the database): stable across
  /// restarts, so notices queued before one are still delivered after it.
  public static func outboxKey(fromSecrets secrets: [String]) -> [UInt8]? {
    let material = secrets.filter { !$0.isEmpty }
    guard !material.isEmpty else { return nil }
    return Digests.sha256(Array(("fleetkeeper outbox\n" + material.joined(separator: "\n")).utf8))
  }

  /// The active alerts (pending and firing).
  public func activeAlerts() async throws(StoreError) -> [AlertState] {
    if active == nil { active = try await store.loadAlerts() }
    return active!.values.sorted { ($0.kind, $0.fingerprint) < ($1.kind, $1.fingerprint) }
  }

  /// Steps the lifecycle with one pass's findings and queues the notice, if any.
  @discardableResult
  public func process(_ findings: [DriftFinding], unsettled: Set<String> = [], now: Double) async -> AlertNotice? {
    if active == nil { active = (try? await store.loadAlerts()) ?? [:] }
    let previous = active!
    let (next, notice) = AlertLifecycle.step(
      active: previous, findings: findings, unsettled: unsettled, now: now, settings: settings)
    active = next
    var deliveries: [(receiver: String, payload: String)] = []
    if let notice {
      for receiver in await receivers() {
        deliveries.append((receiver.key, AlertPayloads.payload(for: receiver.kind, notice, app: app)))
      }
      logger.warning(
        "alert notice",
        metadata: [
          "firing": "\(notice.items.filter { $0.status == "firing" }.count)",
          "resolved": "\(notice.items.filter { $0.status == "resolved" }.count)",
        ])
    }
    do {
      try await store.saveAlerts(
        next, previous: previous, deliveries: deliveries, now: now,
        mac: { [self] in self.mac(receiver: $0, payload: $1) })
    } catch {
      fallback += deliveries
    }
    return notice
  }

  /// Queues a test notice to every receiver.
  public func queueTest(now: Double) async throws(StoreError) -> Int {
    let state = AlertState(
      fingerprint: "test||", kind: "test", userID: nil, resourceID: nil,
      message: "fleetkeeper test notice: alerts reach this receiver",
      startsAt: now, seenPasses: 1, lastNotifiedAt: now)
    let notice = AlertNotice(items: [.init(state: state, status: "firing")], createdAt: now, isTest: true)
    let receivers = await receivers()
    let deliveries = receivers.map { ($0.key, AlertPayloads.payload(for: $0.kind, notice, app: app)) }
    try await store.saveAlerts(
      active ?? [:], previous: active ?? [:], deliveries: deliveries, now: now,
      mac: { [self] in self.mac(receiver: $0, payload: $1) })
    return receivers.count
  }

  func takeFallback() -> [(receiver: String, payload: String)] {
    defer { fallback = [] }
    return fallback
  }
}

/// Delivers the outbox: due items, one attempt each, then the next attempt after 2, 6, 15 s; the
/// fourth failure gives up. Every outcome is written back to the outbox row.
public struct AlertSender: Sendable {
  public let alerter: Alerter
  public let store: FleetStore
  private let httpClient: HTTPClient
  private let logger: Logger
  public var delays: [Double] = [2, 6, 15]
  public var commandTimeout: Double = 10
  public var requestTimeout: Duration = .seconds(10)

  private let metrics: (@Sendable (String) -> Void)?

  public init(
    alerter: Alerter, store: FleetStore, httpClient: HTTPClient = AlertSender.noRedirects,
    logger: Logger = Logger(label: "fleetkeeper.alerts"),
    metrics: (@Sendable (String) -> Void)? = nil
  ) {
    self.metrics = metrics
    self.alerter = alerter
    self.store = store
    self.httpClient = httpClient
    self.logger = logger
  }

  /// An HTTP client that never follows a redirect: a receiver checked as https (or loopback) must not
  /// hand the notice, and its signature, on to somewhere else.
  public static let noRedirects = HTTPClient(
    eventLoopGroup: HTTPClient.defaultEventLoopGroup,
    configuration: HTTPClient.Configuration(redirectConfiguration: .disallow))

  /// One sweep of the outbox; returns how many deliveries were attempted.
  @discardableResult
  public func sweep(now: Double) async -> Int {
    let receivers = Dictionary(await alerter.receivers().map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
    for (key, payload) in await alerter.takeFallback() {
      if let receiver = receivers[key] { _ = await deliver(payload, to: receiver) }
    }
    guard let due = try? await store.dueDeliveries(now: now) else { return 0 }
    for item in due {
      if alerter.outboxKey != nil,
        item.mac == nil || item.mac != alerter.mac(receiver: item.receiver, payload: item.payload)
      {
        // Not queued by this controller: written into the shared database by something else.
        try? await store.recordDelivery(
          id: item.id, delivered: false, giveUp: true, error: "not queued by this controller: not delivered",
          nextAttemptAt: now)
        logger.error("alert outbox row not queued by this controller: not delivered", metadata: ["id": "\(item.id)"])
        continue
      }
      guard let receiver = receivers[item.receiver] else {
        try? await store.recordDelivery(
          id: item.id, delivered: false, giveUp: true, error: "receiver \(item.receiver) is gone", nextAttemptAt: now)
        continue
      }
      let error = await deliver(item.payload, to: receiver)
      let attempt = item.attempts + 1
      let giveUp = error != nil && attempt > delays.count
      let next = now + (attempt <= delays.count ? delays[attempt - 1] : 0)
      try? await store.recordDelivery(
        id: item.id, delivered: error == nil, giveUp: giveUp, error: error, nextAttemptAt: next)
      metrics?(error == nil ? "delivered" : giveUp ? "failed" : "retry")
      logger.log(
        level: error == nil ? .info : .warning, "alert delivery",
        metadata: [
          "receiver": "\(receiver)", "attempt": "\(attempt)",
          "outcome": "\(error == nil ? "delivered" : giveUp ? "failed" : "retry")", "error": "\(error ?? "")",
        ])
    }
    return due.count
  }

  /// Sends `payload`; returns nil on success or a short error (never the URL's path or a secret).
  func deliver(_ payload: String, to receiver: AlertReceiver) async -> String? {
    switch receiver.kind {
    case .command:
      return await runCommand(receiver.target, input: payload)
    case .webhook, .slack, .alertmanager:
      var url = receiver.target
      if receiver.kind == .alertmanager { url = (url.hasSuffix("/") ? String(url.dropLast()) : url) + "/api/v2/alerts" }
      var request = HTTPClientRequest(url: url)
      request.method = .POST
      request.headers.add(name: "Content-Type", value: "application/json")
      request.headers.add(name: "User-Agent", value: "fleetkeeper")
      if let secret = receiver.secret, receiver.kind == .webhook {
        request.headers.add(
          name: "X-Fleetkeeper-Signature", value: AlertPayloads.signature(body: payload, secret: secret))
      }
      request.body = .bytes(ByteBuffer(string: payload))
      do {
        let response = try await httpClient.execute(request, timeout: .seconds(requestTimeout.components.seconds))
        _ = try? await response.body.collect(upTo: 1 << 20)
        return (200..<300).contains(Int(response.status.code)) ? nil : "HTTP \(response.status.code)"
      } catch {
        return "transport: \(String(describing: type(of: error)))"
      }
    }
  }

  /// The environment a command receiver runs with: the controller's, less `FLY_*` and `FLEET_*`
  /// (the Fly token, the database token, webhook secrets).
  public static func commandEnvironment(_ environment: [String: String]) -> [String: String] {
    environment.filter { !FleetNames.isControllerVariable($0.key) }
  }

  func runCommand(_ path: String, input: String) async -> String? {
    // A script just written may still be open for writing somewhere (another process forked
    // meanwhile holds the descriptor: ETXTBSY): a few tries, 100 ms apart, each a new process.
    var launched: (Process, Pipe)?
    for attempt in 0..<5 where launched == nil {
      let process = Process()
      process.executableURL = URL(fileURLWithPath: path)
      let stdin = Pipe()
      process.standardInput = stdin
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      // Never through a shell, and without the controller's own credentials and settings.
      process.environment = Self.commandEnvironment(ProcessInfo.processInfo.environment)
      do {
        try process.run()
        launched = (process, stdin)
      } catch {
        if attempt < 4 { try? await Task.sleep(for: .milliseconds(100)) }
      }
    }
    guard let (process, stdin) = launched else { return "cannot run \(path)" }
    stdin.fileHandleForWriting.write(Data(input.utf8))
    try? stdin.fileHandleForWriting.close()
    let deadline = Date().addingTimeInterval(commandTimeout)
    while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
    if process.isRunning {
      process.terminate()
      return "timed out after \(Int(commandTimeout)) s"
    }
    return process.terminationStatus == 0 ? nil : "exit status \(process.terminationStatus)"
  }
}
