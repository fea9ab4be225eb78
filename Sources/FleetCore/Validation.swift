/// A refused value: names the field and the value (quoted, with control characters escaped and
/// cut to a readable length), and says why.
public struct FieldError: Error, Sendable, Hashable, CustomStringConvertible {
  public var field: String
  public var value: String
  public var reason: String
  /// Where in an import file (1-based line), when the value came from one.
  public var line: Int?

  public init(field: String, value: String, reason: String, line: Int? = nil) {
    self.field = field
    self.value = value
    self.reason = reason
    self.line = line
  }

  public var description: String {
    let prefix = line.map { "line \($0): " } ?? ""
    return "\(prefix)\(field) \(FieldError.quote(value)): \(reason)"
  }

  /// `value` quoted for an error message: control characters escaped, at most 60 characters.
  public static func quote(_ value: String) -> String {
    var out = ""
    for scalar in value.unicodeScalars.prefix(60) {
      if scalar.value < 0x20 || scalar.value == 0x7f {
        out += "\\u{\(String(scalar.value, radix: 16))}"
      } else if scalar == "\"" || scalar == "\\" {
        out += "\\" + String(scalar)
      } else {
        out.unicodeScalars.append(scalar)
      }
    }
    return "\"\(out)\(value.unicodeScalars.count > 60 ? "…" : "")\""
  }
}

