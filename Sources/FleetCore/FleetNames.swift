/// The mapping from a user id to the names fleetkeeper gives that user's Fly resources.
///
/// - A user id made only of lowercase letters, digits and `_`, at most 26 characters, maps
///   directly: volume `fk_<id>`, machine `fk-<id>` (with `_` as `-`).
/// - Any other id (uppercase, dashes, UUIDs, emails, long ids) maps through SHA-256: volume
///   `fkh_<26 base32 chars>`, machine `fkh-<same>`: 130 bits of the digest.
///
/// Volume names stay within Fly's rule (letters, digits, `_`; at most 30 characters). The mapping
/// is stable (it depends on the id alone) and injective: direct names are the id itself behind a
/// prefix no hashed name shares (`fk_` against `fkh_`), and two hashed names collide only if SHA-256
/// does. Ownership never rests on names alone: machines carry `fleet_user_id` in their metadata.
public enum FleetNames {
  /// The metadata key that marks a machine as fleetkeeper's, holding the user id.
  public static let userMetadataKey = "fleet_user_id"

  /// The longest user id fleetkeeper accepts.
  public static let maxUserIDLength = 128

  private static func isDirect(_ userID: String) -> Bool {
    userID.utf8.count <= 26
      && userID.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f }
  }

  /// 26 base32 characters of the id's SHA-256 (130 bits).
  static func hashed(_ userID: String) -> String {
    let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
    let digest = Digests.sha256(Array(userID.utf8))
    var bits = 0
    var buffer = 0
    var out = ""
    for byte in digest {
      buffer = (buffer << 8) | Int(byte)
      bits += 8
      while bits >= 5 && out.count < 26 {
        bits -= 5
        out.append(alphabet[(buffer >> bits) & 31])
      }
      buffer &= (1 << bits) - 1
      if out.count == 26 { break }
    }
    return out
  }

  /// The volume name (`fk_…` or `fkh_…`), at most 30 characters of `[a-z0-9_]`.
  public static func volumeName(forUser userID: String) -> String {
    isDirect(userID) ? "fk_" + userID : "fkh_" + hashed(userID)
  }

  /// The machine name (`fk-…` or `fkh-…`).
  public static func machineName(forUser userID: String) -> String {
    isDirect(userID) ? "fk-" + String(userID.map { $0 == "_" ? "-" : $0 }) : "fkh-" + hashed(userID)
  }

  /// The user a direct volume name (`fk_<id>`) stands for; nil for a hashed or foreign name.
  public static func directUser(volumeName name: String) -> String? {
    guard name.hasPrefix("fk_") else { return nil }
    let user = String(name.utf8.dropFirst(3))!
    return isDirect(user) && !user.isEmpty ? user : nil
  }

  /// Whether the user's names are the id itself (most ids), not a digest of it.
  public static func mapsDirectly(_ userID: String) -> Bool { isDirect(userID) }

  /// Whether `name` has the shape of a fleetkeeper volume name.
  public static func isFleetVolumeName(_ name: String) -> Bool {
    name.hasPrefix("fk_") || name.hasPrefix("fkh_")
  }
}

extension FleetNames {
  /// Whether an environment variable is the controller's own credential or setting (`FLY_*`,
  /// `FLEET_*`, in any case): never resolvable by a template, a receiver's secret, or passed on to a
  /// command.
  public static func isControllerVariable(_ name: String) -> Bool {
    let upper = name.uppercased()
    return upper.hasPrefix("FLY_") || upper.hasPrefix("FLEET_")
  }

  /// Whether a URL's host is this machine: `localhost`, `::1` (brackets or not) or `127.a.b.c`.
  public static func isLoopback(host: String) -> Bool {
    var bare = host.lowercased()
    if bare.hasPrefix("["), bare.hasSuffix("]") { bare = String(bare.dropFirst().dropLast()) }
    if bare == "localhost" || bare == "::1" { return true }
    let parts = bare.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
  }
}
