public import FleetCore
import Foundation

/// Everything the loop needs to know, built once from flags and environment, passed down.
public struct ReconcilerSettings: Sendable {
  /// The planner's knobs (retention, guards, grace periods).
  public var planner = PlannerSettings()
  public var retry = RetryPolicy()
  public var writeLimits = WriteBudget.Limits()
  /// Calls to Fly in flight at once.
  public var concurrency = 8
  /// The periodic full pass (`FLEET_INTERVAL`).
  public var interval: Double = 30
  /// The next pass when something is under way (creates settling, backoffs expiring).
  public var busyInterval: Double = 2
  /// How often the desired-state version is polled (edits acted on within this).
  public var desiredPollInterval: Double = 1
  /// How many times a suspect (empty or sharply shorter) list is read again, and the pause between.
  public var suspectRereads = 2
  public var suspectRereadDelay: Double = 1
  /// Consecutive suspect passes with identical counts before the shorter lists are believed.
  public var suspectPassesBeforeTrust = 3
  /// How long the writer lease lasts without renewal (`FLEET_LEASE_SECONDS`): renewed every third
  /// of it; a standby takes over within it (plus a 2 s poll) after the writer dies.
  public var leaseSeconds: Double = 15
  /// The largest disagreement between the controller's clock and Fly's `Date` header before
  /// retention deletes are held (`clock_skew`).
  public var maxClockSkew: Double = 300
  /// How long after a read by id showed a resource the list left out it is read again.
  public var verifyInterval: Double = 15
  /// Seconds of rate-limited work one pass takes on per kind of create: the rest waits for the
  /// next pass, so volume creates and machine creates pipeline instead of running one after the other.
  public var passWorkSeconds: Double = 5
  /// Secret values by name, for template env values `$NAME` (the controller's own environment).
  public var secrets = SecretValues()
  /// How Fly is read (`FLEET_OBSERVE`): the app's own lists whole every pass, or the org-wide
  /// lists, whole at start and every ``resyncInterval``, incrementally in between.
  public var observe: ObserveMode = .app
  /// A full org-wide read this often (`FLEET_RESYNC`).
  public var resyncInterval: Double = 600
  /// Incremental reads ask for items updated after the newest seen minus this (`FLEET_OBSERVE_OVERLAP`):
  /// Fly's org lists are "a point in time" and late items arrive with their true `updated_at`.
  public var observeOverlap: Double = 60
  /// With the org-wide lists, a quiet fleet is read this often (two small requests a pass).
  public var watchInterval: Double = 2

  public init() {}
}

/// Where the observer reads Fly's machines and volumes.
public enum ObserveMode: Sendable, Equatable {
  /// `GET /v1/apps/{app}/machines` and `/volumes`, every page, every pass.
  case app
  /// `GET /v1/orgs/{org}/machines` and `/volumes`, filtered to `app` by `app_name`.
  case org(slug: String, app: String)
}

/// Values a template may name (`$NAME`), resolved when a machine's config is built. Never printed:
/// its description, debug description and mirror show only how many there are, so a settings
/// struct logged whole (a service library describing its services at debug level) reveals nothing.
public struct SecretValues: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable,
  ExpressibleByDictionaryLiteral
{
  private let values: [String: String]

  public init(_ values: [String: String] = [:]) { self.values = values }
  public init(dictionaryLiteral elements: (String, String)...) {
    self.values = Dictionary(elements, uniquingKeysWith: { _, last in last })
  }

  public subscript(name: String) -> String? { values[name] }
  public var count: Int { values.count }

  public var description: String { "<\(values.count) secret value(s), redacted>" }
  public var debugDescription: String { description }
  public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
