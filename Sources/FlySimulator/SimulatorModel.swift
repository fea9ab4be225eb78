import Foundation

/// A deterministic random source (SplitMix64) so that a seeded simulator run repeats exactly.
struct SeededRandom: RandomNumberGenerator, Sendable {
  private var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// One answer of the model.
struct SimAnswer: Sendable {
  var status: Int
  var body: String
  var headers: [(String, String)] = []
  /// A list page: rendered items, joined outside the lock.
  var items: [String]? = nil
  /// Text around the joined items (an org list's envelope): nil = a bare array.
  var wrap: (prefix: String, suffix: String)? = nil

  static func json(_ body: String, status: Int = 200) -> SimAnswer { SimAnswer(status: status, body: body) }
  static func error(_ status: Int, _ text: String, flyStatus: String? = nil) -> SimAnswer {
    var writer = JSONWriter()
    writer.add("error", text)
    if let flyStatus { writer.add("status", flyStatus) }
    return SimAnswer(status: status, body: writer.finished())
  }
  static let ok = SimAnswer(status: 200, body: #"{"ok":true}"#)
}

struct SimLease: Sendable {
  var nonce: String
  var owner: String
  var description: String
  var expiresAt: Double
}

struct SimMachine: Sendable {
  var seq: Int
  /// The app that holds it: every call by id is answered only under this app's path.
  var app: String
  var id: String
  var name: String
  var region: String
  var state: String
  /// The config as sent, rendered once (the simulator keeps it verbatim, as Fly does).
  var configText: String
  var metadata: [String: String]
  var image: String
  var volumeID: String?
  var instanceID: String
  var privateIP: String
  var createdAt: Double
  var updatedAt: Double
  /// Replica lag: when the machine shows up in lists.
  var visibleAt: Double
  /// The next timed transition.
  var next: (state: String, at: Double)?
  /// When `created` stops refusing starts (the image pull).
  var settledAt: Double
  var stoppedAt: Double?
  var destroyedAt: Double?
  var lease: SimLease?
  var foreign: Bool = false
  /// Earlier versions, oldest first (`GET …/versions`; Fly shows a replaced one as `replaced`).
  var versions: [SimVersion] = []
  /// An update Fly will give up on (its image cannot be pulled): at `at`, the machine goes back
  /// to `to` and shows `started` (or the state it had), silently.
  var revert: (to: SimVersion, state: String, at: Double)?
  /// This version's process dies at boot (an image that does not run).
  var crashAfterStart = false
  /// The app secrets version this machine's environment holds (set at create and update).
  var secretsVersion = 0
  /// Recent events, oldest first (at most ``SimulatorModel/keptEvents``).
  var events: [SimEvent] = []
  /// Its process keeps dying and Fly keeps restarting it.
  var crashLoop: SimCrashLoop?
}

/// One version of a machine's config.
struct SimVersion: Sendable {
  var version: String
  var configText: String
  var image: String
  var metadata: [String: String]
}

extension SimMachine {
  /// Every field ``SimulatorModel/render(machine:summary:)`` shows is equal.
  func rendersLike(_ other: SimMachine) -> Bool {
    state == other.state && updatedAt == other.updatedAt && createdAt == other.createdAt && name == other.name
      && region == other.region && instanceID == other.instanceID && privateIP == other.privateIP
      && image == other.image && configText == other.configText
  }
}

extension SimVolume {
  /// Every field ``SimulatorModel/render(volume:)`` shows is equal.
  func rendersLike(_ other: SimVolume) -> Bool {
    state == other.state && attachedMachineID == other.attachedMachineID && createdAt == other.createdAt
      && updatedAt == other.updatedAt && bytesUsed == other.bytesUsed && name == other.name && region == other.region
      && zone == other.zone && sizeGB == other.sizeGB
      && encrypted == other.encrypted && snapshotRetention == other.snapshotRetention
      && autoBackup == other.autoBackup
  }
}

struct SimVolume: Sendable {
  var seq: Int
  var app: String
  var id: String
  var name: String
  var region: String
  var zone: String
  var sizeGB: Int
  var encrypted: Bool
  var state: String
  var attachedMachineID: String?
  var createdAt: Double
  /// When anything the lists show last changed (the org-wide list's order and `updated_after`).
  var updatedAt: Double
  var visibleAt: Double
  var deletedAt: Double?
  /// What `bytes_used` says (tests fill it).
  var bytesUsed: Int = 0
  /// Days each snapshot of it is kept (1 to 60), and whether Fly takes one daily.
  var snapshotRetention = 5
  var autoBackup = true
  /// The snapshot it was restored from, if any.
  var restoredFrom: String?
  /// The last daily snapshot Fly took of it (auto backups).
  var lastAutoSnapshot: Double?
}

/// Fly's machines and volumes as a state machine over explicit time. Every method takes `now`, so
/// the model is tested with any clock and never sleeps. Timed transitions are applied lazily, when a
/// machine or volume is next looked at.
struct SimulatorModel: Sendable {
  var configuration: SimulatorConfiguration
  var random: SeededRandom
  private(set) var machines: [String: SimMachine] = [:] { didSet { sweeps = Sweeps() } }
  private(set) var volumes: [String: SimVolume] = [:] { didSet { sweeps = Sweeps() } }
  /// Until when a list may skip applying due transitions: set by a sweep to the earliest time
  /// anything is due next, and reset by any change of a machine or volume. A quiet 100k fleet is
  /// then listed without touching every item first (~100 ms per list), with the same answers.
  private var sweeps = Sweeps()
  struct Sweeps {
    var machinesUntil = -Double.infinity
    var volumesUntil = -Double.infinity
  }
  /// Ids in creation order (pagination walks these).
  private(set) var machineOrder: [String] = []
  private(set) var volumeOrder: [String] = []
  private var seq = 0

  /// Apps by name, in every org (names are one global namespace); an app of another org is a
  /// name taken by someone else. The configured app exists from the start.
  var apps: [String: SimApp] = [:]
  /// App names in creation order (the apps list walks these).
  var appOrder: [String] = []
  /// Snapshots by volume id (kept after the volume is deleted, until their retention ends).
  var snapshots: [String: [SimSnapshot]] = [:]
  /// Machine events made so far (their ids; not drawn from the random stream, which tests replay).
  var eventCount = 0
  /// When each app delete happened (the 100-per-minute limit is a window over these).
  var appDeletes: [Double] = []

