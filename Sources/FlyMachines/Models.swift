public import Foundation

/// A machine's `config` (Fly's `fly.MachineConfig`), kept whole.
///
/// fleetkeeper reads and sets a handful of fields (image, guest, env, init, services, mounts,
/// metadata, restart); every other field Fly returns is kept in ``fields`` and encoded back
/// unchanged, so a config read from Fly and sent again loses nothing.
public struct FlyMachineConfig: Sendable, Hashable, Codable {
  /// Every field, as Fly sent it or as set here.
  public var fields: [String: JSONValue]

  public init(fields: [String: JSONValue] = [:]) { self.fields = fields }

  public init(from decoder: any Decoder) throws {
    fields = try decoder.singleValueContainer().decode([String: JSONValue].self)
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(fields)
  }

  /// The image reference (`registry/repo:tag`).
  public var image: String? {
    get { fields["image"]?.stringValue }
    set { fields["image"] = newValue.map(JSONValue.string) }
  }

  /// `config.metadata`: string keys and values. fleetkeeper owns a machine by `fleet_user_id` here.
  public var metadata: [String: String] {
    get { fields["metadata"]?.objectValue?.compactMapValues(\.stringValue) ?? [:] }
    set { fields["metadata"] = newValue.isEmpty ? nil : .stringMap(newValue) }
  }

  /// `config.env`.
  public var env: [String: String] {
    get { fields["env"]?.objectValue?.compactMapValues(\.stringValue) ?? [:] }
    set { fields["env"] = newValue.isEmpty ? nil : .stringMap(newValue) }
  }

  /// `config.guest`.
  public var guest: FlyGuest? {
    get {
      guard let object = fields["guest"]?.objectValue else { return nil }
      return FlyGuest(
        cpuKind: object["cpu_kind"]?.stringValue ?? "shared", cpus: object["cpus"]?.intValue ?? 1,
        memoryMB: object["memory_mb"]?.intValue ?? 256)
    }
    set {
      guard let newValue else { fields["guest"] = nil; return }
      var object = fields["guest"]?.objectValue ?? [:]
      object["cpu_kind"] = .string(newValue.cpuKind)
      object["cpus"] = .int(Int64(newValue.cpus))
      object["memory_mb"] = .int(Int64(newValue.memoryMB))
      fields["guest"] = .object(object)
    }
  }

  /// `config.mounts`.
  public var mounts: [FlyMount] {
    get {
      (fields["mounts"]?.arrayValue ?? []).compactMap { value in
        guard let object = value.objectValue else { return nil }
        return FlyMount(volume: object["volume"]?.stringValue ?? "", path: object["path"]?.stringValue ?? "")
      }
    }
    set {
      fields["mounts"] =
        newValue.isEmpty
        ? nil : .array(newValue.map { .object(["volume": .string($0.volume), "path": .string($0.path)]) })
    }
  }

  /// `config.init.cmd`.
  public var initCommand: [String]? {
    get { fields["init"]?.objectValue?["cmd"]?.arrayValue?.compactMap(\.stringValue) }
    set {
      var object = fields["init"]?.objectValue ?? [:]
      object["cmd"] = newValue.map(JSONValue.stringList)
      fields["init"] = object.isEmpty ? nil : .object(object)
    }
  }

  /// `config.restart.policy` (`no`, `always`, `on-failure`).
  public var restartPolicy: String? {
    get { fields["restart"]?.objectValue?["policy"]?.stringValue }
    set {
      var object = fields["restart"]?.objectValue ?? [:]
      object["policy"] = newValue.map(JSONValue.string)
      fields["restart"] = object.isEmpty ? nil : .object(object)
    }
  }

  /// `config.services`, verbatim (fleetkeeper passes the template's services through).
  public var services: JSONValue? {
    get { fields["services"] }
    set { fields["services"] = newValue }
  }
}

