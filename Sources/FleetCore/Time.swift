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
