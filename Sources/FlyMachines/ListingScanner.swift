/// The fields of a listed machine a controller needs, read straight from the list page's bytes.
public struct FlyMachineListing: Sendable {
  public var id: String
  public var name: String?
  public var state: String
  public var region: String?
  /// `config.metadata[<the key asked for>]`.
  public var owner: String?
  /// `config.mounts[0].volume`.
  public var volumeID: String?
  public var privateIP: String?
  public var createdAt: String?
  public var updatedAt: String?
  /// The org-wide list's fields: the machine's app and its config version.
  public var appName: String?
  public var version: String?
  /// The overview of its config: `config.image` and `config.guest` (cpu kind, cpus, memory).
  public var image: String?
  public var guest: (cpuKind: String?, cpus: Int?, memoryMB: Int?)?
}

extension FlyMachineListing: Hashable {
  public static func == (a: FlyMachineListing, b: FlyMachineListing) -> Bool {
    a.id == b.id && a.name == b.name && a.state == b.state && a.region == b.region && a.owner == b.owner
      && a.volumeID == b.volumeID && a.privateIP == b.privateIP && a.createdAt == b.createdAt
      && a.updatedAt == b.updatedAt && a.appName == b.appName && a.version == b.version && a.image == b.image
      && a.guest?.cpuKind == b.guest?.cpuKind && a.guest?.cpus == b.guest?.cpus
      && a.guest?.memoryMB == b.guest?.memoryMB
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(id)
    hasher.combine(version)
  }
}

/// One page of an org-wide list (`GET /v1/orgs/{org}/machines|volumes`).
public struct OrgListPage<Item: Sendable>: Sendable {
  public var items: [Item]
  /// Absent (nil) when the walk is over; a page may be short, even empty, while more remain.
  public var nextCursor: String?
  public var lastUpdatedAt: String?
  /// Regions Fly could not read: a partial answer.
  public var errorRegions: [String]
  public init(items: [Item], nextCursor: String?, lastUpdatedAt: String?, errorRegions: [String]) {
    self.items = items
    self.nextCursor = nextCursor
    self.lastUpdatedAt = lastUpdatedAt
    self.errorRegions = errorRegions
  }
}

/// A single-pass scanner over a machine list page (a JSON array of `Machine`), keeping only
/// ``FlyMachineListing``'s fields and skipping the rest without building it: no tree, no copy of
/// the config. Any malformed input is an error, never a guess.
/// An object key, compared against the few keys the scanner wants without building a String.
struct Key {
  var bytes: UnsafeRawBufferPointer?
  var decoded: [UInt8]?
  init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }
  init(decoded: [UInt8]) { self.decoded = decoded }
  static func ~= (pattern: [UInt8], key: Key) -> Bool { key == pattern }
  static func == (key: Key, other: [UInt8]) -> Bool {
    if let decoded = key.decoded { return decoded == other }
    guard let bytes = key.bytes, bytes.count == other.count else { return false }
    for i in 0..<other.count where bytes[i] != other[i] { return false }
    return true
  }
}

struct ListingScanner {
  struct Malformed: Error {
    var offset: Int
    var reason: String
  }

  private let bytes: UnsafeRawBufferPointer
  private var index = 0
  /// How deep the value being skipped is nested: bounded, so a hostile page (a million nested
  /// arrays in a config) is an error, not a stack overflow.
  private var depth = 0
  static let maxDepth = JSONValue.maxDepth
  private let ownerKey: [UInt8]

  init(bytes: UnsafeRawBufferPointer, ownerKey: String) {
    self.bytes = bytes
    self.ownerKey = Array(ownerKey.utf8)
  }

  static func scan(_ bytes: UnsafeRawBufferPointer, ownerKey: String) throws(Malformed) -> [FlyMachineListing] {
    var scanner = ListingScanner(bytes: bytes, ownerKey: ownerKey)
    return try scanner.array { (s: inout ListingScanner) throws(Malformed) in try s.machine() }
  }

