import FleetCore
import FleetRuntime
import FleetStore
import Foundation
import Synchronization
import Testing

@Suite struct SettingParserTests {
  @Test(arguments: [
    "inf", "-inf", "nan", "1e30", "1e-300", "0x10", "-5", "", " 30", "30s", "1.2.3", ".5", "5.",
    "99999999999999999999999",
  ])
  func garbageSecondsAreRefusedNamingTheSettingAndTheValue(_ text: String) {
    do {
      let value = try SettingParsers.number(text, name: "FLEET_DRAIN_SECONDS", bounds: 0...600)
      Issue.record("\(text) was taken as \(value)")
    } catch {
      #expect(error.field == "FLEET_DRAIN_SECONDS")
      #expect(error.value == text)
      #expect(error.description.contains("0 to 600"))
    }
  }

  @Test func boundsAreEnforced() throws {
    #expect(try SettingParsers.number("30", name: "FLEET_INTERVAL", bounds: 1...3600) == 30)
    #expect(try SettingParsers.number("0.5", name: "FLEET_WRITE_RATE", bounds: 0.01...100) == 0.5)
    #expect(throws: FieldError.self) { try SettingParsers.number("0", name: "FLEET_INTERVAL", bounds: 1...3600) }
    #expect(throws: FieldError.self) {
      try SettingParsers.number("0.001", name: "FLEET_WRITE_RATE", bounds: 0.01...100)
    }
    #expect(throws: FieldError.self) {
      try SettingParsers.integer("-1", name: "FLEET_MAX_DESTROYS", bounds: 0...10_000)
    }
    #expect(throws: FieldError.self) {
      try SettingParsers.integer("1e3", name: "FLEET_MAX_DESTROYS", bounds: 0...10_000)
    }
  }

  @Test func durations() throws {
    let bounds = 60.0...(3650 * 86_400)
    #expect(try SettingParsers.duration("7d", name: "R", bounds: bounds) == 7 * 86_400)
    #expect(try SettingParsers.duration("90", name: "R", bounds: bounds) == 90)
    #expect(try SettingParsers.duration("never", name: "R", bounds: bounds) == nil)
    for bad in ["0x10", "1e-300", "inf", "nan", "-1d", "10y", "99999d", "d", "0", "7"] {
      #expect(throws: FieldError.self, "\(bad)") { try SettingParsers.duration(bad, name: "R", bounds: bounds) }
    }
  }

  @Test func theTokenNeverTravelsInClear() throws {
    for good in [
      "https://api.machines.dev", "http://127.0.0.1:4280", "http://localhost:1", "http://[::1]:80/x",
      "http://sim.internal:4280",
    ] {
      try SettingParsers.apiBaseURL(good, name: "FLY_API_BASE_URL")
    }
    for bad in ["http://api.machines.dev", "http://127.0.0.1.evil.example", "ftp://x", "https://", "api.machines.dev"] {
      #expect(throws: FieldError.self, "\(bad)") { try SettingParsers.apiBaseURL(bad, name: "FLY_API_BASE_URL") }
    }
  }

  @Test func listenAddresses() throws {
    #expect(try SettingParsers.listen("127.0.0.1:9090", name: "FLEET_LISTEN") == ("127.0.0.1", 9090))
    // Bracketed IPv6 (Fly's private network): the host as a socket binds it. Before, "[::]" was
    // passed on with its brackets and the bind failed.
    #expect(try SettingParsers.listen("[::1]:0", name: "FLEET_LISTEN") == ("::1", 0))
    #expect(try SettingParsers.listen("[::]:9090", name: "FLEET_LISTEN") == ("::", 9090))
    for bad in [
      "127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1", ":80", "127.0.0.1:0x50", "h:65536", "::1:9090", "[::1:9090",
      "[]:80", "[[::]]:80",
    ] {
      #expect(throws: FieldError.self, "\(bad)") { try SettingParsers.listen(bad, name: "FLEET_LISTEN") }
    }
  }
}

@Suite struct LeaseKeeperTests {
  func store() async throws -> FleetStore {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("fk-lease-\(UUID().uuidString).sqlite3")
    let store = try FleetStore.sqlite(path: path.path, create: true)
    try await store.migrate()
    return store
  }

