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
  /// The org-wide lists as last merged (``ObserveMode/org(slug:app:)``).
  private var orgView: OrgView?
  /// Items a full resync found different from the incremental view, not yet reported.
  private var resyncCorrections = 0
  /// Full org-wide reads since start.
  private(set) var fullReads = 0
  /// Where users live, as the last ``observe(expected:full:topology:)`` was told.
  private var topology: Topology = .sharedApp
  /// One app per user: the fleet's apps as last listed.
  private var lastApps: Set<String>?

  init(client: any FlyMachinesAPI, settings: ReconcilerSettings, clock: any FleetClock, logger: Logger) {
    self.client = client
    self.settings = settings
    self.clock = clock
    self.logger = logger
  }

  /// Forgets the pages: the next read decodes every page (org-wide: the next read is a full one).
  func invalidate() {
    machinePages = nil
    volumePages = nil
    orgView = nil
    lastApps = nil
  }

  /// Both lists, read against the last read. `unchanged`: no page of either list changed.
  /// `expected`: about how many items each list holds (its storage is allocated once at that size).
  /// `full`: org-wide, read everything again rather than what changed (the list guard's re-read).
  func observe(expected: Int, full: Bool = false, topology: Topology? = nil) async throws(FlyAPIError) -> (
    observation: Observation, unchanged: Bool
  ) {
    if let topology, topology != self.topology {
      // Another topology: another set of items is ours; nothing read before is a base.
      self.topology = topology
      invalidate()
    }
    if case .appPerUser(let prefix, let org) = self.topology {
      // One app per user: the org-wide lists (every user app's items), and the apps themselves.
      var (observation, unchanged) = try await observeOrg(
        slug: org, scope: .prefix(prefix + "-"), full: full, expected: expected)
      let apps = Set(try await client.listApps(org: org).lazy.map(\.name).filter { $0.hasPrefix(prefix + "-") })
      if apps != lastApps { unchanged = false }
      lastApps = apps
      observation.apps = apps
      return (observation, unchanged)
    }
    if case .org(let slug, let app) = settings.observe {
      return try await observeOrg(slug: slug, scope: .app(app), full: full, expected: expected)
    }
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
      guard let again = try? await observe(expected: expected, full: true, topology: topology) else { break }
      observation = again.observation
      counts = Self.counts(observation)
      looksShort = suspect()
    }
    if looksShort, settings.observe != .app || topology.isAppPerUser {
      // The view a short full read left is not a base for incremental reads: read whole again next pass.
      orgView = nil
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

// MARK: Org-wide observation

/// An org-wide list's item of another app: kept only for its `updated_at` (every item moves the
/// incremental reads' starting point), then removed in place. Real ids are never empty.
extension ObservedMachine {
  static func otherApp(updatedAt: Double?) -> ObservedMachine {
    ObservedMachine(id: "", state: "", region: "", userID: nil, updatedAt: updatedAt)
  }
  var isOtherApp: Bool { id.isEmpty }
}

extension ObservedVolume {
  static func otherApp(updatedAt: Double?) -> ObservedVolume {
    ObservedVolume(id: "", name: "", state: "", region: "", updatedAt: updatedAt)
  }
  var isOtherApp: Bool { id.isEmpty }
}

/// The org-wide lists as merged so far: items in arrays (handed to the planner as they are) with an
/// index of positions by id (``PositionIndex``: 1 MB per list at 100k items, where a dictionary
/// is 6 MB), so that an incremental read changes a few items in place, not a copy of the fleet.
struct OrgView: Sendable {
  private(set) var machines: [ObservedMachine] = []
  private var machineIndex = PositionIndex()
  private(set) var volumes: [ObservedVolume] = []
  private var volumeIndex = PositionIndex()
  /// The newest `updated_at` seen in each list: the next incremental read starts there (minus the overlap).
  var newestMachine = -Double.infinity
  var newestVolume = -Double.infinity
  /// When the last full read started (the controller's clock).
  var fullAt: Double = 0

  init() {}

  /// A view of these items; an id that repeats keeps its first item (the later ones are never
  /// found by id, as before).
  init(machines: consuming [ObservedMachine], volumes: consuming [ObservedVolume]) {
    self.machines = machines
    self.volumes = volumes
    machineIndex.reserveCapacity(self.machines.count, keyAt: { _ in "" })
    volumeIndex.reserveCapacity(self.volumes.count, keyAt: { _ in "" })
    let machines = self.machines
    for position in machines.indices where machineIndex.find(machines[position].id, keyAt: { machines[$0].id }) == nil {
      machineIndex.insert(machines[position].id, at: position, keyAt: { machines[$0].id })
    }
    let volumes = self.volumes
    for position in volumes.indices where volumeIndex.find(volumes[position].id, keyAt: { volumes[$0].id }) == nil {
      volumeIndex.insert(volumes[position].id, at: position, keyAt: { volumes[$0].id })
    }
  }

  /// Where the machine with this id is in ``machines``.
  func machinePosition(_ id: String) -> Int? { machineIndex.find(id, keyAt: { [machines] in machines[$0].id }) }
  func volumePosition(_ id: String) -> Int? { volumeIndex.find(id, keyAt: { [volumes] in volumes[$0].id }) }

  /// Changes a machine in place (its id stays).
  mutating func setVolume(_ volumeID: String?, ofMachineAt position: Int) { machines[position].volumeID = volumeID }

  /// Replaces or adds a machine; a destroyed one never seen is not added. True when anything changed.
  mutating func merge(_ machine: ObservedMachine) -> Bool {
    var machine = machine
    if let index = machinePosition(machine.id) {
      // The org list has no mounts: the volume stays the one linked before until a volume says otherwise.
      if machine.volumeID == nil { machine.volumeID = machines[index].volumeID }
      guard machines[index] != machine else { return false }
      machines[index] = machine
      return true
    }
    guard !machine.isGone else { return false }
    let current = machines
    machineIndex.insert(machine.id, at: current.count, keyAt: { current[$0].id })
    _ = consume current
    machines.append(machine)
    return true
  }

  mutating func merge(_ volume: ObservedVolume) -> Bool {
    if let index = volumePosition(volume.id) {
      guard volumes[index] != volume else { return false }
      volumes[index] = volume
      return true
    }
    guard !volume.isGone else { return false }
    let current = volumes
    volumeIndex.insert(volume.id, at: current.count, keyAt: { current[$0].id })
    _ = consume current
    volumes.append(volume)
    return true
  }

  /// Each machine's volume, from the volumes' `attached_machine_id` (the org list's machines carry
  /// no mounts): a live volume attached to it wins; without one the last link is kept, as a
  /// machine's config keeps naming its volume. True when any link changed.
  mutating func linkVolumes() -> Bool {
    // Through the indexes, no map of its own (at 100k users a map would be ~8 MB at the peak): live
    // volumes first; one on its way out only for a machine no live volume is attached to.
    var changed = false
    for live in [true, false] {
      for volume in volumes where volume.isGone != live {
        guard let machineID = volume.attachedMachineID, let index = machinePosition(machineID) else { continue }
        guard machines[index].volumeID != volume.id else { continue }
        if !live, let current = machines[index].volumeID, let linked = volumePosition(current),
          !volumes[linked].isGone, volumes[linked].attachedMachineID == machineID
        {
          continue
        }
        machines[index].volumeID = volume.id
        changed = true
      }
    }
    return changed
  }

}

extension Observer {
  /// Org-wide: a full read at start, after ``invalidate()``, every ``ReconcilerSettings/resyncInterval``
  /// and when asked (`full`); otherwise what changed since the newest item seen, minus the overlap,
  /// merged into the view. A full read that disagrees with the incremental view is believed, and
  /// the disagreement logged and counted.
  /// Which org-wide items are the fleet's: the one app's, or (one app per user) every app's whose
  /// name has the fleet's prefix.
  enum AppScope: Sendable {
    case app(String)
    case prefix(String)
    func contains(_ app: String?) -> Bool {
      guard let app else { return false }
      switch self {
      case .app(let name): return app == name
      case .prefix(let prefix): return app.hasPrefix(prefix)
      }
    }
  }

  func observeOrg(slug: String, scope: AppScope, full: Bool, expected: Int = 0) async throws(FlyAPIError) -> (
    observation: Observation, unchanged: Bool
  ) {
    let now = clock.now()
    if !full, let current = orgView, now - current.fullAt < settings.resyncInterval {
      // Nothing seen yet (an empty org): from the epoch, which costs nothing while it stays empty.
      let machineAfter = rfc3339(max(0, current.newestMachine - settings.observeOverlap))
      let volumeAfter = rfc3339(max(0, current.newestVolume - settings.observeOverlap))
      let (machines, volumes) = try await readOrg(
        slug: slug, scope: scope, machinesAfter: machineAfter, volumesAfter: volumeAfter, expected: 0)
      // Taken only now that the read succeeded (a failed read keeps the view: no full read after a blip),
      // and not shared, so the merge changes a few items in place.
      guard var view = takeOrgView() else {
        return try await observeOrg(slug: slug, scope: scope, full: true, expected: expected)
      }
      var changed = false
      // Every item must be newer than asked: an older one is an error, not data.
      do {
        try Self.checkNewer(machines.items.map(\.updatedAt), than: machineAfter, list: "machines")
        try Self.checkNewer(volumes.items.map(\.updatedAt), than: volumeAfter, list: "volumes")
      } catch {
        setOrgView(view)
        throw error
      }
      for volume in volumes.items {
        view.newestVolume = max(view.newestVolume, volume.updatedAt ?? -.infinity)
        if !volume.isOtherApp, view.merge(volume) { changed = true }
      }
      for machine in machines.items {
        view.newestMachine = max(view.newestMachine, machine.updatedAt ?? -.infinity)
        if !machine.isOtherApp, view.merge(machine) { changed = true }
      }
      if changed, view.linkVolumes() { changed = true }
      setOrgView(view)
      let regions = Set(machines.errorRegions).union(volumes.errorRegions)
      return (
        Observation(machines: view.machines, volumes: view.volumes, unreadableRegions: regions),
        !changed && regions.isEmpty
      )
    }
    // A full read: every item, destroyed ones left out.
    var (machines, volumes) = try await readOrg(
      slug: slug, scope: scope, machinesAfter: nil, volumesAfter: nil, expected: expected)
    let previous = takeOrgView()
    let regions = Set(machines.errorRegions).union(volumes.errorRegions)
    var newestMachine = -Double.infinity
    var newestVolume = -Double.infinity
    for machine in machines.items { newestMachine = max(newestMachine, machine.updatedAt ?? -.infinity) }
    for volume in volumes.items { newestVolume = max(newestVolume, volume.updatedAt ?? -.infinity) }
    // The pages' items become the view's storage: other apps' items removed in place, no second copy
    // of the fleet (at 100k users a copy of each list is ~25 MB at the restart's peak).
    var machineItems = machines.items
    machines.items = []
    machineItems.removeAll(where: \.isOtherApp)
    var volumeItems = volumes.items
    volumes.items = []
    volumeItems.removeAll(where: \.isOtherApp)
    var view = OrgView(machines: consume machineItems, volumes: consume volumeItems)
    view.fullAt = now
    view.newestMachine = newestMachine
    view.newestVolume = newestVolume
    if let previous {
      // The org list has no mounts: links known before carry over until a volume says otherwise.
      for index in view.machines.indices where view.machines[index].volumeID == nil {
        if let old = previous.machinePosition(view.machines[index].id) {
          view.setVolume(previous.machines[old].volumeID, ofMachineAt: index)
        }
      }
      // What Fly could not read now is kept as it was: a partial answer removes nothing.
      if !regions.isEmpty {
        for machine in previous.machines where regions.contains(machine.region) { _ = view.merge(machine) }
        for volume in previous.volumes where regions.contains(volume.region) { _ = view.merge(volume) }
      }
    }
    _ = view.linkVolumes()
    if let previous, now - previous.fullAt >= settings.resyncInterval || full {
      let corrections = Self.differences(previous, view)
      if corrections > 0 {
        resyncCorrections += corrections
        logger.warning(
          "a full read of Fly's org lists disagreed with the incremental view; believing the full read",
          metadata: ["corrections": "\(corrections)"])
      }
    }
    fullReads += 1
    setOrgView(view)
    return (Observation(machines: view.machines, volumes: view.volumes, unreadableRegions: regions), false)
  }

  private func takeOrgView() -> OrgView? { orgView.take() }

  /// The corrections counted since the last call.
  func takeCorrections() -> Int {
    defer { resyncCorrections = 0 }
    return resyncCorrections
  }
  private func setOrgView(_ view: OrgView) { orgView = view }

  /// Both org-wide lists at once, each item of another app a stand-in (``ObservedMachine/otherApp(updatedAt:)``).
  private func readOrg(slug: String, scope: AppScope, machinesAfter: String?, volumesAfter: String?, expected: Int)
    async throws(FlyAPIError) -> (machines: OrgListPage<ObservedMachine>, volumes: OrgListPage<ObservedVolume>)
  {
    let incremental = machinesAfter != nil
    async let machines = client.listOrgMachines(
      org: slug, updatedAfter: machinesAfter, includeDeleted: incremental, ownerKey: FleetNames.userMetadataKey,
      expected: expected
    ) { listing in
      guard scope.contains(listing.appName) else {
        return ObservedMachine.otherApp(updatedAt: listing.updatedAt.flatMap(parseRFC3339))
      }
      var machine = ObservedMachine(listing)
      if case .prefix = scope { machine.app = listing.appName }
      return machine
    }
    async let volumes = client.listOrgVolumes(
      org: slug, updatedAfter: volumesAfter, includeDeleted: incremental, expected: expected
    ) { volume in
      guard scope.contains(volume.appName) else {
        return ObservedVolume.otherApp(updatedAt: volume.updatedAt.flatMap(parseRFC3339))
      }
      var observed = ObservedVolume(volume)
      if case .prefix = scope { observed.app = volume.appName }
      return observed
    }
    do {
      return try await (machines, volumes)
    } catch let error as FlyAPIError {
      throw error
    } catch {
      throw FlyAPIError(code: .transport, message: "\(error)", operation: "list")
    }
  }

  /// An incremental answer holds only items updated after what was asked.
  static func checkNewer(_ stamps: [Double?], than after: String, list: String) throws(FlyAPIError) {
    guard let bound = parseRFC3339(after) else { return }
    for stamp in stamps {
      guard let updated = stamp else {
        throw FlyAPIError(
          code: .invalidResponse, message: "an org \(list) item without updated_at in an incremental read",
          operation: "list")
      }
      if updated <= bound {
        throw FlyAPIError(
          code: .invalidResponse,
          message: "an org \(list) item updated at \(rfc3339(updated)), not after the updated_after \(after) asked",
          operation: "list")
      }
    }
  }

  /// How many items differ between two views (changed, missing or extra; gone items not counted).
  static func differences(_ old: OrgView, _ new: OrgView) -> Int {
    var count = 0
    for machine in old.machines where !machine.isGone {
      if let index = new.machinePosition(machine.id) {
        if new.machines[index] != machine { count += 1 }
      } else {
        count += 1
      }
    }
    for machine in new.machines where old.machinePosition(machine.id) == nil { count += 1 }
    for volume in old.volumes where !volume.isGone {
      if let index = new.volumePosition(volume.id) {
        if new.volumes[index] != volume { count += 1 }
      } else {
        count += 1
      }
    }
    for volume in new.volumes where old.volumePosition(volume.id) == nil { count += 1 }
    return count
  }
}
