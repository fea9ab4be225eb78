/// How the simulated Fly behaves. Defaults follow `API-FACTS.md`; every duration is in seconds.
public struct SimulatorConfiguration: Sendable, Codable {
  /// The one app the simulator serves.
  public var appName: String
  /// The token a request must carry (`Bearer T` or `FlyV1 T`).
  public var token: String
  /// The organization the app belongs to (`GET /v1/orgs/{org}/machines|volumes`).
  public var orgSlug: String = "personal"
  /// Whether the per-app lists page with `limit`/`fly-next-cursor` (one version of Fly's spec);
  /// false answers every item in one response whatever `limit` says (another version).
  public var paginatesAppLists: Bool = true

  /// How long a created machine sits in `created` (image pull) before it starts booting; a start
  /// in that window answers 412.
  public var createSettle: Double = 1.0
  /// `starting` → `started`.
  public var startDuration: Double = 0.5
  /// `stopping` → `stopped`.
  public var stopDuration: Double = 0.5
  /// After `stopped`, a start answers 412 `machine still active, refusing to start` this long.
  public var stillActiveAfterStop: Double = 0.4
  /// An update's `updating` (image pull, reboot) before the machine starts on its new version, or
  /// before a silent revert puts the old one back.
  public var updateDuration: Double = 2.0
  /// `destroying` → `destroyed`.
  public var destroyDuration: Double = 0.5
  /// How long a destroyed machine still shows in the default list and answers GET.
  public var destroyedLinger: Double = 30
  /// How long a destroyed machine keeps its volume bound (Fly: up to ~60 s).
  public var volumeDetachDelay: Double = 5
  /// How long a deleted volume stays listed (in state `pending_destroy`, then `destroyed`).
  public var deletedVolumeLinger: Double = 60
  /// Replica lag: a new machine or volume is missing from lists this long after its create.
  public var listLag: Double = 0.5
  /// Refuse a machine create whose name is taken (409), which Fly's docs suggest but do not promise.
  public var enforceMachineNames: Bool = false

  /// Rate limits (per action and per machine or app, as Fly documents): sustained per second and burst.
  public var mutationRate: Double = 1
  public var mutationBurst: Double = 3
  public var getRate: Double = 5
  public var getBurst: Double = 10
  /// Lists are actions like any other: 1 request a second, bursts of 3 (an independent simulator
  /// with these limits showed a 10k-user walk never finishing when a 429 restarted it).
  public var listRate: Double = 1
  public var listBurst: Double = 3
  /// App deletions in any one minute (Fly: 100); more answer 429. Not lifted by `rateLimitsEnabled`.
  public var appDeletesPerMinute: Int = 100
  /// Turn every rate limit off (benchmarks of our own cost).
  public var rateLimitsEnabled: Bool = true
  /// Send `Retry-After` on a rate-limit 429 (Fly's behaviour is undocumented).
  public var rateLimitRetryAfter: Bool = false

  /// The largest `limit` a list accepts.
  public var maxPageSize: Int = 1000
  /// The seed of the simulator's randomness (ids, fault draws), for reproducible runs.
  public var seed: UInt64 = 0x5EED
  /// Regions the simulator knows (others answer 400).
  public var regions: [String] = [
    "ams", "arn", "atl", "bog", "bom", "bos", "cdg", "den", "dfw", "ewr", "eze", "fra", "gdl", "gig", "gru",
    "hkg", "iad", "jnb", "lax", "lhr", "mad", "mia", "nrt", "ord", "otp", "phx", "qro", "scl", "sea", "sin",
    "sjc", "syd", "waw", "yul", "yyz",
  ]

  public init(appName: String = "fleet-users", token: String = "sim-token") {
    self.appName = appName
    self.token = token
  }

  /// Instant transitions, no lag, no rate limits: for tests that are not about timing.
  public static func fast(appName: String = "fleet-users", token: String = "sim-token") -> SimulatorConfiguration {
    var configuration = SimulatorConfiguration(appName: appName, token: token)
    configuration.createSettle = 0
    configuration.startDuration = 0
    configuration.stopDuration = 0
    configuration.stillActiveAfterStop = 0
    configuration.destroyDuration = 0
    configuration.updateDuration = 0
    configuration.volumeDetachDelay = 0
    configuration.listLag = 0
    configuration.rateLimitsEnabled = false
    return configuration
  }
}