/// The checks on every value an operator can write. The SQL schema enforces the same rules with
/// CHECK constraints and triggers, so plain SQL edits are held to them too.
public enum FleetValidation {
  public static func userID(_ value: String) throws(FieldError) -> String {
    guard !value.isEmpty else { throw FieldError(field: "user_id", value: value, reason: "must not be empty") }
    guard value.utf8.count <= FleetNames.maxUserIDLength else {
      throw FieldError(field: "user_id", value: value, reason: "longer than \(FleetNames.maxUserIDLength) bytes")
    }
    guard value.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f }) else {
      throw FieldError(field: "user_id", value: value, reason: "only printable ASCII without spaces is allowed")
    }
    return value
  }

  public static func email(_ value: String) throws(FieldError) -> String {
    guard value.utf8.count <= 254, value.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f }),
      let at = value.firstIndex(of: "@"), at != value.startIndex, value.index(after: at) != value.endIndex,
      !value.contains(" ")
    else { throw FieldError(field: "email", value: value, reason: "not an email address") }
    return value
  }

  public static func state(_ value: String) throws(FieldError) -> DesiredState {
    guard let state = DesiredState(rawValue: value) else {
      throw FieldError(field: "state", value: value, reason: "must be running, stopped or absent")
    }
    return state
  }

  public static func region(_ value: String, known: Set<String>) throws(FieldError) -> String {
    guard value.utf8.count == 3, value.utf8.allSatisfy({ $0 >= 0x61 && $0 <= 0x7a }) else {
      throw FieldError(field: "region", value: value, reason: "a Fly region is three lowercase letters")
    }
    guard known.contains(value) else {
      throw FieldError(
        field: "region", value: value,
        reason: "unknown Fly region (add it with `fleetkeeper regions add \(value)` if Fly has it)")
    }
    return value
  }

  /// An image reference: `[registry/]repository[:tag][@sha256:digest]`, lowercase repository.
  public static func image(_ value: String) throws(FieldError) -> String {
    func fail(_ reason: String) -> FieldError { FieldError(field: "image", value: value, reason: reason) }
    guard !value.isEmpty, value.utf8.count <= 255 else { throw fail("must be 1 to 255 characters") }
    var rest = Substring(value)
    if let at = rest.firstIndex(of: "@") {
      let digest = rest[rest.index(after: at)...]
      guard digest.hasPrefix("sha256:"), digest.count == 71,
        digest.dropFirst(7).allSatisfy({ $0.isHexDigit && !$0.isUppercase })
      else { throw fail("the digest must be sha256: and 64 hex digits") }
      rest = rest[..<at]
    }
    let lastSlash = rest.lastIndex(of: "/")
    if let colon = rest.lastIndex(of: ":"), lastSlash.map({ colon > $0 }) ?? true {
      let tag = rest[rest.index(after: colon)...]
      guard !tag.isEmpty, tag.count <= 128,
        tag.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "-") })
      else { throw fail("not a valid tag") }
      rest = rest[..<colon]
    }
    let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
    guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty }) else { throw fail("not an image reference") }
    for (index, part) in parts.enumerated() {
      let isRegistry =
        index == 0 && parts.count > 1 && (part.contains(".") || part.contains(":") || part == "localhost")
      let allowed: (Character) -> Bool =
        isRegistry
        ? { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":") }
        : { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-") }
      guard part.allSatisfy(allowed) else { throw fail("not an image reference") }
    }
    return value
  }

  public static func cpuKind(_ value: String) throws(FieldError) -> String {
    guard value == "shared" || value == "performance" else {
      throw FieldError(field: "cpu_kind", value: value, reason: "must be shared or performance")
    }
    return value
  }

  public static func cpus(_ value: Int) throws(FieldError) -> Int {
    guard [1, 2, 4, 8, 16].contains(value) else {
      throw FieldError(field: "cpus", value: String(value), reason: "must be 1, 2, 4, 8 or 16")
    }
    return value
  }

  /// Memory Fly accepts: a multiple of 256 MB, from 256 MB up to 2 GB per shared CPU or 8 GB per
  /// performance CPU.
  public static func memory(_ value: Int, cpus: Int, cpuKind: String) throws(FieldError) -> Int {
    let perCPU = cpuKind == "performance" ? 8192 : 2048
    guard value >= 256, value % 256 == 0 else {
      throw FieldError(field: "memory_mb", value: String(value), reason: "must be a multiple of 256, at least 256")
    }
    guard value <= cpus * perCPU else {
      throw FieldError(
        field: "memory_mb", value: String(value),
        reason: "more than Fly allows for \(cpus) \(cpuKind) cpu(s) (at most \(cpus * perCPU))")
    }
    return value
  }

  public static func volumeSize(_ value: Int) throws(FieldError) -> Int {
    guard value >= 1, value <= 500 else {
      throw FieldError(field: "volume_size_gb", value: String(value), reason: "must be between 1 and 500")
    }
    return value
  }

  public static func mountPath(_ value: String) throws(FieldError) -> String {
    guard value.hasPrefix("/"), value.count <= 255, !value.contains(".."),
      value.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f })
    else { throw FieldError(field: "mount_path", value: value, reason: "must be an absolute path") }
    return value
  }

  public static func envName(_ value: String) throws(FieldError) -> String {
    guard let first = value.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic),
      value.unicodeScalars.allSatisfy({
        $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)))
      })
    else { throw FieldError(field: "env", value: value, reason: "not an environment variable name") }
    return value
  }

  /// A user's env overrides: names as env names (never the controller's `FLY_*`/`FLEET_*`), values
  /// without control characters, placeholders that name something, and no `$NAME` secrets.
  public static func envOverrides(_ env: [String: String]) throws(FieldError) {
    for name in env.keys.sorted() {
      let value = env[name]!
      do { _ = try envName(name) } catch { throw FieldError(field: "env", value: name, reason: error.reason) }
      if FleetNames.isControllerVariable(name) {
        throw FieldError(field: "env", value: name, reason: "FLY_* and FLEET_* names are not set per user")
      }
      if value.unicodeScalars.contains(where: { $0.value < 0x20 }) {
        throw FieldError(field: "env.\(name)", value: "<hidden>", reason: "control characters are not allowed")
      }
      if value.hasPrefix("$") {
        throw FieldError(
          field: "env.\(name)", value: value,
          reason:
            "a per-user value cannot name a controller secret ($NAME: template env only); per-user secrets are {{secret:NAME}}"
        )
      }
      do throws(Placeholders.Problem) {
        _ = try Placeholders.parse(value)
      } catch {
        throw FieldError(field: "env.\(name)", value: value, reason: error.reason)
      }
    }
  }

  /// What is wrong with a snapshot id (Fly's are `vs_` and letters and digits), nil when nothing:
  /// it goes into a URL path, so only letters, digits, `_` and `-`.
  public static func snapshotIDProblem(_ id: String) -> String? {
    guard (1...100).contains(id.utf8.count) else { return "must be 1 to 100 characters" }
    guard
      id.utf8.allSatisfy({
        ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 95 || $0 == 45
      })
    else { return "may hold only letters, digits, _ and -" }
    return nil
  }

  public static func restartPolicy(_ value: String) throws(FieldError) -> String {
    guard ["no", "always", "on-failure"].contains(value) else {
      throw FieldError(field: "restart_policy", value: value, reason: "must be no, always or on-failure")
    }
    return value
  }

  /// The resolved spec of one user's machine, checked as a whole (memory against cpus).
  public static func spec(_ spec: MachineTemplate) throws(FieldError) {
    _ = try image(spec.image)
    _ = try cpuKind(spec.cpuKind)
    _ = try cpus(spec.cpus)
    _ = try memory(spec.memoryMB, cpus: spec.cpus, cpuKind: spec.cpuKind)
    _ = try volumeSize(spec.volumeSizeGB)
    _ = try mountPath(spec.mountPath)
    _ = try restartPolicy(spec.restartPolicy)
  }
}
