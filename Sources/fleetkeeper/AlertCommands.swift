import ArgumentParser
import FleetAlerts
import FleetCore
import FleetStore
import Foundation

/// `FLEET_ALERT_WEBHOOK_URLS` and `FLEET_ALERT_WEBHOOK_SECRET`.
/// The outbox key, from the controller's own secrets (the Fly token, the webhook secret).
func outboxKey() -> [UInt8]? {
  let env = ProcessInfo.processInfo.environment
  return Alerter.outboxKey(fromSecrets: [env["FLY_API_TOKEN"] ?? "", env["FLEET_ALERT_WEBHOOK_SECRET"] ?? ""])
}

func envReceivers() throws -> [AlertReceiver] {
  let env = ProcessInfo.processInfo.environment
  do {
    return try AlertReceiver.parse(env["FLEET_ALERT_WEBHOOK_URLS"] ?? "", secret: env["FLEET_ALERT_WEBHOOK_SECRET"])
  } catch {
    throw SettingError("\(error)")
  }
}

struct AlertsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "alerts", abstract: "Active alerts, receivers, and a test notice.",
    subcommands: [List.self, Test.self, Receivers.self], defaultSubcommand: List.self)

  struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "list", abstract: "The active alerts (pending and firing).")
    @OptionGroup var db: DatabaseOptions
    @Flag(help: "JSON lines.") var json = false
    func run() async throws {
      try await runStoreCommand {
        let store = try await db.open()
        let alerts = try await Alerter(store: store, app: "", receivers: []).activeAlerts()
        for alert in alerts {
          if json {
            JSONOutput.print(
              AlertJSON(
                fingerprint: alert.fingerprint, kind: alert.kind, user_id: alert.userID, resource: alert.resourceID,
                status: alert.isFiring ? "firing" : "pending", starts_at: rfc3339(alert.startsAt),
                message: alert.message))
          } else {
            print(
              "\(alert.isFiring ? "FIRING " : "pending") \(alert.kind) \(alert.userID ?? "-") \(alert.resourceID ?? "-") since \(rfc3339(alert.startsAt)): \(alert.message)"
            )
          }
        }
        if alerts.isEmpty && !json { print("no active alerts") }
      }
    }
  }

  struct Test: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Send a test notice to every receiver now, and report each outcome.")
    @OptionGroup var db: DatabaseOptions
    @Option(help: "The Fly app named in notices (env FLEET_FLY_APP, else FLY_APP_NAME, as `run` reads it).")
    var app: String?
    func run() async throws {
      let env = ProcessInfo.processInfo.environment
      try await runStoreCommand {
        let store = try await db.open()
        let alerter = Alerter(
          store: store, app: app ?? env["FLEET_FLY_APP"] ?? env["FLY_APP_NAME"] ?? "",
          receivers: try envReceivers(), outboxKey: outboxKey())
        let count = try await alerter.queueTest(now: Date().timeIntervalSince1970)
        if count == 0 {
          complain("no receivers: set FLEET_ALERT_WEBHOOK_URLS or add one with `fleetkeeper alerts receivers add`")
          throw ExitCode(1)
        }
        let sender = AlertSender(alerter: alerter, store: store)
        await sender.sweep(now: Date().timeIntervalSince1970)
        var failed = false
        for item in try await store.outbox(limit: count) {
          print("\(item.receiver): \(item.status)\(item.lastError.map { " (\($0))" } ?? "")")
          if item.status != "delivered" { failed = true }
        }
        if failed { throw ExitCode(1) }
      }
    }
  }

  struct Receivers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Receivers kept in the database.", subcommands: [Add.self])
    struct Add: AsyncParsableCommand {
      @OptionGroup var db: DatabaseOptions
      @Argument(help: "webhook, slack or alertmanager (command receivers: FLEET_ALERT_WEBHOOK_URLS only).") var kind:
        String
      @Argument(help: "An https URL, or http to loopback.") var target: String
      @Option(help: "Env variable holding the webhook's HMAC secret.") var secretEnv: String?
      func run() async throws {
        try await runStoreCommand {
          let row = AlertReceiverRow(kind: kind, target: target, secretEnv: secretEnv)
          // The same checks as when the controller reads the row back (command receivers come only
          // from FLEET_ALERT_WEBHOOK_URLS: nothing in the shared database may run a program).
          _ = try AlertReceiver.fromDatabase(row, environment: [:])
          try await db.open().addAlertReceiver(row)
          print("receiver added")
        }
      }
    }
  }
}
