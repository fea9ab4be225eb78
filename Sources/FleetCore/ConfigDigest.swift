/// What config a user's machine was last given by the controller, as three 64-bit digests: compared
/// as integers every pass, so 100k users cost no config reads and no strings.
///
/// - `template`: the template's machine fields, the app name and a fingerprint of the secrets it
///   names (``ConfigDigest/template(_:salt:)``): a template edit or a rotated key changes it.
/// - `overrides`: the user's own overrides (0: none).
/// - `version`: Fly's `version` of the machine as the controller made it (hashed; 0: unknown).
///
/// All zero: unknown (a machine made before fleetkeeper recorded configs, or adopted): its config is
/// read once and compared before anything is changed.
public struct AppliedConfig: Sendable, Hashable, Codable {
  public var template: UInt64
  public var overrides: UInt64
  public var version: UInt64

  public init(template: UInt64 = 0, overrides: UInt64 = 0, version: UInt64 = 0) {
    self.template = template
    self.overrides = overrides
    self.version = version
  }

  public static let unknown = AppliedConfig()
  public var isUnknown: Bool { self == .unknown }

  /// The desired part (template and overrides) equals `other`'s.
  public func sameDesired(as other: AppliedConfig) -> Bool {
    template == other.template && overrides == other.overrides
  }

  // Digests as hex (``KeyedEncodingContainer/encodeDigest(_:forKey:)``).
  enum CodingKeys: String, CodingKey { case template = "t", overrides = "o", version = "v" }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    template = try c.decodeDigest(forKey: .template)
    overrides = try c.decodeDigest(forKey: .overrides)
    version = try c.decodeDigest(forKey: .version)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encodeDigest(template, forKey: .template)
    try c.encodeDigest(overrides, forKey: .overrides)
    try c.encodeDigest(version, forKey: .version)
  }
}

/// The digests of ``AppliedConfig``: FNV-1a (64 bits) over a canonical, length-prefixed encoding of
/// the fields that reach a machine's config, and the volume's size (a bigger one is extended by the
/// update, inside a rollout's wave; encryption is fixed at creation). Not a secret and not a
/// security boundary: a fingerprint of what was sent.
public enum ConfigDigest {
  /// The template's digest for one app, with `salt` (``salt(appName:secrets:)``) mixed in. Never 0.
  public static func template(_ template: MachineTemplate, salt: UInt64) -> UInt64 {
    var hasher = FNV()
    hasher.add("template.v1")
    hasher.add(salt)
    hasher.add(template.image)
    hasher.add(template.cpuKind)
    hasher.add(UInt64(bitPattern: Int64(template.cpus)))
    hasher.add(UInt64(bitPattern: Int64(template.memoryMB)))
    hasher.add(template.initCommand ?? ["<none>"])
    hasher.add(template.servicesJSON ?? "<none>")
    hasher.add(template.env)
    hasher.add(template.mountPath)
    hasher.add(template.restartPolicy)
    hasher.add(UInt64(bitPattern: Int64(template.volumeSizeGB)))
    return hasher.value == 0 ? 1 : hasher.value
  }

  /// A user's overrides (image, guest, env, volume size): 0 when there are none.
  public static func overrides(_ overrides: TemplateOverrides) -> UInt64 {
    guard !overrides.isEmpty else { return 0 }
    var hasher = FNV()
    hasher.add("overrides.v1")
    hasher.add(overrides.image ?? "<none>")
    hasher.add(overrides.cpuKind ?? "<none>")
    hasher.add(UInt64(bitPattern: Int64(overrides.cpus ?? -1)))
    hasher.add(UInt64(bitPattern: Int64(overrides.memoryMB ?? -1)))
    hasher.add(overrides.env ?? [:])
    hasher.add(UInt64(bitPattern: Int64(overrides.volumeSizeGB ?? -1)))
    return hasher.value == 0 ? 1 : hasher.value
  }