  /// A volume list page (a JSON array of `Volume`), as ``FlyVolume``s: the same answer as
  /// `JSONDecoder`, at a fraction of its cost (a restart at 100k volumes decodes 100 pages).
  static func scanVolumes(_ bytes: UnsafeRawBufferPointer) throws(Malformed) -> [FlyVolume] {
    var scanner = ListingScanner(bytes: bytes, ownerKey: "")
    return try scanner.array { (s: inout ListingScanner) throws(Malformed) in try s.volume() }
  }

  mutating func fail(_ reason: String) -> Malformed { Malformed(offset: index, reason: reason) }

  mutating func skipSpace() {
    while index < bytes.count,
      bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09
    {
      index += 1
    }
  }

  private mutating func expect(_ byte: UInt8) throws(Malformed) {
    skipSpace()
    guard index < bytes.count, bytes[index] == byte else { throw fail("expected \(Character(UnicodeScalar(byte)))") }
    index += 1
  }

  private mutating func peek() -> UInt8? {
    skipSpace()
    return index < bytes.count ? bytes[index] : nil
  }

  /// An org-wide list page: `{"machines": [...], "next_cursor": …, "error_regions": [...], …}`
  /// (`items` names the array: `machines` or `volumes`).
  static func scanOrgPage<Element>(
    _ bytes: UnsafeRawBufferPointer, items name: String, ownerKey: String,
    _ element: (inout ListingScanner) throws(Malformed) -> Element
  ) throws(Malformed) -> OrgListPage<Element> {
    var scanner = ListingScanner(bytes: bytes, ownerKey: ownerKey)
    var page = OrgListPage<Element>(items: [], nextCursor: nil, lastUpdatedAt: nil, errorRegions: [])
    let itemsKey = Array(name.utf8)
    var sawItems = false
    try scanner.object { (s: inout ListingScanner, key: Key) throws(Malformed) in
      switch key {
      case itemsKey:
        if try s.null() { return }
        page.items = try s.elements(element)
        sawItems = true
      case Self.nextCursor: page.nextCursor = try s.optionalString().flatMap { $0.isEmpty ? nil : $0 }
      case Self.lastUpdatedAt: page.lastUpdatedAt = try s.optionalString()
      case Self.errorRegions:
        if try s.null() { return }
        page.errorRegions = try s.elements { (s: inout ListingScanner) throws(Malformed) in try s.string() }
      default: try s.skipValue()
      }
    }
    scanner.skipSpace()
    guard scanner.index == bytes.count else { throw scanner.fail("trailing bytes") }
    guard sawItems else { throw scanner.fail("no \(name) array") }
    return page
  }

  static func scanOrgMachines(_ bytes: UnsafeRawBufferPointer, ownerKey: String) throws(Malformed)
    -> OrgListPage<FlyMachineListing>
  {
    try scanOrgPage(bytes, items: "machines", ownerKey: ownerKey) { (s: inout ListingScanner) throws(Malformed) in
      try s.machine()
    }
  }

  static func scanOrgVolumes(_ bytes: UnsafeRawBufferPointer) throws(Malformed) -> OrgListPage<FlyVolume> {
    try scanOrgPage(bytes, items: "volumes", ownerKey: "") { (s: inout ListingScanner) throws(Malformed) in
      try s.volume()
    }
  }

  private static let nextCursor = Array("next_cursor".utf8), lastUpdatedAt = Array("last_updated_at".utf8)
  private static let errorRegions = Array("error_regions".utf8), appName = Array("app_name".utf8)
  private static let instanceID = Array("instance_id".utf8), image = Array("image".utf8)
  private static let guest = Array("guest".utf8), cpuKind = Array("cpu_kind".utf8), cpus = Array("cpus".utf8)
  private static let memoryMB = Array("memory_mb".utf8)
  private static let version = Array("version".utf8), bytesUsed = Array("bytes_used".utf8)
  private static let bytesTotal = Array("bytes_total".utf8)

  mutating func array<Element>(
    _ element: (inout ListingScanner) throws(Malformed) -> Element
  ) throws(Malformed) -> [Element] {
    let result = try elements(element)
    skipSpace()
    guard index == bytes.count else { throw fail("trailing bytes") }
    return result
  }

