public import FleetCore
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
}
