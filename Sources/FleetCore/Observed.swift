/// A machine as the last list showed it.
public struct ObservedMachine: Sendable, Hashable {
  public var id: String
  public var name: String?
  public var state: String
  public var region: String
  /// `config.metadata.fleet_user_id`: nil for a machine fleetkeeper did not make (foreign).
  public var userID: String?
  /// The volume of its first mount.
  public var volumeID: String?
  public var image: String?
  public var privateIP: String?
  /// Unix seconds (from `created_at`/`updated_at`), when Fly sent them.
  public var createdAt: Double?
  public var updatedAt: Double?

  public init(
    id: String, name: String? = nil, state: String, region: String, userID: String?, volumeID: String? = nil,
    image: String? = nil, privateIP: String? = nil, createdAt: Double? = nil, updatedAt: Double? = nil
  ) {
    self.id = id
    self.name = name
    self.state = state
    self.region = region
    self.userID = userID
    self.volumeID = volumeID
    self.image = image
    self.privateIP = privateIP
    self.createdAt = createdAt
    self.updatedAt = updatedAt
  }

  /// `destroying`/`destroyed` machines still show in lists for a while; they count as gone.
  public var isGone: Bool { state == "destroyed" || state == "destroying" }
  /// States that settle on their own: wait, do not act.
  public static let transitional: Set<String> = [
    "creating", "starting", "stopping", "restarting", "suspending", "updating", "replacing", "launch_failed",
  ]
}

/// A volume as the last list showed it.
public struct ObservedVolume: Sendable, Hashable {
  public var id: String
  public var name: String
  public var state: String
  public var region: String
  public var attachedMachineID: String?
  public var sizeGB: Int?
  public var createdAt: Double?

  public init(
    id: String, name: String, state: String, region: String, attachedMachineID: String? = nil, sizeGB: Int? = nil,
    createdAt: Double? = nil
  ) {
    self.id = id
    self.name = name
    self.state = state
    self.region = region
    self.attachedMachineID = attachedMachineID
    self.sizeGB = sizeGB
    self.createdAt = createdAt
  }

  /// Fly lists volumes on their way out (`scheduling_destroy`, `pending_destroy`, `destroying`,
  /// `destroyed`, …) for a while; only a volume in another state is usable.
  public var isGone: Bool { Self.goneStates.contains(state) }

  static let goneStates: Set<String> = [
    "scheduling_destroy", "pending_destroy", "destroying", "destroyed", "waiting_for_detach", "fork_cleanup",
  ]
}

/// Both of Fly's lists, read whole.
public struct Observation: Sendable, Hashable {
  public var machines: [ObservedMachine]
  public var volumes: [ObservedVolume]
  public init(machines: [ObservedMachine], volumes: [ObservedVolume]) {
    self.machines = machines
    self.volumes = volumes
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
