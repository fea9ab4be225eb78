/// A 128-bit digest of a list page's bytes. Not cryptographic: it tells a page whose bytes are the
/// same as last time from one that changed, so an unchanged page is not decoded again.
public struct PageDigest: Hashable, Sendable {
  var low: UInt64
  var high: UInt64
  var count: Int

  /// Two independent multiply-xorshift lanes over 8-byte words (about 1 ns per 8 bytes).
  public static func of(_ raw: UnsafeRawBufferPointer) -> PageDigest {
    var low: UInt64 = 0x243F_6A88_85A3_08D3 ^ UInt64(raw.count)
    var high: UInt64 = 0x1319_8A2E_0370_7344 &+ UInt64(raw.count)
    let words = raw.count / 8
    var offset = 0
    for _ in 0..<words {
      let word = raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
      low = (low ^ word) &* 0x9E37_79B9_7F4A_7C15
      low ^= low >> 29
      high = (high &+ word) &* 0xC2B2_AE3D_27D4_EB4F
      high ^= high >> 31
      offset += 8
    }
    var tail: UInt64 = 0
    var shift: UInt64 = 0
    while offset < raw.count {
      tail |= UInt64(raw[offset]) << shift
      shift += 8
      offset += 1
    }
    low = (low ^ tail) &* 0x9E37_79B9_7F4A_7C15
    high = (high &+ tail) &* 0xC2B2_AE3D_27D4_EB4F
    low ^= low >> 32
    high ^= high >> 29
    return PageDigest(low: low, high: high, count: raw.count)
  }
}

/// A whole paged list, with each page's digest remembered. Read again with the previous result, a
/// page whose bytes did not change reuses the previous items instead of being decoded, and a list
/// where no page changed comes back as the previous value itself (``unchanged``): a quiet fleet
/// costs the requests and a digest of the bytes, not a decode.
public struct PagedList<Item: Sendable>: Sendable {
  public internal(set) var items: [Item]
  /// Per page: its digest and the end of its items in ``items``.
  var pages: [Page]
  /// True when every page matched the previous read (same count, same bytes).
  public internal(set) var unchanged: Bool

  struct Page: Sendable {
    var digest: PageDigest
    var end: Int
  }

  public init(items: [Item]) {
    self.items = items
    self.pages = []
    self.unchanged = false
  }

  init() { self.init(items: []) }
}

/// Builds a ``PagedList`` page by page against the previous read, in the previous read's storage:
/// a changed page replaces its own items and nothing else is copied. Given the only reference to
/// the previous list (the reconciler hands it over), a pass where a few pages changed allocates
/// only those pages' items, not a second list of the whole fleet. Given a
/// shared one, value semantics copy it once and the caller's copy is untouched.
struct PagedListBuilder<Item: Sendable> {
  private var result: PagedList<Item>
  /// Pages of the previous read: those at `seen` and after still hold its coordinates, off by `shift`.
  private let previousPages: Int
  private var seen = 0
  private var shift = 0
  private var changed = false
  /// Fresh lists are allocated once at about this many items instead of grown by doubling.
  private let hint: Int

  /// `expected`: about how many items the list will hold (the caller's guess), used when there is
  /// no previous read.
  init(previous: consuming PagedList<Item>?, expected: Int = 0) {
    if let previous = previous.take(), !previous.pages.isEmpty {
      result = previous
      result.unchanged = false
    } else {
      result = PagedList()  // nothing to compare with (a list made from items has no page digests)
    }
    previousPages = result.pages.count
    hint = expected
  }

  /// Adds one page: keeps the previous page's items when the bytes match, else calls `decode`.
  mutating func add<Failure: Error>(
    _ raw: UnsafeRawBufferPointer, decode: (UnsafeRawBufferPointer) throws(Failure) -> [Item]
  ) throws(Failure) {
    let digest = PageDigest.of(raw)
    let index = seen
    seen += 1
    let start = index == 0 ? 0 : result.pages[index - 1].end
    if index < previousPages {
      let oldEnd = result.pages[index].end + shift
      if result.pages[index].digest == digest {
        result.pages[index].end = oldEnd
        return
      }
      changed = true
      let items = try decode(raw)
      result.items.replaceSubrange(start..<oldEnd, with: items)
      shift += items.count - (oldEnd - start)
      result.pages[index] = .init(digest: digest, end: start + items.count)
      return
    }
    changed = true
    if result.items.isEmpty && hint > 0 && result.items.capacity < hint {
      result.items.reserveCapacity(hint + hint / 64 + 16)
    }
    result.items.append(contentsOf: try decode(raw))
    result.pages.append(.init(digest: digest, end: result.items.count))
  }

  /// How many items the pages added so far hold.
  var count: Int { seen == 0 ? 0 : result.pages[seen - 1].end }

  consuming func finish() -> PagedList<Item> {
    if seen < previousPages {
      // Fewer pages than before: the rest is gone.
      changed = true
      let end = seen == 0 ? 0 : result.pages[seen - 1].end
      result.items.removeSubrange(end...)
      result.pages.removeSubrange(seen...)
    }
    result.unchanged = !changed && previousPages > 0
    return result
  }
}
