public import FleetCore
public import FleetStore
public import Foundation
import Synchronization

/// What the pages show beside the status board: the last pass, the rollout, who writes.
public final class PageState: Sendable {
  private struct State {
    var lastPass: Double?
    var lastOutcome: String?
    var rollout: RolloutState?
    var standby = false
  }
  private let state = Mutex(State())
  public init() {}
  public func passed(_ report: PassReport, at now: Double) {
    state.withLock {
      $0.lastPass = now
      $0.lastOutcome = report.outcome.rawValue
      $0.rollout = report.rollout
    }
  }
  public func setStandby(_ value: Bool) { state.withLock { $0.standby = value } }
  var lastPass: Double? { state.withLock { $0.lastPass } }
  var lastOutcome: String? { state.withLock { $0.lastOutcome } }
  var rollout: RolloutState? { state.withLock { $0.rollout } }
  var standby: Bool { state.withLock { $0.standby } }
}

/// The operator's pages (issue 18): server-rendered HTML, no script, behind `FLEET_UI_TOKEN`
/// (given once as `?token=`, then an HttpOnly, SameSite=Strict cookie). The fleet overview, the
/// users not in sync (search, filter, paged), a page per user. Nothing secret on any page (no env
/// value, no token); every string that comes from a user, a row or Fly is escaped.
public struct Pages: Sendable {
  public let store: FleetStore
  public let board: StatusBoard
  public let state: PageState
  let token: [UInt8]
  let clock: any FleetClock
  /// Active alerts (the alerter's), read per page.
  let alerts: @Sendable () async -> [AlertState]

  public init(
    store: FleetStore, board: StatusBoard, state: PageState, token: String, clock: any FleetClock = SystemFleetClock(),
    alerts: @escaping @Sendable () async -> [AlertState]
  ) {
    self.store = store
    self.board = board
    self.state = state
    self.token = Array(token.utf8)
    self.clock = clock
    self.alerts = alerts
  }

  public struct Page: Sendable {
    public var status: Int
    public var body: String
    public var headers: [(String, String)] = []
  }

  static let cookie = "fleet_ui"

  func matches(_ given: Substring?) -> Bool {
    guard let given else { return false }
    return DashboardAPI.sameToken(given.utf8, token)
  }

  /// One request to `/ui…`.
  public func handle(path: String, query: [String: String], cookieHeader: String?) async -> Page {
    if let given = query["token"] {
      guard matches(Substring(given)) else { return Self.denied() }
      // Once: the token becomes a cookie and leaves the address bar (and the history).
      return Page(
        status: 303, body: "",
        headers: [
          ("Set-Cookie", "\(Self.cookie)=\(given); Path=/ui; HttpOnly; SameSite=Strict"),
          // A normalized local path, never `//host`.
          ("Location", "/" + path.split(separator: "/").filter { !$0.isEmpty }.joined(separator: "/")),
        ])
    }
    let cookie = cookieHeader?.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
      .first { $0.hasPrefix(Self.cookie + "=") }.map { Substring($0.dropFirst(Self.cookie.count + 1)) }
    guard matches(cookie) else { return Self.denied() }
    if path == "/ui" || path == "/ui/" { return await overview() }
    if path == "/ui/users" { return await users(query) }
    if path.hasPrefix("/ui/users/"), let id = String(path.dropFirst("/ui/users/".count)).removingPercentEncoding {
      return await user(id)
    }
    return Page(status: 404, body: Self.layout("Not found", "<p>No such page.</p>"))
  }

  static func denied() -> Page {
    Page(
      status: 401,
      body: layout(
        "Sign in", "<p>Open this page with <code>?token=</code> and the controller's <code>FLEET_UI_TOKEN</code>.</p>"))
  }

  // MARK: Pieces