  /// A JSON array's elements, stopping after its `]`.
  mutating func elements<Element>(
    _ element: (inout ListingScanner) throws(Malformed) -> Element
  ) throws(Malformed) -> [Element] {
    try expect(UInt8(ascii: "["))
    var result: [Element] = []
    if peek() == UInt8(ascii: "]") {
      index += 1
      return result
    }
    while true {
      result.append(try element(&self))
      skipSpace()
      guard index < bytes.count else { throw fail("unterminated array") }
      if bytes[index] == UInt8(ascii: ",") {
        index += 1
        continue
      }
      if bytes[index] == UInt8(ascii: "]") {
        index += 1
        break
      }
      throw fail("expected , or ]")
    }
    return result
  }

  /// A key: the bytes between the quotes when it has no escape (no copy), else decoded.
  private mutating func key() throws(Malformed) -> Key {
    try expect(UInt8(ascii: "\""))
    let start = index
    while index < bytes.count {
      let byte = bytes[index]
      if byte == UInt8(ascii: "\"") {
        index += 1
        return Key(bytes: UnsafeRawBufferPointer(rebasing: bytes[start..<(index - 1)]))
      }
      if byte == UInt8(ascii: "\\") { break }
      index += 1
    }
    index = start - 1
    let decoded = try rawString()
    return Key(decoded: decoded)
  }

  /// Calls `body` with each key of an object; `body` must consume the value.
  private mutating func object(_ body: (inout ListingScanner, Key) throws(Malformed) -> Void) throws(Malformed) {
    try expect(UInt8(ascii: "{"))
    if peek() == UInt8(ascii: "}") {
      index += 1
      return
    }
    while true {
      skipSpace()
      let key = try key()
      try expect(UInt8(ascii: ":"))
      try body(&self, key)
      skipSpace()
      guard index < bytes.count else { throw fail("unterminated object") }
      if bytes[index] == UInt8(ascii: ",") {
        index += 1
        continue
      }
      if bytes[index] == UInt8(ascii: "}") {
        index += 1
        return
      }
      throw fail("expected , or }")
    }
  }

  private static let id = Array("id".utf8), name = Array("name".utf8), state = Array("state".utf8)
  private static let region = Array("region".utf8), privateIP = Array("private_ip".utf8), config = Array("config".utf8)
  private static let createdAt = Array("created_at".utf8), updatedAt = Array("updated_at".utf8)
  private static let metadata = Array("metadata".utf8), mounts = Array("mounts".utf8), volume = Array("volume".utf8)

  mutating func machine() throws(Malformed) -> FlyMachineListing {
    var listing = FlyMachineListing(id: "", state: "")
    var sawID = false
    var sawState = false
    try object { (s: inout ListingScanner, key: Key) throws(Malformed) in
      switch key {
      case Self.id:
        listing.id = try s.string()
        sawID = true
      case Self.state:
        listing.state = try s.string()
        sawState = true
      case Self.name: listing.name = try s.optionalString()
      case Self.region: listing.region = try s.optionalString()
      case Self.privateIP: listing.privateIP = try s.optionalString()
      case Self.createdAt: listing.createdAt = try s.optionalString()
      case Self.updatedAt: listing.updatedAt = try s.optionalString()
      case Self.appName: listing.appName = try s.optionalString()
      case Self.version: listing.version = try s.optionalString()
      case Self.instanceID:
        // `version`'s deprecated twin: used when `version` is not sent.
        let value = try s.optionalString()
        if listing.version == nil { listing.version = value }
      case Self.config:
        if s.peek() == UInt8(ascii: "n") {
          try s.skipValue()
        } else {
          try s.config(into: &listing)
        }
      default: try s.skipValue()
      }
    }
    guard sawID, sawState else { throw fail("a machine without id or state") }
    return listing
  }

  private static let sizeGB = Array("size_gb".utf8), encrypted = Array("encrypted".utf8)
  private static let attached = Array("attached_machine_id".utf8)
  private static let retention = Array("snapshot_retention".utf8), autoBackup = Array("auto_backup_enabled".utf8)

