/// One event of a machine (`GET …/machines/{id}/events`): starts, exits (with exit codes, OOM
/// kills, whether the stop was asked for and whether Fly restarts it).
struct SimEvent: Sendable {
  var id: String
  var type: String
  var status: String
  var source: String
  var at: Double
  var exitCode: Int?
  var oomKilled = false
  var requestedStop = false
  var restarting = false
}

/// A machine whose process keeps dying: Fly restarts it (restart policy `always`), so lists show it
/// `started` while its events show an exit every `every` seconds.
struct SimCrashLoop: Sendable {
  var every: Double
  var exitCode: Int
  var oomKilled: Bool
  var nextAt: Double
  /// Exits left before it runs cleanly again (nil: until healed or updated).
  var remaining: Int?
}

extension SimulatorModel {
  /// Fly keeps a machine's recent events; the list answers at most 50.
  static let keptEvents = 50

  mutating func newEventID() -> String {
    eventCount += 1
    let digits = String(eventCount)
    return "01EV" + String(repeating: "0", count: max(0, 22 - digits.count)) + digits
  }

  mutating func addEvent(_ machine: inout SimMachine, _ event: SimEvent) {
    machine.events.append(event)
    if machine.events.count > Self.keptEvents { machine.events.removeFirst(machine.events.count - Self.keptEvents) }
  }

  /// The event a transition to `state` leaves.
  mutating func transitionEvent(_ machine: inout SimMachine, to state: String, at: Double) {
    let id = newEventID()
    switch state {
    case "started":
      addEvent(&machine, SimEvent(id: id, type: "start", status: "started", source: "flyd", at: at))
    case "stopped":
      addEvent(
        &machine,
        SimEvent(
          id: id, type: "exit", status: "stopped", source: "flyd", at: at, exitCode: 0, requestedStop: true))
    case "failed":
      addEvent(
        &machine, SimEvent(id: id, type: "exit", status: "failed", source: "flyd", at: at, exitCode: 1))
    default:
      break
    }
  }

  /// The crash loop's exits due by `now` (each moves `updated_at`, as a restart does).
  mutating func advanceCrashLoop(_ machine: inout SimMachine, now: Double) -> Bool {
    guard var loop = machine.crashLoop else { return false }
    guard machine.state == "started" else {
      // Not running: nothing crashes; the loop resumes when it starts again.
      loop.nextAt = max(loop.nextAt, now + loop.every)
      machine.crashLoop = loop
      return false
    }
    var changed = false
    while loop.nextAt <= now {
      changed = true
      addEvent(
        &machine,
        SimEvent(
          id: newEventID(), type: "exit", status: "started", source: "flyd", at: loop.nextAt, exitCode: loop.exitCode,
          oomKilled: loop.oomKilled, restarting: true))
      addEvent(
        &machine, SimEvent(id: newEventID(), type: "start", status: "started", source: "flyd", at: loop.nextAt + 0.5))
      machine.updatedAt = loop.nextAt + 0.5
      loop.nextAt += loop.every
      if let left = loop.remaining {
        loop.remaining = left - 1
        if left <= 1 {
          machine.crashLoop = nil
          return true
        }
      }
    }
    machine.crashLoop = loop
    return changed
  }

  /// `GET …/machines/{id}/events?limit=` (default 20, at most 50), newest first.
  mutating func machineEvents(_ id: String, limit: String?, now: Double) -> SimAnswer {
    var count = 20
    if let limit {
      guard let value = Int(limit), (1...50).contains(value) else {
        return .error(400, "invalid_argument: limit must be between 1 and 50")
      }
      count = value
    }
    guard let machine = visibleMachine(id, now: now) else { return .error(404, "machine not found") }
    let items = machine.events.suffix(count).reversed().map { event -> String in
      var writer = JSONWriter()
      writer.add("id", event.id)
      writer.add("type", event.type)
      writer.add("status", event.status)
      writer.add("source", event.source)
      writer.add("timestamp", Int((event.at * 1000).rounded()))
      if let code = event.exitCode {
        var exit = JSONWriter()
        exit.add("exit_code", code)
        exit.add("oom_killed", event.oomKilled)
        exit.add("requested_stop", event.requestedStop)
        exit.add("restarting", event.restarting)
        exit.add("signal", event.oomKilled ? 9 : -1)
        var request = JSONWriter()
        request.add("exit_event", raw: exit.finished())
        writer.add("request", raw: request.finished())
      }
      return writer.finished()
    }
    return .json("[" + items.joined(separator: ",") + "]")
  }

  /// Drift: the machine's process starts dying every `every` seconds (`times` times, or until
  /// healed or updated), Fly restarting it each time.
  mutating func driftCrashLoop(
    _ id: String, every: Double, exitCode: Int, oomKilled: Bool, times: Int?, now: Double
  ) -> Bool {
    guard var machine = visibleMachine(id, now: now), machine.destroyedAt == nil else { return false }
    machine.crashLoop = SimCrashLoop(
      every: max(1, every), exitCode: exitCode, oomKilled: oomKilled, nextAt: now + max(1, every), remaining: times)
    setMachine(machine)
    return true
  }

  /// Drift: the crash loop ends (someone fixed what made it crash).
  mutating func driftHeal(_ id: String, now: Double) -> Bool {
    guard var machine = visibleMachine(id, now: now) else { return false }
    machine.crashLoop = nil
    setMachine(machine)
    return true
  }
}
