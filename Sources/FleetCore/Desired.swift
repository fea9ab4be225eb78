/// What an operator wants for one user's machine.
public enum DesiredState: String, Sendable, Hashable, CaseIterable, Codable {
  /// A machine exists and is `started`, with its volume.
  case running
  /// A machine exists and is `stopped`; the volume stays.
  case stopped
  /// No machine; the volume is kept for the retention period, then deleted.
  case absent
}

/// The machine template every user's machine is made from (the `machine_template` table), before
/// per-user overrides.
public struct MachineTemplate: Sendable, Hashable, Codable {
  public var image: String
  /// `shared` or `performance`.
  public var cpuKind: String
  public var cpus: Int
  public var memoryMB: Int
  /// `init.cmd`, if set.
  public var initCommand: [String]?
  /// `services`, as Fly's JSON array, if set.
  public var servicesJSON: String?
  /// Environment of the machine. A value `$NAME` names a secret the controller holds in its own
  /// environment; the value is resolved only when a machine is created and is never stored.
  public var env: [String: String]
  public var mountPath: String
  public var volumeSizeGB: Int
  public var encrypted: Bool
  /// `no`, `always` or `on-failure`.
  public var restartPolicy: String

  public init(
    image: String = "registry.fly.io/fleet-agent:latest", cpuKind: String = "shared", cpus: Int = 1,
    memoryMB: Int = 256, initCommand: [String]? = nil, servicesJSON: String? = nil, env: [String: String] = [:],
    mountPath: String = "/data", volumeSizeGB: Int = 1, encrypted: Bool = true, restartPolicy: String = "always"
  ) {
    self.image = image
    self.cpuKind = cpuKind
    self.cpus = cpus
    self.memoryMB = memoryMB
    self.initCommand = initCommand
    self.servicesJSON = servicesJSON
    self.env = env
    self.mountPath = mountPath
    self.volumeSizeGB = volumeSizeGB
    self.encrypted = encrypted
    self.restartPolicy = restartPolicy
  }
}

/// Per-user overrides of the template (NULL columns of `desired_machines` mean "the template's").
public struct TemplateOverrides: Sendable, Hashable, Codable {
  public var image: String?
  public var cpuKind: String?
  public var cpus: Int?
  public var memoryMB: Int?
  public var volumeSizeGB: Int?
  /// Env values of this user's machine (`desired_machines.env`, a JSON object of strings): each
  /// replaces the template's value of the same name or adds one. Literal values and placeholders
  /// (``Placeholders``); never a `$NAME` secret (a row the dashboard writes must not copy the
  /// controller's secrets into a machine).
  public var env: [String: String]?
  public init(
    image: String? = nil, cpuKind: String? = nil, cpus: Int? = nil, memoryMB: Int? = nil, volumeSizeGB: Int? = nil,
    env: [String: String]? = nil
  ) {
    self.image = image
    self.cpuKind = cpuKind
    self.cpus = cpus
    self.memoryMB = memoryMB
    self.volumeSizeGB = volumeSizeGB
    self.env = env?.isEmpty == true ? nil : env
  }
  public var isEmpty: Bool { self == TemplateOverrides() }
}

/// One user's row of the desired-state table.
public struct DesiredMachine: Sendable, Hashable {
  public var userID: String
  public var email: String?
  public var state: DesiredState
  /// Paused (`users pause`): observed and reported, never changed. (Beside `state`: the two
  /// one-byte fields share a word, keeping the row at 72 bytes.)
  public var paused: Bool
  public var region: String
  /// Most users have no overrides: they cost one nil pointer, not five optionals.
  private var overridesBox: OverridesBox?
  /// Unix seconds of the last edit.
  public var updatedAt: Int64

  final class OverridesBox: Sendable {
    let value: TemplateOverrides
    init(_ value: TemplateOverrides) { self.value = value }
  }

  public var overrides: TemplateOverrides {
    get { overridesBox?.value ?? TemplateOverrides() }
    set { overridesBox = newValue.isEmpty ? nil : OverridesBox(newValue) }
  }

  public static func == (a: DesiredMachine, b: DesiredMachine) -> Bool {
    a.userID == b.userID && a.email == b.email && a.state == b.state && a.region == b.region
      && a.updatedAt == b.updatedAt && a.overrides == b.overrides && a.paused == b.paused
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(userID)
    hasher.combine(state)
    hasher.combine(region)
    hasher.combine(updatedAt)
  }

