import FleetCore
import Testing

/// The index of positions behind `UserMap` and the org-wide view: probes, removal without
/// tombstones, growth.
struct PositionIndexTests {
  /// An owner as `UserMap` is one: keys in an array, removal moving the last key into the hole.
  @Test func findsEveryKeyThroughInsertsRemovalsAndGrowth() {
    var keys: [String] = []
    var index = PositionIndex()
    var present = Set<String>()
    var generator = SplitMix(seed: 7)
    for step in 0..<20_000 {
      // Keys drawn from a pool of 3,000: the table grows past 4,096 slots, then churns at its size.
      let key = "k\(generator.next() % 3000)"
      let found = index.find(key, keyAt: { keys[$0] })
      #expect((found != nil) == present.contains(key))
      if let position = found {
        #expect(keys[position] == key)
        if generator.next() % 2 == 0 {
          #expect(index.remove(key, keyAt: { keys[$0] }) == position)
          let last = keys.count - 1
          if position != last { index.move(keys[last], to: position, keyAt: { keys[$0] }) }
          keys.swapAt(position, last)
          keys.removeLast()
          present.remove(key)
        }
      } else {
        index.insert(key, at: keys.count, keyAt: { keys[$0] })
        keys.append(key)
        present.insert(key)
      }
      if step % 1000 == 999 {
        #expect(index.count == keys.count)
        for (position, key) in keys.enumerated() where index.find(key, keyAt: { keys[$0] }) != position {
          Issue.record("\(key) not found at \(position) after step \(step)")
        }
        #expect(index.find("absent", keyAt: { keys[$0] }) == nil)
      }
    }
    #expect(present.count == keys.count && present.count > 500)
  }

  @Test func aRepeatedKeyKeepsItsFirstPosition() {
    let keys = ["a", "b", "a", "c", "b"]
    let index = PositionIndex(keys: keys)
    #expect(index.count == 3)
    #expect(index.find("a", keyAt: { keys[$0] }) == 0)
    #expect(index.find("b", keyAt: { keys[$0] }) == 1)
    #expect(index.find("c", keyAt: { keys[$0] }) == 3)
    #expect(index.find("d", keyAt: { keys[$0] }) == nil)
    #expect(PositionIndex().find("a", keyAt: { _ in "a" }) == nil)
  }

  @Test func removingAnAbsentKeyChangesNothing() {
    let keys = ["a", "b"]
    var index = PositionIndex(keys: keys)
    #expect(index.remove("z", keyAt: { keys[$0] }) == nil)
    #expect(index.count == 2 && index.find("b", keyAt: { keys[$0] }) == 1)
  }
}

/// A seeded generator: the same draws every run.
struct SplitMix {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
