/// A state as Fly names it. A struct, not an enum: Fly adds states, and one the controller does
/// not know is carried through (and shown), not refused.
public protocol FlyStateName: RawRepresentable<String>, Sendable, Hashable, ExpressibleByStringLiteral,
  CustomStringConvertible
{
  init(rawValue: String)
}

extension FlyStateName {
  public init(_ rawValue: String) { self.init(rawValue: rawValue) }
  public init(stringLiteral value: String) { self.init(rawValue: value) }
  public var description: String { rawValue }
}

/// A Fly machine's state.
public struct MachineState: FlyStateName {
  public var rawValue: String
  public init(rawValue: String) { self.rawValue = rawValue }

  public static let created: MachineState = "created"
  public static let starting: MachineState = "starting"
  public static let started: MachineState = "started"
  public static let stopping: MachineState = "stopping"
  public static let stopped: MachineState = "stopped"
  public static let suspending: MachineState = "suspending"
  public static let suspended: MachineState = "suspended"
  public static let restarting: MachineState = "restarting"
  public static let updating: MachineState = "updating"
  public static let replacing: MachineState = "replacing"
  public static let creating: MachineState = "creating"
  public static let launchFailed: MachineState = "launch_failed"
  public static let failed: MachineState = "failed"
  public static let destroying: MachineState = "destroying"
  public static let destroyed: MachineState = "destroyed"

  /// On its way out or gone: counts as no machine.
  public var isGone: Bool { self == .destroyed || self == .destroying }
  /// Settles on its own: wait, do not act.
  public var isTransitional: Bool { Self.transitional.contains(self) }
  /// Running or about to.
  public var isUp: Bool { self == .started || self == .starting }

  static let transitional: Set<MachineState> = [
    .creating, .starting, .stopping, .restarting, .suspending, .updating, .replacing, .launchFailed,
  ]
}

/// A Fly volume's state.
public struct VolumeState: FlyStateName {
  public var rawValue: String
  public init(rawValue: String) { self.rawValue = rawValue }

  public static let created: VolumeState = "created"
  public static let schedulingDestroy: VolumeState = "scheduling_destroy"
  public static let pendingDestroy: VolumeState = "pending_destroy"
  public static let destroying: VolumeState = "destroying"
  public static let destroyed: VolumeState = "destroyed"
  public static let waitingForDetach: VolumeState = "waiting_for_detach"
  public static let forkCleanup: VolumeState = "fork_cleanup"

  /// Fly lists volumes on their way out for a while; only a volume in another state is usable.
  public var isGone: Bool { Self.gone.contains(self) }

  static let gone: Set<VolumeState> = [
    .schedulingDestroy, .pendingDestroy, .destroying, .destroyed, .waitingForDetach, .forkCleanup,
  ]
}