  mutating func volume() throws(Malformed) -> FlyVolume {
    var volume = FlyVolume(id: "", name: "", state: "", region: "")
    var seen = 0
    try object { (s: inout ListingScanner, key: Key) throws(Malformed) in
      switch key {
      case Self.id:
        volume.id = try s.string()
        seen |= 1
      case Self.name:
        volume.name = try s.string()
        seen |= 2
      case Self.state:
        volume.state = try s.string()
        seen |= 4
      case Self.region:
        volume.region = try s.string()
        seen |= 8
      case Self.sizeGB: volume.sizeGB = try s.optionalInteger()
      case Self.encrypted: volume.encrypted = try s.optionalBool()
      case Self.attached: volume.attachedMachineID = try s.optionalString()
      case Self.createdAt: volume.createdAt = try s.optionalString()
      case Self.updatedAt: volume.updatedAt = try s.optionalString()
      case Self.appName: volume.appName = try s.optionalString()
      case Self.bytesUsed: volume.bytesUsed = try s.optionalInteger()
      case Self.bytesTotal: volume.bytesTotal = try s.optionalInteger()
      case Self.retention: volume.snapshotRetention = try s.optionalInteger()
      case Self.autoBackup: volume.autoBackupEnabled = try s.optionalBool()
      default: try s.skipValue()
      }
    }
    guard seen == 15 else { throw fail("a volume without id, name, state or region") }
    return volume
  }

  /// Consumes a `null` if one comes next.
  mutating func null() throws(Malformed) -> Bool {
    guard peek() == UInt8(ascii: "n") else { return false }
    try literal("null")
    return true
  }

  private mutating func optionalInteger() throws(Malformed) -> Int? {
    if try null() { return nil }
    skipSpace()
    let start = index
    try skipValue()
    let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    if let value = Int(text) { return value }
    guard let real = Double(text), real.rounded() == real, let value = Int(exactly: real) else {
      throw fail("not an integer")
    }
    return value
  }

  private mutating func optionalBool() throws(Malformed) -> Bool? {
    if try null() { return nil }
    switch peek() {
    case UInt8(ascii: "t"):
      try literal("true")
      return true
    case UInt8(ascii: "f"):
      try literal("false")
      return false
    default: throw fail("not a boolean")
    }
  }

  private mutating func config(into listing: inout FlyMachineListing) throws(Malformed) {
    let ownerKey = self.ownerKey
    try object { (s: inout ListingScanner, key: Key) throws(Malformed) in
      switch key {
      case Self.metadata where s.peek() == UInt8(ascii: "{"):
        try s.object { (s: inout ListingScanner, key: Key) throws(Malformed) in
          if key == ownerKey { listing.owner = try s.optionalString() } else { try s.skipValue() }
        }
      case Self.image: listing.image = try s.optionalString()
      case Self.guest where s.peek() == UInt8(ascii: "{"):
        var guest: (cpuKind: String?, cpus: Int?, memoryMB: Int?) = (nil, nil, nil)
        try s.object { (s: inout ListingScanner, key: Key) throws(Malformed) in
          switch key {
          case Self.cpuKind: guest.cpuKind = try s.optionalString()
          case Self.cpus: guest.cpus = try s.optionalInteger()
          case Self.memoryMB: guest.memoryMB = try s.optionalInteger()
          default: try s.skipValue()
          }
        }
        listing.guest = guest
      case Self.mounts where s.peek() == UInt8(ascii: "["):
        try s.expect(UInt8(ascii: "["))
        var first = true
        if s.peek() == UInt8(ascii: "]") {
          s.index += 1
          return
        }
        while true {
          if first, s.peek() == UInt8(ascii: "{") {
            try s.object { (s: inout ListingScanner, key: Key) throws(Malformed) in
              if key == Self.volume { listing.volumeID = try s.optionalString() } else { try s.skipValue() }
            }
          } else {
            try s.skipValue()
          }
          first = false
          s.skipSpace()
          guard s.index < s.bytes.count else { throw s.fail("unterminated mounts") }
          if s.bytes[s.index] == UInt8(ascii: ",") {
            s.index += 1
            continue
          }
          try s.expect(UInt8(ascii: "]"))
          break
        }
      default: try s.skipValue()
      }
    }
  }

  mutating func optionalString() throws(Malformed) -> String? {
    if try null() { return nil }
    return try string()
  }

  mutating func string() throws(Malformed) -> String {
    let raw = try rawString()
    return String(decoding: raw, as: UTF8.self)
  }