/// `config.guest`: the VM size.
public struct FlyGuest: Sendable, Hashable {
  /// `shared` or `performance`.
  public var cpuKind: String
  public var cpus: Int
  public var memoryMB: Int
  public init(cpuKind: String = "shared", cpus: Int = 1, memoryMB: Int = 256) {
    self.cpuKind = cpuKind
    self.cpus = cpus
    self.memoryMB = memoryMB
  }
}

/// One entry of `config.mounts`.
public struct FlyMount: Sendable, Hashable {
  /// The volume id (`vol_…`).
  public var volume: String
  /// The absolute mount path in the machine.
  public var path: String
  public init(volume: String, path: String) {
    self.volume = volume
    self.path = path
  }
}

/// A Fly Machine as the API returns it (`Machine` in the OpenAPI spec).
public struct FlyMachine: Sendable, Hashable, Decodable {
  public var id: String
  public var name: String?
  /// `created`, `starting`, `started`, `stopping`, `stopped`, `suspended`, `failed`, `destroying`,
  /// `destroyed`, … (see <https://fly.io/docs/machines/machine-states/>).
  public var state: String
  public var region: String?
  public var instanceID: String?
  public var privateIP: String?
  /// Absent in `summary` lists and when the host is unreachable.
  public var config: FlyMachineConfig?
  public var createdAt: String?
  public var updatedAt: String?
  public var hostStatus: String?
  /// Set when the machine was created with a lease (`lease_ttl`).
  public var nonce: String?
  /// `version` (`instance_id` is its deprecated twin): unique per config version.
  public var versionField: String?
  /// Its health checks' statuses (absent in lists).
  public var checks: [FlyCheckStatus]?
  /// The machine's config version: pass it as an update's `current_version`.
  public var version: String? { versionField ?? instanceID }

  enum CodingKeys: String, CodingKey {
    case id, name, state, region, config, nonce
    case versionField = "version"
    case checks
    case instanceID = "instance_id"
    case privateIP = "private_ip"
    case createdAt = "created_at"
    case updatedAt = "updated_at"
    case hostStatus = "host_status"
  }

  public init(id: String, name: String? = nil, state: String, region: String? = nil, config: FlyMachineConfig? = nil) {
    self.id = id
    self.name = name
    self.state = state
    self.region = region
    self.config = config
  }
}

/// One health check's status (`CheckStatus`): `passing`, `warning`, `critical`.
public struct FlyCheckStatus: Sendable, Hashable, Decodable {
  public var name: String?
  public var status: String?
  public init(name: String? = nil, status: String? = nil) {
    self.name = name
    self.status = status
  }
}

/// A Fly Volume (`Volume` in the OpenAPI spec).
public struct FlyVolume: Sendable, Hashable, Decodable {
  public var id: String
  public var name: String
  /// `created` when usable; `scheduling_destroy`, `pending_destroy`, `destroying`, `destroyed`, …
  /// while it goes away (Fly keeps those in lists for a while).
  public var state: String
  public var region: String
  public var sizeGB: Int?
  public var encrypted: Bool?
  public var attachedMachineID: String?
  public var createdAt: String?
  /// The org-wide list's fields: the volume's app, when it last changed, how full it is.
  public var appName: String?
  public var updatedAt: String?
  public var bytesUsed: Int?
  public var bytesTotal: Int?
  /// Days each snapshot of it is kept, and whether Fly takes one daily.
  public var snapshotRetention: Int?
  public var autoBackupEnabled: Bool?

  enum CodingKeys: String, CodingKey {
    case id, name, state, region, encrypted
    case snapshotRetention = "snapshot_retention"
    case autoBackupEnabled = "auto_backup_enabled"
    case sizeGB = "size_gb"
    case attachedMachineID = "attached_machine_id"
    case createdAt = "created_at"
    case appName = "app_name"
    case updatedAt = "updated_at"
    case bytesUsed = "bytes_used"
    case bytesTotal = "bytes_total"
  }

  public init(
    id: String, name: String, state: String, region: String, sizeGB: Int? = nil, encrypted: Bool? = nil,
    attachedMachineID: String? = nil
  ) {
    self.id = id
    self.name = name
    self.state = state
    self.region = region
    self.sizeGB = sizeGB
    self.encrypted = encrypted
    self.attachedMachineID = attachedMachineID
  }
}