  public init(
    userID: String, email: String? = nil, state: DesiredState, region: String, overrides: TemplateOverrides = .init(),
    updatedAt: Int64 = 0, paused: Bool = false
  ) {
    self.paused = paused
    self.userID = userID
    self.email = email
    self.state = state
    self.region = region
    self.overridesBox = overrides.isEmpty ? nil : OverridesBox(overrides)
    self.updatedAt = updatedAt
  }

  /// The template with this user's overrides applied.
  public func spec(from template: MachineTemplate) -> MachineTemplate {
    var spec = template
    if let image = overrides.image { spec.image = image }
    if let cpuKind = overrides.cpuKind { spec.cpuKind = cpuKind }
    if let cpus = overrides.cpus { spec.cpus = cpus }
    if let memoryMB = overrides.memoryMB { spec.memoryMB = memoryMB }
    if let size = overrides.volumeSizeGB { spec.volumeSizeGB = size }
    if let env = overrides.env { spec.env.merge(env) { _, user in user } }
    return spec
  }
}

/// The whole desired state, read as one consistent snapshot.
public struct DesiredSnapshot: Sendable, Hashable {
  public var template: MachineTemplate
  /// Users by id, densely stored (a `UserMap`: see docs/benchmarks.md for what it saves).
  public var machines: UserMap<DesiredMachine>
  /// Rows that could not be read (a bad value written by plain SQL around the checks): reported,
  /// never acted on, and never taken for "absent".
  public var invalidRows: [String: String]
  /// The whole fleet is paused (`fleetkeeper pause`): observed and reported, nothing changed.
  public var fleetPaused = false
  /// How template changes roll out (the `rollout_control` row), and the template's revision.
  public var rolloutControl = RolloutControl()
  public var templateRevision: Int?
  /// Where users' machines live (the `fleet_topology` row).
  public var topology: Topology {
    get { placement.topology }
    set { placement.topology = newValue }
  }
  /// Which app each user lives in (the topology, and the `app_owners` rows mapped by hand).
  public var placement = AppPlacement()
  /// How users' volumes are looked after (the `volume_policy` row).
  public var volumePolicy = VolumePolicy()
  /// Restores asked for and not yet carried out (`restores` rows with status `requested`), by user.
  public var restores: [String: RestoreRequest] = [:]

  public init(template: MachineTemplate, machines: UserMap<DesiredMachine>, invalidRows: [String: String] = [:]) {
    self.template = template
    self.machines = machines
    self.invalidRows = invalidRows
  }

  public init(template: MachineTemplate, machines: [String: DesiredMachine], invalidRows: [String: String] = [:]) {
    self.init(template: template, machines: UserMap(machines), invalidRows: invalidRows)
  }
}

/// How users' volumes are looked after (issue 17): snapshots, full disks, growing them.
public struct VolumePolicy: Sendable, Hashable {
  /// Days Fly keeps each snapshot of a new volume (1 to 60); nil: Fly's default (5).
  public var snapshotRetentionDays: Int?
  /// Fly takes a snapshot of each new volume daily.
  public var autoBackup = true
  /// A volume fuller than this (percent of its size) is the `disk_full` finding.
  public var diskFullPercent = 85
  /// Grow a full volume by `autoExtendStepGB` at a time, up to this size (nil: never grown).
  public var autoExtendToGB: Int?
  public var autoExtendStepGB = 1
  public init(
    snapshotRetentionDays: Int? = nil, autoBackup: Bool = true, diskFullPercent: Int = 85, autoExtendToGB: Int? = nil,
    autoExtendStepGB: Int = 1
  ) {
    self.snapshotRetentionDays = snapshotRetentionDays
    self.autoBackup = autoBackup
    self.diskFullPercent = diskFullPercent
    self.autoExtendToGB = autoExtendToGB
    self.autoExtendStepGB = autoExtendStepGB
  }
}

/// A restore of a user's volume from a snapshot (`fleetkeeper users restore`, a `restores` row):
/// a new volume from the snapshot, a new machine on it, then the old machine destroyed; the old
/// volume kept for the retention.
public struct RestoreRequest: Sendable, Hashable, Codable {
  /// The `restores` row.
  public var id: Int64
  public var userID: String
  public var snapshotID: String
  /// The new volume's size (at least the snapshot's volume size); nil: the user's desired size.
  public var sizeGB: Int?
  public var requestedAt: Int64
  public init(id: Int64, userID: String, snapshotID: String, sizeGB: Int? = nil, requestedAt: Int64 = 0) {
    self.id = id
    self.userID = userID
    self.snapshotID = snapshotID
    self.sizeGB = sizeGB
    self.requestedAt = requestedAt
  }
}
