import FleetCore
public import FleetStore
public import Logging
public import ServiceLifecycle
import Synchronization

/// `fleetkeeper run`'s loop as a Service: a pass, then wait for the next one (the full interval
/// when the fleet is quiet, the busy interval while something is under way), cut short by any edit
/// of the desired state (a version counter polled every second). On graceful shutdown it starts no
/// new pass or action and lets those in flight finish.
public struct ReconcileLoop: Service {
  public let reconciler: Reconciler
  public let store: FleetStore
  public let settings: ReconcilerSettings
  private let clock: any FleetClock
  private let logger: Logger
  private let onPass: @Sendable (PassReport) async -> Void
  private let onStandby: @Sendable (Bool) async -> Void
  /// The writer lease; nil runs without one (a single process).
  public let lease: WriterLease?
  /// Cuts the wait short (the dashboard API's `ensure`): the next pass starts within 0.1 s.
  public let waker: LoopWaker?

  public init(
    reconciler: Reconciler, store: FleetStore, settings: ReconcilerSettings, clock: any FleetClock = SystemFleetClock(),
    logger: Logger = Logger(label: "fleetkeeper"), lease: WriterLease? = nil, waker: LoopWaker? = nil,
    onStandby: @escaping @Sendable (Bool) async -> Void = { _ in },
    onPass: @escaping @Sendable (PassReport) async -> Void = { _ in }
  ) {
    self.lease = lease
    self.waker = waker
    self.onStandby = onStandby
    self.reconciler = reconciler
    self.store = store
    self.settings = settings
    self.clock = clock
    self.logger = logger
    self.onPass = onPass
  }

  /// How long to wait after a pass: short while anything is under way or failing.
  public static func nextDelay(after report: PassReport, settings: ReconcilerSettings, failedInARow: Int = 0)
    -> Double
  {
    if report.outcome == .couldNotRun {
      return couldNotRunDelay(failedInARow: failedInARow, settings: settings)
    }
    if report.busy { return settings.busyInterval }
    // Reading the org's lists incrementally costs two small requests: the fleet is watched every
    // `watchInterval`, so a drift is seen in seconds, not at the next full interval.
    if case .org = settings.observe { return min(settings.interval, settings.watchInterval) }
    return settings.interval
  }

  /// The database or Fly could not be read: try again soon, then back off (doubling from the busy
  /// interval up to the full interval), so an outage is not hammered every 2 s.
  public static func couldNotRunDelay(failedInARow: Int, settings: ReconcilerSettings) -> Double {
    var policy = RetryPolicy()
    policy.base = settings.busyInterval
    policy.cap = max(settings.busyInterval, settings.interval)
    return policy.ceiling(attempt: max(1, failedInARow))
  }

  public func run() async throws {
    guard let lease else {
      try await loop(keeper: nil)
      logger.info("loop stopped")
      return
    }
    // The lease is renewed for as long as the loop runs, between passes too; losing it stops new
    // actions at once.
    let keeper = LeaseKeeper(lease: lease)
    let reconciler = self.reconciler
    // Every call that changes Fly, and every write of a pass, first asks whether the lease is
    // still held: a writer that stalled past it stops before another can have taken it.
    await reconciler.setWriterCheck { keeper.status.held }
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { [clock, logger, onStandby] in
        await keeper.keepRenewing(sleep: { try await clock.sleep(seconds: $0) }) {
          logger.error("writer lease lost: no new action until it is held again")
          await reconciler.drain()
          await onStandby(true)
        }
      }
      defer { group.cancelAll() }
      try await loop(keeper: keeper)
    }
    await keeper.release()
    logger.info("loop stopped")
  }

  private func loop(keeper: LeaseKeeper?) async throws {
    var version = try? await store.desiredVersion()
    var failedInARow = 0
    var generation = 0
    while !Task.isCancelled && !Task.isShuttingDownGracefully {
      // One writer: pass only while holding the lease; otherwise stand by and try again.
      if let keeper {
        var status = keeper.status
        if !status.held { status = await keeper.renew() }
        if !status.held, let error = status.error {
          // The database cannot even be asked who writes: nothing is done; say so (alerts, metrics).
          let now = clock.now()
          var report = PassReport(outcome: .couldNotRun, startedAt: now)
          report.error = error
          report.findings = [DriftFinding(kind: .desiredUnreadable, message: error)]
          logger.error("database unreadable: nothing done", metadata: ["error": "\(error)"])
          await onPass(report)
          failedInARow += 1
          let delay = Self.couldNotRunDelay(failedInARow: failedInARow, settings: settings)
          try? await cancelWhenGracefulShutdown { [clock] in try await clock.sleep(seconds: delay) }
          continue
        }
        if !status.held {
          await onStandby(true)
          try? await cancelWhenGracefulShutdown { [clock] in try await clock.sleep(seconds: keeper.standbyPoll) }
          continue
        }
        await onStandby(false)
        if status.generation != generation {
          // Gained (again): another process may have acted meanwhile. Everything held between
          // passes is read again from the database and Fly.
          if generation != 0 { logger.info("writer lease regained: state read again") }
          await reconciler.invalidate()
          generation = status.generation
        }
      }
      let reconciler = self.reconciler
      await reconciler.resume()
      let report = await withGracefulShutdownHandler {
        await reconciler.pass()
      } onGracefulShutdown: {
        Task { await reconciler.drain() }
      }
      await onPass(report)
      // A planned pass over a big fleet frees tens of MB of transient maps; glibc keeps freed heap
      // unless asked. Giving it back keeps the resident set near what the controller holds
      // between passes (a small Fly VM counts RSS, not heap).
      if !report.steady && report.observedMachines + report.observedVolumes >= 5000 { MemoryTuning.trim() }
      if Task.isShuttingDownGracefully { break }
      failedInARow = report.outcome == .couldNotRun ? failedInARow + 1 : 0
      let delay = Self.nextDelay(after: report, settings: settings, failedInARow: failedInARow)
      let seen = version
      do {
        version = try await cancelWhenGracefulShutdown { [settings, clock, store, logger, waker] in
          var waited = 0.0
          var sincePoll = 0.0
          while waited < delay {
            // Woken (an `ensure`): a pass now. The version is read every poll interval.
            let step = min(waker == nil ? settings.desiredPollInterval : 0.1, delay - waited)
            try await clock.sleep(seconds: step)
            waited += step
            sincePoll += step
            if waker?.take() == true {
              logger.debug("woken: passing now")
              return (try? await store.desiredVersion()) ?? seen
            }
            guard sincePoll >= settings.desiredPollInterval || waited >= delay else { continue }
            sincePoll = 0
            if let now = try? await store.desiredVersion(), now != seen {
              logger.debug("desired state edited: passing now")
              return now
            }
          }
          return seen
        }
      } catch {
        break
      }
    }
  }
}

/// Wakes the loop between passes (the dashboard API's `ensure`: a user is waiting).
public final class LoopWaker: Sendable {
  private let flag = Mutex(false)
  public init() {}
  public func wake() { flag.withLock { $0 = true } }
  func take() -> Bool {
    flag.withLock {
      let woken = $0
      $0 = false
      return woken
    }
  }
}
