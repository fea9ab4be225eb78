/// Per-user values in a template: the text of env values and of the init command may name
///
/// - `{{user_id}}`: the user's id;
/// - `{{app_name}}`: the Fly app the user's machine is in;
/// - `{{hostname}}`: that app's public hostname, `<app>.fly.dev`;
/// - `{{secret:NAME}}`: the user's own secret derived from the key `NAME` the controller holds in
///   its environment (``derivedSecret(key:userID:)``); never stored, never shown.
///
/// `{{` that starts none of these is an error when the template is set, not text passed on.
public enum Placeholders {
  /// What a user's placeholders stand for.
  public struct Context: Sendable, Hashable {
    public var userID: String
    public var appName: String
    public var hostname: String
    public init(userID: String, appName: String, hostname: String? = nil) {
      self.userID = userID
      self.appName = appName
      self.hostname = hostname ?? "\(appName).fly.dev"
    }
  }

  /// One piece of a template text.
  public enum Piece: Sendable, Hashable {
    case text(String)
    case userID
    case appName
    case hostname
    case secret(String)
  }

  /// Why a text's placeholders cannot be read.
  public struct Problem: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
  }

  /// The pieces of `text`, or why it names something that does not exist.
  public static func parse(_ text: String) throws(Problem) -> [Piece] {
    guard text.contains("{{") else { return [.text(text)] }
    var pieces: [Piece] = []
    var rest = Substring(text)
    while let open = rest.firstRange(of: "{{") {
      if open.lowerBound > rest.startIndex { pieces.append(.text(String(rest[..<open.lowerBound]))) }
      guard let close = rest[open.upperBound...].firstRange(of: "}}") else {
        throw Problem(
          reason: "\"{{\" without \"}}\": placeholders are {{user_id}}, {{app_name}}, {{hostname}}, {{secret:NAME}}")
      }
      let name = String(rest[open.upperBound..<close.lowerBound])
      switch name {
      case "user_id": pieces.append(.userID)
      case "app_name": pieces.append(.appName)
      case "hostname": pieces.append(.hostname)
      default:
        guard name.hasPrefix("secret:") else {
          throw Problem(
            reason:
              "unknown placeholder {{\(name)}}: placeholders are {{user_id}}, {{app_name}}, {{hostname}}, {{secret:NAME}}"
          )
        }
        let key = String(name.dropFirst("secret:".count))
        guard (try? FleetValidation.envName(key)) != nil else {
          throw Problem(
            reason:
              "{{\(name)}}: NAME must be an environment variable's name (letters, digits and _, not first a digit)")
        }
        guard !FleetNames.isControllerVariable(key) else {
          throw Problem(
            reason: "{{\(name)}} names the controller's own setting \(key): FLY_* and FLEET_* are never used as keys")
        }
        pieces.append(.secret(key))
      }
      rest = rest[close.upperBound...]
    }
    if !rest.isEmpty { pieces.append(.text(String(rest))) }
    return pieces
  }

  /// The keys (`NAME`s) that `text` derives secrets from.
  public static func secretKeys(_ text: String) -> [String] {
    ((try? parse(text)) ?? []).compactMap {
      if case .secret(let key) = $0 { key } else { nil }
    }
  }

  /// `text` with the user's values in place of its placeholders. `secret` answers a key's derived
  /// value for this user (or throws when the controller does not hold the key).
  public static func expand<Failure: Error>(
    _ text: String, _ context: Context, secret: (String) throws(Failure) -> String
  ) throws(Failure) -> String {
    guard text.contains("{{"), let pieces = try? parse(text) else { return text }
    var out = ""
    for piece in pieces {
      switch piece {
      case .text(let text): out += text
      case .userID: out += context.userID
      case .appName: out += context.appName
      case .hostname: out += context.hostname
      case .secret(let key): out += try secret(key)
      }
    }
    return out
  }

  /// A user's derived secret: HMAC-SHA256 with the key's value (its UTF-8 bytes) as the key and the
  /// user id (its UTF-8 bytes) as the message, in lowercase hexadecimal (64 characters). The
  /// product's dashboard computes the same value from the same key, e.g. in Node
  /// `crypto.createHmac("sha256", key).update(userId).digest("hex")` (docs/configuration.md).
  public static func derivedSecret(key: String, userID: String) -> String {
    Digests.hex(Digests.hmacSHA256(key: Array(key.utf8), message: Array(userID.utf8)))
  }
}
