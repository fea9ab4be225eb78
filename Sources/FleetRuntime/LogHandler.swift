import FleetCore
import Foundation
public import Logging

/// Structured log lines, logfmt or JSON, one per line on standard error, every value passed through
/// the ``Redactor`` (the token and machines' env values never reach a line).
public struct FleetLogHandler: LogHandler {
  public enum Format: String, Sendable { case logfmt, json }
  public var logLevel: Logger.Level
  public var metadata: Logger.Metadata = [:]
  private let label: String
  private let format: Format
  private let redactor: Redactor
  private let write: @Sendable (String) -> Void

  public init(
    label: String, format: Format, level: Logger.Level, redactor: Redactor,
    write: (@Sendable (String) -> Void)? = nil
  ) {
    self.label = label
    self.format = format
    self.logLevel = level
    self.redactor = redactor
    self.write = write ?? { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    let level = event.level
    let message = event.message
    let explicit = event.metadata
    var fields: [(String, String)] = [
      ("ts", rfc3339(Date().timeIntervalSince1970)), ("level", level.rawValue),
      ("msg", redactor.scrub(message.description)),
    ]
    var merged = metadata
    for (key, value) in explicit ?? [:] { merged[key] = value }
    for key in merged.keys.sorted() { fields.append((key, redactor.scrub("\(merged[key]!)"))) }
    switch format {
    case .json:
      write("{" + fields.map { "\(JSONText.quote($0.0)):\(JSONText.quote($0.1))" }.joined(separator: ",") + "}")
    case .logfmt:
      write(fields.map { "\($0.0)=\(Self.logfmtValue($0.1))" }.joined(separator: " "))
    }
  }

  static func logfmtValue(_ value: String) -> String {
    if !value.isEmpty && !value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) {
      return value
    }
    return JSONText.quote(value)
  }

}