/// The body of `POST /v1/apps/{app}/machines` (`CreateMachineRequest`).
public struct CreateMachineRequest: Sendable, Hashable, Encodable {
  public var name: String?
  public var region: String?
  public var config: FlyMachineConfig
  /// Create without booting: the machine stays `created`.
  public var skipLaunch: Bool?
  /// The app secrets version the machine must see (the answer of the secrets write before it).
  public var minSecretsVersion: Int?

  enum CodingKeys: String, CodingKey {
    case name, region, config
    case skipLaunch = "skip_launch"
    case minSecretsVersion = "min_secrets_version"
  }

  public init(
    name: String? = nil, region: String? = nil, config: FlyMachineConfig, skipLaunch: Bool? = nil,
    minSecretsVersion: Int? = nil
  ) {
    self.name = name
    self.region = region
    self.config = config
    self.skipLaunch = skipLaunch
    self.minSecretsVersion = minSecretsVersion
  }
}

/// The body of `POST /v1/apps/{app}/machines/{id}` (`UpdateMachineRequest`): the **full** config
/// (Fly has no partial update); region and name cannot change.
public struct UpdateMachineRequest: Sendable, Hashable, Encodable {
  public var config: FlyMachineConfig
  /// Optimistic concurrency: the version the update was computed from. Fly answers 409 and changes
  /// nothing when the machine is no longer at it.
  public var currentVersion: String?
  /// Leave a stopped machine stopped (otherwise an update starts it).
  public var skipLaunch: Bool?
  /// The app secrets version the machine must see after the update.
  public var minSecretsVersion: Int?

  enum CodingKeys: String, CodingKey {
    case config
    case currentVersion = "current_version"
    case skipLaunch = "skip_launch"
    case minSecretsVersion = "min_secrets_version"
  }

  public init(
    config: FlyMachineConfig, currentVersion: String? = nil, skipLaunch: Bool? = nil, minSecretsVersion: Int? = nil
  ) {
    self.config = config
    self.currentVersion = currentVersion
    self.skipLaunch = skipLaunch
    self.minSecretsVersion = minSecretsVersion
  }
}

/// The answer of `PUT …/volumes/{id}/extend`.
public struct ExtendVolumeResponse: Sendable, Hashable, Decodable {
  public var volume: FlyVolume?
  /// The new size is seen only after the machine restarts.
  public var needsRestart: Bool?
  enum CodingKeys: String, CodingKey {
    case volume
    case needsRestart = "needs_restart"
  }
}

/// The body of `POST /v1/apps/{app}/volumes` (`CreateVolumeRequest`).
public struct CreateVolumeRequest: Sendable, Hashable, Encodable {
  public var name: String
  public var region: String
  public var sizeGB: Int
  public var encrypted: Bool
  /// Days each snapshot is kept (1 to 60; Fly's default 5), and whether Fly takes one daily.
  public var snapshotRetention: Int?
  public var autoBackupEnabled: Bool?
  /// Restore: the new volume holds this snapshot's data (at least the snapshot's volume size).
  public var snapshotID: String?

  enum CodingKeys: String, CodingKey {
    case name, region, encrypted
    case sizeGB = "size_gb"
    case snapshotRetention = "snapshot_retention"
    case autoBackupEnabled = "auto_backup_enabled"
    case snapshotID = "snapshot_id"
  }

  public init(
    name: String, region: String, sizeGB: Int, encrypted: Bool = true, snapshotRetention: Int? = nil,
    autoBackupEnabled: Bool? = nil, snapshotID: String? = nil
  ) {
    self.name = name
    self.region = region
    self.sizeGB = sizeGB
    self.encrypted = encrypted
    self.snapshotRetention = snapshotRetention
    self.autoBackupEnabled = autoBackupEnabled
    self.snapshotID = snapshotID
  }
}

