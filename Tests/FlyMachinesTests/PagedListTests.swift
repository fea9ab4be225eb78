import Foundation
import Testing

@testable import FlyMachines

/// The page-by-page reuse behind the quiet pass: pure, no sockets.
struct PagedListTests {
  /// Pages of comma-separated numbers; `decoded` counts the pages actually decoded.
  final class Decoder {
    var decoded = 0
    func read(_ pages: [String], previous: PagedList<Int>?) -> PagedList<Int> {
      var builder = PagedListBuilder(previous: previous)
      for page in pages {
        var bytes = Array(page.utf8)
        bytes.withUnsafeMutableBytes { raw in
          builder.add(UnsafeRawBufferPointer(raw)) { raw in
            self.decoded += 1
            return String(decoding: raw, as: UTF8.self).split(separator: ",").map { Int($0)! }
          }
        }
      }
      return builder.finish()
    }
  }

  @Test func unchangedPagesAreNotDecodedAgain() {
    let decoder = Decoder()
    let first = decoder.read(["1,2,3", "4,5", "6"], previous: nil)
    #expect(first.items == [1, 2, 3, 4, 5, 6])
    #expect(!first.unchanged)
    #expect(decoder.decoded == 3)

    let same = decoder.read(["1,2,3", "4,5", "6"], previous: first)
    #expect(same.items == [1, 2, 3, 4, 5, 6])
    #expect(same.unchanged)
    #expect(decoder.decoded == 3, "no page decoded")

    let middle = decoder.read(["1,2,3", "4,5,55", "6"], previous: same)
    #expect(middle.items == [1, 2, 3, 4, 5, 55, 6])
    #expect(!middle.unchanged)
    #expect(decoder.decoded == 4, "only the changed page")

    // Reused pages after a changed one land at their new offsets.
    let after = decoder.read(["1,2,3", "4,5,55", "6,7"], previous: middle)
    #expect(after.items == [1, 2, 3, 4, 5, 55, 6, 7])
    let again = decoder.read(["1", "4,5,55", "6,7"], previous: after)
    #expect(again.items == [1, 4, 5, 55, 6, 7])
    #expect(decoder.decoded == 6)
    let reread = decoder.read(["1", "4,5,55", "6,7"], previous: again)
    #expect(reread.unchanged && reread.items == [1, 4, 5, 55, 6, 7])
  }

  /// Handed over (not shared), the previous list is updated in its own storage: a changed page
  /// costs that page, not a second copy of the whole list.
  @Test func aHandedOverListIsUpdatedInPlace() {
    let decoder = Decoder()
    var list: PagedList<Int>? = decoder.read(["1,2,3", "4,5", "6"], previous: nil)
    let address = list!.items.withUnsafeBufferPointer { Int(bitPattern: $0.baseAddress) }
    var builder = PagedListBuilder(previous: list.take())
    for page in ["1,2,3", "4,50", "6"] {
      var bytes = Array(page.utf8)
      bytes.withUnsafeMutableBytes { raw in
        builder.add(UnsafeRawBufferPointer(raw)) { raw in
          String(decoding: raw, as: UTF8.self).split(separator: ",").map { Int($0)! }
        }
      }
    }
    let next = builder.finish()
    #expect(next.items == [1, 2, 3, 4, 50, 6])
    #expect(!next.unchanged)
    #expect(next.items.withUnsafeBufferPointer { Int(bitPattern: $0.baseAddress) } == address, "same storage")
    // A shared list is never changed under its other holder.
    let kept = next
    let changed = decoder.read(["1,2,3", "4,5", "6,7"], previous: next)
    #expect(kept.items == [1, 2, 3, 4, 50, 6])
    #expect(changed.items == [1, 2, 3, 4, 5, 6, 7])
  }

  @Test func fewerOrMorePagesAreNeverTakenForUnchanged() {
    let decoder = Decoder()
    let first = decoder.read(["1,2", "3"], previous: nil)
    let shorter = decoder.read(["1,2"], previous: first)
    #expect(!shorter.unchanged)
    #expect(shorter.items == [1, 2])
    let longer = decoder.read(["1,2", "3", "4"], previous: first)
    #expect(!longer.unchanged)
    #expect(longer.items == [1, 2, 3, 4])
    let empty = decoder.read([""], previous: first)
    #expect(!empty.unchanged)
    // A list made from items has no digests to compare with: read afresh, never appended to.
    let fresh = decoder.read(["1,2"], previous: PagedList(items: [9, 9, 9]))
    #expect(fresh.items == [1, 2] && !fresh.unchanged)
  }

  @Test func digestsTellOneByteApart() {
    func digest(_ text: String) -> PageDigest {
      var bytes = Array(text.utf8)
      return bytes.withUnsafeMutableBytes { PageDigest.of(UnsafeRawBufferPointer($0)) }
    }
    let base = String(repeating: #"{"id":"abc","state":"started"}"#, count: 50)
    #expect(digest(base) == digest(base))
    var changed = Array(base.utf8)
    for i in stride(from: 0, to: changed.count, by: 37) {
      let original = changed[i]
      changed[i] ^= 1
      #expect(digest(String(decoding: changed, as: UTF8.self)) != digest(base), "byte \(i)")
      changed[i] = original
    }
    #expect(digest("") != digest(" "))
  }
}
