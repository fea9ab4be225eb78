import Foundation

/// glibc's allocator, tuned for a controller that must fit a small Fly VM (256 to 512 MB).
///
/// By default glibc gives each thread that allocates its own arena (up to 8 per core), and memory
/// freed in one arena is never reused by another: with NIO's event loops and Swift's cooperative
/// pool all allocating, a 100k-user fleet held 50 MB more resident than with one arena
/// (docs/benchmarks.md). The controller spends its time waiting on the network, not contending
/// for the allocator's lock, so one arena costs nothing measurable.
public enum MemoryTuning {
  /// Limits glibc to one arena, unless the operator set `MALLOC_ARENA_MAX` (which glibc reads itself).
  public static func apply() {
    guard ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil else { return }
    _ = fk_mallopt(mArenaMax, 1)
  }

  /// `M_ARENA_MAX` in glibc's malloc.h.
  static let mArenaMax: Int32 = -8

  /// Gives freed heap pages back to the system, so the resident set (what a small Fly VM counts)
  /// shrinks to what the controller holds.
  public static func trim() { _ = fk_malloc_trim(0) }
}

@_silgen_name("mallopt") func fk_mallopt(_ parameter: Int32, _ value: Int32) -> Int32
@_silgen_name("malloc_trim") func fk_malloc_trim(_ pad: Int) -> Int32
