import AsyncHTTPClient
import FleetCore
import FleetRuntime
import FleetStore
import FlyMachines
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Counts the statements a store runs (the "database queries" of a pass).
final class CountingDatabase: SQLDatabase {
  let inner: any SQLDatabase
  let count = Mutex(0)
  init(_ inner: any SQLDatabase) { self.inner = inner }
  var displayName: String { inner.displayName }
  func read(_ statements: [SQLStatement]) async throws(StoreError) -> [SQLRows] {
    count.withLock { $0 += statements.count }
    return try await inner.read(statements)
  }
  func write(_ statements: [SQLStatement]) async throws(StoreError) -> [SQLRows] {
    count.withLock { $0 += statements.count }
    return try await inner.write(statements)
  }
  func writeMany(_ sql: [String], arguments: [[[SQLValue]]]) async throws(StoreError) {
    count.withLock { $0 += arguments.reduce(0) { $0 + $1.count } }
    try await inner.writeMany(sql, arguments: arguments)
  }
  func executeScript(_ sql: String) async throws(StoreError) {
    count.withLock { $0 += 1 }
    try await inner.executeScript(sql)
  }
}

/// `fleetkeeper bench scale`: fleets of 1k, 10k, 100k users against the simulator in its own
/// process (so CPU and memory figures are the controller's alone), rate limits off.
public enum ScaleBench {
  public struct Row: Sendable {
    public var users: Int
    public var plannerMs: Double
    public var idleWallMs: Double
    public var idleCPUMs: Double
    public var idleRequests: Int
    public var idleQueries: Int
    /// The quiet pass after that one: nothing changed, so the plan is not computed again.
    public var steadyWallMs: Double
    public var steadyCPUMs: Double
    public var steadyRequests: Int
    public var steadyQueries: Int
    public var steadyTaken: Bool
    public var driftWallMs: Double
    public var driftCPUMs: Double
    public var driftRequests: Int
    public var naiveWallMs: Double
    public var naiveRequests: Int
    public var peakRSSMB: Double
    /// A restart: a new `fleetkeeper reconcile` process's one pass over the adopted fleet (it loads
    /// every row and every user's memory from the database, then plans).
    public var restartExit: Int32
    public var restartCPUMs: Double
    public var restartPeakRSSMB: Double
  }

