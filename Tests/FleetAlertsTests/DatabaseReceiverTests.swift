import FleetAlerts
import FleetCore
import FleetStore
import Foundation
import Testing

/// The database is shared with the dashboard: a row written there must never make the controller
/// run a program, sign with its own credentials, or post to an arbitrary plain-http host.
@Suite struct DatabaseReceiverTests {
  @Test func aHostileDatabaseRowNeverRunsACommand() async throws {
    let receiver = try await WebhookReceiver()
    defer { receiver.stop() }
    let store = try await freshStore()
    let marker = FileManager.default.temporaryDirectory.appendingPathComponent("fk-pwned-\(UUID().uuidString)")
    // What a writer of the shared database did: a shell as a command receiver, and a user id that
    // is a shell command.
    _ = try await store.database.write([
      SQLStatement("INSERT INTO alert_receivers (kind, target) VALUES ('command', '/bin/sh')"),
      SQLStatement("INSERT INTO alert_receivers (kind, target) VALUES ('webhook', 'http://203.0.113.9/hook')"),
      SQLStatement(
        "INSERT INTO alert_receivers (kind, target, secret_env) VALUES ('webhook', 'https://example.invalid/h', 'FLY_API_TOKEN')"
      ),
      SQLStatement(
        "INSERT INTO alert_receivers (kind, target) VALUES ('webhook', ?)",
        [.text("http://127.0.0.1:\(receiver.port)/hook")]),
    ])
    let alerter = Alerter(store: store, app: "a", receivers: [])
    let keys = await alerter.receivers().map(\.key)
    #expect(keys == ["db:4"], "only the https-or-loopback webhook without a controller secret is used")
    let finding = DriftFinding(
      kind: .machineFailed, userID: "x$(env>\(marker.path))", resourceID: "m1", message: "machine m1 failed")
    let sender = AlertSender(alerter: alerter, store: store)
    var now = 1_800_000_000.0
    for _ in 0..<3 {
      await alerter.process([finding], now: now)
      await sender.sweep(now: now)
      now += 30
    }
    #expect(!FileManager.default.fileExists(atPath: marker.path), "no shell ran the alert")
    #expect(receiver.all.count == 1, "the allowed receiver still gets the alert")
    #expect(try await store.outbox().map(\.receiver) == ["db:4"])
  }

  @Test func databaseRowsAreCheckedFieldByField() throws {
    func check(_ kind: String, _ target: String, _ secret: String? = nil) -> String? {
      do {
        _ = try AlertReceiver.fromDatabase(
          AlertReceiverRow(id: 7, kind: kind, target: target, secretEnv: secret), environment: ["HOOK_SECRET": "s3cr3t"]
        )
        return nil
      } catch {
        return error.field
      }
    }
    #expect(check("command", "/usr/local/bin/page") == "alert_receivers[7].kind")
    #expect(check("shell", "https://x.example") == "alert_receivers[7].kind")
    #expect(check("webhook", "http://10.1.2.3/x") == "alert_receivers[7].target")
    #expect(check("webhook", "http://127.0.0.1.evil.example/x") == "alert_receivers[7].target")
    #expect(check("webhook", "https://user:pw@x.example/") == "alert_receivers[7].target")
    #expect(check("webhook", "file:///etc/passwd") == "alert_receivers[7].target")
    #expect(check("webhook", "https://x.example/h", "FLY_API_TOKEN") == "alert_receivers[7].secret_env")
    #expect(check("webhook", "https://x.example/h", "fleet_database_auth_token") == "alert_receivers[7].secret_env")
    #expect(check("webhook", "https://x.example/h", "HOOK_SECRET") == nil)
    #expect(check("slack", "https://hooks.slack.com/services/T/B/X") == nil)
    #expect(check("alertmanager", "http://127.0.0.1:9093") == nil)
    #expect(check("webhook", "http://localhost:8080/h") == nil)
    #expect(check("webhook", "http://[::1]:8080/h") == nil)
    // The error names the field and the host, never a URL's secret path.
    do {
      _ = try AlertReceiver.fromDatabase(
        AlertReceiverRow(id: 1, kind: "webhook", target: "http://hooks.example/services/SECRETPATH"), environment: [:])
      Issue.record("plain http to a remote host was accepted")
    } catch {
      #expect(!error.description.contains("SECRETPATH"))
      #expect(error.description.contains("hooks.example"))
    }
  }

  /// A row written straight into the outbox (naming the operator's command receiver, or a signed
  /// webhook) is never delivered: only notices the controller queued carry its key's HMAC.
  @Test func aForgedOutboxRowIsNeverDelivered() async throws {
    let (script, out) = try recordingCommand()
    let store = try await freshStore()
    let alerter = Alerter(
      store: store, app: "a", receivers: [AlertReceiver(key: "env:0", kind: .command, target: script.path)],
      outboxKey: Alerter.outboxKey(fromSecrets: ["fm2_token-value"]))
    _ = try await store.database.write([
      SQLStatement(
        "INSERT INTO fleet_alert_outbox (receiver, payload, next_attempt_at) VALUES ('env:0', '{\"forged\":true}', 0)"),
      SQLStatement(
        "INSERT INTO fleet_alert_outbox (receiver, payload, next_attempt_at, mac) VALUES ('env:0', '{\"forged\":2}', 0, 'abc')"
      ),
    ])
    _ = try await alerter.queueTest(now: 1)
    await AlertSender(alerter: alerter, store: store).sweep(now: 2)
    let got = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
    #expect(got.contains("fleetkeeper test notice"), "the controller's own notice is delivered")
    #expect(!got.contains("forged"), "a forged row is not")
    let outbox = try await store.outbox()
    #expect(outbox.filter { $0.status == "failed" }.count == 2)
    #expect(outbox.filter { $0.status == "delivered" }.count == 1)
  }

  @Test func commandsRunWithoutTheControllersCredentials() {
    let env = AlertSender.commandEnvironment([
      "PATH": "/usr/bin", "FLY_API_TOKEN": "fm2_x", "FLEET_DATABASE_AUTH_TOKEN": "t", "fly_api_token": "y",
      "HOME": "/root",
    ])
    #expect(env == ["PATH": "/usr/bin", "HOME": "/root"])
  }
}
