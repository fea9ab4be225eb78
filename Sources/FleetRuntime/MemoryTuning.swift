import Foundation

#if canImport(CMalloc)
  import CMalloc
#endif

/// glibc's allocator, tuned for a controller that must fit a small Fly VM (256 to 512 MB).
///
/// By default glibc gives each thread that allocates its own arena (up to 8 per core), and memory
/// freed in one arena is never reused by another: with NIO's event loops and Swift's cooperative
/// pool all allocating, a large fleet held much more resident than with one arena (the figures:
/// docs/benchmarks.md). The controller spends its time waiting on the network, not contending
/// for the allocator's lock, so one arena costs nothing measurable.
public enum MemoryTuning {
  /// Limits glibc to one arena, unless the operator set `MALLOC_ARENA_MAX` (which glibc reads itself).
  public static func apply() {
    guard ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil else { return }
    #if canImport(CMalloc)
      _ = mallopt(M_ARENA_MAX, 1)
    #endif
  }

  /// Gives freed heap pages back to the system, so the resident set (what a small Fly VM counts)
  /// shrinks to what the controller holds.
  public static func trim() {
    #if canImport(CMalloc)
      _ = malloc_trim(0)
    #endif
  }
}
