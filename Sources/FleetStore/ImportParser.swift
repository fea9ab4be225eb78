public import FleetCore
import Foundation

/// Reads a `users import` file: CSV with a header row (`user_id` required; `email`, `region`,
/// `state`, `image` optional) or JSON lines with the same keys. Every error names its line.
public enum ImportParser {
  public static let columns: Set<String> = ["user_id", "email", "region", "state", "image"]

  /// Parses `text`; `defaultRegion` fills a missing region.
  public static func parse(_ text: String, defaultRegion: String? = nil) throws(InputError) -> [UserInput] {
    // A UTF-8 byte-order mark (Excel's default) is not part of the first column's name.
    var text = text
    if text.unicodeScalars.first == "\u{feff}" { text.unicodeScalars.removeFirst() }
    let trimmed = text.drop { $0.isWhitespace }
    let inputs = trimmed.first == "{" ? try parseJSONLines(text) : try parseCSV(text)
    guard let defaultRegion else { return inputs }
    return inputs.map { input in
      var input = input
      if input.region == nil || input.region == "" { input.region = defaultRegion }
      return input
    }
  }

  static func parseJSONLines(_ text: String) throws(InputError) -> [UserInput] {
    var inputs: [UserInput] = []
    var errors: [FieldError] = []
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let lineNumber = index + 1
      let content = line.trimmingCharacters(in: .whitespacesAndNewlines)
      if content.isEmpty { continue }
      guard let object = try? JSONSerialization.jsonObject(with: Data(content.utf8)) as? [String: Any] else {
        errors.append(
          FieldError(field: "line", value: String(content.prefix(40)), reason: "not a JSON object", line: lineNumber))
        continue
      }
      if let repeated = Self.repeatedKey(content) {
        errors.append(
          FieldError(
            field: repeated, value: "", reason: "appears twice in the object (which one was meant?)", line: lineNumber))
        continue
      }
      var fields: [String: String] = [:]
      for (key, value) in object {
        guard columns.contains(key) else {
          errors.append(
            FieldError(
              field: key, value: "", reason: "unknown key (allowed: \(columns.sorted().joined(separator: ", ")))",
              line: lineNumber))
          continue
        }
        guard let string = value as? String else {
          errors.append(FieldError(field: key, value: "\(value)", reason: "must be a string", line: lineNumber))
          continue
        }
        fields[key] = string
      }
      guard let userID = fields["user_id"] else {
        errors.append(FieldError(field: "user_id", value: "", reason: "is required", line: lineNumber))
        continue
      }
      inputs.append(input(userID: userID, fields: fields, line: lineNumber))
    }
    guard errors.isEmpty else { throw InputError(errors) }
    return inputs
  }

  static func input(userID: String, fields: [String: String], line: Int) -> UserInput {
    func value(_ key: String) -> String? { fields[key].flatMap { $0.isEmpty ? nil : $0 } }
    return UserInput(
      userID: userID, email: value("email"), state: value("state"), region: value("region"), image: value("image"),
      line: line)
  }

  /// RFC 4180 CSV: quoted fields may hold commas, quotes (doubled) and newlines.
  static func parseCSV(_ text: String) throws(InputError) -> [UserInput] {
    var records: [(line: Int, fields: [String])] = []
    var field = ""
    var fields: [String] = []
    var inQuotes = false
    var line = 1
    var recordLine = 1
    var iterator = Array(text.unicodeScalars).makeIterator()
    var pending: Unicode.Scalar? = nil
    func next() -> Unicode.Scalar? {
      if let p = pending {
        pending = nil
        return p
      }
      return iterator.next()
    }
    /// A quoted field just closed: only a comma or the end of the record may follow.
    var closed = false
    while let c = next() {
      if closed && c != "," && c != "\n" && c != "\r" {
        throw InputError([
          FieldError(
            field: "csv", value: field + String(c),
            reason: "text after a closing quote (RFC 4180: quote the whole field, double a quote inside it)",
            line: line)
        ])
      }
      closed = false
      if inQuotes {
        if c == "\"" {
          if let n = next() {
            if n == "\"" {
              field.unicodeScalars.append("\"")
            } else {
              inQuotes = false
              closed = true
              pending = n
            }
          } else {
            inQuotes = false
          }
        } else {
          if c == "\n" { line += 1 }
          field.unicodeScalars.append(c)
        }
      } else if c == "\"" && field.isEmpty {
        inQuotes = true
      } else if c == "\"" {
        throw InputError([
          FieldError(
            field: "csv", value: field + "\"",
            reason: "a quote inside an unquoted field (RFC 4180: quote the whole field, double a quote inside it)",
            line: line)
        ])
      } else if c == "," {
        fields.append(field)
        field = ""
      } else if c == "\r" {
        continue
      } else if c == "\n" {
        fields.append(field)
        records.append((recordLine, fields))
        fields = []
        field = ""
        line += 1
        recordLine = line
      } else {
        field.unicodeScalars.append(c)
      }
    }
    if inQuotes {
      throw InputError([FieldError(field: "csv", value: "", reason: "a quoted field is not closed", line: recordLine)])
    }
    if !field.isEmpty || !fields.isEmpty {
      fields.append(field)
      records.append((recordLine, fields))
    }
    records.removeAll { $0.fields.count == 1 && $0.fields[0].trimmingCharacters(in: .whitespaces).isEmpty }
    guard let header = records.first else { return [] }
    let names = header.fields.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
    var errors: [FieldError] = []
    let unknown = names.filter { !columns.contains($0) }
    for name in unknown.prefix(10) {
      errors.append(
        FieldError(
          field: "header", value: name, reason: "unknown column (allowed: \(columns.sorted().joined(separator: ", ")))",
          line: header.line))
    }
    if unknown.count > 10 {
      // A header of thousands of columns (a file that is not a users list) is not echoed whole.
      errors.append(
        FieldError(
          field: "header", value: "\(unknown.count) columns", reason: "and \(unknown.count - 10) more unknown columns",
          line: header.line))
    }
    guard names.contains("user_id") else {
      errors.append(
        FieldError(
          field: "header", value: names.joined(separator: ","), reason: "needs a user_id column", line: header.line))
      throw InputError(errors)
    }
    if Set(names).count != names.count {
      errors.append(
        FieldError(field: "header", value: names.joined(separator: ","), reason: "repeats a column", line: header.line))
    }
    guard errors.isEmpty else { throw InputError(errors) }
    var inputs: [UserInput] = []
    for record in records.dropFirst() {
      guard record.fields.count == names.count else {
        errors.append(
          FieldError(
            field: "row", value: record.fields.joined(separator: ","),
            reason: "has \(record.fields.count) fields, the header has \(names.count)", line: record.line))
        continue
      }
      let fields = Dictionary(uniqueKeysWithValues: zip(names, record.fields))
      inputs.append(input(userID: fields["user_id"] ?? "", fields: fields, line: record.line))
    }
    guard errors.isEmpty else { throw InputError(errors) }
    return inputs
  }

  /// The first key that appears twice at the top level of a JSON object's text (JSONSerialization
  /// keeps the last one silently), or nil.
  static func repeatedKey(_ text: String) -> String? {
    var seen: Set<String> = []
    var depth = 0
    var scalars = text.unicodeScalars.makeIterator()
    var expectingKey = false
    while let c = scalars.next() {
      switch c {
      case "{", "[":
        depth += 1
        expectingKey = c == "{" && depth == 1
      case "}", "]":
        depth -= 1
      case ",":
        expectingKey = depth == 1
      case "\"":
        var string = ""
        while let d = scalars.next(), d != "\"" {
          if d == "\\", let escaped = scalars.next() {
            string.unicodeScalars.append("\\")
            string.unicodeScalars.append(escaped)
          } else {
            string.unicodeScalars.append(d)
          }
        }
        if expectingKey && depth == 1 {
          if !seen.insert(string).inserted { return string }
          expectingKey = false
        }
      default:
        break
      }
    }
    return nil
  }
}
