/// A create fleetkeeper issued whose resource the lists do not show yet.
public struct PendingCreate: Sendable, Hashable, Codable {
  public enum Kind: String, Sendable, Hashable, Codable {
    case volume = "create_volume"
    case machine = "create_machine"
  }
  public var kind: Kind
  /// Unix seconds when the create was sent.
  public var since: Double
  /// The id Fly answered with, when it answered.
  public var resourceID: String?
  /// The answer was lost (5xx, 408, transport): the resource may exist. Look before creating again.
  public var outcomeUnknown: Bool

  public init(kind: Kind, since: Double, resourceID: String? = nil, outcomeUnknown: Bool = false) {
    self.kind = kind
    self.since = since
    self.resourceID = resourceID
    self.outcomeUnknown = outcomeUnknown
  }
}

/// What the controller remembers about one user across passes and restarts.
public struct UserMemory: Sendable, Hashable, Codable {
  public var pending: PendingCreate?
  /// Consecutive failed attempts (reset on success).
  public var failures: Int = 0
  /// Unix seconds before which no action is tried for this user.
  public var backoffUntil: Double?
  /// The last failure, redacted.
  public var lastError: String?
  /// The volume fleetkeeper created or adopted for this user.
  public var volumeID: String?
  /// Unix seconds since the user's volume has been without a machine while the user is absent.
  public var volumeReleasedAt: Double?
  /// Unix seconds since the machine has been in a transitional state.
  public var transitionalSince: Double?

  public init() {}
  public var isEmpty: Bool { self == UserMemory() }
}

/// What the destroy and list guards remember (persisted, so a restart does not forget a trip).
public struct GuardMemory: Sendable, Hashable, Codable {
  /// Users desired running or stopped at the last pass that was allowed to destroy.
  public var desiredBaseline: Int?
  /// Our machines and volumes the last trusted list showed.
  public var observedMachines: Int?
  public var observedVolumes: Int?
  /// Consecutive passes whose lists looked suspect with the same counts.
  public var suspectPasses: Int = 0
  public init() {}
}
