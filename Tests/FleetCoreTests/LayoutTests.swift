import FleetCore
import Testing

/// What the controller holds per user at 100k users (docs/benchmarks.md): a field added here is
/// 100k times its size, so the sizes are pinned.
struct LayoutTests {
  @Test func perUserValuesStaySmall() {
    #expect(MemoryLayout<ObservedMachine>.stride <= 144)
    #expect(MemoryLayout<ObservedVolume>.stride <= 112)
    #expect(MemoryLayout<DesiredMachine>.stride <= 72)
    #expect(MemoryLayout<UserState>.stride <= 48)
  }
}
