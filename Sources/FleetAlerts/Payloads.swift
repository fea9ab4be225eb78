public import FleetCore
import Foundation

/// The bodies each receiver kind gets. They carry finding messages, ids and kinds: never a token, an
/// env value or a webhook secret (the reconciler redacts messages before they become findings).
public enum AlertPayloads {
  static let zeroTime = "0001-01-01T00:00:00Z"

  static let severity: [String: String] = [
    "destroy_guard_tripped": "critical", "desired_unreadable": "critical", "fly_unreachable": "critical",
    "action_failing": "critical", "list_suspect": "warning",
  ]

  static func labels(_ state: AlertState, app: String) -> [String: String] {
    var labels = [
      "alertname": state.kind, "severity": severity[state.kind] ?? "warning", "service": "fleetkeeper", "fly_app": app,
    ]
    if let user = state.userID { labels["user_id"] = user }
    if let resource = state.resourceID { labels["resource"] = resource }
    return labels
  }

  /// Alertmanager's fingerprint is a hash of the labels; ours is of kind + user + resource.
  static func fingerprint(_ state: AlertState) -> String {
    String(Digests.hex(Digests.sha256(Array(state.fingerprint.utf8))).prefix(16))
  }

  static func object(_ pairs: [String: String]) -> String {
    "{" + pairs.keys.sorted().map { "\(JSONText.quote($0)):\(JSONText.quote(pairs[$0]!))" }.joined(separator: ",") + "}"
  }

  /// Generic webhook (and command stdin): close to Alertmanager's webhook payload (version 4).
  public static func webhook(_ notice: AlertNotice, app: String) -> String {
    let firing = notice.items.contains { $0.status == "firing" }
    let alerts = notice.items.map { item -> String in
      let labels = labels(item.state, app: app)
      let annotations = [
        "summary": "\(item.state.kind) \(item.state.userID ?? "")".trimmingCharacters(in: .whitespaces),
        "description": item.state.message,
      ]
      return
        "{\"status\":\(JSONText.quote(item.status)),\"labels\":\(object(labels)),\"annotations\":\(object(annotations)),\"startsAt\":\(JSONText.quote(rfc3339(item.state.startsAt))),\"endsAt\":\(JSONText.quote(item.endsAt.map(rfc3339) ?? zeroTime)),\"fingerprint\":\(JSONText.quote(fingerprint(item.state)))}"
    }
    let common = ["service": "fleetkeeper", "fly_app": app]
    return
      "{\"version\":\"4\",\"receiver\":\"fleetkeeper\",\"status\":\(JSONText.quote(firing ? "firing" : "resolved")),\"groupKey\":\"fleetkeeper\",\"test\":\(notice.isTest),\"commonLabels\":\(object(common)),\"alerts\":[\(alerts.joined(separator: ","))]}"
  }

  /// Slack incoming webhook: one readable line per alert.
  public static func slack(_ notice: AlertNotice, app: String) -> String {
    var lines: [String] = []
    let firing = notice.items.filter { $0.status == "firing" }.count
    let resolved = notice.items.count - firing
    lines.append("*fleetkeeper* (\(app))\(notice.isTest ? " test notice" : ""): \(firing) firing, \(resolved) resolved")
    for item in notice.items {
      let mark = item.status == "firing" ? ":red_circle:" : ":large_green_circle:"
      lines.append(
        "\(mark) `\(item.state.kind)` \(item.state.userID.map { "user \($0): " } ?? "")\(item.state.message)")
    }
    return "{\"text\":\(JSONText.quote(lines.joined(separator: "\n")))}"
  }

  /// Alertmanager `POST /api/v2/alerts`: a resolved alert is sent with `endsAt` now.
  public static func alertmanager(_ notice: AlertNotice, app: String) -> String {
    let alerts = notice.items.map { item -> String in
      let labels = labels(item.state, app: app)
      let annotations = [
        "summary": "\(item.state.kind) \(item.state.userID ?? "")".trimmingCharacters(in: .whitespaces),
        "description": item.state.message,
      ]
      var text =
        "{\"labels\":\(object(labels)),\"annotations\":\(object(annotations)),\"startsAt\":\(JSONText.quote(rfc3339(item.state.startsAt)))"
      if let ends = item.endsAt { text += ",\"endsAt\":\(JSONText.quote(rfc3339(ends)))" }
      return text + "}"
    }
    return "[" + alerts.joined(separator: ",") + "]"
  }

  public static func payload(for kind: AlertReceiver.Kind, _ notice: AlertNotice, app: String) -> String {
    switch kind {
    case .webhook, .command: webhook(notice, app: app)
    case .slack: slack(notice, app: app)
    case .alertmanager: alertmanager(notice, app: app)
    }
  }

  /// `sha256=<hex>` of HMAC-SHA256(secret, body): the `X-Fleetkeeper-Signature` header.
  public static func signature(body: String, secret: String) -> String {
    "sha256=" + Digests.hex(Digests.hmacSHA256(key: Array(secret.utf8), message: Array(body.utf8)))
  }
}