  init(configuration: SimulatorConfiguration) {
    self.configuration = configuration
    random = SeededRandom(seed: configuration.seed)
    apps[configuration.appName] = SimApp(
      seq: 0, id: "app_shared", name: configuration.appName, org: configuration.orgSlug, network: "default",
      idempotencyKey: nil, createdAt: 0)
    appOrder.append(configuration.appName)
  }

  /// Stores a machine; a new one joins the creation order.
  mutating func setMachine(_ machine: SimMachine) {
    if machines[machine.id] == nil { machineOrder.append(machine.id) }
    machines[machine.id] = machine
  }

  mutating func setVolume(_ volume: SimVolume) {
    if volumes[volume.id] == nil { volumeOrder.append(volume.id) }
    volumes[volume.id] = volume
  }

  /// The next creation sequence number (machines, volumes and apps share it).
  mutating func nextSeq() -> Int {
    seq += 1
    return seq
  }

  // MARK: Ids

  private mutating func randomString(_ count: Int, alphabet: String) -> String {
    let chars = Array(alphabet)
    return String((0..<count).map { _ in chars[Int(random.next() % UInt64(chars.count))] })
  }
  mutating func newMachineID() -> String { randomString(14, alphabet: "0123456789abcdef") }
  mutating func newVolumeID() -> String { "vol_" + randomString(16, alphabet: "abcdefghijklmnopqrstuvwxyz0123456789") }
  mutating func newULID() -> String { randomString(26, alphabet: "0123456789ABCDEFGHJKMNPQRSTVWXYZ") }
  mutating func newRequestID() -> String { randomString(26, alphabet: "0123456789ABCDEFGHJKMNPQRSTVWXYZ") }
  mutating func draw() -> Double { Double(random.next() >> 11) / Double(1 << 53) }

  // MARK: Time

  /// Applies every transition of one machine that is due by `now`.
  /// Returns when the machine's next transition is due (nil: none scheduled).
  @discardableResult
  mutating func advance(machine id: String, now: Double) -> Double? {
    guard var machine = machines[id] else { return nil }
    var changed = false
    if let revert = machine.revert, revert.at <= now {
      // Fly gave the update up: the previous version, as if nothing had happened.
      changed = true
      machine.versions.append(
        SimVersion(
          version: machine.instanceID, configText: machine.configText, image: machine.image,
          metadata: machine.metadata))
      machine.instanceID = revert.to.version
      machine.configText = revert.to.configText
      machine.image = revert.to.image
      machine.metadata = revert.to.metadata
      machine.state = revert.state
      machine.updatedAt = revert.at
      machine.next = nil
      machine.revert = nil
    }
    while let next = machine.next, next.at <= now {
      changed = true
      machine.state = next.state
      machine.updatedAt = next.at
      machine.next = nil
      transitionEvent(&machine, to: next.state, at: next.at)
      switch next.state {
      case "starting":
        // A version whose process dies at boot ends `failed`.
        machine.next = (machine.crashAfterStart ? "failed" : "started", next.at + configuration.startDuration)
      case "stopped": machine.stoppedAt = next.at
      case "destroyed": machine.destroyedAt = next.at
      default: break
      }
    }
    if advanceCrashLoop(&machine, now: now) { changed = true }
    if changed { machines[id] = machine }
    let crash = machine.state == "started" ? machine.crashLoop?.nextAt : nil
    return [machine.next?.at, machine.revert?.at, crash].compactMap { $0 }.min()
  }

  /// Applies a volume's due changes: detachment after its machine was destroyed, deletion steps.
  /// Returns when the next one is due (its machine's next transition included; nil: none).
  @discardableResult
  mutating func advance(volume id: String, now: Double) -> Double? {
    guard var volume = volumes[id] else { return nil }
    var changed = false
    var due = Double.infinity
    if let machineID = volume.attachedMachineID {
      let machineDue = advance(machine: machineID, now: now)
      if let machine = machines[machineID], let destroyedAt = machine.destroyedAt {
        if now >= destroyedAt + configuration.volumeDetachDelay {
          volume.attachedMachineID = nil
          volume.updatedAt = destroyedAt + configuration.volumeDetachDelay
          changed = true
        } else {
          due = min(due, destroyedAt + configuration.volumeDetachDelay, machineDue ?? .infinity)
        }
      } else if machines[machineID] == nil {
        volume.attachedMachineID = nil
        volume.updatedAt = now
        changed = true
      } else {
        due = min(due, machineDue ?? .infinity)
      }
    }
    if let deletedAt = volume.deletedAt, volume.state == "pending_destroy" {
      if now >= deletedAt + 1 {
        volume.state = "destroyed"
        volume.updatedAt = deletedAt + 1
        changed = true
      } else {
        due = min(due, deletedAt + 1)
      }
    }
    if changed { volumes[id] = volume }
    return due == .infinity ? nil : due
  }

  private func machineVisible(_ machine: SimMachine, now: Double, includeDeleted: Bool) -> Bool {
    if machine.visibleAt > now { return false }
    if let destroyedAt = machine.destroyedAt, !includeDeleted, now >= destroyedAt + configuration.destroyedLinger {
      return false
    }
    return true
  }

  private func volumeVisible(_ volume: SimVolume, now: Double) -> Bool {
    if volume.visibleAt > now { return false }
    if let deletedAt = volume.deletedAt, now >= deletedAt + configuration.deletedVolumeLinger { return false }
    return true
  }

  // MARK: Rendering

  /// Rendered list items by id, with what they were rendered from: a list page of unchanged items is
  /// a copy of cached text, so the simulator serves 100k-machine lists without being the bottleneck.
  /// Keyed by content (every rendered field compared), so no mutation can leave a stale rendering.
  final class RenderCache: @unchecked Sendable {
    var machines: [String: (source: SimMachine, summary: Bool, text: String)] = [:]
    var volumes: [String: (source: SimVolume, text: String)] = [:]
  }
  private let renderCache = RenderCache()

  func renderCached(machine: SimMachine, summary: Bool) -> String {
    if let hit = renderCache.machines[machine.id], hit.summary == summary, hit.source.rendersLike(machine) {
      return hit.text
    }
    let text = render(machine: machine, summary: summary)
    renderCache.machines[machine.id] = (machine, summary, text)
    return text
  }

  func renderCached(volume: SimVolume) -> String {
    if let hit = renderCache.volumes[volume.id], hit.source.rendersLike(volume) { return hit.text }
    let text = render(volume: volume)
    renderCache.volumes[volume.id] = (volume, text)
    return text
  }

