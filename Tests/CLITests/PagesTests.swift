import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The operator's pages, as a person uses them: headless Chromium (Debian's `chromium`, installed
/// by `.ci/run`) opens them against `fleetkeeper run` over a simulated fleet with a failing user;
/// the test asserts what is on the page and saves screenshots (`.build/screenshots/`).
@Suite(.serialized) struct PagesTests {
  static let token = "ui-token-0123456789abcdef"
  static let screenshots = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent(".build/screenshots")

  /// Runs Chromium headless on `url`: the DOM after load, or a screenshot into `screenshot`.
  static func chromium(_ url: String, screenshot: URL? = nil) async throws -> String {
    let profile = temporaryDirectory().appendingPathComponent("chromium")
    var args = [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
      "--user-data-dir=\(profile.path)", "--window-size=1280,1100",
    ]
    if let screenshot { args.append("--screenshot=\(screenshot.path)") } else { args.append("--dump-dom") }
    args.append(url)
    let arguments = args
    return try await offload {
      let process = Process()
      process.executableURL = URL(fileURLWithPath: "/usr/bin/chromium")
      process.arguments = arguments
      let out = Pipe()
      process.standardOutput = out
      process.standardError = FileHandle.nullDevice
      try process.run()
      let data = out.fileHandleForReading.readDataToEndOfFile()
      process.waitUntilExit()
      return String(decoding: data, as: UTF8.self)
    }
  }

  static func get(_ url: String, cookie: String? = nil) async throws -> (Int, String) {
    var request = HTTPClientRequest(url: url)
    if let cookie { request.headers.add(name: "Cookie", value: cookie) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
    let body = try await response.body.collect(upTo: 8 << 20)
    return (Int(response.status.code), String(buffer: body))
  }

  @Test func anOperatorSeesTheFailingUserAndItsLastError() async throws {
    try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"), "chromium is installed by .ci/run")
    let dir = temporaryDirectory()
    let db = dir.appendingPathComponent("fleet.sqlite3").path
    let sim = try Background(["sim", "--port", "0", "--app", "app", "--token", "tok", "--fast"])
    defer { sim.signal(SIGTERM) }
    let simLine = try #require(await sim.readLine(containing: "FLY_API_BASE_URL="))
    let base = String(simLine.split(separator: "=").last!)
    let env = [
      "FLY_API_BASE_URL": base, "FLY_APP_NAME": "app", "FLY_API_TOKEN": "tok", "FLEET_DATABASE": db,
      "FLEET_LISTEN": "127.0.0.1:0", "FLEET_INTERVAL": "1", "FLEET_UI_TOKEN": Self.token,
    ]
    try await fleetkeeper(["migrate"], env: env)
    // A user id a browser would take for markup: it must show as text.
    let hostile = "<b>bold</b>"
    for user in ["ada", "grace", hostile] {
      try await fleetkeeper(["users", "add", user, "--region", "cdg"], env: env)
    }
    // hal's image cannot be pulled: its machine's create fails, with an error to show.
    try await fleetkeeper(
      ["users", "add", "hal", "--region", "cdg", "--image", "registry.fly.io/missing:1"], env: env)
    var faults = HTTPClientRequest(url: base + "/_sim/faults")
    faults.method = .POST
    faults.body = .bytes(ByteBuffer(string: #"{"bad_images":["registry.fly.io/missing:1"]}"#))
    _ = try await HTTPClient.shared.execute(faults, timeout: .seconds(5))
    let run = try Background(["run"], env: env)
    defer { run.signal(SIGTERM) }
    let listening = try #require(await run.readLine(containing: "ops server listening", fromStandardError: true))
    let port = try #require(listening.split(separator: ":").last.map { String($0.prefix { $0.isNumber }) })
    let ui = "http://127.0.0.1:\(port)/ui"
    for _ in 0..<100 where try await census(base).started < 3 { try await Task.sleep(for: .milliseconds(100)) }
    // grace's disk fills up: failing.
    let state = try await fetchJSON(base + "/_sim/state")
    let machines = state["machines"] as? [[String: Any]] ?? []
    let graces = machines.first {
      (($0["config"] as? [String: Any])?["metadata"] as? [String: Any])?["fleet_user_id"] as? String == "grace"
    }
    let volume = try #require(
      ((graces?["config"] as? [String: Any])?["mounts"] as? [[String: Any]])?.first?["volume"] as? String)
    var drift = HTTPClientRequest(url: base + "/_sim/drift")
    drift.method = .POST
    drift.body = .bytes(ByteBuffer(string: #"{"op":"fill_volume","volume_id":"\#(volume)","bytes_used":1020054732}"#))
    _ = try await HTTPClient.shared.execute(drift, timeout: .seconds(5))
    let cookie = "fleet_ui=\(Self.token)"
    var shown = ""
    for _ in 0..<100 where !shown.contains("disk_full") {
      shown = try await Self.get(ui, cookie: cookie).1
      if !shown.contains("disk_full") { try await Task.sleep(for: .milliseconds(100)) }
    }
    #expect(shown.contains("disk_full"), "the overview shows the failing user")

    // Without the token: a sign-in page, nothing of the fleet.
    let (status, denied) = try await Self.get(ui)
    #expect(status == 401 && !denied.contains("grace"))
    let wrong = try await Self.get(ui + "?token=wrong")
    #expect(wrong.0 == 401)
    // A page number no list has: an empty page, never a crash of the controller.
    let far = try await Self.get(ui + "/users?page=9223372036854775807", cookie: "fleet_ui=\(Self.token)")
    #expect(far.0 == 200)
    #expect(try await Self.get(ui, cookie: "fleet_ui=\(Self.token)").0 == 200, "still serving")

    // As a person: the browser opens the link with the token (it becomes a cookie).
    let overview = try await Self.chromium(ui + "?token=\(Self.token)")
    for expected in ["Fleet overview", "grace", "disk_full", "95% full", "Active alerts", "Recent events"] {
      #expect(overview.contains(expected), "the overview shows \(expected)")
    }
    #expect(
      overview.contains("&lt;b&gt;bold&lt;/b&gt;") || !overview.contains(hostile), "a user id is text, never markup")
    #expect(!overview.contains("<b>bold</b>"))
    #expect(!overview.contains(Self.token), "no token on the page")
    let user = try await Self.chromium(ui + "/users/grace?token=\(Self.token)")
    for expected in ["grace", "failing", "disk_full", "Events", "create_machine"] {
      #expect(user.contains(expected), "grace's page shows \(expected)")
    }
    let hal = try await Self.chromium(ui + "/users/hal?token=\(Self.token)")
    #expect(hal.contains("Last error") && hal.contains("missing:1"), "hal's page shows the last error:\n\(hal)")
    let list = try await Self.chromium(ui + "/users?condition=failing&token=\(Self.token)")
    #expect(list.contains("grace") && !list.contains(">ada<"), "the filter keeps the failing user only")

    try FileManager.default.createDirectory(at: Self.screenshots, withIntermediateDirectories: true)
    for (name, path) in [("overview", ""), ("user", "/users/grace"), ("user-error", "/users/hal")] {
      let file = Self.screenshots.appendingPathComponent("\(name).png")
      try? FileManager.default.removeItem(at: file)
      _ = try await Self.chromium(ui + path + "?token=\(Self.token)", screenshot: file)
      let size = (try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int) ?? 0
      #expect(size > 10_000, "a screenshot of \(name) was saved (\(size) bytes)")
    }
  }
}
