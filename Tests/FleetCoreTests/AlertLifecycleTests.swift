import FleetCore
import Testing

struct AlertLifecycleTests {
  let stopped = DriftFinding(kind: .stoppedWhileDesiredRunning, userID: "u1", resourceID: "m1", message: "stopped")
  let guardTrip = DriftFinding(kind: .destroyGuardTripped, message: "shrank")

  @Test func firesAfterOnePassOnceThenResolvesOnce() {
    var active: [String: AlertState] = [:]
    var notices: [AlertNotice] = []
    var now = 1000.0
    for findings in [[stopped], [stopped], [stopped], [stopped], [], []] {
      let (next, notice) = AlertLifecycle.step(active: active, findings: findings, now: now)
      active = next
      if let notice { notices.append(notice) }
      now += 30
    }
    #expect(notices.map { $0.items.map(\.status) } == [["firing"], ["resolved"]])
    #expect(notices[0].items[0].state.startsAt == 1000)
    #expect(notices[1].items[0].endsAt == 1120)
  }

  @Test func aOnePassBlipNeverFires() {
    let (active, first) = AlertLifecycle.step(active: [:], findings: [stopped], now: 0)
    let (_, second) = AlertLifecycle.step(active: active, findings: [], now: 30)
    #expect(first == nil && second == nil)
  }

  @Test func guardAndUnreadableFireAtOnce() {
    let (_, notice) = AlertLifecycle.step(active: [:], findings: [guardTrip], now: 0)
    #expect(notice?.items.map(\.status) == ["firing"])
  }

  @Test func repeatsAtMostEveryRepeatInterval() {
    var settings = AlertLifecycle.Settings()
    settings.repeatInterval = 3600
    var active: [String: AlertState] = [:]
    var firings: [Double] = []
    var now = 0.0
    while now <= 4 * 3600 {
      let (next, notice) = AlertLifecycle.step(active: active, findings: [guardTrip], now: now, settings: settings)
      active = next
      if notice != nil { firings.append(now) }
      now += 600
    }
    #expect(firings == [0, 3600, 7200, 10800, 14400])
  }

  @Test func onePassGroupsEveryAlertInOneNotice() {
    let findings = (0..<5).map { DriftFinding(kind: .machineMissing, userID: "u\($0)", message: "gone") } + [guardTrip]
    let (active, first) = AlertLifecycle.step(active: [:], findings: findings, now: 0)
    #expect(first?.items.count == 1, "the guard fires at once, the rest after one pass")
    let (_, second) = AlertLifecycle.step(active: active, findings: findings, now: 30)
    #expect(second?.items.count == 5)
  }
}