  func render(machine: SimMachine, summary: Bool = false) -> String {
    var writer = JSONWriter()
    writer.add("id", machine.id)
    writer.add("name", machine.name)
    writer.add("state", machine.state)
    writer.add("region", machine.region)
    writer.add("instance_id", machine.instanceID)
    writer.add("version", machine.instanceID)
    writer.add("private_ip", machine.privateIP)
    if !summary {
      writer.add("config", raw: machine.configText)
      var ref = JSONWriter()
      let parts = machine.image.split(separator: ":", maxSplits: 1)
      ref.add("registry", "registry-1.docker.io")
      ref.add("repository", parts.first.map(String.init) ?? machine.image)
      ref.add("tag", parts.count > 1 ? String(parts[1]) : "latest")
      ref.add("digest", "sha256:" + String(repeating: "0", count: 64))
      writer.add("image_ref", raw: ref.finished())
      writer.add("events", raw: "[]")
      writer.add("checks", raw: "[]")
      writer.add("host_status", "ok")
    }
    writer.add("cordoned", false)
    writer.add("created_at", isoTimestamp(machine.createdAt))
    writer.add("updated_at", isoTimestamp(machine.updatedAt))
    return writer.finished()
  }

  func render(volume: SimVolume) -> String {
    var writer = JSONWriter()
    writer.add("id", volume.id)
    writer.add("name", volume.name)
    writer.add("state", volume.state)
    writer.add("size_gb", volume.sizeGB)
    writer.add("region", volume.region)
    writer.add("zone", volume.zone)
    writer.add("encrypted", volume.encrypted)
    writer.add("attached_machine_id", volume.attachedMachineID)
    writer.add("attached_alloc_id", nil)
    writer.add("created_at", isoTimestamp(volume.createdAt))
    writer.add("fstype", "ext4")
    writer.add("snapshot_retention", volume.snapshotRetention)
    writer.add("auto_backup_enabled", volume.autoBackup)
    writer.add("bytes_used", volume.bytesUsed)
    writer.add("bytes_total", volume.sizeGB << 30)
    writer.add("host_status", "ok")
    return writer.finished()
  }

  // MARK: Lists

  struct Page {
    var items: [String]
    var next: String?
  }

  /// The `limit` + cursor protocol shared by both lists: the cursor is the last sequence number
  /// returned, so deletions between pages do not skip items.
  private func page<T>(
    order: [String], store: [String: T], seq: (T) -> Int, include: (T) -> Bool, render: (T) -> String,
    limit: Int?, cursor: String?, shortPage: Bool
  ) -> Page {
    let after = cursor.flatMap { Int($0.dropFirst(2)) } ?? -1
    var start = 0
    var low = 0
    var high = order.count
    while low < high {
      let mid = (low + high) / 2
      if let item = store[order[mid]], seq(item) <= after { low = mid + 1 } else { high = mid }
    }
    start = low
    var items: [String] = []
    var lastSeq = after
    var index = start
    let wanted = limit.map { shortPage ? $0 / 2 : $0 } ?? Int.max
    while index < order.count && items.count < wanted {
      if let item = store[order[index]] {
        lastSeq = seq(item)
        if include(item) { items.append(render(item)) }
      }
      index += 1
    }
    let more = limit != nil && index < order.count
    return Page(items: items, next: more ? "c_\(lastSeq)" : nil)
  }

  mutating func listMachines(
    app: String, now: Double, includeDeleted: Bool, region: String?, states: Set<String>, metadata: [String: String],
    summary: Bool, limit: Int?, cursor: String?, shortPage: Bool
  ) -> Page {
    // Transitions are applied when a list starts; later pages of the same walk (moments later) reuse
    // them, so a whole paginated list costs O(n), not O(n²/page).
    if cursor == nil { sweepMachines(now: now) }
    return page(
      order: machineOrder, store: machines, seq: \.seq,
      include: { machine in
        machine.app == app && self.machineVisible(machine, now: now, includeDeleted: includeDeleted)
          && (region == nil || machine.region == region)
          && (states.isEmpty || states.contains(machine.state))
          && metadata.allSatisfy { machine.metadata[$0.key] == $0.value }
      },
      render: { self.renderCached(machine: $0, summary: summary) }, limit: limit, cursor: cursor, shortPage: shortPage)
  }

  mutating func listVolumes(app: String, now: Double, limit: Int?, cursor: String?, shortPage: Bool) -> Page {
    if cursor == nil { sweepVolumes(now: now) }
    return page(
      order: volumeOrder, store: volumes, seq: \.seq, include: { $0.app == app && self.volumeVisible($0, now: now) },
      render: { self.renderCached(volume: $0) }, limit: limit, cursor: cursor, shortPage: shortPage)
  }

  /// Applies every machine's due transitions, unless nothing is due yet (see ``Sweeps``).
  private mutating func sweepMachines(now: Double) {
    guard now >= sweeps.machinesUntil else { return }
    var due = Double.infinity
    for id in machineOrder { due = min(due, advance(machine: id, now: now) ?? .infinity) }
    sweeps.machinesUntil = due
  }

  private mutating func sweepVolumes(now: Double) {
    guard now >= sweeps.volumesUntil else { return }
    var due = Double.infinity
    for id in volumeOrder { due = min(due, advance(volume: id, now: now) ?? .infinity) }
    sweeps.volumesUntil = due
  }

  // MARK: Machines

  /// A machine as GET sees it (destroyed machines answer for a while, then 404).
  mutating func visibleMachine(_ id: String, now: Double) -> SimMachine? {
    advance(machine: id, now: now)
    guard let machine = machines[id] else { return nil }
    if let destroyedAt = machine.destroyedAt, now >= destroyedAt + configuration.destroyedLinger { return nil }
    return machine
  }

  struct CreateMachine {
    var app: String
    var name: String?
    var region: String?
    var config: [String: SimJSON]
    var skipLaunch: Bool
    var crashes = false
  }