  /// The part of a config Fly's lists show (`image` and `guest`): enough to take a machine whose
  /// config was never recorded as running the desired one without reading it (0: not shown).
  public static func overview(image: String?, cpuKind: String?, cpus: Int?, memoryMB: Int?) -> UInt64 {
    guard let image, !image.isEmpty else { return 0 }
    var hasher = FNV()
    hasher.add("overview.v1")
    hasher.add(image)
    hasher.add(cpuKind ?? "shared")
    hasher.add(UInt64(bitPattern: Int64(cpus ?? 1)))
    hasher.add(UInt64(bitPattern: Int64(memoryMB ?? 0)))
    return hasher.value == 0 ? 1 : hasher.value
  }

  public static func overview(_ spec: MachineTemplate) -> UInt64 {
    overview(image: spec.image, cpuKind: spec.cpuKind, cpus: spec.cpus, memoryMB: spec.memoryMB)
  }

  /// Fly's `version` string, hashed (0: not sent).
  public static func version(_ text: String?) -> UInt64 {
    guard let text, !text.isEmpty else { return 0 }
    var hasher = FNV()
    hasher.add(text)
    return hasher.value == 0 ? 1 : hasher.value
  }

  /// What the template digest must also change with: the app the machines live in (the
  /// `{{app_name}}` and `{{hostname}}` values) and the secrets the template names (`$NAME` values
  /// and `{{secret:NAME}}` keys: a rotated key is a new config for every user). The secrets enter as
  /// a SHA-256 of name and value, truncated: the digest written to the database reveals nothing of them.
  public static func salt(appName: String, secrets: [(name: String, value: String?)]) -> UInt64 {
    var message = Array("fleetkeeper.config-salt.v1\u{0}\(appName)\u{0}".utf8)
    for (name, value) in secrets.sorted(by: { $0.name < $1.name }) {
      message += Array(name.utf8) + [0] + Array((value ?? "<missing>").utf8) + [0]
    }
    let digest = Digests.sha256(message)
    return digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
  }

  /// The secret names a template uses: `$NAME` env values and `{{secret:NAME}}` keys in env values
  /// and the init command.
  public static func secretNames(_ template: MachineTemplate) -> [String] {
    var names: Set<String> = []
    for value in template.env.values {
      if value.hasPrefix("$"), value.count > 1 { names.insert(String(value.dropFirst())) }
      names.formUnion(Placeholders.secretKeys(value))
    }
    for argument in template.initCommand ?? [] { names.formUnion(Placeholders.secretKeys(argument)) }
    return names.sorted()
  }

  /// FNV-1a, 64 bits, over length-prefixed fields (no two field lists encode alike).
  struct FNV {
    var value: UInt64 = 0xCBF2_9CE4_8422_2325

    mutating func byte(_ byte: UInt8) {
      value = (value ^ UInt64(byte)) &* 0x100_0000_01B3
    }

    mutating func add(_ number: UInt64) {
      for shift in stride(from: 0, to: 64, by: 8) { byte(UInt8(truncatingIfNeeded: number >> UInt64(shift))) }
    }

    mutating func add(_ text: String) {
      add(UInt64(text.utf8.count))
      for b in text.utf8 { byte(b) }
    }

    mutating func add(_ list: [String]) {
      add(UInt64(list.count))
      for item in list { add(item) }
    }

    mutating func add(_ map: [String: String]) {
      add(UInt64(map.count))
      for key in map.keys.sorted() {
        add(key)
        add(map[key]!)
      }
    }
  }
}

// 64-bit digests are stored as hex strings: JSON numbers above 2^53 are not exact in every reader.
extension KeyedDecodingContainer {
  /// A digest written by ``KeyedEncodingContainer/encodeDigest(_:forKey:)``; 0 when absent or unreadable.
  func decodeDigest(forKey key: Key) throws -> UInt64 {
    UInt64(try decodeIfPresent(String.self, forKey: key) ?? "0", radix: 16) ?? 0
  }
}

extension KeyedEncodingContainer {
  mutating func encodeDigest(_ value: UInt64, forKey key: Key) throws {
    try encode(String(value, radix: 16), forKey: key)
  }
}
