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

/// Builds a ``PagedList`` page by page against the previous read.
struct PagedListBuilder<Item: Sendable> {
  private let previous: PagedList<Item>?
  private var result = PagedList<Item>()
  /// While every page so far matched, nothing is copied: the previous items are taken whole at the end.
  private var matchingSoFar = true

  /// `expected`: about how many items the list will hold (the previous read's count, or the caller's
  /// guess), so the items are allocated once instead of grown by doubling (up to 2× the memory).
  init(previous: PagedList<Item>?, expected: Int = 0) {
    self.previous = previous
    self.hint = max(expected, previous?.items.count ?? 0)
  }
  private let hint: Int

  /// Reserved when the first page differs (an unchanged list allocates nothing).
  private mutating func reserve() {
    if hint > 0 && result.items.capacity < hint { result.items.reserveCapacity(hint + hint / 64 + 16) }
  }

  /// Adds one page: reuses the previous page's items when the bytes match, else calls `decode`.
  mutating func add<Failure: Error>(
    _ raw: UnsafeRawBufferPointer, decode: (UnsafeRawBufferPointer) throws(Failure) -> [Item]
  ) throws(Failure) {
    let digest = PageDigest.of(raw)
    let index = result.pages.count
    if let previous, index < previous.pages.count, previous.pages[index].digest == digest {
      let start = index == 0 ? 0 : previous.pages[index - 1].end
      let end = previous.pages[index].end
      if matchingSoFar {
        // Same coordinates as the previous read: every page before this one matched too.
        result.pages.append(.init(digest: digest, end: end))
      } else {
        result.items.append(contentsOf: previous.items[start..<end])
        result.pages.append(.init(digest: digest, end: result.items.count))
      }
      return
    }
    if matchingSoFar {
      // The first page that differs: take the matched prefix now.
      matchingSoFar = false
      reserve()
      if let previous, index > 0 { result.items.append(contentsOf: previous.items[0..<previous.pages[index - 1].end]) }
    }
    result.items.append(contentsOf: try decode(raw))
    result.pages.append(.init(digest: digest, end: result.items.count))
  }

  consuming func finish() -> PagedList<Item> {
    if matchingSoFar, let previous, previous.pages.count == result.pages.count {
      var same = previous
      same.unchanged = true
      return same
    }
    if matchingSoFar, let previous {
      // Fewer pages than before, all matching: the prefix of the previous items.
      let end = result.pages.last?.end ?? 0
      result.items = Array(previous.items[0..<end])
    }
    return result
  }
}