  mutating func createMachine(_ request: CreateMachine, now: Double, foreign: Bool = false) -> SimAnswer {
    let region = request.region ?? "ord"
    guard configuration.regions.contains(region) else { return .error(400, "invalid region: \(region)") }
    guard let image = request.config["image"]?.string, !image.isEmpty else {
      return .error(400, "invalid_argument: image is required")
    }
    let metadata = request.config["metadata"]?.object?.compactMapValues(\.string) ?? [:]
    if let guest = request.config["guest"]?.object, let memory = guest["memory_mb"]?.int {
      let cpus = guest["cpus"]?.int ?? 1
      if memory < 256 || memory % 256 != 0
        || memory > cpus * 2048 * (guest["cpu_kind"]?.string == "performance" ? 4 : 1)
      {
        return .error(400, "invalid_argument: invalid memory size \(memory)MB for \(cpus) cpus")
      }
    }
    var volumeID: String?
    let mounts = request.config["mounts"]?.array ?? []
    if mounts.count > 1 { return .error(400, "invalid_argument: a machine can mount at most one volume") }
    if let mount = mounts.first?.object, let id = mount["volume"]?.string {
      advance(volume: id, now: now)
      guard let volume = volumes[id], volume.deletedAt == nil, volume.app == request.app else {
        return .error(404, "volume not found")
      }
      if volume.region != region {
        return .error(
          412, "failed_precondition: volume \(id) is in region \(volume.region), machine requested \(region)")
      }
      if volume.attachedMachineID != nil {
        return .error(412, "failed_precondition: volume already claimed by machine")
      }
      volumeID = id
    }
    let name = request.name ?? "machine-\(seq + 1)"
    if configuration.enforceMachineNames,
      machines.values.contains(where: { $0.name == name && $0.destroyedAt == nil && $0.state != "destroying" })
    {
      return .error(409, "aborted: machine name \(name) is already taken", flyStatus: "name_taken")
    }
    seq += 1
    let id = newMachineID()
    let settle = configuration.createSettle
    var machine = SimMachine(
      seq: seq, app: request.app, id: id, name: name, region: region, state: "created",
      configText: SimJSON.object(request.config).text, metadata: metadata, image: image, volumeID: volumeID,
      instanceID: newULID(), privateIP: "fdaa:0:1:a7b:\(seq % 65536):\(Int(random.next() % 65536)):1:2",
      createdAt: now, updatedAt: now, visibleAt: now + configuration.listLag, next: nil, settledAt: now + settle)
    machine.foreign = foreign
    machine.crashAfterStart = request.crashes
    machine.secretsVersion = apps[request.app]?.secretsVersion ?? 0
    if !request.skipLaunch { machine.next = ("starting", now + settle) }
    machines[id] = machine
    machineOrder.append(id)
    if let volumeID {
      volumes[volumeID]?.attachedMachineID = id
      volumes[volumeID]?.updatedAt = now
    }
    advance(machine: id, now: now)
    return .json(render(machine: machines[id]!))
  }