  static func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    return cpuSeconds(usage)
  }

  /// User plus system time of a resource usage.
  static func cpuSeconds(_ usage: rusage) -> Double {
    Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
      + Double(usage.ru_stime.tv_usec) / 1e6
  }

  static func ms(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
  }

  /// The resident set now (from /proc/self/statm), for the per-stage lines.
  static func currentRSSMB() -> Double {
    MemoryTuning.trim()
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let pages = text.split(separator: " ").dropFirst().first.flatMap { Double($0) } ?? 0
    return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
  }

  static func peakRSSMB() -> Double {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_maxrss) / 1024
  }

  /// Runs `binary arguments` as a child process (output discarded) and returns its exit status,
  /// CPU seconds and peak resident set, from `wait4` on that child alone.
  static func child(_ binary: String, _ arguments: [String], environment: [String: String]) -> (
    status: Int32, cpuSeconds: Double, peakRSSMB: Double
  ) {
    var env = ProcessInfo.processInfo.environment
    for (key, value) in environment { env[key] = value }
    let argv = ([binary] + arguments).map { strdup($0) } + [nil]
    let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    var pid = pid_t()
    guard posix_spawn(&pid, binary, &actions, nil, argv, envp) == 0 else { return (-1, 0, 0) }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) == -1 && errno == EINTR {}
    return ((status >> 8) & 0xff, cpuSeconds(usage), Double(usage.ru_maxrss) / 1024)
  }

  /// `fleetkeeper sim` in its own process (so CPU and memory figures are the controller's alone) on
  /// a free port, app `bench`, token `bench-token`; returns it and its base URL. The caller stops it.
  static func startSimulator(binary: String, _ flags: [String]) throws -> (process: Process, base: String) {
    let sim = Process()
    sim.executableURL = URL(fileURLWithPath: binary)
    sim.arguments = ["sim", "--port", "0", "--app", "bench", "--token", "bench-token"] + flags
    let out = Pipe()
    sim.standardOutput = out
    sim.standardError = FileHandle.nullDevice
    try sim.run()
    var text = ""
    while !text.contains("FLY_API_BASE_URL=") {
      let data = out.fileHandleForReading.availableData
      if data.isEmpty { break }
      text += String(decoding: data, as: UTF8.self)
    }
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("FLY_API_BASE_URL=") }) else {
      sim.terminate()
      throw CancellationError()
    }
    return (sim, String(line.dropFirst("FLY_API_BASE_URL=".count)))
  }

  /// A control call to the simulator (`/_sim/seed`, `/_sim/drift`).
  static func post(_ url: String, _ body: String) async throws {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.body = .bytes(ByteBuffer(string: body))
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
    _ = try await response.body.collect(upTo: 1 << 20)
  }

  public static func run(users: Int, binary: String, naive: Bool = true, say: @Sendable (String) -> Void) async throws
    -> Row
  {
    let (sim, base) = try startSimulator(binary: binary, ["--fast"])
    defer { sim.terminate() }
    try await post(base + "/_sim/seed", #"{"users":\#(users),"prefix":"b","volume_prefix":"fk_","region":"ord"}"#)

    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "fleetkeeper-scale-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let databasePath = folder.appendingPathComponent("fleet.sqlite3").path
    let counting = CountingDatabase(try SQLiteDatabase(path: databasePath, create: true))
    let store = FleetStore(database: counting)
    try await store.migrate()
    try await store.importUsers((0..<users).map { UserInput(userID: "b\($0)", region: "ord") })
    say("  \(users): imported, RSS \(Int(currentRSSMB())) MB (peak \(Int(peakRSSMB())) MB)")
    let requests = Mutex(0)
    var configuration = FlyClientConfiguration(
      baseURL: base, appName: "bench", token: FlyToken("bench-token"), requestTimeout: .seconds(120))
    configuration.listPacing = nil  // the simulator's limits are off: this measures our own cost
    let client = FlyClient(
      configuration: configuration,
      observer: { _ in requests.withLock { $0 += 1 } })
    var settings = ReconcilerSettings()
    settings.writeLimits = .unlimited
    settings.planner.maxDestroysPerPass = 0
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    let reconciler = Reconciler(client: client, store: store, settings: settings, logger: logger)

    // Warm-up: adopts the seeded fleet (writes every machines row once). Reports are not kept
    // (a report holds the plan's copy of the memory map): the figures are the controller's own.
    do {
      let first = await reconciler.pass()
      say(
        "  \(users): warm-up pass \(Int(first.duration * 1000)) ms, \(first.results.count) actions, outcome \(first.outcome.rawValue)"
      )
    }
    say("  \(users): after warm-up RSS \(Int(currentRSSMB())) MB (peak \(Int(peakRSSMB())) MB)")

    /// One pass, with what it cost: wall, process CPU, API requests, database statements.
    func measuredPass(keep: Bool = false) async -> (
      report: PassReport, wallMs: Double, cpuMs: Double, requests: Int, queries: Int
    ) {
      let (cpu, queries, before, clock) = (
        cpuSeconds(), counting.count.withLock { $0 }, requests.withLock { $0 }, ContinuousClock.now
      )
      var report = await reconciler.pass()
      // A report's plan (its memory map), lists and snapshot outlive the pass only in the bench:
      // they are dropped, so that the peak is the controller's own.
      report.plan = nil
      if !keep { (report.observation, report.desired) = (nil, nil) }
      return (
        report, ms(ContinuousClock.now - clock), (cpuSeconds() - cpu) * 1000, requests.withLock { $0 } - before,
        counting.count.withLock { $0 } - queries
      )
    }

    // A pass with nothing to do.
    var idleCost = await measuredPass(keep: true)
    let driftedIDs = idleCost.report.observation!.machines.prefix(max(1, users / 100)).map(\.id)
    (idleCost.report.observation, idleCost.report.desired) = (nil, nil)

    say("  \(users): quiet pass done, RSS \(Int(currentRSSMB())) MB (peak \(Int(peakRSSMB())) MB)")
    // The next quiet pass: nothing changed since a pass with nothing to do.
    let steady = await measuredPass()

    // 1% drift: machines stopped behind our back.
    for id in driftedIDs {
      try await post(base + "/_sim/drift", #"{"op":"stop_machine","machine_id":"\#(id)"}"#)
    }
    let drift = await measuredPass(keep: true)
    let last = drift.report
    say("  \(users): drift pass started \(drift.report.results.filter { $0.outcome == .ok }.count) machines")

    // The controller's own peak, before what only the bench does (a
    // second read of both lists, the planner run alone, the naive controller).
    let controllerPeak = peakRSSMB()
    // A restart: another process, the same database and fleet, one pass.
    let restart = await offloaded {
      child(
        binary, ["reconcile"],
        environment: [
          "FLY_API_BASE_URL": base, "FLY_APP_NAME": "bench", "FLY_API_TOKEN": "bench-token",
          "FLEET_DATABASE": databasePath,
        ])
    }
    say(
      "  \(users): restart (a new process, one pass): exit \(restart.status), \(Int(restart.cpuSeconds * 1000)) ms CPU, peak RSS \(Int(restart.peakRSSMB)) MB"
    )
    // The two lists alone.
    var cpu = cpuSeconds()
    _ = try await client.listMachineListings(ownerKey: FleetNames.userMetadataKey)
    let machinesCPU = cpuSeconds() - cpu
    cpu = cpuSeconds()
    _ = try await client.listVolumes()
    let volumesCPU = cpuSeconds() - cpu
    say("  \(users): machine list \(Int(machinesCPU * 1000)) ms CPU, volume list \(Int(volumesCPU * 1000)) ms CPU")

    // The planner alone, on the same inputs.
    let input = Planner.Input(desired: last.desired!, observed: last.observation!, now: Date().timeIntervalSince1970)
    var clock = ContinuousClock.now
    for _ in 0..<5 { _ = Planner.plan(input) }
    let planner = (ContinuousClock.now - clock) / 5

    // A naive per-user controller: one GET per user per pass, as an imperative provisioner checks status.
    var naiveWall = Duration.zero
    var naiveRequests = 0
    if naive {
      let ids = last.observation!.machines.map(\.id)
      let before = requests.withLock { $0 }
      clock = ContinuousClock.now
      let width = max(1, (ids.count + 15) / 16)
      await withTaskGroup(of: Void.self) { group in
        for start in stride(from: 0, to: ids.count, by: width) {
          let chunk = Array(ids[start..<min(ids.count, start + width)])
          group.addTask {
            for id in chunk { _ = try? await client.getMachine(id) }
          }
        }
      }
      naiveWall = ContinuousClock.now - clock
      naiveRequests = requests.withLock { $0 } - before
    }
    return Row(
      users: users, plannerMs: ms(planner), idleWallMs: idleCost.wallMs, idleCPUMs: idleCost.cpuMs,
      idleRequests: idleCost.requests, idleQueries: idleCost.queries, steadyWallMs: steady.wallMs,
      steadyCPUMs: steady.cpuMs, steadyRequests: steady.requests, steadyQueries: steady.queries,
      steadyTaken: steady.report.steady, driftWallMs: drift.wallMs, driftCPUMs: drift.cpuMs,
      driftRequests: drift.requests,
      naiveWallMs: ms(naiveWall), naiveRequests: naiveRequests, peakRSSMB: controllerPeak,
      restartExit: restart.status, restartCPUMs: restart.cpuSeconds * 1000, restartPeakRSSMB: restart.peakRSSMB)
  }
}

/// `fleetkeeper bench planner`: the planner alone on a synthetic quiet fleet, in process (no
/// simulator, no database), so an allocation profiler sees only the planner:
/// `heaptrack fleetkeeper bench planner --users 10000 --repeat 20`.
public enum PlannerBench {
  static func input(users: Int) -> Planner.Input {
    var desired: [String: DesiredMachine] = [:]
    var machines: [ObservedMachine] = []
    var volumes: [ObservedVolume] = []
    var memory: UserMap<UserState> = [:]
    machines.reserveCapacity(users)
    volumes.reserveCapacity(users)
    // Every machine on a version the controller made, running the template: the planner compares
    // each one's recorded config (the cost a quiet fleet pays since issue 15).
    let template = MachineTemplate(image: "registry.fly.io/agent:1")
    let digest = ConfigDigest.template(template, salt: 0)
    for index in 0..<users {
      let user = "b\(index)"
      let version = ConfigDigest.version("01JV\(index)")
      desired[user] = DesiredMachine(userID: user, state: .running, region: "ord")
      let machineID = String(format: "%014x", 0x1000_0000 + index)
      let volumeID = "vol_" + String(format: "%016x", 0x2000_0000 + index)
      machines.append(
        ObservedMachine(
          id: machineID, name: "fk-\(user)", state: "started", region: "ord", userID: user, volumeID: volumeID,
          privateIP: "fdaa:0:1:a7b:\(index % 65536):1:1:2", createdAt: 1_700_000_000, updatedAt: 1_700_000_000,
          versionHash: version, overviewHash: ConfigDigest.overview(template)))
      volumes.append(
        ObservedVolume(
          id: volumeID, name: FleetNames.volumeName(forUser: user), state: "created", region: "ord",
          attachedMachineID: machineID, sizeGB: 1, createdAt: 1_700_000_000))
      var state = UserState()
      state.volumeID = volumeID
      state.applied = AppliedConfig(template: digest, overrides: 0, version: version)
      memory[user] = state
    }
    var guardState = GuardState()
    guardState.desiredBaseline = users
    return Planner.Input(
      desired: DesiredSnapshot(template: template, machines: desired),
      observed: Observation(machines: machines, volumes: volumes), states: memory, guardState: guardState,
      now: 1_800_000_000)
  }

  /// Mean milliseconds per plan over `repeat` plans; the plans must be empty (a quiet fleet).
  public static func run(users: Int, repeat count: Int) -> (meanMs: Double, actions: Int) {
    let input = input(users: users)
    var actions = 0
    let start = ContinuousClock.now
    for _ in 0..<count { actions += Planner.plan(input).actions.count }
    return (ScaleBench.ms(ContinuousClock.now - start) / Double(max(1, count)), actions)
  }
}

/// Runs a blocking call on its own thread (not one of the cooperative pool's few).
func offloaded<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
  await withCheckedContinuation { continuation in
    Thread { continuation.resume(returning: body()) }.start()
  }
}