/// One snapshot of a volume (`VolumeSnapshot`): `size` in bytes, `volume_size` in GB.
public struct FlySnapshot: Sendable, Hashable, Decodable {
  public var id: String
  public var size: Int?
  public var volumeSize: Int?
  public var digest: String?
  public var createdAt: String?
  public var status: String?
  public var retentionDays: Int?

  enum CodingKeys: String, CodingKey {
    case id, size, digest, status
    case volumeSize = "volume_size"
    case createdAt = "created_at"
    case retentionDays = "retention_days"
  }

  public init(
    id: String, size: Int? = nil, volumeSize: Int? = nil, createdAt: String? = nil, status: String? = nil,
    retentionDays: Int? = nil
  ) {
    self.id = id
    self.size = size
    self.volumeSize = volumeSize
    self.createdAt = createdAt
    self.status = status
    self.retentionDays = retentionDays
  }
}

/// One event of a machine (`GET …/machines/{id}/events`): an `exit` carries what ended the
/// process (`request.exit_event`).
public struct FlyMachineEvent: Sendable, Hashable, Decodable {
  public var id: String?
  public var type: String
  public var status: String?
  /// `user` or `flyd`.
  public var source: String?
  /// Unix milliseconds.
  public var timestamp: Int64?
  public var exit: Exit?

  public struct Exit: Sendable, Hashable, Decodable {
    public var exitCode: Int?
    public var oomKilled: Bool?
    public var requestedStop: Bool?
    public var restarting: Bool?
    public var signal: Int?
    enum CodingKeys: String, CodingKey {
      case signal, restarting
      case exitCode = "exit_code"
      case oomKilled = "oom_killed"
      case requestedStop = "requested_stop"
    }
    public init(
      exitCode: Int? = nil, oomKilled: Bool? = nil, requestedStop: Bool? = nil, restarting: Bool? = nil,
      signal: Int? = nil
    ) {
      self.exitCode = exitCode
      self.oomKilled = oomKilled
      self.requestedStop = requestedStop
      self.restarting = restarting
      self.signal = signal
    }
  }

  enum CodingKeys: String, CodingKey { case id, type, status, source, timestamp, request }
  struct Request: Decodable {
    var exitEvent: Exit?
    enum CodingKeys: String, CodingKey { case exitEvent = "exit_event" }
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    id = try c.decodeIfPresent(String.self, forKey: .id)
    type = try c.decodeIfPresent(String.self, forKey: .type) ?? ""
    status = try c.decodeIfPresent(String.self, forKey: .status)
    source = try c.decodeIfPresent(String.self, forKey: .source)
    timestamp = try c.decodeIfPresent(Int64.self, forKey: .timestamp)
    // `request` is free-form: anything but an exit event is ignored, never a decoding failure.
    exit = (try? c.decodeIfPresent(Request.self, forKey: .request))?.exitEvent
  }

  public init(type: String, status: String? = nil, source: String? = nil, timestamp: Int64? = nil, exit: Exit? = nil) {
    self.type = type
    self.status = status
    self.source = source
    self.timestamp = timestamp
    self.exit = exit
  }
}

/// The optional body of `POST …/stop` (`StopRequest`).
public struct StopMachineRequest: Sendable, Hashable, Encodable {
  /// `SIGTERM`, `SIGINT`, …
  public var signal: String?
  /// A Go duration string, e.g. `10s`.
  public var timeout: String?
  public init(signal: String? = nil, timeout: String? = nil) {
    self.signal = signal
    self.timeout = timeout
  }
}

/// The answer of `POST …/start`.
public struct StartMachineResponse: Sendable, Hashable, Decodable {
  public var previousState: String?
  public var migrated: Bool?
  enum CodingKeys: String, CodingKey {
    case previousState = "previous_state"
    case migrated
  }
}

/// The answer of `GET …/wait`.
public struct WaitMachineResponse: Sendable, Hashable, Decodable {
  public var ok: Bool?
  public var state: String?
}