  mutating func startMachine(_ id: String, now: Double) -> SimAnswer {
    guard var machine = visibleMachine(id, now: now) else { return .error(404, "machine not found") }
    switch machine.state {
    case "created" where now < machine.settledAt, "stopping", "replacing", "starting", "destroying", "destroyed",
      "started":
      return .error(412, "failed_precondition: unable to start machine from current state: '\(machine.state)'")
    case "stopped" where now < (machine.stoppedAt ?? 0) + configuration.stillActiveAfterStop:
      return .error(412, "failed_precondition: machine still active, refusing to start")
    default:
      let previous = machine.state
      machine.state = "starting"
      machine.updatedAt = now
      machine.next = ("started", now + configuration.startDuration)
      machines[id] = machine
      advance(machine: id, now: now)
      return .json(#"{"previous_state":"\#(previous)","migrated":false,"new_host":""}"#)
    }
  }

  mutating func stopMachine(_ id: String, now: Double) -> SimAnswer {
    guard var machine = visibleMachine(id, now: now) else { return .error(404, "machine not found") }
    switch machine.state {
    case "started", "suspended", "starting":
      machine.state = "stopping"
      machine.updatedAt = now
      machine.next = ("stopped", now + configuration.stopDuration)
      machines[id] = machine
      advance(machine: id, now: now)
      return .ok
    default:
      return .error(412, "failed_precondition: unable to stop machine from current state: '\(machine.state)'")
    }
  }

  mutating func destroyMachine(_ id: String, force: Bool, now: Double) -> SimAnswer {
    guard var machine = visibleMachine(id, now: now), machine.destroyedAt == nil, machine.state != "destroying"
    else { return .error(404, "machine not found") }
    let quiet: Set = ["stopped", "suspended", "failed", "created"]
    if !force && !quiet.contains(machine.state) {
      return .error(
        412, "failed_precondition: unable to destroy machine, not currently stopped, suspended, failed or created")
    }
    machine.state = "destroying"
    machine.updatedAt = now
    machine.next = ("destroyed", now + configuration.destroyDuration)
    machine.lease = nil
    machines[id] = machine
    advance(machine: id, now: now)
    return .ok
  }

  struct UpdateMachine {
    var config: [String: SimJSON]
    var region: String?
    var name: String?
    var currentVersion: String?
    var skipLaunch: Bool
    /// The update will be given up (the image cannot be pulled): a silent revert.
    var reverts: Bool
    /// The new version boots and dies (the machine ends `failed`).
    var crashes: Bool
  }

  /// `POST /v1/apps/{app}/machines/{id}`: the full config replaces the old one. Region, name and
  /// the mounted volume cannot change; `current_version`, when sent, must be the machine's version
  /// (409 and nothing changed otherwise). Each update makes a new version; the old one is kept in
  /// `versions`. A started machine reboots on the new version; a stopped one starts unless `skip_launch`.
  mutating func updateMachine(_ id: String, _ request: UpdateMachine, now: Double) -> SimAnswer {
    guard var machine = visibleMachine(id, now: now), machine.destroyedAt == nil, machine.state != "destroying"
    else { return .error(404, "machine not found") }
    if let current = request.currentVersion, current != machine.instanceID {
      return .error(
        409,
        "aborted: machine \(id) is at version \(machine.instanceID), not \(current) (current_version): nothing changed"
      )
    }
    if let region = request.region, !region.isEmpty, region != machine.region {
      return .error(400, "invalid_argument: region cannot be changed (machine is in \(machine.region))")
    }
    if let name = request.name, !name.isEmpty, name != machine.name {
      return .error(400, "invalid_argument: name cannot be changed (machine is \(machine.name))")
    }
    guard let image = request.config["image"]?.string, !image.isEmpty else {
      return .error(400, "invalid_argument: image is required (an update takes the full config)")
    }
    let mounts = request.config["mounts"]?.array ?? []
    let mounted = mounts.first?.object?["volume"]?.string
    if mounts.count > 1 || mounted != machine.volumeID {
      return .error(
        400,
        "invalid_argument: the mounted volume cannot change (machine mounts \(machine.volumeID ?? "none"), update names \(mounted ?? "none"))"
      )
    }
    if let guest = request.config["guest"]?.object, let memory = guest["memory_mb"]?.int {
      let cpus = guest["cpus"]?.int ?? 1
      if memory < 256 || memory % 256 != 0
        || memory > cpus * 2048 * (guest["cpu_kind"]?.string == "performance" ? 4 : 1)
      {
        return .error(400, "invalid_argument: invalid memory size \(memory)MB for \(cpus) cpus")
      }
    }
    switch machine.state {
    case "started", "stopped", "suspended", "created", "failed": break
    default:
      return .error(412, "failed_precondition: unable to update machine from current state: '\(machine.state)'")
    }
    let previous = SimVersion(
      version: machine.instanceID, configText: machine.configText, image: machine.image, metadata: machine.metadata)
    let before = machine.state
    let wasUp = before == "started"
    machine.versions.append(previous)
    machine.instanceID = newULID()
    machine.configText = SimJSON.object(request.config).text
    machine.image = image
    machine.metadata = request.config["metadata"]?.object?.compactMapValues(\.string) ?? [:]
    machine.updatedAt = now
    machine.revert = nil
    let launches = wasUp || !request.skipLaunch
    machine.crashLoop = nil  // a new version: whatever crashed is replaced
    machine.crashAfterStart = request.crashes
    machine.secretsVersion = apps[machine.app]?.secretsVersion ?? 0
    if request.reverts {
      machine.next = nil
      machine.revert = (previous, wasUp ? "started" : before, now + configuration.updateDuration)
      machine.state = "updating"
    } else if launches {
      machine.state = "updating"
      machine.next = ("starting", now + configuration.updateDuration)
    } else {
      machine.next = nil
      if machine.state == "failed" { machine.state = "stopped" }
    }
    machines[id] = machine
    // The answer shows the new version as Fly accepted it, even if it is given up a moment later.
    let answer = SimAnswer.json(render(machine: machine))
    advance(machine: id, now: now)
    return answer
  }

  /// `GET …/machines/{id}/versions`: every version, newest first.
  mutating func machineVersions(_ id: String, now: Double) -> SimAnswer {
    guard let machine = visibleMachine(id, now: now) else { return .error(404, "machine not found") }
    let current = SimVersion(
      version: machine.instanceID, configText: machine.configText, image: machine.image, metadata: machine.metadata)
    let items = ([current] + machine.versions.reversed()).map { version in
      "{\"version\":\(SimJSON.string(version.version).text),\"user_config\":\(version.configText)}"
    }
    return .json("[" + items.joined(separator: ",") + "]")
  }

  /// `GET …/machines/{id}?version=V`: that version of the machine.
  mutating func machine(_ id: String, version: String, now: Double) -> SimAnswer {
    guard var machine = visibleMachine(id, now: now) else { return .error(404, "machine not found") }
    guard machine.instanceID != version else { return .json(render(machine: machine)) }
    guard let old = machine.versions.last(where: { $0.version == version }) else {
      return .error(404, "machine version not found")
    }
    machine.instanceID = old.version
    machine.configText = old.configText
    machine.image = old.image
    machine.state = "replaced"
    return .json(render(machine: machine))
  }

  /// `PUT …/volumes/{id}/extend`: grow only; a volume mounted by a running machine needs its
  /// restart to see the new size.
  mutating func extendVolume(_ id: String, sizeGB: Int?, now: Double) -> SimAnswer {
    guard var volume = visibleVolume(id, now: now), volume.deletedAt == nil else {
      return .error(404, "volume not found")
    }
    guard let sizeGB else { return .error(400, "invalid_argument: size_gb is required") }
    guard sizeGB > volume.sizeGB else {
      return .error(
        400,
        "invalid_argument: size_gb \(sizeGB) must be greater than the current size \(volume.sizeGB) (volumes only grow)"
      )
    }
    guard sizeGB <= 500 else { return .error(400, "invalid_argument: size_gb must be between 1 and 500") }
    volume.sizeGB = sizeGB
    volume.updatedAt = now
    volumes[id] = volume
    var needsRestart = false
    if let machineID = volume.attachedMachineID, let machine = machines[machineID] {
      needsRestart = ["started", "starting", "updating"].contains(machine.state)
    }
    return .json("{\"volume\":\(render(volume: volume)),\"needs_restart\":\(needsRestart)}")
  }

  /// Someone else (a human with flyctl) takes the machine's lease: writes without its nonce
  /// answer 409 until it expires.
  mutating func driftLease(_ id: String, owner: String, seconds: Double, now: Double) -> Bool {
    guard var machine = visibleMachine(id, now: now), machine.destroyedAt == nil else { return false }
    machine.lease = SimLease(
      nonce: randomString(12, alphabet: "0123456789abcdef"), owner: owner, description: "held by a human",
      expiresAt: now + seconds)
    machines[id] = machine
    return true
  }

  /// Someone runs `fly machine update` behind the controller's back: a new version with `image`
  /// and `env` changed, the rest kept.
  mutating func driftUpdate(_ id: String, image: String?, env: [String: SimJSON]?, now: Double) -> Bool {
    guard var machine = visibleMachine(id, now: now), machine.destroyedAt == nil,
      var config = SimJSON.parse(Data(machine.configText.utf8))?.object
    else { return false }
    machine.versions.append(
      SimVersion(
        version: machine.instanceID, configText: machine.configText, image: machine.image, metadata: machine.metadata))
    if let image {
      config["image"] = .string(image)
      machine.image = image
    }
    if let env {
      var merged = config["env"]?.object ?? [:]
      merged.merge(env) { _, new in new }
      config["env"] = .object(merged)
    }
    machine.configText = SimJSON.object(config).text
    machine.instanceID = newULID()
    machine.updatedAt = now
    machines[id] = machine
    return true
  }

  /// The drift operations of the control endpoint: things that happen behind the controller's back.
  mutating func driftStop(_ id: String, now: Double) -> Bool {
    guard var machine = visibleMachine(id, now: now), machine.destroyedAt == nil else { return false }
    machine.state = "stopped"
    machine.stoppedAt = now - configuration.stillActiveAfterStop
    machine.next = nil
    machine.updatedAt = now
    machines[id] = machine
    return true
  }

  mutating func driftFail(_ id: String, now: Double) -> Bool {
    guard var machine = visibleMachine(id, now: now), machine.destroyedAt == nil else { return false }
    machine.state = "failed"
    machine.next = nil
    machine.updatedAt = now
    machines[id] = machine
    return true
  }

  mutating func driftDestroy(_ id: String, now: Double) -> Bool {
    guard var machine = visibleMachine(id, now: now), machine.destroyedAt == nil else { return false }
    machine.state = "destroyed"
    machine.destroyedAt = now
    machine.next = nil
    machine.updatedAt = now
    machines[id] = machine
    return true
  }

  /// Fly moves a machine to another host on its own: the same machine id, a fork of its volume
  /// (same name, a new id) mounted in its place, a new private IP and instance; the old volume is
  /// left `pending_destroy` for a while.
  mutating func driftMigrate(_ id: String, now: Double) -> Bool {
    guard var machine = visibleMachine(id, now: now), machine.destroyedAt == nil, let oldID = machine.volumeID,
      var old = volumes[oldID], old.deletedAt == nil
    else { return false }
    seq += 1
    let newID = newVolumeID()
    volumes[newID] = SimVolume(
      seq: seq, app: old.app, id: newID, name: old.name, region: old.region,
      zone: randomString(4, alphabet: "0123456789abcdef"),
      sizeGB: old.sizeGB, encrypted: old.encrypted, state: "created", attachedMachineID: id, createdAt: now,
      updatedAt: now, visibleAt: now, deletedAt: nil)
    volumeOrder.append(newID)
    old.attachedMachineID = nil
    old.deletedAt = now
    old.updatedAt = now
    old.state = "pending_destroy"
    volumes[oldID] = old
    machine.volumeID = newID
    machine.configText = machine.configText.replacingOccurrences(of: oldID, with: newID)
    machine.privateIP = "fdaa:0:1:a7b:\(seq % 65536):\(Int(random.next() % 65536)):1:3"
    machine.instanceID = newULID()
    machine.updatedAt = now
    machines[id] = machine
    return true
  }

  mutating func driftDetach(_ volumeID: String, now: Double) -> Bool {
    guard volumes[volumeID] != nil else { return false }
    volumes[volumeID]?.attachedMachineID = nil
    volumes[volumeID]?.updatedAt = now
    return true
  }

  mutating func driftDeleteVolume(_ volumeID: String, now: Double) -> Bool {
    guard var volume = volumes[volumeID], volume.deletedAt == nil else { return false }
    volume.attachedMachineID = nil
    volume.deletedAt = now
    volume.updatedAt = now
    volume.state = "pending_destroy"
    volumes[volumeID] = volume
    return true
  }

  // MARK: Leases

  mutating func acquireLease(_ id: String, ttl: Int, description: String, nonce: String?, now: Double) -> SimAnswer {
    guard var machine = visibleMachine(id, now: now), machine.destroyedAt == nil else {
      return .error(404, "machine not found")
    }
    if let lease = machine.lease, lease.expiresAt > now, lease.nonce != nonce {
      return SimAnswer(
        status: 409,
        body:
          #"{"status":"error","code":"invalid","message":"machine ID \#(id) lease currently held by \#(lease.owner), expires at \#(isoTimestamp(lease.expiresAt))"}"#
      )
    }
    let newNonce = nonce ?? randomString(12, alphabet: "0123456789abcdef")
    let lease = SimLease(
      nonce: newNonce, owner: "fleetkeeper@tokens.fly.io", description: description, expiresAt: now + Double(ttl))
    machine.lease = lease
    machines[id] = machine
    return .json(
      #"{"status":"success","data":{"nonce":"\#(newNonce)","expires_at":\#(Int(lease.expiresAt)),"owner":"\#(lease.owner)","description":\#(SimJSON.string(description).text),"version":"\#(machine.instanceID)"}}"#
    )
  }

  mutating func releaseLease(_ id: String, nonce: String?, now: Double) -> SimAnswer {
    guard var machine = visibleMachine(id, now: now) else { return .error(404, "machine not found") }
    guard let lease = machine.lease, lease.expiresAt > now else { return .error(404, "lease not found") }
    guard lease.nonce == nonce else { return leaseConflict(machine, now: now) }
    machine.lease = nil
    machines[id] = machine
    return .json(#"{"status":"success","data":{"ok":true}}"#)
  }

  /// A 409 when a lease held by someone else guards `id` and `nonce` is not its nonce.
  func leaseConflict(_ machine: SimMachine, now: Double) -> SimAnswer {
    let owner = machine.lease?.owner ?? "unknown"
    let expires = isoTimestamp(machine.lease?.expiresAt ?? now)
    return .error(409, "aborted: machine ID \(machine.id) lease currently held by \(owner), expires at \(expires)")
  }

  func leaseBlocks(_ id: String, nonce: String?, now: Double) -> SimAnswer? {
    guard let machine = machines[id], let lease = machine.lease, lease.expiresAt > now, lease.nonce != nonce else {
      return nil
    }
    return leaseConflict(machine, now: now)
  }

  // MARK: Volumes

  mutating func visibleVolume(_ id: String, now: Double) -> SimVolume? {
    advance(volume: id, now: now)
    guard let volume = volumes[id], volumeVisible(volume, now: now) || volume.visibleAt > now else { return nil }
    return volume
  }

  struct VolumeOptions {
    var snapshotRetention: Int?
    var autoBackup: Bool?
    /// Restore: a new volume holding this snapshot's data.
    var snapshotID: String?
  }

  mutating func createVolume(
    app: String, name: String, region: String, sizeGB: Int, encrypted: Bool, now: Double,
    options: VolumeOptions = VolumeOptions()
  ) -> SimAnswer {
    guard !name.isEmpty, name.count <= 30,
      name.unicodeScalars.allSatisfy({ ($0.isASCII && CharacterSet.alphanumerics.contains($0)) || $0 == "_" })
    else {
      return .error(400, "invalid_argument: volume name must be 1 to 30 letters, digits or underscores")
    }
    guard configuration.regions.contains(region) else { return .error(400, "invalid region: \(region)") }
    guard sizeGB >= 1, sizeGB <= 500 else { return .error(400, "invalid_argument: size_gb must be between 1 and 500") }
    if let retention = options.snapshotRetention, !(1...60).contains(retention) {
      return .error(400, "invalid_argument: snapshot_retention must be between 1 and 60 days")
    }
    var restored: SimSnapshot?
    if let snapshotID = options.snapshotID {
      guard let snapshot = snapshot(snapshotID, now: now), snapshot.app == app else {
        return .error(404, "snapshot not found")
      }
      guard sizeGB >= snapshot.volumeSizeGB else {
        return .error(
          400,
          "invalid_argument: size_gb \(sizeGB) is smaller than the snapshot's volume (\(snapshot.volumeSizeGB) GB)")
      }
      restored = snapshot
    }
    seq += 1
    let id = newVolumeID()
    var volume = SimVolume(
      seq: seq, app: app, id: id, name: name, region: region, zone: randomString(4, alphabet: "0123456789abcdef"),
      sizeGB: sizeGB, encrypted: encrypted, state: "created", attachedMachineID: nil, createdAt: now,
      updatedAt: now, visibleAt: now + configuration.listLag, deletedAt: nil)
    volume.snapshotRetention = options.snapshotRetention ?? 5
    volume.autoBackup = options.autoBackup ?? true
    if let restored {
      volume.bytesUsed = restored.size
      volume.restoredFrom = restored.id
    }
    volumes[id] = volume
    volumeOrder.append(id)
    return .json(render(volume: volume))
  }

  mutating func deleteVolume(_ id: String, now: Double) -> SimAnswer {
    guard var volume = visibleVolume(id, now: now), volume.deletedAt == nil else {
      return .error(404, "volume not found")
    }
    if let machineID = volume.attachedMachineID {
      return .error(412, "failed_precondition: volume is currently bound to machine: \(machineID)")
    }
    volume.deletedAt = now
    volume.updatedAt = now
    volume.state = "pending_destroy"
    volumes[id] = volume
    return .json(render(volume: volume))
  }

  // MARK: Seeding

  /// Adds `count` users' volumes and started machines at once (benchmarks of large fleets): the
  /// machine of user `<prefix><i>` carries `fleet_user_id` and mounts volume `<volumePrefix><prefix><i>`.
  /// `spread`: the items were made (and last updated) evenly over that many seconds before `now`,
  /// as a fleet built over time is, instead of all at once.
  mutating func seed(
    count: Int, prefix: String, volumePrefix: String, region: String, image: String, now end: Double,
    spread: Double = 0
  ) {
    for index in 0..<count {
      let now = end - spread + spread * Double(index + 1) / Double(count)
      let user = "\(prefix)\(index)"
      seq += 1
      let volumeID = newVolumeID()
      volumes[volumeID] = SimVolume(
        seq: seq, app: configuration.appName, id: volumeID, name: volumePrefix + user, region: region, zone: "a1b2",
        sizeGB: 1, encrypted: true,
        state: "created", attachedMachineID: nil, createdAt: now, updatedAt: now, visibleAt: now, deletedAt: nil)
      volumeOrder.append(volumeID)
      seq += 1
      let id = newMachineID()
      let config: [String: SimJSON] = [
        "image": .string(image),
        "metadata": .object(["fleet_user_id": .string(user), "fleet_managed_by": .string("fleetkeeper")]),
        "mounts": .array([.object(["volume": .string(volumeID), "path": .string("/data")])]),
        "guest": .object(["cpu_kind": .string("shared"), "cpus": .int(1), "memory_mb": .int(256)]),
        "restart": .object(["policy": .string("always")]),
      ]
      machines[id] = SimMachine(
        seq: seq, app: configuration.appName, id: id, name: "fk-" + user, region: region, state: "started",
        configText: SimJSON.object(config).text,
        metadata: ["fleet_user_id": user], image: image, volumeID: volumeID, instanceID: newULID(),
        privateIP: "fdaa:0:1:a7b:\(seq % 65536):1:1:2", createdAt: now, updatedAt: now, visibleAt: now, next: nil,
        settledAt: now)
      machineOrder.append(id)
      volumes[volumeID]?.attachedMachineID = id
    }
  }

  // MARK: Inspection

  /// Every machine and volume, including lagging and destroyed ones, as the control endpoint shows them.
  mutating func snapshot(now: Double) -> String {
    for id in machineOrder { advance(machine: id, now: now) }
    for id in volumeOrder { advance(volume: id, now: now) }
    let machineTexts = machineOrder.compactMap { id -> String? in
      guard let machine = machines[id] else { return nil }
      var text = render(machine: machine)
      text.removeLast()
      text +=
        ",\"foreign\":\(machine.foreign),\"lease_nonce\":\(SimJSON.string(machine.lease?.nonce ?? "").text),"
        + "\"app\":\(SimJSON.string(machine.app).text),\"secrets_version\":\(machine.secretsVersion)}"
      return text
    }
    let volumeTexts = volumeOrder.compactMap { id -> String? in
      guard let volume = volumes[id] else { return nil }
      var text = render(volume: volume)
      text.removeLast()
      return text + ",\"app\":\(SimJSON.string(volume.app).text)}"
    }
    let appTexts = appOrder.compactMap { apps[$0].map { renderSnapshot(app: $0) } }
    return
      "{\"now\":\(now),\"machines\":[\(machineTexts.joined(separator: ","))],\"volumes\":[\(volumeTexts.joined(separator: ","))],\"apps\":[\(appTexts.joined(separator: ","))]}"
  }
}

// MARK: Org-wide lists

/// Fly's org-wide lists (`GET /v1/orgs/{org}/machines` and `/volumes`) as the spec describes them:
/// every item ordered by `updated_at`, oldest first (ties by creation), paged by an opaque cursor
/// naming the last item returned (never the same string twice), filtered by `updated_after`,
/// `include_deleted` and `region`. Faults: `limit` is advisory (a short page holds fewer items,
/// even none, while more remain); a region that cannot be read is left out and named in
/// `error_regions`; an update may arrive late (listed only `lateSeconds` after it happened, with its
/// true `updated_at`), as Fly warns: "offset your timestamps to catch late-arriving events".
extension SimulatorModel {
  struct OrgQuery {
    var includeDeleted = false
    var region: String?
    var updatedAfter: Double?
    /// The last item of the previous page: its `updated_at` and creation sequence.
    var after: OrgPosition?
    var limit = 1000
    /// Items on this page (a short-page fault): nil = `limit`.
    var shortTo: Int?
    var unreadableRegions: Set<String> = []
    var lateSeconds: Double = 0
    var lateRate: Double = 0
  }

  struct OrgPosition: Comparable {
    var updatedAt: Double
    var seq: Int
    static func < (a: OrgPosition, b: OrgPosition) -> Bool { (a.updatedAt, a.seq) < (b.updatedAt, b.seq) }
  }

  struct OrgPage {
    var items: [String]
    var next: String?
    var lastID: String?
    var lastUpdatedAt: Double?
    var errorRegions: [String]
  }

  /// `o_<updated_at's exact bits>_<seq>_<page number>`: the page number keeps an empty page's
  /// cursor new. (Exact: a cursor rounded to the millisecond would put every item of the same
  /// millisecond after it again, and the walk would never end.)
  static func orgCursor(_ position: OrgPosition, page: Int) -> String {
    "o_\(String(position.updatedAt.bitPattern, radix: 16))_\(position.seq)_\(page)"
  }

  static func parseOrgCursor(_ text: String) -> (position: OrgPosition, page: Int)? {
    let parts = text.split(separator: "_")
    guard parts.count == 4, parts[0] == "o", let bits = UInt64(parts[1], radix: 16), let seq = Int(parts[2]),
      let page = Int(parts[3])
    else { return nil }
    let updatedAt = Double(bitPattern: bits)
    guard updatedAt.isFinite else { return nil }
    return (OrgPosition(updatedAt: updatedAt, seq: seq), page)
  }

  /// Whether the update of `id` at `updatedAt` is still on its way to the org lists.
  static func isLate(_ id: String, updatedAt: Double, now: Double, query: OrgQuery) -> Bool {
    guard query.lateSeconds > 0, query.lateRate > 0, updatedAt > now - query.lateSeconds else { return false }
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325 ^ updatedAt.bitPattern
    for byte in id.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
    hash ^= hash >> 29
    return Double(hash >> 11) / Double(1 << 53) < query.lateRate
  }

  mutating func orgListMachines(now: Double, query: OrgQuery, page: Int) -> OrgPage {
    sweepMachines(now: now)
    // Every machine of every app of the org, the controller's and anyone else's, as Fly lists them.
    let machines = self.machines
    return orgPage(order: machineOrder, query: query, now: now, page: page) { id in
      guard let machine = machines[id], self.machineVisible(machine, now: now, includeDeleted: query.includeDeleted)
      else { return nil }
      return (machine.region, OrgPosition(updatedAt: machine.updatedAt, seq: machine.seq))
    } render: { id in
      self.renderOrg(machine: machines[id]!)
    }
  }

  mutating func orgListVolumes(now: Double, query: OrgQuery, page: Int) -> OrgPage {
    sweepVolumes(now: now)
    let volumes = self.volumes
    let linger = configuration.deletedVolumeLinger
    return orgPage(order: volumeOrder, query: query, now: now, page: page) { id in
      guard let volume = volumes[id], volume.visibleAt <= now else { return nil }
      if !query.includeDeleted, let deletedAt = volume.deletedAt, now >= deletedAt + linger { return nil }
      return (volume.region, OrgPosition(updatedAt: volume.updatedAt, seq: volume.seq))
    } render: { id in
      self.renderOrg(volume: volumes[id]!)
    }
  }

  /// One org list page over `order`: `listed` says where an item is and when it was updated (nil:
  /// not listed at all); the query's filters, unreadable regions and late items apply to every list alike.
  private func orgPage(
    order: [String], query: OrgQuery, now: Double, page: Int,
    listed: (String) -> (region: String, position: OrgPosition)?, render: (String) -> String
  ) -> OrgPage {
    var errorRegions: Set<String> = []
    var candidates: [(OrgPosition, String)] = []
    for id in order {
      guard let (region, position) = listed(id) else { continue }
      if let wanted = query.region, region != wanted { continue }
      if query.unreadableRegions.contains(region) {
        errorRegions.insert(region)
        continue
      }
      if let after = query.updatedAfter, position.updatedAt <= after { continue }
      if let after = query.after, position <= after { continue }
      if Self.isLate(id, updatedAt: position.updatedAt, now: now, query: query) { continue }
      candidates.append((position, id))
    }
    return orgPage(candidates, query: query, page: page, errorRegions: errorRegions, render: render)
  }

  private func orgPage(
    _ candidates: [(OrgPosition, String)], query: OrgQuery, page: Int, errorRegions: Set<String>,
    render: (String) -> String
  ) -> OrgPage {
    var sorted = candidates
    sorted.sort { $0.0 < $1.0 }
    let taken = sorted.prefix(query.shortTo ?? query.limit)
    let last = taken.last ?? query.after.map { ($0, "") }
    let more = sorted.count > taken.count
    return OrgPage(
      items: taken.map { render($0.1) },
      next: more ? Self.orgCursor(last?.0 ?? OrgPosition(updatedAt: 0, seq: -1), page: page) : nil,
      lastID: taken.last?.1, lastUpdatedAt: taken.last?.0.updatedAt, errorRegions: errorRegions.sorted())
  }

  /// An org list's machine: the overview config (image, guest, metadata), the app's name, the version.
  func renderOrg(machine: SimMachine) -> String {
    var writer = JSONWriter()
    writer.add("id", machine.id)
    writer.add("name", machine.name)
    writer.add("state", machine.state)
    writer.add("region", machine.region)
    writer.add("app_name", machine.app)
    writer.add("version", machine.instanceID)
    writer.add("private_ip", machine.privateIP)
    var config = JSONWriter()
    config.add("image", machine.image)
    if let parsed = SimJSON.parse(Data(machine.configText.utf8))?.object {
      if let guest = parsed["guest"] { config.add("guest", raw: guest.text) }
    }
    config.add("metadata", raw: SimJSON.object(machine.metadata.mapValues { .string($0) }).text)
    writer.add("config", raw: config.finished())
    writer.add("created_at", isoTimestamp(machine.createdAt))
    writer.add("updated_at", isoTimestamp(machine.updatedAt))
    return writer.finished()
  }

  /// An org list's volume: the volume, its app's name, `bytes_used`/`bytes_total`, `updated_at`.
  func renderOrg(volume: SimVolume) -> String {
    var text = renderCached(volume: volume)
    text.removeLast()
    var writer = JSONWriter()
    writer.add("app_name", volume.app)
    writer.add("bytes_used", volume.bytesUsed)
    writer.add("bytes_total", volume.sizeGB << 30)
    writer.add("updated_at", isoTimestamp(volume.updatedAt))
    var extra = writer.finished()
    extra.removeFirst()
    return text + "," + extra
  }
}
