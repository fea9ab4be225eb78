/// Unix seconds as RFC 3339 UTC (`2026-11-27T09:51:39Z`), without Foundation.
public func rfc3339(_ seconds: Double) -> String {
  let whole = Int64(seconds.rounded(.down))
  var days = whole / 86_400
  var rest = whole % 86_400
  if rest < 0 {
    rest += 86_400
    days -= 1
  }
  let z = days + 719_468
  let era = (z >= 0 ? z : z - 146_096) / 146_097
  let doe = z - era * 146_097
  let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
  let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
  let mp = (5 * doy + 2) / 153
  let day = doy - (153 * mp + 2) / 5 + 1
  let month = mp < 10 ? mp + 3 : mp - 9
  let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
  func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
  return "\(year)-\(two(month))-\(two(day))T\(two(rest / 3600)):\(two(rest % 3600 / 60)):\(two(rest % 60))Z"
}

/// Unix seconds from RFC 3339 timestamps as Fly writes them (`2023-09-01T19:47:14.774Z`, `2022-05-18T16:15:13Z`).
public func parseRFC3339(_ text: String) -> Double? {
  let bytes = Array(text.utf8)
  guard bytes.count >= 20 else { return nil }
  func number(_ from: Int, _ count: Int) -> Int? {
    var value = 0
    for i in from..<(from + count) {
      let b = bytes[i]
      guard b >= 48 && b <= 57 else { return nil }
      value = value * 10 + Int(b - 48)
    }
    return value
  }
  guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
    let minute = number(14, 2), let second = number(17, 2)
  else { return nil }
  var fraction = 0.0
  var index = 19
  if index < bytes.count && bytes[index] == 46 {
    index += 1
    var scale = 0.1
    while index < bytes.count, bytes[index] >= 48 && bytes[index] <= 57 {
      fraction += Double(bytes[index] - 48) * scale
      scale /= 10
      index += 1
    }
  }
  var offset = 0
  if index < bytes.count, bytes[index] == 43 || bytes[index] == 45, index + 5 < bytes.count + 1,
    let h = number(index + 1, 2), let m = number(index + 4, 2)
  {
    offset = (h * 3600 + m * 60) * (bytes[index] == 43 ? 1 : -1)
  }
  // Days from civil (Howard Hinnant).
  let y = month <= 2 ? year - 1 : year
  let era = (y >= 0 ? y : y - 399) / 400
  let yoe = y - era * 400
  let mp = (month + 9) % 12
  let doy = (153 * mp + 2) / 5 + day - 1
  let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
  let days = era * 146_097 + doe - 719_468
  return Double(days * 86_400 + hour * 3600 + minute * 60 + second - offset) + fraction
}
