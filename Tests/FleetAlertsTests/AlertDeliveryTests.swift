import FleetAlerts
import FleetCore
import FleetStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import Testing

/// A local webhook receiver on loopback that records what it gets and can play "down".
final class WebhookReceiver: Sendable {
  struct Received: Sendable {
    var path: String
    var body: String
    var signature: String?
  }
  final class Box: Sendable {
    let received = Mutex<[Received]>([])
    let down = Mutex(false)
  }
  let box = Box()
  let port: Int
  private let task: Task<Void, any Error>

  func setDown(_ value: Bool) { box.down.withLock { $0 = value } }

  init() async throws {
    let box = self.box
    let router = Router()
    router.post("**") { request, context -> Response in
      var request = request
      let body = try await request.collectBody(upTo: 1 << 20)
      if box.down.withLock({ $0 }) { return Response(status: .serviceUnavailable) }
      box.received.withLock {
        $0.append(
          Received(
            path: request.uri.path, body: String(buffer: body),
            signature: request.headers[HTTPField.Name("X-Fleetkeeper-Signature")!]))
      }
      return Response(status: .ok)
    }
    var quiet = Logger(label: "receiver")
    quiet.logLevel = .critical
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let app = Application(
      router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
      onServerRunning: { continuation.yield($0.localAddress!.port!) }, logger: quiet)
    task = Task { try await app.runService() }
    var iterator = ports.makeAsyncIterator()
    port = await iterator.next()!
  }

  var all: [Received] { box.received.withLock { $0 } }
  func stop() { task.cancel() }
}

func freshStore() async throws -> FleetStore {
  let path = FileManager.default.temporaryDirectory.appendingPathComponent("fk-alerts-\(UUID().uuidString).sqlite3")
    .path
  let store = try FleetStore.sqlite(path: path, create: true)
  try await store.migrate()
  return store
}

/// An executable command receiver that appends what it reads on standard input to `out`.
func recordingCommand() throws -> (script: URL, out: URL) {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fk-cmd-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  let out = dir.appendingPathComponent("got.json")
  let script = dir.appendingPathComponent("notify.sh")
  try "#!/bin/sh\ncat >> \(out.path)\n".write(to: script, atomically: true, encoding: .utf8)
  try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
  return (script, out)
}

func statuses(_ body: String) -> [String] {
  let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
  return (json?["alerts"] as? [[String: Any]] ?? []).compactMap { $0["status"] as? String }
}

@Suite(.serialized) struct AlertDeliveryTests {
  let stopped = DriftFinding(
    kind: .stoppedWhileDesiredRunning, userID: "u1", resourceID: "m1", message: "machine m1 is stopped")
  let missing = DriftFinding(kind: .machineMissing, userID: "u2", resourceID: "m2", message: "machine m2 is gone")

