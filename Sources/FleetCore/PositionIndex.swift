/// A hash index of positions in an array held by its owner: the keys are not stored here, they
/// are read back from the owner's array (`keyAt`) when a probe needs them.
///
/// Open addressing with linear probing, at most half full, 4 bytes a slot: at 100k keys the table
/// is 262,144 slots, 1 MB, where a `[String: Int]` of the same keys is 262,144 buckets of 24 bytes,
/// 6.3 MB (docs/benchmarks.md). Positions are below 2³¹.
///
/// The caller keeps the contract: a key is inserted only when absent, and `keyAt` answers for every
/// position inserted (the owner changes its array only after telling the index).
public struct PositionIndex: Sendable {
  /// Position + 1 per slot; 0 is an empty slot.
  @usableFromInline var slots: [Int32] = []
  @usableFromInline var mask = 0
  @usableFromInline var storedCount = 0
  @inlinable public var count: Int { storedCount }

  @inlinable public init() {}

  /// Room for `minimumCapacity` keys without growing.
  @inlinable public init(minimumCapacity: Int) {
    if minimumCapacity > 0 { allocate(Self.slotCount(for: minimumCapacity)) }
  }

  /// An index of `keys`, each at its position; a key that repeats keeps its first position.
  @inlinable public init(keys: [String]) {
    self.init(minimumCapacity: keys.count)
    for (position, key) in keys.enumerated() where find(key, keyAt: { keys[$0] }) == nil {
      insert(key, at: position, keyAt: { keys[$0] })
    }
  }

  @inlinable static func slotCount(for keys: Int) -> Int {
    var slots = 8
    while slots < keys * 2 { slots <<= 1 }
    return slots
  }

  @inlinable mutating func allocate(_ slotCount: Int) {
    slots = [Int32](repeating: 0, count: slotCount)
    mask = slotCount - 1
  }

  @inlinable func home(_ key: String) -> Int { key.hashValue & mask }

  /// The position of `key`, or nil.
  @inlinable public func find(_ key: String, keyAt: (Int) -> String) -> Int? {
    guard count > 0 else { return nil }
    var slot = home(key)
    while true {
      let stored = Int(slots[slot])
      if stored == 0 { return nil }
      if keyAt(stored - 1) == key { return stored - 1 }
      slot = (slot + 1) & mask
    }
  }

  /// Records `key` at `position`. The key must be absent (``find(_:keyAt:)`` first).
  @inlinable public mutating func insert(_ key: String, at position: Int, keyAt: (Int) -> String) {
    precondition(position >= 0 && position < Int(Int32.max), "position out of range")
    if (count + 1) * 2 > slots.count { grow(keyAt: keyAt) }
    var slot = home(key)
    while slots[slot] != 0 { slot = (slot + 1) & mask }
    slots[slot] = Int32(position + 1)
    storedCount += 1
  }

  /// Points `key`, recorded at some position, at `position` instead (the owner moved its value).
  @inlinable public mutating func move(_ key: String, to position: Int, keyAt: (Int) -> String) {
    guard let slot = slot(of: key, keyAt: keyAt) else { return }
    slots[slot] = Int32(position + 1)
  }

  /// Forgets `key`; its position, or nil when it was absent. The slots after it are shifted back
  /// so that no probe sequence is broken (no tombstones).
  @discardableResult
  @inlinable public mutating func remove(_ key: String, keyAt: (Int) -> String) -> Int? {
    guard var hole = slot(of: key, keyAt: keyAt) else { return nil }
    let position = Int(slots[hole]) - 1
    var next = hole
    while true {
      next = (next + 1) & mask
      let stored = Int(slots[next])
      if stored == 0 { break }
      let wanted = home(keyAt(stored - 1))
      // The entry at `next` may fill the hole only if its home is not in (hole, next], cyclically.
      let stays = hole <= next ? (hole < wanted && wanted <= next) : (hole < wanted || wanted <= next)
      if stays { continue }
      slots[hole] = slots[next]
      hole = next
    }
    slots[hole] = 0
    storedCount -= 1
    return position
  }

  @inlinable func slot(of key: String, keyAt: (Int) -> String) -> Int? {
    guard count > 0 else { return nil }
    var slot = home(key)
    while true {
      let stored = Int(slots[slot])
      if stored == 0 { return nil }
      if keyAt(stored - 1) == key { return slot }
      slot = (slot + 1) & mask
    }
  }

  /// Room for `capacity` keys without growing.
  @inlinable public mutating func reserveCapacity(_ capacity: Int, keyAt: (Int) -> String) {
    if capacity * 2 > slots.count { rehash(slotCount: Self.slotCount(for: capacity), keyAt: keyAt) }
  }

  @inlinable mutating func grow(keyAt: (Int) -> String) {
    rehash(slotCount: Self.slotCount(for: max(count + 1, slots.count)), keyAt: keyAt)
  }

  @inlinable mutating func rehash(slotCount: Int, keyAt: (Int) -> String) {
    let old = slots
    allocate(slotCount)
    for stored in old where stored != 0 {
      var slot = home(keyAt(Int(stored) - 1))
      while slots[slot] != 0 { slot = (slot + 1) & mask }
      slots[slot] = stored
    }
  }
}
