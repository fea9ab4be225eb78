import FleetCore
import Testing

/// Per-user values in a template: what each placeholder becomes, what is refused, and the derived
/// secret the dashboard must be able to compute on its own.
struct PlaceholdersTests {
  /// The documented test vector (docs/configuration.md), computed independently with Python's
  /// `hmac.new(b"example-gateway-key", b"user_2b7f9c", hashlib.sha256).hexdigest()`.
  @Test func theDerivedSecretMatchesTheDocumentedVector() {
    #expect(
      Placeholders.derivedSecret(key: "example-gateway-key", userID: "user_2b7f9c")
        == "36d82d73586af9caf3dd1617daf89b0fca4ab0bef350076804c93b53dd531963")
    // Another user, another key: other values.
    #expect(Placeholders.derivedSecret(key: "example-gateway-key", userID: "user_2b7f9d").count == 64)
    #expect(
      Placeholders.derivedSecret(key: "example-gateway-key", userID: "user_2b7f9d")
        != Placeholders.derivedSecret(key: "example-gateway-key", userID: "user_2b7f9c"))
    #expect(
      Placeholders.derivedSecret(key: "other-key", userID: "user_2b7f9c")
        != Placeholders.derivedSecret(key: "example-gateway-key", userID: "user_2b7f9c"))
  }

  @Test func eachPlaceholderBecomesTheUsersValue() throws {
    let context = Placeholders.Context(userID: "u-42", appName: "agents")
    var asked: [String] = []
    let expanded = Placeholders.expand(
      "gateway --token {{secret:GATEWAY_KEY}} --id {{user_id}} --url https://{{hostname}}/ --app {{app_name}}", context
    ) { (key: String) -> String in
      asked.append(key)
      return "T(\(key))"
    }
    #expect(expanded == "gateway --token T(GATEWAY_KEY) --id u-42 --url https://agents.fly.dev/ --app agents")
    #expect(asked == ["GATEWAY_KEY"])
    #expect(Placeholders.expand("plain {text} } {", context) { (_: String) -> String in "x" } == "plain {text} } {")
    #expect(Placeholders.secretKeys("{{secret:A}}-{{user_id}}-{{secret:B_2}}") == ["A", "B_2"])
  }

  @Test(arguments: [
    ("{{userid}}", "unknown placeholder {{userid}}"),
    ("{{user_id", "without \"}}\""),
    ("{{secret:}}", "NAME must be"),
    ("{{secret:lower-case}}", "NAME must be"),
    ("{{secret:FLY_API_TOKEN}}", "controller's own setting FLY_API_TOKEN"),
    ("{{secret:FLEET_DATABASE_AUTH_TOKEN}}", "controller's own setting"),
    ("{{ user_id }}", "unknown placeholder"),
  ])
  func aPlaceholderThatNamesNothingIsRefused(text: String, says: String) {
    #expect(throws: Placeholders.Problem.self) { try Placeholders.parse(text) }
    do {
      _ = try Placeholders.parse(text)
    } catch {
      #expect(error.reason.contains(says), "\(text): \(error.reason)")
    }
  }
}
