import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import FlySimulator
import Foundation
import Testing

/// Per-user values in the template, end to end against the simulator: the gateway token of the
/// fleet in `../shared/USERS.md`, derived per user, computed again on the dashboard's side.
@Suite(.serialized) struct PerUserConfigTests {
  static let key = "gw-key-for-tests-7f3a"

  /// What the product's dashboard computes with the same key (docs/configuration.md), without
  /// fleetkeeper's `Placeholders`: HMAC-SHA256(key, user id), lowercase hex.
  static func dashboardToken(_ user: String) -> String {
    Digests.hex(Digests.hmacSHA256(key: Array(key.utf8), message: Array(user.utf8)))
  }

  static func settings() -> ReconcilerSettings {
    var settings = Harness.testSettings()
    settings.secrets = ["AGENT_SECRET": "s3cr3t-agent-value", "GATEWAY_KEY": key]
    return settings
  }

  static func gatewayTemplate(key name: String = "GATEWAY_KEY") -> TemplatePatch {
    var template = TemplatePatch()
    template.env = [
      "GATEWAY_TOKEN": "{{secret:\(name)}}", "USER_ID": "{{user_id}}", "PUBLIC_URL": "https://{{hostname}}/",
      "FLY_APP": "{{app_name}}", "AGENT_KEY": "$AGENT_SECRET",
    ]
    template.initCommand = [
      "gateway", "--allow-unconfigured", "--bind", "lan", "--auth", "token", "--token", "{{secret:\(name)}}",
    ]
    return template
  }

  @Test func eachMachineCarriesItsOwnGatewayTokenAndNothingSecretIsStored() async throws {
    try await withHarness(simulator: Harness.instant, settings: Self.settings()) { harness in
      try await harness.store.setTemplate(Self.gatewayTemplate())
      try await harness.addUsers(3)
      let reports = await harness.converge()
      let fleet = harness.fleet()
      #expect(fleet.machinesByUser.count == 3)
      var tokens: [String] = []
      for user in ["u0", "u1", "u2"] {
        let config = try #require(fleet.machine(user)?.config)
        let token = Self.dashboardToken(user)
        tokens.append(token)
        #expect(config.env["GATEWAY_TOKEN"] == token, "\(user)")
        #expect(config.initCommand?.last == token && config.initCommand?.dropLast().last == "--token")
        #expect(config.env["USER_ID"] == user)
        #expect(config.env["PUBLIC_URL"] == "https://app.fly.dev/")
        #expect(config.env["FLY_APP"] == "app")
        #expect(config.env["AGENT_KEY"] == "s3cr3t-agent-value")
      }
      #expect(Set(tokens).count == 3, "every user has their own token")
      // Never stored: not in the database file (its WAL included), not in an event, not in a report.
      let events = try await harness.store.events(limit: 10_000)
      var stored = Data()
      for suffix in ["", "-wal"] {
        stored.append((try? Data(contentsOf: URL(fileURLWithPath: harness.databasePath + suffix))) ?? Data())
      }
      #expect(stored.count > 10_000)
      for token in tokens {
        #expect(!events.contains { $0.detailsJSON.contains(token) })
        #expect(stored.range(of: Data(token.utf8)) == nil, "a derived token in the database")
        #expect(!reports.contains { "\($0)".contains(token) })
      }
      // The template keeps the placeholders, not values.
      let template = try await harness.store.template()
      #expect(template.env["GATEWAY_TOKEN"] == "{{secret:GATEWAY_KEY}}")
    }
  }

  @Test func aKeyTheControllerDoesNotHoldFailsTheCreateAndSendsNothing() async throws {
    try await withHarness(simulator: Harness.instant, settings: Self.settings()) { harness in
      try await harness.store.setTemplate(Self.gatewayTemplate(key: "MISSING_KEY"))
      try await harness.addUsers(1)
      await harness.converge(maxPasses: 6)
      #expect(harness.fleet().machinesByUser.isEmpty)
      #expect(!harness.simulator.requestLog().contains { $0.endpoint == "POST /machines" })
      let events = try await harness.store.events(limit: 1_000)
      #expect(
        events.contains { $0.eventType == "create_machine" && $0.detailsJSON.contains("$MISSING_KEY") },
        "\(events.map(\.detailsJSON))")
    }
  }

  @Test func templateSetRefusesAPlaceholderThatNamesNothing() async throws {
    try await withHarness(simulator: Harness.instant, settings: Self.settings()) { harness in
      for (env, command) in [
        (["TOKEN": "{{secret:GATEWAY-KEY}}"], nil), (["TOKEN": "{{userid}}"], nil),
        (["TOKEN": "{{secret:FLY_API_TOKEN}}"], nil), (nil, ["gateway", "--token", "{{secret:GATEWAY_KEY"]),
      ] as [([String: String]?, [String]?)] {
        var patch = TemplatePatch()
        patch.env = env
        patch.initCommand = command
        do {
          try await harness.store.setTemplate(patch)
          Issue.record("accepted \(String(describing: env)) \(String(describing: command))")
        } catch {
          let text = "\(error)"
          #expect(text.contains(env == nil ? "init_cmd" : "env.TOKEN"), "\(text)")
          #expect(text.contains("{{"), "the message names the value: \(text)")
        }
      }
      let after = try await harness.store.template()
      #expect(after.env == ["AGENT_KEY": "$AGENT_SECRET"], "nothing changed")
    }
  }

  @Test func aUsersOwnEnvIsLaidOverTheTemplatesWithItsPlaceholders() async throws {
    try await withHarness(simulator: Harness.instant, settings: Self.settings()) { harness in
      var template = TemplatePatch()
      template.env = ["GREETING": "hello", "AGENT_KEY": "$AGENT_SECRET"]
      try await harness.store.setTemplate(template)
      try await harness.store.importUsers([
        UserInput(userID: "u0", region: "cdg"),
        UserInput(
          userID: "u1", region: "cdg", env: ["GREETING": "hi {{user_id}}", "TOKEN": "{{secret:GATEWAY_KEY}}"]),
      ])
      await harness.converge()
      let fleet = harness.fleet()
      let plain = try #require(fleet.machine("u0")?.config?.env)
      let own = try #require(fleet.machine("u1")?.config?.env)
      #expect(plain == ["GREETING": "hello", "AGENT_KEY": "s3cr3t-agent-value"])
      #expect(own == ["GREETING": "hi u1", "TOKEN": Self.dashboardToken("u1"), "AGENT_KEY": "s3cr3t-agent-value"])
    }
  }
}