/// A machine lease (`fly-machine-lease-nonce` guards mutations while it is held).
public struct FlyLease: Sendable, Hashable, Decodable {
  public var nonce: String
  public var expiresAt: Int?
  public var owner: String?
  public var description: String?
  public var version: String?
  enum CodingKeys: String, CodingKey {
    case nonce, owner, description, version
    case expiresAt = "expires_at"
  }
}

/// Filters of `GET /v1/apps/{app}/machines`.
public struct ListMachinesQuery: Sendable, Hashable {
  /// Also return destroyed machines.
  public var includeDeleted: Bool = false
  public var region: String?
  /// Only these states (`created`, `started`, `stopped`, `suspended`).
  public var states: [String] = []
  /// `metadata.<key>=<value>` filters, ANDed.
  public var metadata: [String: String] = [:]
  /// Omit config (and so metadata) from each machine.
  public var summary: Bool = false
  public init(
    includeDeleted: Bool = false, region: String? = nil, states: [String] = [], metadata: [String: String] = [:],
    summary: Bool = false
  ) {
    self.includeDeleted = includeDeleted
    self.region = region
    self.states = states
    self.metadata = metadata
    self.summary = summary
  }
}

// MARK: Apps

/// An app as `GET /v1/apps` and `GET /v1/apps/{app}` show it.
public struct FlyApp: Sendable, Hashable, Decodable {
  public var id: String?
  public var name: String
  public var status: String?
  public var machineCount: Int?
  public var volumeCount: Int?
  public var organization: Organization?

  public struct Organization: Sendable, Hashable, Decodable {
    public var slug: String?
  }

  enum CodingKeys: String, CodingKey {
    case id, name, status, organization
    case machineCount = "machine_count"
    case volumeCount = "volume_count"
  }

  public init(name: String, id: String? = nil, machineCount: Int? = nil, volumeCount: Int? = nil) {
    self.name = name
    self.id = id
    self.machineCount = machineCount
    self.volumeCount = volumeCount
  }
}

/// The answer of `GET /v1/apps?org_slug=…`.
public struct ListAppsResponse: Sendable, Hashable, Decodable {
  public var apps: [FlyApp]
  public var nextCursor: String?
  public var totalApps: Int?
  enum CodingKeys: String, CodingKey {
    case apps
    case nextCursor = "next_cursor"
    case totalApps = "total_apps"
  }
}

/// The body of `POST /v1/apps`. `idempotencyKey`: a create again with the same key and name
/// answers the first app instead of a false `name_taken` or a second app.
public struct CreateAppRequest: Sendable, Hashable, Encodable {
  public var name: String
  public var orgSlug: String
  public var network: String?
  public var idempotencyKey: String?
  enum CodingKeys: String, CodingKey {
    case name, network
    case orgSlug = "org_slug"
    case idempotencyKey = "idempotency_key"
  }
  public init(name: String, orgSlug: String, network: String? = nil, idempotencyKey: String? = nil) {
    self.name = name
    self.orgSlug = orgSlug
    self.network = network
    self.idempotencyKey = idempotencyKey
  }
}

/// The body of `POST /v1/apps/{app}/ip_assignments`.
public struct AssignIPRequest: Sendable, Hashable, Encodable {
  /// `shared_v4`, `v6` or `private_v6`.
  public var type: String
  public var region: String?
  public init(type: String, region: String? = nil) {
    self.type = type
    self.region = region
  }
}

/// One IP address of an app.
public struct FlyIPAssignment: Sendable, Hashable, Decodable {
  public var ip: String
  public var region: String?
  public var shared: Bool?
  enum CodingKeys: String, CodingKey { case ip, region, shared }
  public init(ip: String, region: String? = nil, shared: Bool? = nil) {
    self.ip = ip
    self.region = region
    self.shared = shared
  }
  /// Whether the address is public IPv4 (shared) rather than IPv6.
  public var isV4: Bool { !ip.contains(":") }
}

/// One app secret as listed: its name and a digest of its value, never the value.
public struct FlyAppSecret: Sendable, Hashable, Decodable {
  public var name: String
  public var digest: String?
}
