import Crypto

/// SHA-256 and HMAC-SHA256, from swift-crypto: fleetkeeper hashes user ids into Fly names, signs
/// webhook bodies and authenticates its outbox.
public enum Digests {
  /// The 32-byte SHA-256 digest of `message`.
  public static func sha256(_ message: some Collection<UInt8>) -> [UInt8] {
    Array(SHA256.hash(data: Array(message)))
  }

  /// HMAC-SHA256 of `message` under `key`.
  public static func hmacSHA256(key: some Collection<UInt8>, message: some Collection<UInt8>) -> [UInt8] {
    Array(HMAC<SHA256>.authenticationCode(for: Array(message), using: SymmetricKey(data: Array(key))))
  }

  /// Lowercase hexadecimal.
  public static func hex(_ bytes: some Collection<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
      out.append(digits[Int(byte >> 4)])
      out.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
  }
}
