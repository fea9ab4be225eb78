import FleetCore
import Testing

/// What the controller holds per user at 100k users (docs/benchmarks.md): a field added here is
/// 100k times its size, so the sizes are pinned.
struct LayoutTests {
  @Test func perUserValuesStaySmall() {
    // +16 each for `app` (one app per user: which user an untagged machine or volume is for).
    #expect(MemoryLayout<ObservedMachine>.stride <= 160)
    #expect(MemoryLayout<ObservedVolume>.stride <= 128)
    #expect(MemoryLayout<DesiredMachine>.stride <= 72)
    #expect(MemoryLayout<UserState>.stride <= 48)
  }
}
