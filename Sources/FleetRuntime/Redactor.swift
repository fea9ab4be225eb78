public import FleetCore
import Foundation
import Synchronization

/// Scrubs secrets (the Fly token, resolved env values of machines, webhook secrets) from any text
/// before it reaches a log line, an event, a metric or an alert.
///
/// A secret is matched as given and in the forms it takes inside other text: JSON-escaped (Fly
/// echoes a request body in an error as JSON: `"` as `\"`, `/` as `\/`, control characters as
/// `\u00XX`) and percent-encoded (in a URL or a form body).
public final class Redactor: Sendable {
  private let secrets: Mutex<[String]>

  public init(_ secrets: [String] = []) {
    self.secrets = Mutex([])
    add(secrets)
  }

  /// Adds values to scrub (values shorter than 4 characters are not scrubbed: too common).
  public func add(_ values: some Sequence<String>) {
    var forms: Set<String> = []
    for value in values where value.count >= 4 { forms.formUnion(Self.forms(of: value)) }
    guard !forms.isEmpty else { return }
    secrets.withLock { list in
      let merged = Set(list).union(forms)
      guard merged.count != list.count else { return }
      // Longest first: a secret that contains another is replaced whole.
      list = merged.sorted { ($0.count, $0) > ($1.count, $1) }
    }
  }

  /// The value and its escaped spellings.
  static func forms(of value: String) -> Set<String> {
    var forms: Set<String> = [value]
    var json = ""
    var jsonSlash = ""
    var jsonUnicode = ""
    for scalar in value.unicodeScalars {
      let plain: String
      switch scalar {
      case "\"": plain = "\\\""
      case "\\": plain = "\\\\"
      case "\n": plain = "\\n"
      case "\r": plain = "\\r"
      case "\t": plain = "\\t"
      case _ where scalar.value < 0x20: plain = String(format: "\\u%04x", scalar.value)
      default: plain = String(scalar)
      }
      json += plain
      jsonSlash += scalar == "/" ? "\\/" : plain
      // Encoders that escape everything outside ASCII, and HTML-sensitive characters.
      if scalar.value >= 0x7f || "<>&'".unicodeScalars.contains(scalar) {
        if scalar.value > 0xFFFF {
          let utf16 = Array(String(scalar).utf16)
          jsonUnicode += utf16.map { String(format: "\\u%04x", $0) }.joined()
        } else {
          jsonUnicode += String(format: "\\u%04x", scalar.value)
        }
      } else {
        jsonUnicode += scalar == "/" ? "\\/" : plain
      }
    }
    forms.formUnion([json, jsonSlash, jsonUnicode, jsonUnicode.uppercasedEscapes()])
    let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    if let encoded = value.addingPercentEncoding(withAllowedCharacters: unreserved) {
      forms.insert(encoded)
      forms.insert(encoded.lowercasedPercentEscapes())
      forms.insert(encoded.replacingOccurrences(of: "%20", with: "+"))
    }
    if let query = value.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) { forms.insert(query) }
    return forms.filter { $0.count >= 4 }
  }

  /// The finding with its message scrubbed.
  public func scrub(_ finding: DriftFinding) -> DriftFinding {
    var finding = finding
    finding.message = scrub(finding.message)
    return finding
  }

  /// The event with every string detail scrubbed.
  public func scrub(_ event: AuditEvent) -> AuditEvent {
    var event = event
    for (key, value) in event.details {
      if case .string(let text) = value { event.details[key] = .string(scrub(text)) }
    }
    return event
  }

  public func scrub(_ text: String) -> String {
    let current = secrets.withLock { $0 }
    var result = text
    for secret in current where result.contains(secret) {
      result = result.replacingOccurrences(of: secret, with: "<redacted>")
    }
    return result
  }
}

extension String {
  /// `\u00e9` as `\u00E9` (encoders differ).
  fileprivate func uppercasedEscapes() -> String {
    var out = ""
    var rest = Substring(self)
    while let range = rest.range(of: "\\u") {
      out += rest[..<range.upperBound]
      rest = rest[range.upperBound...]
      out += rest.prefix(4).uppercased()
      rest = rest.dropFirst(4)
    }
    return out + rest
  }

  /// `%2F` as `%2f`.
  fileprivate func lowercasedPercentEscapes() -> String {
    var out = ""
    var rest = Substring(self)
    while let index = rest.firstIndex(of: "%") {
      out += rest[...index]
      rest = rest[rest.index(after: index)...]
      out += rest.prefix(2).lowercased()
      rest = rest.dropFirst(2)
    }
    return out + rest
  }
}