  /// A string's bytes, escapes decoded.
  private mutating func rawString() throws(Malformed) -> [UInt8] {
    try expect(UInt8(ascii: "\""))
    var out: [UInt8] = []
    let start = index
    // Fast path: no escape.
    while index < bytes.count {
      let byte = bytes[index]
      if byte == UInt8(ascii: "\"") {
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        index += 1
        return out
      }
      if byte == UInt8(ascii: "\\") { break }
      if byte < 0x20 { throw fail("control character in a string") }
      index += 1
    }
    out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
    while index < bytes.count {
      let byte = bytes[index]
      index += 1
      switch byte {
      case UInt8(ascii: "\""): return out
      case UInt8(ascii: "\\"):
        guard index < bytes.count else { throw fail("unterminated escape") }
        let escaped = bytes[index]
        index += 1
        switch escaped {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escaped)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
          var scalar = try hex4()
          if scalar >= 0xD800 && scalar < 0xDC00 {
            guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
            else {
              throw fail("lone surrogate")
            }
            index += 2
            let low = try hex4()
            guard low >= 0xDC00 && low < 0xE000 else { throw fail("bad surrogate pair") }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
          }
          guard let unicode = Unicode.Scalar(scalar) else { throw fail("bad unicode escape") }
          out.append(contentsOf: Array(String(Character(unicode)).utf8))
        default: throw fail("bad escape")
        }
      default:
        if byte < 0x20 { throw fail("control character in a string") }
        out.append(byte)
      }
    }
    throw fail("unterminated string")
  }

  /// Skips a string without keeping it.
  private mutating func skipString() throws(Malformed) {
    try expect(UInt8(ascii: "\""))
    while index < bytes.count {
      let byte = bytes[index]
      index += 1
      if byte == UInt8(ascii: "\"") { return }
      if byte == UInt8(ascii: "\\") {
        guard index < bytes.count else { throw fail("unterminated escape") }
        index += 1
      } else if byte < 0x20 {
        throw fail("control character in a string")
      }
    }
    throw fail("unterminated string")
  }

  private mutating func hex4() throws(Malformed) -> UInt32 {
    guard index + 4 <= bytes.count else { throw fail("short unicode escape") }
    var value: UInt32 = 0
    for _ in 0..<4 {
      let byte = bytes[index]
      index += 1
      let digit: UInt32
      switch byte {
      case 0x30...0x39: digit = UInt32(byte - 0x30)
      case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
      case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
      default: throw fail("bad hex digit")
      }
      value = value << 4 | digit
    }
    return value
  }

  private mutating func literal(_ word: StaticString) throws(Malformed) {
    skipSpace()
    let count = word.utf8CodeUnitCount
    guard index + count <= bytes.count else { throw fail("truncated literal") }
    for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { throw fail("bad literal") }
    index += count
  }

  /// Skips any value, checking its shape.
  private mutating func skipValue() throws(Malformed) {
    guard let byte = peek() else { throw fail("missing value") }
    if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") {
      depth += 1
      if depth > Self.maxDepth { throw fail("nesting deeper than \(Self.maxDepth)") }
    }
    defer { if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") { depth -= 1 } }
    switch byte {
    case UInt8(ascii: "\""): try skipString()
    case UInt8(ascii: "{"): try object { (s: inout ListingScanner, _: Key) throws(Malformed) in try s.skipValue() }
    case UInt8(ascii: "["):
      index += 1
      if peek() == UInt8(ascii: "]") {
        index += 1
        return
      }
      while true {
        try skipValue()
        skipSpace()
        guard index < bytes.count else { throw fail("unterminated array") }
        if bytes[index] == UInt8(ascii: ",") {
          index += 1
          continue
        }
        try expect(UInt8(ascii: "]"))
        return
      }
    case UInt8(ascii: "t"): try literal("true")
    case UInt8(ascii: "f"): try literal("false")
    case UInt8(ascii: "n"): try literal("null")
    case UInt8(ascii: "-"), 0x30...0x39:
      let start = index
      while index < bytes.count,
        (0x30...0x39).contains(bytes[index])
          || [UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(
            bytes[index])
      {
        index += 1
      }
      if index == start { throw fail("bad number") }
    default: throw fail("unexpected byte")
    }
  }
}
