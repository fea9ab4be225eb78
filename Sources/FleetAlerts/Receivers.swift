public import FleetCore
public import FleetStore
import Foundation

/// Where alert notices go.
public struct AlertReceiver: Sendable, Hashable, CustomStringConvertible {
  public enum Kind: String, Sendable, Hashable, CaseIterable {
    /// JSON close to Alertmanager's webhook format, signed with HMAC-SHA256 when a secret is set.
    case webhook
    /// A Slack-compatible incoming webhook: readable text.
    case slack
    /// A Prometheus Alertmanager: `POST /api/v2/alerts`.
    case alertmanager
    /// A local executable, given the notice's JSON on standard input.
    case command
  }
  /// Stable key of the receiver in the outbox (`env:0`, `db:3`): never its URL, which can be a secret.
  public var key: String
  public var kind: Kind
  /// URL, Alertmanager base URL, or executable path.
  public var target: String
  /// The HMAC secret of a webhook (resolved from the environment; never stored or printed).
  public var secret: String?

  public init(key: String, kind: Kind, target: String, secret: String? = nil) {
    self.key = key
    self.kind = kind
    self.target = target
    self.secret = secret
  }

  /// Kind and host only: Slack webhook URLs carry their secret in the path.
  public var description: String {
    if kind == .command { return "command \(target)" }
    if let url = URL(string: target), let host = url.host {
      return "\(kind.rawValue) \(url.scheme ?? "http")://\(host)\(url.port.map { ":\($0)" } ?? "")"
    }
    return kind.rawValue
  }

  /// Receivers from `FLEET_ALERT_WEBHOOK_URLS`: comma-separated entries, each `URL` (a generic
  /// webhook, or Slack when the host is hooks.slack.com) or `kind:target` with kind `webhook`,
  /// `slack`, `alertmanager` or `command`. `secret` (FLEET_ALERT_WEBHOOK_SECRET) signs webhooks.
  public static func parse(_ text: String, secret: String?) throws(FieldError) -> [AlertReceiver] {
    var receivers: [AlertReceiver] = []
    for (index, raw) in text.split(separator: ",").enumerated() {
      let entry = raw.trimmingCharacters(in: .whitespaces)
      if entry.isEmpty { continue }
      var kind = Kind.webhook
      var target = entry
      for candidate in Kind.allCases
      where entry.hasPrefix(candidate.rawValue + ":") && !entry.hasPrefix(candidate.rawValue + "://") {
        kind = candidate
        target = String(entry.dropFirst(candidate.rawValue.count + 1))
      }
      if kind == .webhook, URL(string: target)?.host == "hooks.slack.com" { kind = .slack }
      if kind != .command {
        guard let url = URL(string: target), url.scheme == "http" || url.scheme == "https", url.host != nil else {
          throw FieldError(
            field: "FLEET_ALERT_WEBHOOK_URLS[\(index)]", value: kind.rawValue, reason: "not an http(s) URL")
        }
      }
      receivers.append(
        AlertReceiver(key: "env:\(index)", kind: kind, target: target, secret: kind == .webhook ? secret : nil))
    }
    return receivers
  }

  /// A receiver kept in the database, checked before use. The database is shared with the
  /// dashboard, so what it says is not trusted like the controller's own configuration: no
  /// `command` (a row must never make the controller run anything), only `https` URLs or `http`
  /// to loopback, and the HMAC secret may not be read from the controller's own credentials
  /// (`FLY_*`, `FLEET_*`), which a chosen receiver could otherwise be sent signatures of.
  public static func fromDatabase(
    _ row: AlertReceiverRow, environment: [String: String]
  ) throws(FieldError) -> AlertReceiver {
    let id = row.id ?? 0
    guard let kind = Kind(rawValue: row.kind), kind != .command else {
      throw FieldError(
        field: "alert_receivers[\(id)].kind", value: row.kind,
        reason: "must be webhook, slack or alertmanager (command receivers come only from FLEET_ALERT_WEBHOOK_URLS)")
    }
    guard isAllowedURL(row.target) else {
      throw FieldError(
        field: "alert_receivers[\(id)].target", value: Self.redactedURL(row.target),
        reason: "must be an https URL, or http to loopback (127.0.0.1, ::1, localhost)")
    }
    var secret: String?
    if let name = row.secretEnv {
      guard isAllowedSecretName(name) else {
        throw FieldError(
          field: "alert_receivers[\(id)].secret_env", value: name,
          reason: "may not name the controller's own settings or credentials (FLY_*, FLEET_*)")
      }
      secret = environment[name]
    }
    return AlertReceiver(key: "db:\(id)", kind: kind, target: row.target, secret: kind == .webhook ? secret : nil)
  }

  /// Scheme and host of a URL, never its path or credentials (Slack's secret is in the path).
  static func redactedURL(_ text: String) -> String {
    guard let url = URL(string: text), let host = url.host else { return "(not a URL)" }
    return "\(url.scheme ?? "?")://\(host)/…"
  }

  /// `https://host…`, or `http://` to a loopback host.
  public static func isAllowedURL(_ text: String) -> Bool {
    guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty,
      url.user == nil, url.password == nil
    else { return false }
    if scheme == "https" { return true }
    return scheme == "http" && FleetNames.isLoopback(host: host)
  }

  /// A secret's variable name a database row may use.
  public static func isAllowedSecretName(_ name: String) -> Bool {
    !name.isEmpty && !FleetNames.isControllerVariable(name)
  }
}
