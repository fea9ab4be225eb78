import FleetCore
import Testing

/// The dense per-user map behind the desired snapshot and the row memos.
struct UserMapTests {
  @Test func behavesLikeADictionary() {
    var map = UserMap<Int>()
    var reference: [String: Int] = [:]
    var generator = SplitMix(seed: 7)
    for step in 0..<5000 {
      let key = "u\(generator.next() % 300)"
      if generator.next() % 3 == 0 {
        map[key] = nil
        reference[key] = nil
      } else {
        map[key] = step
        reference[key] = step
      }
      if step % 250 == 0 {
        #expect(map.count == reference.count)
        #expect(Dictionary(uniqueKeysWithValues: map.map { ($0.key, $0.value) }) == reference)
      }
    }
    for (key, value) in reference { #expect(map[key] == value) }
    #expect(map[String("absent")] == nil)
    #expect(Set(map.keys) == Set(reference.keys))
    #expect(map.values.count == map.keys.count)
  }

  @Test func removalKeepsTheOthersFindable() {
    var map: UserMap<String> = ["a": "1", "b": "2", "c": "3"]
    map["a"] = nil
    #expect(map["b"] == "2" && map["c"] == "3" && map["a"] == nil && map.count == 2)
    map["c"] = nil
    map["b"] = nil
    #expect(map.isEmpty)
    map["d"] = "4"
    #expect(map["d"] == "4" && map.count == 1)
    map["d"]! += "!"
    #expect(map["d"] == "4!")
  }

  @Test func equalityIgnoresOrder() {
    let one: UserMap<Int> = ["a": 1, "b": 2]
    let other: UserMap<Int> = ["b": 2, "a": 1]
    #expect(one == other)
    #expect(one != ["a": 1, "b": 3])
    #expect(one != ["a": 1])
    #expect(one.mapValues { $0 * 10 } == ["a": 10, "b": 20])
  }
}

/// A small deterministic generator (no global randomness in tests).
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