  /// Time moves only when the test says. The writer renews on its schedule; a standby never gets
  /// the lease while it does; a writer that regains it after losing it gets a new generation.
  @Test func renewedItIsNeverTakenLostAndRegainedItIsANewGeneration() async throws {
    let store = try await store()
    let time = Mutex(1_800_000_000.0)
    let clock: @Sendable () -> Double = { time.withLock { $0 } }
    func keeper(_ holder: String) -> LeaseKeeper {
      LeaseKeeper(lease: WriterLease(store: store, holder: holder, ttl: 3), monotonic: clock, wall: clock)
    }
    let a = keeper("a")
    let b = keeper("b")
    var status = await a.renew()
    #expect(status.held && status.generation == 1)
    for _ in 0..<10 {  // ten renewals, each a third of the lease apart
      time.withLock { $0 += 1 }
      #expect(await a.renew().held)
      #expect(await !b.renew().held)
    }
    #expect(a.status.generation == 1, "held without a gap: the same generation")
    // a stops renewing (a long stall); its lease runs out and b takes it.
    time.withLock { $0 += 2.5 }
    #expect(!a.status.held, "a stops acting before the lease can be taken")
    time.withLock { $0 += 1 }
    #expect(await b.renew().held)
    #expect(await !a.renew().held)
    // b dies; a takes it back: a new generation, so a reads its state again.
    time.withLock { $0 += 4 }
    status = await a.renew()
    #expect(status.held && status.generation == 2)
  }
}

@Suite(.serialized) struct LeaseRegainTests {
  /// A writer loses the lease between passes (another process takes it and acts: here, drops a
  /// `machines` row), then regains it: it reads its state again instead of trusting what it held,
  /// so the row is written back. Holding on to its old view, it would never notice the row gone.
  @Test func aRegainedLeaseReadsTheStateAgain() async throws {
    var settings = Harness.testSettings()
    settings.interval = 0.5
    settings.busyInterval = 0.5
    try await withHarness(settings: settings, loopback: true) { harness in
      try await harness.addUsers(2)
      await harness.converge()
      let lease = WriterLease(store: harness.store, holder: "writer-a", ttl: 3)
      let passes = Mutex(0)
      let standby = Mutex(false)
      let loop = ReconcileLoop(
        reconciler: harness.reconciler, store: harness.store, settings: settings, lease: lease,
        onStandby: { value in standby.withLock { $0 = value } },
        onPass: { _ in passes.withLock { $0 += 1 } })
      let task = Task { try await loop.run() }
      defer { task.cancel() }
      func waitFor(_ what: String, _ condition: () async throws -> Bool) async throws {
        let started = ContinuousClock.now
        while try await !condition() {
          guard ContinuousClock.now - started < .seconds(20) else {
            Issue.record("timed out waiting for \(what)")
            return
          }
          try await Task.sleep(for: .milliseconds(50))
        }
      }
      try await waitFor("a pass") { passes.withLock { $0 } > 0 }
      // Another writer takes the lease and, while holding it, drops u0's row.
      let other = WriterLease(store: harness.store, holder: "writer-b", ttl: 3)
      _ = try await harness.store.database.write([
        SQLStatement(
          "UPDATE fleet_controller SET value = json_object('holder', 'writer-b', 'expires_at', ?) WHERE key = 'writer_lease'",
          [.real(Date().timeIntervalSince1970 + 3)])
      ])
      try await waitFor("standby") { standby.withLock { $0 } }
      _ = try await harness.store.database.write([SQLStatement("DELETE FROM machines WHERE user_id = 'u0'")])
      try await other.release()
      // The first writer takes it back and writes the row again.
      try await waitFor("the row back") { try await harness.store.machineRows()["u0"] != nil }
      #expect(try await harness.store.machineRows()["u0"] != nil)
    }
  }
}

@Suite struct HostileLeaseRowTests {
  /// A lease row written by hand (an expiry in year 33658, a non-number, not JSON at all) never
  /// blocks a writer for longer than twice the lease's life.
  @Test(arguments: [
    #"{"holder":"ghost","expires_at":1e12}"#, #"{"holder":"ghost","expires_at":"never"}"#, "not json",
    #"{"holder":"ghost"}"#,
  ])
  func aHandWrittenLeaseRowIsTakenOver(_ value: String) async throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("fk-lease-\(UUID().uuidString).sqlite3")
    let store = try FleetStore.sqlite(path: path.path, create: true)
    try await store.migrate()
    _ = try await store.database.write([
      SQLStatement(
        "INSERT INTO fleet_controller (key, value, updated_at) VALUES ('writer_lease', ?, unixepoch())", [.text(value)])
    ])
    let lease = WriterLease(store: store, holder: "writer-a", ttl: 15)
    #expect(try await lease.acquire(now: Date().timeIntervalSince1970), "\(value) blocked the takeover")
  }

  /// A holder name with quotes, backslashes and control characters (a hostname is not ours to
  /// choose) is written as valid JSON and read back as it was.
  @Test func aHolderOfAnyTextIsWrittenAsValidJSON() async throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("fk-lease-\(UUID().uuidString).sqlite3")
    let store = try FleetStore.sqlite(path: path.path, create: true)
    try await store.migrate()
    let holder = "host \"a\"\\b\u{01}\n\t"
    let lease = WriterLease(store: store, holder: holder, ttl: 15)
    #expect(try await lease.acquire(now: Date().timeIntervalSince1970))
    #expect(try await lease.current()?.holder == holder)
    #expect(try await lease.acquire(now: Date().timeIntervalSince1970), "renewed by the same holder")
  }
}
