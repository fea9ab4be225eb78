public import FleetCore
import Foundation

/// Strict readers of settings given as text (flags and environment variables): plain decimal
/// numbers within documented bounds, nothing else. `inf`, `nan`, `1e30`, `0x10` and values out of
/// bounds are refused with an error naming the setting, the value and what is accepted, never
/// taken (a `Double("0x10")` is 16, a `Double("1e-300")` is a rate that stalls the loop).
public enum SettingParsers {
  /// A decimal number (`30`, `0.5`) within `bounds`.
  public static func number(_ text: String, name: String, bounds: ClosedRange<Double>, unit: String = "seconds")
    throws(FieldError) -> Double
  {
    guard let value = decimal(text), bounds.contains(value) else {
      throw FieldError(
        field: name, value: text,
        reason: "\(unit), a plain decimal number from \(show(bounds.lowerBound)) to \(show(bounds.upperBound))")
    }
    return value
  }

  /// A whole decimal number within `bounds`.
  public static func integer(_ text: String, name: String, bounds: ClosedRange<Int>) throws(FieldError) -> Int {
    guard !text.isEmpty, text.count <= 9, text.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(text),
      bounds.contains(value)
    else {
      throw FieldError(
        field: name, value: text, reason: "a whole number from \(bounds.lowerBound) to \(bounds.upperBound)")
    }
    return value
  }

  /// `never` (nil), or seconds, or a number with `s`, `m`, `h` or `d`, within `bounds` seconds.
  public static func duration(_ text: String, name: String, bounds: ClosedRange<Double>) throws(FieldError) -> Double? {
    if text == "never" { return nil }
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
    var value: Double?
    if let last = text.last, let unit = units[last], let number = decimal(String(text.dropLast())) {
      value = number * unit
    } else {
      value = decimal(text)
    }
    guard let value, bounds.contains(value) else {
      throw FieldError(
        field: name, value: text,
        reason:
          "seconds, or 30m, 12h, 7d (from \(show(bounds.lowerBound)) s to \(Int(bounds.upperBound / 86_400)) d), or never"
      )
    }
    return value
  }

  /// The Machines API's address: `https://…`, or `http://` only to loopback or Fly's private
  /// network (`.internal`), where the token does not cross the internet in clear.
  public static func apiBaseURL(_ text: String, name: String) throws(FieldError) {
    if let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased(),
      !host.isEmpty
    {
      if scheme == "https" { return }
      let privateNetwork = host.hasSuffix(".internal") && host.count > ".internal".count
      if scheme == "http" && (FleetNames.isLoopback(host: host) || privateNetwork) { return }
    }
    throw FieldError(
      field: name, value: text,
      reason: "an https URL (or http to loopback or a .internal host): the token must not travel in clear")
  }

  /// `host:port`, the port 0 to 65535 (0 picks one).
  /// `host:port`, an IPv6 host in brackets (`[::]:9090`, what Fly's private network needs): the
  /// host is returned without them, as a socket binds it.
  public static func listen(_ text: String, name: String) throws(FieldError) -> (host: String, port: Int) {
    guard let colon = text.lastIndex(of: ":"), !text[..<colon].isEmpty else {
      throw FieldError(field: name, value: text, reason: "host:port (an IPv6 host in brackets: [::]:9090)")
    }
    let portText = String(text[text.index(after: colon)...])
    guard let port = try? integer(portText, name: name, bounds: 0...65_535) else {
      throw FieldError(field: name, value: text, reason: "host:port, the port a whole number from 0 to 65535")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("[") {
      guard host.hasSuffix("]"), host.count > 2, !host.dropFirst().dropLast().contains(where: { "[]".contains($0) })
      else { throw FieldError(field: name, value: text, reason: "an IPv6 host in brackets: [::]:9090") }
      host = String(host.dropFirst().dropLast())
    } else if host.contains(":") || host.contains("]") {
      throw FieldError(field: name, value: text, reason: "an IPv6 host goes in brackets: [::]:9090")
    }
    return (host, port)
  }

  /// Digits, at most one point, digits: no sign, exponent, hex, `inf` or `nan`.
  static func decimal(_ text: String) -> Double? {
    guard !text.isEmpty, text.count <= 20 else { return nil }
    var points = 0
    for character in text {
      if character == "." {
        points += 1
      } else if !(character.isASCII && character.isNumber) {
        return nil
      }
    }
    guard points <= 1, text.first != ".", text.last != "." else { return nil }
    return Double(text)
  }

  static func show(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
  }
}
