import Foundation
import Synchronization

/// Scrubs secrets (the Fly token, resolved env values of machines, webhook secrets) from any text
/// before it reaches a log line, an event, a metric or an alert.
public final class Redactor: Sendable {
  private let secrets: Mutex<Set<String>>

  public init(_ secrets: [String] = []) { self.secrets = Mutex(Set(secrets.filter { $0.count >= 4 })) }

  /// Adds values to scrub (values shorter than 4 characters are not scrubbed: too common).
  public func add(_ values: some Sequence<String>) {
    secrets.withLock { set in for value in values where value.count >= 4 { set.insert(value) } }
  }

  public func scrub(_ text: String) -> String {
    let current = secrets.withLock { $0 }
    var result = text
    for secret in current.sorted(by: { $0.count > $1.count }) where result.contains(secret) {
      result = result.replacingOccurrences(of: secret, with: "<redacted>")
    }
    return result
  }
}
