public import FleetCore

/// One pass: what it saw, planned and did.
public struct PassReport: Sendable {
  public enum Outcome: String, Sendable {
    case ok
    /// Some action failed (retried on later passes).
    case actionsFailed = "actions_failed"
    /// The pass could not run: desired state unreadable, or Fly unreachable. Nothing was done.
    case couldNotRun = "could_not_run"
  }
  public var outcome: Outcome
  public var plan: Plan?
  public var results: [ActionResult] = []
  /// Machines whose events were read (their `updated_at` moved).
  public var eventsRead = 0
  public var findings: [DriftFinding] = []
  /// Users desired running or stopped (not those marked absent).
  public var desiredUsers = 0
  public var observedMachines = 0
  public var observedVolumes = 0
  public var listsTrusted = true
  /// Items a full org-wide read found different from the incremental view, this pass.
  public var resyncCorrections = 0
  /// Regions Fly's org-wide lists could not read this pass (`error_regions`).
  public var unreadableRegions: Set<String> = []
  public var startedAt: Double
  public var duration: Double = 0
  public var error: String?
  /// The observation, for `status`.
  public var observation: Observation?
  public var desired: DesiredSnapshot?
  /// The desired version, the list pages and the states were all as after the previous pass, which
  /// found nothing to do and nothing waiting on a clock: its empty plan stands, not computed again.
  public var steady = false
  /// The template's rollout after this pass (nil: none ever).
  public var rollout: RolloutState?

  public init(outcome: Outcome, startedAt: Double) {
    self.outcome = outcome
    self.startedAt = startedAt
  }

  /// The fleet is as desired, as far as this pass saw: it ran, its lists were trusted, and it had
  /// nothing to do and nothing waiting.
  public var converged: Bool {
    outcome == .ok && listsTrusted && plan?.actions.isEmpty == true && plan?.waiting.isEmpty == true
  }

  /// Users with an action planned or something under way (a create settling, a backoff).
  public var unsettledUsers: Set<String> {
    Set(plan?.actions.map(\.userID) ?? []).union(plan?.waiting ?? [])
  }

  /// Something is under way or failing: the loop comes back after the busy interval, not the full one.
  public var busy: Bool {
    outcome != .ok || !results.isEmpty || !(plan?.waiting.isEmpty ?? true) || !(plan?.actions.isEmpty ?? true)
  }
}
