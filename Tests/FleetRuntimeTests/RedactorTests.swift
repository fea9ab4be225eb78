import FleetCore
import FleetRuntime
import Foundation
import Logging
import Synchronization
import Testing

@Suite struct RedactorTests {
  /// Fly echoes a request body in its errors as JSON; a URL carries a value percent-encoded.
  @Test func aSecretIsScrubbedInEveryFormItTakes() throws {
    let secret = #"sk/ant"quote\back é"#
    let redactor = Redactor([secret])
    let data = try JSONSerialization.data(withJSONObject: ["env": ["KEY": secret]])
    let echoed = "HTTP 422: " + String(decoding: data, as: UTF8.self)  // Foundation escapes `/` as `\/`
    #expect(echoed.contains(#"sk\/ant"#), "the echo escapes the slash (the form that leaked)")
    let forms = [
      secret,
      echoed,
      #"{"KEY":"sk/ant\"quote\\back é"}"#,
      #"{"KEY":"sk\/ant\"quote\\back \u00e9"}"#,
      #"{"KEY":"sk\/ant\"quote\\back \u00E9"}"#,
      "https://x/?k=" + secret.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!,
      "https://x/?k=" + secret.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed)!,
    ]
    for text in forms {
      let scrubbed = redactor.scrub(text)
      #expect(scrubbed.contains("<redacted>"), "\(scrubbed)")
      #expect(!scrubbed.contains("sk/ant") && !scrubbed.contains(#"sk\/ant"#) && !scrubbed.contains("sk%2Fant"))
    }
    #expect(redactor.scrub("nothing secret here") == "nothing secret here")
  }

  /// The settings struct, logged whole as a service library does at debug level, shows no secret.
  @Test func settingsDescribeWithoutTheirSecrets() {
    var settings = ReconcilerSettings()
    settings.secrets = SecretValues(["AGENT_KEY": "agent-secret-value-9"])
    var dumped = ""
    dump(settings, to: &dumped)
    for text in [String(describing: settings), String(reflecting: settings), dumped, "\(settings.secrets)"] {
      #expect(!text.contains("agent-secret-value-9"), "\(text)")
      #expect(!text.contains("AGENT_KEY"))
    }
    #expect(settings.secrets["AGENT_KEY"] == "agent-secret-value-9")
  }

  /// Every level, trace included, through the log handler: no line holds a secret.
  @Test func traceLogsHoldNoSecret() {
    let lines = Mutex<[String]>([])
    let redactor = Redactor(["fm2_token-value-1234", #"p/a"ss"#])
    var handler = FleetLogHandler(
      label: "t", format: .json, level: .trace, redactor: redactor,
      write: { line in lines.withLock { $0.append(line) } })
    handler.metadata["token"] = "fm2_token-value-1234"
    let logger = Logger(label: "t", factory: { _ in handler })
    logger.trace("request failed: {\"error\":\"p\\/a\\\"ss\"}", metadata: ["body": "%22p%2Fa%22ss%22"])
    let all = lines.withLock { $0 }.joined(separator: "\n")
    #expect(all.contains("<redacted>"))
    #expect(!all.contains("fm2_token-value-1234") && !all.contains(#"p\\/a"#) && !all.contains("p%2Fa"))
  }
}

@Suite struct ClockTests {
  /// The wall clock steps a day back and two days ahead: the controller's time does not.
  @Test func wallClockStepsDoNotMoveTheControllersTime() {
    let wall = Mutex(1_800_000_000.0)
    let monotonic = Mutex(500.0)
    let clock = MonotonicWallClock(wall: { wall.withLock { $0 } }, monotonic: { monotonic.withLock { $0 } })
    #expect(clock.now() == 1_800_000_000)
    wall.withLock { $0 -= 86_400 }
    monotonic.withLock { $0 += 10 }
    #expect(clock.now() == 1_800_000_010)
    wall.withLock { $0 += 3 * 86_400 }
    monotonic.withLock { $0 += 5 }
    #expect(clock.now() == 1_800_000_015)
  }
}
