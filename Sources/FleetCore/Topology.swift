/// Where users' machines live: all in one app, or each user in an app of their own (as Fly
/// advises for agents that run code: secrets and the private network are shared inside an app).
public enum Topology: Sendable, Hashable {
  /// Every user's machine and volume in the one app the controller is given.
  case sharedApp
  /// User `U`'s machine and volume in app ``FleetNames/appName(prefix:userID:)``, created (with its
  /// IPs) before the volume, in organization `org`, and deleted once the user is gone and the
  /// volume's retention is over.
  case appPerUser(prefix: String, org: String)

  public var isAppPerUser: Bool {
    if case .appPerUser = self { return true }
    return false
  }

  /// The app of `user`'s resources (nil: the shared app).
  public func app(forUser user: String) -> String? {
    guard case .appPerUser(let prefix, _) = self else { return nil }
    return FleetNames.appName(prefix: prefix, userID: user)
  }

  /// `shared-app` or `app-per-user`.
  public var name: String { isAppPerUser ? "app-per-user" : "shared-app" }

  /// Why `prefix` cannot prefix app names (nil: it can): 1 to 30 lowercase letters, digits and
  /// dashes, starting with a letter, not ending with a dash.
  public static func prefixProblem(_ prefix: String) -> String? {
    let bytes = Array(prefix.utf8)
    // `-u-` and `-h-` inside a prefix would let two prefixes name the same app.
    let valid =
      !prefix.contains("-u-") && !prefix.contains("-h-") && !bytes.isEmpty && bytes.count <= 30 && bytes[0] >= 0x61
      && bytes[0] <= 0x7a && bytes.last != 0x2d
      && bytes.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }
    return valid
      ? nil
      : "app prefix \"\(prefix)\" must be 1 to 30 lowercase letters, digits or dashes, starting with a letter, not ending with a dash, without -u- or -h-"
  }
}

extension FleetNames {
  /// User `userID`'s app: `<prefix>-u-<id>` when the id is itself a valid piece of an app name
  /// (lowercase letters, digits and single dashes inside, and short enough: the old fleet's names,
  /// and UUIDs), otherwise `<prefix>-h-<26 base32 characters of its SHA-256>`. Injective for one
  /// prefix (`-u-` and `-h-` never meet; a digest collision is 2^-130), at most 63 characters of
  /// lowercase letters, digits and dashes: a Fly app name.
  public static func appName(prefix: String, userID: String) -> String {
    let direct = "\(prefix)-u-\(userID)"
    if direct.utf8.count <= 63, isAppNamePiece(userID) { return direct }
    return "\(prefix)-h-\(hashed(userID))"
  }

  /// Lowercase letters and digits, single dashes between them.
  private static func isAppNamePiece(_ text: String) -> Bool {
    let bytes = Array(text.utf8)
    guard let first = bytes.first, let last = bytes.last, first != 0x2d, last != 0x2d else { return false }
    var previousDash = false
    for byte in bytes {
      if byte == 0x2d {
        if previousDash { return false }
        previousDash = true
      } else {
        guard (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39) else { return false }
        previousDash = false
      }
    }
    return true
  }

  /// The hostname a user app's services answer on.
  public static func hostname(app: String) -> String { "\(app).fly.dev" }
}

/// Which app each user lives in: the topology's rule, except for apps an operator mapped to users
/// by hand (`fleetkeeper fleet map`: the old fleet's names that do not follow the rule).
public struct AppPlacement: Sendable, Hashable {
  public var topology: Topology
  /// Mapped by hand: app → user, and user → app.
  public private(set) var userByApp: [String: String] = [:]
  public private(set) var appByUser: [String: String] = [:]

  public init(topology: Topology = .sharedApp, mapping: [String: String] = [:]) {
    self.topology = topology
    for (app, user) in mapping {
      userByApp[app] = user
      appByUser[user] = app
    }
  }

  /// The app of `user`'s machine and volume (nil: the shared app).
  public func app(forUser user: String) -> String? {
    guard topology.isAppPerUser else { return nil }
    return appByUser[user] ?? topology.app(forUser: user)
  }

  /// The user whose app `app` is, when the name says so (by hand, or the rule's direct form).
  /// The rule's hashed form is not read back here: the planner maps those from the users it knows.
  public func user(ofApp app: String) -> String? {
    guard case .appPerUser(let prefix, _) = topology else { return nil }
    if let user = userByApp[app] { return user }
    let direct = prefix + "-u-"
    guard app.hasPrefix(direct) else { return nil }
    let user = String(app.dropFirst(direct.count))
    // Only a name the rule gives that user (and not a mapped user's other app) stands for it.
    return FleetNames.appName(prefix: prefix, userID: user) == app && appByUser[user] == nil ? user : nil
  }
}
