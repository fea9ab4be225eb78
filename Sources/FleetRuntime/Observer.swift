public import FleetCore
public import FlyMachines
import Logging
import Synchronization

/// Fly's two lists, read whole each pass, held between passes page by page so that an unchanged
/// page is not decoded again (see docs/benchmarks.md), and the list guard: an empty or sharply
/// shorter list is read again before anything is created or destroyed.
actor Observer {
  private let client: any FlyMachinesAPI
  private let settings: ReconcilerSettings
  private let clock: any FleetClock
  private let logger: Logger
  private var machinePages: PagedList<ObservedMachine>?
  private var volumePages: PagedList<ObservedVolume>?

  init(client: any FlyMachinesAPI, settings: ReconcilerSettings, clock: any FleetClock, logger: Logger) {
    self.client = client
    self.settings = settings
    self.clock = clock
    self.logger = logger
  }

  /// Forgets the pages: the next read decodes every page.
  func invalidate() {
    machinePages = nil
    volumePages = nil
  }

  /// Both lists, read against the last read. `unchanged`: no page of either list changed.
  /// `expected`: about how many items each list holds (its storage is allocated once at that size).
  func observe(expected: Int) async throws(FlyAPIError) -> (observation: Observation, unchanged: Bool) {
    // The last lists are handed over, not shared: a changed page is replaced in their storage
    // instead of the whole list being copied. If a read fails they are gone, and the next read
    // decodes every page (CPU once, nothing wrong).
    let previousMachines = Handover(machinePages.take())
    let previousVolumes = Handover(volumePages.take())
    async let machines = client.listMachineListings(
      ownerKey: FleetNames.userMetadataKey, includeDeleted: false, previous: previousMachines.take(),
      expected: expected, { ObservedMachine($0) })
    async let volumes = client.listVolumes(
      previous: previousVolumes.take(), expected: expected, { ObservedVolume($0) })
    do {
      let (m, v) = try await (machines, volumes)
      machinePages = m
      volumePages = v
      return (Observation(machines: m.items, volumes: v.items), m.unchanged && v.unchanged)
    } catch let error as FlyAPIError {
      throw error
    } catch {
      throw FlyAPIError(code: .transport, message: "\(error)", operation: "list")
    }
  }

  /// What the list guard concluded.
  struct Guarded: Sendable {
    var observation: Observation
    /// False while the lists look short: no create or destroy is planned on them.
    var trusted: Bool
    /// The guard's state after this pass.
    var guardState: GuardState
  }

  /// Reads again (a few times, a moment apart) lists that look short against the last trusted
  /// ones; the same short lists pass after pass are believed.
  func guarded(_ first: Observation, guardState: GuardState, expected: Int) async -> Guarded {
    var observation = first
    var counts = Self.counts(observation)
    func suspect() -> Bool {
      Planner.listLooksSuspect(previous: guardState.observedMachines, current: counts.machines)
        || Planner.listLooksSuspect(previous: guardState.observedVolumes, current: counts.volumes)
    }
    var looksShort = suspect()
    var rereads = 0
    while looksShort && rereads < settings.suspectRereads {
      rereads += 1
      logger.warning(
        "fly lists look short; reading again",
        metadata: ["machines": "\(counts.machines)", "volumes": "\(counts.volumes)"])
      try? await clock.sleep(seconds: settings.suspectRereadDelay)
      guard let again = try? await observe(expected: expected) else { break }
      observation = again.observation
      counts = Self.counts(observation)
      looksShort = suspect()
    }
    var next = guardState
    if looksShort {
      next.suspectPasses += 1
      if next.suspectPasses >= settings.suspectPassesBeforeTrust {
        looksShort = false  // the same short lists, pass after pass: believe them
      }
    }
    if !looksShort {
      next.suspectPasses = 0
      next.observedMachines = counts.machines
      next.observedVolumes = counts.volumes
    }
    return Guarded(observation: observation, trusted: !looksShort, guardState: next)
  }

  /// Our machines and volumes in the lists (not gone).
  static func counts(_ observation: Observation) -> (machines: Int, volumes: Int) {
    var machines = 0
    var volumes = 0
    for machine in observation.machines where machine.userID != nil && !machine.isGone { machines += 1 }
    for volume in observation.volumes where FleetNames.isFleetVolumeName(volume.name) && !volume.isGone { volumes += 1 }
    return (machines, volumes)
  }
}

/// A value passed to another task by move: the receiver takes the only reference (so that it may
/// mutate the value's storage in place).
final class Handover<Value: Sendable>: Sendable {
  private let value: Mutex<Value?>
  init(_ value: consuming Value?) { self.value = Mutex(value) }
  func take() -> Value? { value.withLock { $0.take() } }
}
