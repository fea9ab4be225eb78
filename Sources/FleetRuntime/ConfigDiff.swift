public import FlyMachines

/// What differs between a machine's config and the one it should run, one line per field, for
/// events, findings and `plan`: only the fields fleetkeeper sets are compared (Fly adds defaults of
/// its own), and no env value or init argument is ever shown (they hold per-user secrets).
public enum ConfigDiff {
  public static func lines(current: FlyMachineConfig, desired: FlyMachineConfig) -> [String] {
    var lines: [String] = []
    if current.image != desired.image {
      lines.append("image: \(current.image ?? "none") → \(desired.image ?? "none")")
    }
    if let want = desired.guest, current.guest != want {
      func text(_ guest: FlyGuest?) -> String {
        guest.map { "\($0.cpuKind) \($0.cpus) cpu \($0.memoryMB) MB" } ?? "none"
      }
      lines.append("guest: \(text(current.guest)) → \(text(want))")
    }
    let have = current.env
    let want = desired.env
    for name in Set(have.keys).union(want.keys).sorted() {
      switch (have[name], want[name]) {
      case (nil, _?): lines.append("env \(name): added")
      case (_?, nil): lines.append("env \(name): removed")
      case (let a?, let b?) where a != b: lines.append("env \(name): changed (value masked)")
      default: break
      }
    }
    if current.initCommand != desired.initCommand {
      lines.append("init command: changed (arguments masked)")
    }
    if let services = desired.services, !contains(current.services, services) {
      lines.append("services: changed")
    } else if desired.services == nil, let services = current.services, services != .array([]) {
      lines.append("services: removed")
    }
    if current.restartPolicy != desired.restartPolicy {
      lines.append("restart policy: \(current.restartPolicy ?? "default") → \(desired.restartPolicy ?? "default")")
    }
    if current.mounts.first?.path != desired.mounts.first?.path {
      lines.append("mount path: \(current.mounts.first?.path ?? "none") → \(desired.mounts.first?.path ?? "none")")
    }
    for (key, value) in desired.metadata.sorted(by: { $0.key < $1.key }) where current.metadata[key] != value {
      lines.append("metadata \(key): \(current.metadata[key] ?? "none") → \(value)")
    }
    return lines
  }

  /// `have` holds everything `want` says (objects may carry more keys: Fly's defaults).
  static func contains(_ have: JSONValue?, _ want: JSONValue) -> Bool {
    guard let have else { return false }
    switch (have, want) {
    case (.object(let a), .object(let b)):
      return b.allSatisfy { key, value in contains(a[key], value) }
    case (.array(let a), .array(let b)):
      return a.count == b.count && zip(a, b).allSatisfy { contains($0, $1) }
    default:
      return have == want
    }
  }
}