/// Faults to inject, by flags at start and at runtime through `POST /_sim/faults`. Rates are
/// probabilities per request in 0…1.
public struct SimulatorFaults: Sendable, Codable, Equatable {
  /// Answer `errorStatus` (default 503) without doing anything.
  public var errorRate: Double = 0
  public var errorStatus: Int = 503
  /// Answer 429 regardless of the buckets.
  public var rateLimitRate: Double = 0
  /// With a 429 from `rateLimitRate`, send `Retry-After: N` (seconds); nil sends none.
  public var retryAfterSeconds: Int? = nil
  /// Added to every answer, in milliseconds.
  public var latencyMs: Int = 0
  /// Answer 408 `deadline_exceeded` without doing anything.
  public var timeoutRate: Double = 0
  /// Do the mutation, then answer 502 with an HTML page as a proxy that lost the upstream answer.
  public var lostResponseRate: Double = 0
  /// Answer the next machine list (and the next volume list) with `[]`, once.
  public var emptyListOnce: Bool = false
  /// Answer every machine list (every volume list) with `[]` while set: Fly's lists lying for as
  /// long as a test wants. GETs by id still answer the truth.
  public var emptyMachineLists: Bool = false
  public var emptyVolumeLists: Bool = false
  /// Ignore `metadata.*` filters on the machine list (a Fly-compatible server that does not
  /// implement them): every machine comes back.
  public var ignoreMetadataFilter: Bool = false
  /// The next this many GETs by id (of any machine or volume) answer 404 `not found` (a brief 404,
  /// as right after a create or during an incident), then the truth again.
  public var notFoundGets: Int = 0
  /// Cut list pages short (even to zero items) while more remain, as Fly may.
  public var shortPageRate: Double = 0
  /// Regions out of capacity: creates there answer `insufficient_capacity`.
  public var capacityExhaustedRegions: [String] = []
  /// Images Fly refuses to pull: creates answer 400.
  public var badImages: [String] = []
  /// Images an update cannot pull: Fly accepts the update, then silently reverts to the previous
  /// version (the machine shows `started`, on the old version).
  public var revertImages: [String] = []
  /// This share of updates (0…1) silently reverts, whatever the image.
  public var revertRate: Double = 0
  /// Images whose process dies at boot: a machine started on them ends `failed`.
  public var crashImages: [String] = []
  /// Limit the faults to mutations (POST, DELETE); lists and GETs then answer normally.
  public var mutationsOnly: Bool = false
  /// Regions the org-wide lists cannot read: their items are left out and the answer names them
  /// in `error_regions` (a partial answer).
  public var errorRegions: [String] = []
  /// Late items in the org-wide lists: this share of updates (0…1) shows only `lateSeconds` after
  /// it happened, with its true `updated_at`.
  public var lateRate: Double = 0
  public var lateSeconds: Double = 0
  /// The org-wide lists ignore `updated_after` (a server that does not filter): older items come back.
  public var ignoreUpdatedAfter: Bool = false
  /// Endpoints (`POST /volumes`, `DELETE /machines/{id}`, …) whose successful answers are held for
  /// `holdSeconds` after the change is made: a test kills the caller while it waits.
  public var holdAnswers: [String] = []
  /// Endpoints that answer 503 without doing anything, every time (an endpoint down).
  public var failEndpoints: [String] = []
  /// Endpoints whose successful answers are lost every time (done, then a 502 from the proxy).
  public var loseAnswers: [String] = []
  public var holdSeconds: Double = 3600

  public init() {}

