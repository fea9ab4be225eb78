/// A machine as the last list showed it. Kept small: 100k of them are held between passes
/// (`LayoutTests` pins the size, docs/benchmarks.md says why).
public struct ObservedMachine: Sendable, Hashable {
  public var id: String
  public var name: String?
  public var state: MachineState
  public var region: String
  /// `config.metadata.fleet_user_id`: nil for a machine fleetkeeper did not make (foreign).
  public var userID: String?
  /// The volume of its first mount.
  public var volumeID: String?
  public var privateIP: String?
  /// ``ConfigDigest/version(_:)`` of Fly's `version` (0: not sent): compared, never shown.
  public var versionHash: UInt64
  /// ``ConfigDigest/overview(image:cpuKind:cpus:memoryMB:)`` of the config the list shows (0: none).
  public var overviewHash: UInt64
  /// One app per user: the app the org-wide list says it is in (nil otherwise).
  public var app: String?
  /// Unix seconds (from `created_at`/`updated_at`), when Fly sent them.
  public var createdAt: Double? {
    get { created == -.infinity ? nil : created }
    set { created = newValue ?? -.infinity }
  }
  public var updatedAt: Double? {
    get { updated == -.infinity ? nil : updated }
    set { updated = newValue ?? -.infinity }
  }
  /// Not optionals: `-infinity` stands for "not sent", which keeps each a plain `Double`.
  private var created: Double
  private var updated: Double

  public init(
    id: String, name: String? = nil, state: MachineState, region: String, userID: String?, volumeID: String? = nil,
    privateIP: String? = nil, createdAt: Double? = nil, updatedAt: Double? = nil, versionHash: UInt64 = 0,
    overviewHash: UInt64 = 0
  ) {
    self.overviewHash = overviewHash
    self.id = id
    self.name = name
    self.versionHash = versionHash
    self.state = state
    self.region = region
    self.userID = userID
    self.volumeID = volumeID
    self.privateIP = privateIP
    self.created = createdAt ?? -.infinity
    self.updated = updatedAt ?? -.infinity
  }

  /// `destroying`/`destroyed` machines still show in lists for a while; they count as gone.
  public var isGone: Bool { state.isGone }
}

/// A volume as the last list showed it.
public struct ObservedVolume: Sendable, Hashable {
  public var id: String
  public var name: String
  public var state: VolumeState
  public var region: String
  public var attachedMachineID: String?
  public var sizeGB: Int?
  /// How full it is, in tenths of a percent (`bytes_used` of `bytes_total`); `UInt16.max`: not sent.
  /// (Beside `sizeGB`'s spare bytes: the struct stays at 128 bytes.)
  private var usedPermille: UInt16 = .max
  /// One app per user: the app the org-wide list says it is in (nil otherwise).
  public var app: String?
  /// Unix seconds, when Fly sent them (`updated_at` only in the org-wide list).
  public var createdAt: Double? {
    get { created == -.infinity ? nil : created }
    set { created = newValue ?? -.infinity }
  }
  public var updatedAt: Double? {
    get { updated == -.infinity ? nil : updated }
    set { updated = newValue ?? -.infinity }
  }
  /// Not optionals (`-infinity`: not sent), which keeps the struct at 112 bytes.
  private var created: Double
  private var updated: Double

  public init(
    id: String, name: String, state: VolumeState, region: String, attachedMachineID: String? = nil, sizeGB: Int? = nil,
    createdAt: Double? = nil, updatedAt: Double? = nil
  ) {
    self.id = id
    self.name = name
    self.state = state
    self.region = region
    self.attachedMachineID = attachedMachineID
    self.sizeGB = sizeGB
    self.created = createdAt ?? -.infinity
    self.updated = updatedAt ?? -.infinity
  }

  /// How full it is, in percent, when the list said (`bytes_used` of `bytes_total`).
  public var usedPercent: Double? {
    get { usedPermille == .max ? nil : Double(usedPermille) / 10 }
    set { usedPermille = newValue.map { UInt16(max(0, min(1000, ($0 * 10).rounded()))) } ?? .max }
  }

  /// Fly lists volumes on their way out (`scheduling_destroy`, `pending_destroy`, `destroying`,
  /// `destroyed`, …) for a while; only a volume in another state is usable.
  public var isGone: Bool { state.isGone }
}

/// Both of Fly's lists, read whole.
public struct Observation: Sendable, Hashable {
  public var machines: [ObservedMachine]
  public var volumes: [ObservedVolume]
  /// Regions Fly said it could not read (`error_regions`): what the lists show there may be
  /// missing or old, so nothing is created or destroyed there this pass.
  public var unreadableRegions: Set<String>
  /// One app per user: the names of the org's apps that carry the fleet's prefix (nil: not read,
  /// the shared app). An app missing here is looked at again before anything is made in its place.
  public var apps: Set<String>?
  public init(
    machines: [ObservedMachine], volumes: [ObservedVolume], unreadableRegions: Set<String> = [],
    apps: Set<String>? = nil
  ) {
    self.machines = machines
    self.volumes = volumes
    self.unreadableRegions = unreadableRegions
    self.apps = apps
  }
}

/// What the dashboard's `machines` table says a user has.
public struct RecordedMachine: Sendable, Hashable {
  public var machineID: String
  public var volumeID: String?
  public var status: String?
  public init(machineID: String, volumeID: String? = nil, status: String? = nil) {
    self.machineID = machineID
    self.volumeID = volumeID
    self.status = status
  }
}
/// A row of the dashboard's `machines` table.
public struct MachineRow: Sendable, Hashable {
  public var id: String
  public var userID: String
  public var region: String
  public var volumeID: String?
  public var status: String?
  public var ipAddress: String?
  public var createdAt: Int64?
  public var updatedAt: Int64?
  /// The Fly app the machine is in, and (one app per user) its public hostname: where the
  /// dashboard connects.
  public var appName: String?
  public var hostname: String?
  public init(
    id: String, userID: String, region: String, volumeID: String? = nil, status: String? = nil,
    ipAddress: String? = nil,
    createdAt: Int64? = nil, updatedAt: Int64? = nil, appName: String? = nil, hostname: String? = nil
  ) {
    self.appName = appName
    self.hostname = hostname
    self.id = id
    self.userID = userID
    self.region = region
    self.volumeID = volumeID
    self.status = status
    self.ipAddress = ipAddress
    self.createdAt = createdAt
    self.updatedAt = updatedAt
  }
}