  @Test func oneFiringAndOneResolvedPerEpisodeGroupedAndSigned() async throws {
    let receiver = try await WebhookReceiver()
    defer { receiver.stop() }
    let store = try await freshStore()
    let secret = "whsec-test-value-1234"
    let alerter = Alerter(
      store: store, app: "users-app",
      receivers: [
        AlertReceiver(key: "env:0", kind: .webhook, target: "http://127.0.0.1:\(receiver.port)/hook", secret: secret)
      ])
    let sender = AlertSender(alerter: alerter, store: store)
    var now = 1_800_000_000.0
    for findings in [[stopped, missing], [stopped, missing], [stopped, missing], [stopped], [], []] {
      await alerter.process(findings, now: now)
      await sender.sweep(now: now)
      now += 30
    }
    let got = receiver.all
    #expect(got.map { statuses($0.body) } == [["firing", "firing"], ["resolved"], ["resolved"]])
    for request in got {
      #expect(
        request.signature == AlertPayloads.signature(body: request.body, secret: secret),
        "the receiver verifies the HMAC")
      #expect(!request.body.contains(secret))
    }
    #expect(try await alerter.activeAlerts().isEmpty)
  }

  @Test func aReceiverDownForAWhileGetsEachNoticeOnce() async throws {
    let receiver = try await WebhookReceiver()
    defer { receiver.stop() }
    let store = try await freshStore()
    let receivers = [
      AlertReceiver(key: "env:0", kind: .slack, target: "http://127.0.0.1:\(receiver.port)/services/T0/B0/secretpath")
    ]
    let alerter = Alerter(store: store, app: "users-app", receivers: receivers)
    receiver.setDown(true)
    var now = 1_800_000_000.0
    await alerter.process([stopped], now: now)
    await alerter.process([stopped], now: now + 30)  // fires
    var sender = AlertSender(alerter: alerter, store: store)
    sender.delays = [2, 6, 15]
    now += 30
    await sender.sweep(now: now)  // attempt 1: 503
    await sender.sweep(now: now + 1)  // not due yet
    // The controller restarts: a new alerter and sender on the same database.
    let restarted = Alerter(store: store, app: "users-app", receivers: receivers)
    let sender2 = AlertSender(alerter: restarted, store: store)
    await sender2.sweep(now: now + 2)  // attempt 2: 503
    receiver.setDown(false)
    await sender2.sweep(now: now + 8)  // attempt 3: delivered
    await sender2.sweep(now: now + 60)
    #expect(receiver.all.count == 1)
    #expect(receiver.all.first?.body.contains("stopped_while_desired_running") == true)
    let outbox = try await store.outbox()
    #expect(outbox.map(\.status) == ["delivered"])
    #expect(outbox.first?.attempts == 3)
    #expect(outbox.first?.receiver == "env:0", "the outbox never holds a URL (Slack's carries its secret)")
  }

  @Test func aReceiverDownForGoodIsGivenUpAfterFourTries() async throws {
    let receiver = try await WebhookReceiver()
    defer { receiver.stop() }
    receiver.setDown(true)
    let store = try await freshStore()
    let alerter = Alerter(
      store: store, app: "a",
      receivers: [AlertReceiver(key: "env:0", kind: .webhook, target: "http://127.0.0.1:\(receiver.port)/down")])
    _ = try await alerter.queueTest(now: 0)
    let sender = AlertSender(alerter: alerter, store: store)
    for now in [0.0, 2, 8, 23, 60, 120] { await sender.sweep(now: now) }
    let outbox = try await store.outbox()
    #expect(outbox.first?.status == "failed")
    #expect(outbox.first?.attempts == 4)
    #expect(outbox.first?.lastError == "HTTP 503")
  }

  @Test func commandReceiverGetsTheJSONOnStandardInput() async throws {
    let (script, out) = try recordingCommand()
    let store = try await freshStore()
    let alerter = Alerter(
      store: store, app: "a", receivers: [AlertReceiver(key: "env:0", kind: .command, target: script.path)])
    _ = try await alerter.queueTest(now: 0)
    await AlertSender(alerter: alerter, store: store).sweep(now: 0)
    let got = try String(contentsOf: out, encoding: .utf8)
    #expect(got.contains(#""alertname":"test""#))
    #expect(try await store.outbox().first?.status == "delivered")
  }

  @Test func receiversParseFromTheEnvironment() throws {
    let receivers = try AlertReceiver.parse(
      "https://example.com/hook, https://hooks.slack.com/services/T/B/X, alertmanager:http://127.0.0.1:9093, command:/usr/local/bin/page",
      secret: "s")
    #expect(receivers.map(\.kind) == [.webhook, .slack, .alertmanager, .command])
    #expect(receivers[0].secret == "s" && receivers[1].secret == nil)
    #expect("\(receivers[1])" == "slack https://hooks.slack.com", "a receiver prints without its URL path")
    #expect(throws: FieldError.self) { try AlertReceiver.parse("ftp://x", secret: nil) }
  }
}
