import FleetCore
import Testing

/// The dense per-user map behind the desired snapshot and the row memos.
struct UserMapTests {
  @Test func behavesLikeADictionary() {
    var map = UserMap<Int>()
    var reference: [String: Int] = [:]
    // 300 keys, each visited every 300 steps; whether a visit sets or removes shifts each round.
    for step in 0..<5000 {
      let key = "u\((step &* 7919) % 300)"
      if (step / 300 + step) % 3 == 0 {
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
    #expect(reference.keys.allSatisfy(map.contains) && !map.contains("absent"))
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
  }
}