  enum CodingKeys: String, CodingKey {
    case errorRate = "error_rate", errorStatus = "error_status", rateLimitRate = "rate_limit_rate"
    case retryAfterSeconds = "retry_after_seconds", latencyMs = "latency_ms", timeoutRate = "timeout_rate"
    case lostResponseRate = "lost_response_rate", emptyListOnce = "empty_list_once"
    case emptyMachineLists = "empty_machine_lists", emptyVolumeLists = "empty_volume_lists"
    case ignoreMetadataFilter = "ignore_metadata_filter", notFoundGets = "not_found_gets"
    case shortPageRate = "short_page_rate", capacityExhaustedRegions = "capacity_exhausted_regions"
    case badImages = "bad_images", mutationsOnly = "mutations_only"
    case errorRegions = "error_regions", lateRate = "late_rate", lateSeconds = "late_seconds"
    case ignoreUpdatedAfter = "ignore_updated_after"
    case revertImages = "revert_images", revertRate = "revert_rate", crashImages = "crash_images"
    case holdAnswers = "hold_answers", holdSeconds = "hold_seconds", failEndpoints = "fail_endpoints"
    case loseAnswers = "lose_answers"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = SimulatorFaults.defaults
    errorRate = try c.decodeIfPresent(Double.self, forKey: .errorRate) ?? d.errorRate
    errorStatus = try c.decodeIfPresent(Int.self, forKey: .errorStatus) ?? d.errorStatus
    rateLimitRate = try c.decodeIfPresent(Double.self, forKey: .rateLimitRate) ?? d.rateLimitRate
    retryAfterSeconds = try c.decodeIfPresent(Int.self, forKey: .retryAfterSeconds)
    latencyMs = try c.decodeIfPresent(Int.self, forKey: .latencyMs) ?? d.latencyMs
    timeoutRate = try c.decodeIfPresent(Double.self, forKey: .timeoutRate) ?? d.timeoutRate
    lostResponseRate = try c.decodeIfPresent(Double.self, forKey: .lostResponseRate) ?? d.lostResponseRate
    emptyListOnce = try c.decodeIfPresent(Bool.self, forKey: .emptyListOnce) ?? d.emptyListOnce
    emptyMachineLists = try c.decodeIfPresent(Bool.self, forKey: .emptyMachineLists) ?? false
    emptyVolumeLists = try c.decodeIfPresent(Bool.self, forKey: .emptyVolumeLists) ?? false
    ignoreMetadataFilter = try c.decodeIfPresent(Bool.self, forKey: .ignoreMetadataFilter) ?? false
    notFoundGets = try c.decodeIfPresent(Int.self, forKey: .notFoundGets) ?? 0
    shortPageRate = try c.decodeIfPresent(Double.self, forKey: .shortPageRate) ?? d.shortPageRate
    capacityExhaustedRegions = try c.decodeIfPresent([String].self, forKey: .capacityExhaustedRegions) ?? []
    errorRegions = try c.decodeIfPresent([String].self, forKey: .errorRegions) ?? []
    lateRate = try c.decodeIfPresent(Double.self, forKey: .lateRate) ?? 0
    lateSeconds = try c.decodeIfPresent(Double.self, forKey: .lateSeconds) ?? 0
    ignoreUpdatedAfter = try c.decodeIfPresent(Bool.self, forKey: .ignoreUpdatedAfter) ?? false
    badImages = try c.decodeIfPresent([String].self, forKey: .badImages) ?? []
    revertImages = try c.decodeIfPresent([String].self, forKey: .revertImages) ?? []
    revertRate = try c.decodeIfPresent(Double.self, forKey: .revertRate) ?? 0
    crashImages = try c.decodeIfPresent([String].self, forKey: .crashImages) ?? []
    mutationsOnly = try c.decodeIfPresent(Bool.self, forKey: .mutationsOnly) ?? d.mutationsOnly
    holdAnswers = try c.decodeIfPresent([String].self, forKey: .holdAnswers) ?? []
    failEndpoints = try c.decodeIfPresent([String].self, forKey: .failEndpoints) ?? []
    loseAnswers = try c.decodeIfPresent([String].self, forKey: .loseAnswers) ?? []
    holdSeconds = try c.decodeIfPresent(Double.self, forKey: .holdSeconds) ?? d.holdSeconds
  }

  private static let defaults = SimulatorFaults()
}