  /// Text made safe for HTML (element content and quoted attributes).
  public static func escape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for character in text {
      switch character {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      default: out.append(character)
      }
    }
    return out
  }

  static func link(_ user: String) -> String {
    let encoded =
      user.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-_.")))
      ?? ""
    return "<a href=\"/ui/users/\(escape(encoded))\">\(escape(user))</a>"
  }

  func ago(_ time: Double?) -> String {
    guard let time else { return "—" }
    let seconds = max(0, clock.now() - time)
    let text =
      seconds < 120
      ? "\(Int(seconds)) s"
      : seconds < 7200
        ? "\(Int(seconds / 60)) min"
        : seconds < 172_800
          ? "\(Int(seconds / 3600)) h" : "\(Int(seconds / 86_400)) d"
    return "\(text) ago"
  }

  static func badge(_ condition: UserCondition) -> String {
    "<span class=\"badge \(condition.rawValue)\">\(condition.rawValue.replacingOccurrences(of: "_", with: " "))</span>"
  }

  static func layout(_ title: String, _ body: String) -> String {
    """
    <!doctype html><html lang="en"><head><meta charset="utf-8"><title>\(escape(title)) · fleetkeeper</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>
    body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
    header{background:#1d2433;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
    header a{color:#cfd6e4;text-decoration:none}header strong{font-size:16px}
    main{padding:18px 24px;max-width:1200px}h1{font-size:20px;margin:4px 0 14px}h2{font-size:15px;margin:22px 0 8px}
    .cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px 16px;min-width:120px}
    .card b{display:block;font-size:24px}.card.failing b{color:#b42318}.card.pending b{color:#b54708}
    table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8}
    th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eef0f4;vertical-align:top}th{background:#f0f2f6;font-weight:600}
    .badge{border-radius:10px;padding:1px 8px;font-size:12px;white-space:nowrap}
    .in_sync{background:#dcfae6;color:#085d3a}.pending{background:#fef0c7;color:#93370d}.failing{background:#fee4e2;color:#912018}
    .paused{background:#e4e7ec;color:#344054}.rolling_out{background:#d1e9ff;color:#1849a9}
    code,.mono{font-family:ui-monospace,monospace;font-size:12.5px}.muted{color:#667085}
    form{margin:0 0 12px}input,select{font:inherit;padding:4px 6px}
    </style></head><body>
    <header><strong>fleetkeeper</strong><a href="/ui">Overview</a><a href="/ui/users">Not in sync</a></header>
    <main><h1>\(escape(title))</h1>\(body)</main></body></html>
    """
  }

  // MARK: Overview

  func overview() async -> Page {
    let summary = board.summary
    var body = "<div class=\"cards\">"
    let total = summary.values.reduce(0, +)
    body += "<div class=\"card\"><b>\(total)</b>users</div>"
    for condition in UserCondition.allCases {
      let count = summary[condition] ?? 0
      body +=
        "<div class=\"card \(condition.rawValue)\"><b>\(count)</b><a href=\"/ui/users?condition=\(condition.rawValue)\">\(condition.rawValue.replacingOccurrences(of: "_", with: " "))</a></div>"
    }
    body += "</div>"
    let writer =
      state.standby
      ? "another process holds the writer lease (this one stands by)" : "this process holds the writer lease"
    body +=
      "<p class=\"muted\">Last pass \(ago(state.lastPass))\(state.lastOutcome.map { " (\(Self.escape($0)))" } ?? ""); \(writer).</p>"
    let drifting = board.notInSync.filter { $0.condition != .paused }.sorted {
      ($0.since ?? .infinity) < ($1.since ?? .infinity)
    }
    if let oldest = drifting.first {
      body +=
        "<p>Oldest drift: \(Self.link(oldest.userID)) \(Self.badge(oldest.condition)) since \(ago(oldest.since))\(oldest.findings.first.map { ": " + Self.escape($0.message) } ?? "")</p>"
    }
    if let rollout = state.rollout, rollout.status != .done {
      body +=
        "<h2>Rollout</h2><p>Template revision \(rollout.revision.map(String.init) ?? "?"): \(Self.escape(rollout.status.rawValue)), \(rollout.through) of \(rollout.total) through, \(rollout.failed.count) failed, \(rollout.remaining) to go.</p>"
    }
    let active = await alerts()
    body += "<h2>Active alerts (\(active.count))</h2>"
    if active.isEmpty {
      body += "<p class=\"muted\">None: the fleet is as desired.</p>"
    } else {
      body += "<table><tr><th>Alert</th><th>User</th><th>Since</th><th>Message</th></tr>"
      for alert in active.sorted(by: { $0.startsAt < $1.startsAt }).prefix(50) {
        body +=
          "<tr><td>\(alert.isFiring ? "<b>FIRING</b>" : "pending") \(Self.escape(alert.kind))</td><td>\(alert.userID.map(Self.link) ?? "—")</td><td>\(ago(alert.startsAt))</td><td>\(Self.escape(alert.message))</td></tr>"
      }
      body += "</table>"
    }
    body += "<h2>Not in sync</h2>" + table(Array(drifting.prefix(20)))
    if drifting.count > 20 { body += "<p><a href=\"/ui/users\">All \(drifting.count) →</a></p>" }
    let events = (try? await store.events(limit: 15)) ?? []
    body += "<h2>Recent events</h2>" + eventTable(events.reversed())
    return Page(status: 200, body: Self.layout("Fleet overview", body))
  }

  func table(_ users: [UserStatus]) -> String {
    guard !users.isEmpty else { return "<p class=\"muted\">Every user is in sync.</p>" }
    var html = "<table><tr><th>User</th><th>Condition</th><th>Since</th><th>Why</th><th>Next</th></tr>"
    for user in users {
      let why =
        user.findings.first.map { "\(Self.escape($0.kind.rawValue)): \(Self.escape($0.message))" }
        ?? user.lastError.map(Self.escape) ?? ""
      let next = user.planned.first.map { "\(Self.escape($0.kind.rawValue)) — \(Self.escape($0.reason))" } ?? ""
      html +=
        "<tr><td class=\"mono\">\(Self.link(user.userID))</td><td>\(Self.badge(user.condition))</td><td>\(ago(user.since))</td><td>\(why)</td><td>\(next)</td></tr>"
    }
    return html + "</table>"
  }

  func eventTable(_ events: [FleetStore.StoredEvent]) -> String {
    guard !events.isEmpty else { return "<p class=\"muted\">No events yet.</p>" }
    var html = "<table><tr><th>When</th><th>Event</th><th>User</th><th>Details</th></tr>"
    for event in events {
      html +=
        "<tr><td>\(ago(Double(event.createdAt)))</td><td class=\"mono\">\(Self.escape(event.eventType))</td><td>\(event.userID.map(Self.link) ?? "—")</td><td class=\"mono\">\(Self.escape(String(event.detailsJSON.prefix(300))))</td></tr>"
    }
    return html + "</table>"
  }

  // MARK: Users not in sync

  static let pageSize = 50

  func users(_ query: [String: String]) async -> Page {
    let search = query["q"] ?? ""
    let condition = query["condition"].flatMap(UserCondition.init(rawValue:))
    let page = min(100_000, max(1, Int(query["page"] ?? "1") ?? 1))
    var list = board.notInSync
    if let condition { list = list.filter { $0.condition == condition } }
    if !search.isEmpty { list = list.filter { $0.userID.localizedCaseInsensitiveContains(search) } }
    list.sort { ($0.since ?? .infinity, $0.userID) < ($1.since ?? .infinity, $1.userID) }
    let start = (page - 1) * Self.pageSize
    let shown = start < list.count ? Array(list[start..<min(list.count, start + Self.pageSize)]) : []
    var body =
      "<form method=\"get\" action=\"/ui/users\"><input name=\"q\" placeholder=\"user id contains…\" value=\"\(Self.escape(search))\"> <select name=\"condition\"><option value=\"\">any condition</option>"
    for option in UserCondition.allCases where option != .inSync {
      body +=
        "<option value=\"\(option.rawValue)\"\(option == condition ? " selected" : "")>\(option.rawValue.replacingOccurrences(of: "_", with: " "))</option>"
    }
    body += "</select> <button>Filter</button></form>"
    body +=
      "<p class=\"muted\">\(list.count) user(s) not in sync\(list.count > Self.pageSize ? ", page \(page) of \((list.count + Self.pageSize - 1) / Self.pageSize)" : "").</p>"
    body += table(shown)
    if start + Self.pageSize < list.count {
      var next = "/ui/users?page=\(page + 1)"
      if !search.isEmpty { next += "&q=" + (search.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "") }
      if let condition { next += "&condition=\(condition.rawValue)" }
      body += "<p><a href=\"\(Self.escape(next))\">Next page →</a></p>"
    }
    return Page(status: 200, body: Self.layout("Users not in sync", body))
  }

  // MARK: One user

  func user(_ id: String) async -> Page {
    let desired = try? await store.desiredMachine(id)
    let record = try? await store.machineRow(id)
    guard desired != nil || record != nil else {
      return Page(
        status: 404, body: Self.layout("No such user", "<p>No desired row and no machine for \(Self.escape(id)).</p>"))
    }
    let status = board.status(of: id)
    let condition = status?.condition ?? .inSync
    var body = "<p>\(Self.badge(condition))\(status?.since.map { " since \(ago($0))" } ?? "")</p><table>"
    func row(_ name: String, _ value: String) { body += "<tr><th>\(name)</th><td>\(value)</td></tr>" }
    if let desired {
      row("Desired", "\(desired.state.rawValue) in \(Self.escape(desired.region))\(desired.paused ? " — PAUSED" : "")")
      let o = desired.overrides
      var parts: [String] = []
      if let image = o.image { parts.append("image \(Self.escape(image))") }
      if let memory = o.memoryMB { parts.append("\(memory) MB") }
      if let cpus = o.cpus { parts.append("\(cpus) cpu") }
      if let env = o.env { parts.append("env: " + env.keys.sorted().map(Self.escape).joined(separator: ", ")) }
      if !parts.isEmpty { row("Overrides", parts.joined(separator: "; ")) }
    } else {
      row("Desired", "no row (treated as absent)")
    }
    if let machine = record {
      row(
        "Machine",
        "<span class=\"mono\">\(Self.escape(machine.id))</span> \(Self.escape(machine.status ?? "?")) in \(Self.escape(machine.region))"
      )
      if let volume = machine.volumeID { row("Volume", "<span class=\"mono\">\(Self.escape(volume))</span>") }
      if let app = machine.appName {
        let host = machine.hostname.flatMap { $0.isEmpty ? nil : $0 }
        row("App", Self.escape(app) + (host.map { " (\(Self.escape($0)))" } ?? ""))
      }
      if let ip = machine.ipAddress { row("Private IP", "<span class=\"mono\">\(Self.escape(ip))</span>") }
    } else {
      row("Machine", "none on record")
    }
    if let status {
      for finding in status.findings {
        row("Finding", "\(Self.escape(finding.kind.rawValue)): \(Self.escape(finding.message))")
      }
      for action in status.planned {
        row("Next", "\(Self.escape(action.kind.rawValue)) — \(Self.escape(action.reason))")
      }
      if let error = status.lastError { row("Last error", Self.escape(error)) }
      if let retry = status.nextRetry {
        row("Next retry", "in \(Int(max(0, retry - clock.now()))) s (\(status.failures) failure(s))")
      }
    }
    for restore in (try? await store.restores(userID: id, limit: 3)) ?? [] {
      row(
        "Restore",
        "#\(restore.id) \(Self.escape(restore.status)) from \(Self.escape(restore.snapshotID))\(restore.detail.map { ": " + Self.escape($0) } ?? "")"
      )
    }
    body += "</table>"
    for alert in await alerts() where alert.userID == id {
      body +=
        "<p>\(alert.isFiring ? "<b>FIRING</b>" : "pending") \(Self.escape(alert.kind)) since \(ago(alert.startsAt)): \(Self.escape(alert.message))</p>"
    }
    let events = (try? await store.events(user: id, limit: 30)) ?? []
    body += "<h2>Events</h2>" + eventTable(events.reversed())
    return Page(status: 200, body: Self.layout(id, body))
  }
}
