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

  let missing = DriftFinding(kind: .machineMissing, userID: "u1", resourceID: "m1", message: "gone")
  let failing = DriftFinding(kind: .actionFailing, userID: "u1", message: "no capacity in syd")
  let outage = DriftFinding(kind: .flyUnreachable, message: "fly lists failed")

  /// One alert per user and condition: its cause changes from a missing machine to a failing
  /// action while it fires, with no resolved notice and no second alert (before: a notice for
  /// each cause, a resolved one in between). It resolves once the user has no finding.
  @Test func aUsersCausesChangeWithinOneAlert() {
    var active: [String: AlertState] = [:]
    var notices: [AlertNotice] = []
    for (now, findings) in [(0.0, [missing]), (30, [missing]), (60, [failing]), (90, [failing, missing]), (120, [])] {
      let (next, notice) = AlertLifecycle.step(active: active, findings: findings, now: now)
      active = next
      if let notice { notices.append(notice) }
    }
    #expect(notices.map { $0.items.map(\.status) } == [["firing"], ["resolved"]])
    #expect(notices[0].items[0].state.kind == "not_as_desired" && notices[0].items[0].state.startsAt == 0)
    #expect(notices[1].items[0].state.message.contains("no capacity"), "the last causes, in the resolved notice")
  }

  /// While the controller cannot see (Fly unreachable), no user's alert resolves, and when it sees
  /// again the same alert goes on (same start, no new notice). The outage is its own alert.
  @Test func whatTheControllerCannotSeeNeitherResolvesNorFiresAgain() {
    var active: [String: AlertState] = [:]
    var notices: [AlertNotice] = []
    for (now, findings) in [(0.0, [missing]), (30, [missing]), (60, [outage]), (90, [outage]), (120, [missing])] {
      let (next, notice) = AlertLifecycle.step(active: active, findings: findings, now: now)
      active = next
      if let notice { notices.append(notice) }
    }
    let statuses = notices.flatMap { $0.items.map { "\($0.state.kind) \($0.status)" } }
    #expect(statuses == ["not_as_desired firing", "fly_unreachable firing", "fly_unreachable resolved"])
    #expect(active["not_as_desired|u1"]?.startsAt == 0)
  }

  /// A pass with no finding for a user who still has something under way (a create settling, a
  /// backoff) does not resolve that user's alert.
  @Test func aUserStillUnderWayIsNotResolved() {
    let (active, _) = AlertLifecycle.step(active: [:], findings: [missing], now: 0)
    let (firing, _) = AlertLifecycle.step(active: active, findings: [missing], now: 30)
    let (held, notice) = AlertLifecycle.step(active: firing, findings: [], unsettled: ["u1"], now: 60)
    #expect(notice == nil && held["not_as_desired|u1"] != nil)
    let (_, resolved) = AlertLifecycle.step(active: held, findings: [], now: 90)
    #expect(resolved?.items.map(\.status) == ["resolved"])
  }
}
