import AsyncHTTPClient
import FlyMachines
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Testing

/// A server on loopback that answers like a hostile or broken Fly: a cursor that never ends, a body
/// dripped at a few bytes a second, a `Retry-After` in year 9999 or of twenty digits, a machine
/// nested a million arrays deep. Each is a clear error or a bounded value, never a hang or a crash.
struct HostileServerTests {
  static let deep = 1_000_000

  static func router() -> Router<BasicRequestContext> {
    let router = Router()
    // Every page is empty, and its cursor is new: the list never ends by itself.
    router.get("/v1/apps/app/machines") { request, _ in
      let page = Int(request.uri.queryParameters["cursor"].map(String.init) ?? "0") ?? 0
      return Response(
        status: .ok, headers: [.contentType: "application/json", HTTPField.Name("fly-next-cursor")!: "\(page + 1)"],
        body: .init(byteBuffer: ByteBuffer(string: "[]")))
    }
    router.get("/v1/apps/app/volumes") { request, _ in
      let page = Int(request.uri.queryParameters["cursor"].map(String.init) ?? "0") ?? 0
      return Response(
        status: .ok, headers: [.contentType: "application/json", HTTPField.Name("fly-next-cursor")!: "\(page + 1)"],
        body: .init(byteBuffer: ByteBuffer(string: "[]")))
    }
    // Every page holds five machines whatever `limit` asked, and its cursor is new.
    router.get("/v1/apps/fat/machines") { request, _ in
      let page = Int(request.uri.queryParameters["cursor"].map(String.init) ?? "0") ?? 0
      let machines = (0..<5).map { #"{"id":"m\#(page)-\#($0)","state":"started","config":{}}"# }
      return Response(
        status: .ok, headers: [.contentType: "application/json", HTTPField.Name("fly-next-cursor")!: "\(page + 1)"],
        body: .init(byteBuffer: ByteBuffer(string: "[" + machines.joined(separator: ",") + "]")))
    }
    // 64 KB where the client accepts less.
    router.get("/v1/apps/app/machines/huge") { _, _ in
      Response(
        status: .ok, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(string: "[" + String(repeating: " ", count: 64 << 10) + "]")))
    }
    // 3 KB at 50 bytes a second.
    router.get("/v1/apps/app/machines/slow") { _, _ in
      Response(
        status: .ok, headers: [.contentType: "application/json"],
        body: ResponseBody { writer in
          for _ in 0..<60 {
            try await writer.write(ByteBuffer(string: String(repeating: " ", count: 50)))
            try await Task.sleep(for: .seconds(1))
          }
          try await writer.finish(nil)
        })
    }
    // A machine whose config nests a million arrays.
    router.get("/v1/apps/app/machines/deep") { _, _ in
      let body =
        #"{"id":"3d8d413b29d089","state":"started","region":"ord","config":{"x":"#
        + String(repeating: "[", count: deep) + String(repeating: "]", count: deep) + "}}"
      return Response(
        status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
    router.get("/v1/apps/deep/machines") { _, _ in
      let body =
        #"[{"id":"3d8d413b29d089","state":"started","region":"ord","config":{"metadata":{"fleet_user_id":"u1"},"x":"#
        + String(repeating: "[", count: deep) + String(repeating: "]", count: deep) + "}}]"
      return Response(
        status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
    router.get("/v1/apps/deep/volumes") { _, _ in
      let body =
        #"[{"id":"vol_1","name":"data","state":"created","region":"ord","x":"#
        + String(repeating: "[", count: deep) + String(repeating: "]", count: deep) + "}]"
      return Response(
        status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
    // Nested 200 deep: within JSONDecoder's own limit (512), beyond fleetkeeper's (128).
    router.get("/v1/apps/app/machines/deep200") { _, _ in
      let body =
        #"{"id":"3d8d413b29d089","state":"started","region":"ord","config":{"x":"#
        + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}}"
      return Response(
        status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
    // Nested 100 deep, brackets in strings besides: deep, but within the limit.
    router.get("/v1/apps/nested/machines") { _, _ in
      let body =
        #"[{"id":"3d8d413b29d089","state":"started","region":"ord","config":{"metadata":{"fleet_user_id":"u1"},"#
        + #""s":"[[[[{{{{\"[[","x":"# + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}}]"
      return Response(
        status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
    // The org-wide lists, each org a different way to be wrong (``orgEnvelopes``).
    for noun in ["machines", "volumes"] {
      router.get("/v1/orgs/:org/\(noun)") { _, context in
        let org = context.parameters.get("org") ?? ""
        let body = orgEnvelopes.first { $0.org == org }?.body(noun) ?? #"{"\#(noun)":[]}"#
        return Response(
          status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
      }
    }
    router.post("/v1/apps/app/machines/:id/start") { _, context in
      let index = Int(context.parameters.get("id")?.dropFirst(2) ?? "") ?? 0
      let header = retryAfters[index].header
      return Response(
        status: .tooManyRequests, headers: [.contentType: "application/json", .retryAfter: header],
        body: .init(byteBuffer: ByteBuffer(string: #"{"error":"rate limit exceeded"}"#)))
    }
    return router
  }

  func withHostileServer(_ body: (String) async throws -> Void) async throws {
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    var quiet = Logger(label: "hostile")
    quiet.logLevel = .critical
    let app = Application(
      router: Self.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)),
      onServerRunning: { channel in continuation.yield(channel.localAddress!.port!) }, logger: quiet)
    let task = Task { try await app.runService() }
    defer { task.cancel() }
    var iterator = ports.makeAsyncIterator()
    let port = await iterator.next()!
    try await body("http://127.0.0.1:\(port)")
  }

  func client(
    _ base: String, app: String = "app", timeout: Duration = .seconds(5), pageSize: Int = 1000,
    maxBodyBytes: Int = 64 << 20, maxPages: Int? = nil, maxItems: Int? = nil
  ) -> FlyClient {
    var configuration = FlyClientConfiguration(
      baseURL: base, appName: app, token: FlyToken("tok-hostile-1234"), requestTimeout: timeout, pageSize: pageSize,
      maxBodyBytes: maxBodyBytes, maxPages: maxPages, maxItems: maxItems)
    configuration.listPacing = nil  // these servers have no rate limit; the bounds are what is tested
    return FlyClient(configuration: configuration)
  }

  @Test func theDefaultBoundsHoldAMillionItems() {
    for pageSize in [1, 7, 100, 1000] {
      let configuration = FlyClientConfiguration(appName: "app", token: FlyToken("t"), pageSize: pageSize)
      #expect(configuration.maxPages == max(10, 1_000_000 / pageSize + 10))
      #expect(configuration.maxItems >= 1_000_000)
      #expect(configuration.maxPages * configuration.pageSize >= 1_000_000)
    }
  }

  @Test func aCursorThatNeverEndsIsBoundedPages() async throws {
    try await withHostileServer { base in
      // The default bound (1,010 pages at 1000 a page) ends the read too.
      let client = client(base)
      let error = await flyError {
        _ = try await client.listMachineListings(ownerKey: "fleet_user_id", previous: nil) { $0 }
      }
      #expect(error?.code == .invalidResponse)
      #expect(error?.message.contains("list exceeded 1010 pages") == true, "\(String(describing: error))")
      // Every list read, with a smaller bound to stay quick.
      let small = self.client(base, maxPages: 25)
      let reads: [@Sendable () async throws -> Void] = [
        { _ = try await small.listMachines() },
        { _ = try await small.listMachineListings(ownerKey: "fleet_user_id") },
        { _ = try await small.listVolumes() },
        { _ = try await small.listVolumes(previous: nil) { $0 } },
      ]
      for read in reads {
        let error = await flyError { try await read() }
        #expect(error?.code == .invalidResponse)
        #expect(error?.message.contains("list exceeded 25 pages") == true, "\(String(describing: error))")
      }
    }
  }

  @Test func pagesFatterThanTheirLimitAreBoundedItems() async throws {
    try await withHostileServer { base in
      // Five machines a page where two were asked: the pages bound alone would allow 5 × 1,000,010.
      let client = client(base, app: "fat", pageSize: 2, maxItems: 12)
      let listings = await flyError {
        _ = try await client.listMachineListings(ownerKey: "fleet_user_id", previous: nil) { $0 }
      }
      #expect(listings?.code == .invalidResponse)
      #expect(listings?.message.contains("list exceeded 12 items") == true, "\(String(describing: listings))")
      let whole = await flyError { _ = try await client.listMachines() }
      #expect(whole?.message.contains("list exceeded 12 items") == true, "\(String(describing: whole))")
    }
  }

  @Test func aBodyLargerThanTheLimitIsInvalid() async throws {
    try await withHostileServer { base in
      let error = await flyError { _ = try await client(base, maxBodyBytes: 1024).getMachine("huge") }
      #expect(error?.code == .invalidResponse && error?.status == 200, "\(String(describing: error))")
      #expect(error?.message == "body larger than 1024 bytes")
    }
  }

  /// Pages that each come quickly but never end are bounded in time too, not only in count.
  @Test func aListIsBoundedInTimeInAll() async throws {
    try await withHostileServer { base in
      var configuration = FlyClientConfiguration(
        baseURL: base, appName: "app", token: FlyToken("tok-hostile-1234"), maxPages: 10_000_000,
        maxItems: 10_000_000)
      configuration.listTimeout = .milliseconds(300)
      let client = FlyClient(configuration: configuration)
      let started = ContinuousClock.now
      let error = await flyError { _ = try await client.listMachines() }
      #expect(error?.code == .transport && error?.transportKind == .deadline, "\(String(describing: error))")
      #expect(error?.message.contains("in all") == true)
      #expect(ContinuousClock.now - started < .seconds(5))
    }
  }

  @Test func aBodyDrippedSlowlyEndsAtTheDeadline() async throws {
    try await withHostileServer { base in
      let started = ContinuousClock.now
      let error = await flyError { _ = try await client(base, timeout: .seconds(1)).getMachine("slow") }
      let took = ContinuousClock.now - started
      #expect(error?.code == .transport && error?.transportKind == .deadline, "\(String(describing: error))")
      #expect(error?.outcomeUnknown == true)
      #expect(took < .seconds(4), "the 1 s deadline covers the body: took \(took)")
    }
  }

  static let retryAfters: [(header: String, expected: Double?)] = [
    ("Fri, 31 Dec 9999 23:59:59 GMT", 300), ("99999999999999999999", 300), ("7", 7), ("-5", nil), ("inf", nil),
    ("nan", nil), ("Wed, 21 Oct 2015 07:28:00 GMT", 0), ("0x10", nil), ("1e9", nil),
    ("Sunday, 06-Nov-94 08:49:37 GMT", 0), ("Sun Nov  6 08:49:37 1994", 0), ("Fri Dec 31 23:59:59 9999", 300),
    ("1.5", 1.5), ("1.2.3", nil), (String(repeating: "9", count: 400), nil),
  ]

  @Test(arguments: 0..<retryAfters.count)
  func retryAfterIsBounded(index: Int) async throws {
    let (header, expected) = Self.retryAfters[index]
    try await withHostileServer { base in
      let error = await flyError { _ = try await client(base).startMachine("ra\(index)") }
      #expect(error?.code == .rateLimited)
      #expect(error?.retryAfter == expected, "\(header) → \(String(describing: error?.retryAfter))")
    }
  }

  @Test func aRetryAfterMadeInCodeIsBoundedToo() {
    func made(_ seconds: Double) -> Double? {
      FlyAPIError(code: .rateLimited, message: "", retryAfter: seconds, operation: "POST /x").retryAfter
    }
    #expect(made(.infinity) == nil)
    #expect(made(.nan) == nil)
    #expect(made(-1) == nil)
    #expect(made(1e30) == FlyAPIError.maxRetryAfter)
    #expect(made(2.5) == 2.5)
  }

  @Test func aMillionNestedArraysAreAnErrorNotACrash() async throws {
    try await withHostileServer { base in
      let deep = client(base, app: "deep")
      let reads: [@Sendable () async throws -> Void] = [
        { _ = try await deep.listMachineListings(ownerKey: "fleet_user_id", previous: nil) { $0 } },
        { _ = try await deep.listMachineListings(ownerKey: "fleet_user_id") },
        { _ = try await deep.listMachines() },
        { _ = try await deep.listVolumes(previous: nil) { $0 } },
        { _ = try await deep.listVolumes() },
        { _ = try await client(base).getMachine("deep") },
        { _ = try await client(base).getMachine("deep200") },
      ]
      for read in reads {
        let error = await flyError { try await read() }
        #expect(error?.code == .invalidResponse)
        #expect(error?.message.contains("nesting deeper than 128") == true, "\(String(describing: error))")
        #expect(error?.description.contains("tok-hostile-1234") == false)
      }
    }
  }

  @Test func nestingWithinTheLimitIsRead() async throws {
    try await withHostileServer { base in
      let client = client(base, app: "nested")
      let listings = try await client.listMachineListings(ownerKey: "fleet_user_id", previous: nil) { $0 }
      #expect(listings.items.map(\.owner) == ["u1"])
      let machines = try await client.listMachines()
      #expect(machines.map(\.id) == ["3d8d413b29d089"])
    }
  }

  /// `JSONValue` is a recursive parser of its own (any decoder): it refuses nesting deeper than
  /// ``JSONValue/maxDepth`` even where the decoder would go on to its own limit (512).
  @Test func jsonValueRefusesNestingDeeperThanItsLimit() throws {
    func nested(_ depth: Int) -> Data {
      Data((String(repeating: "[", count: depth) + "1" + String(repeating: "]", count: depth)).utf8)
    }
    #expect(throws: DecodingError.self) { try JSONDecoder().decode(JSONValue.self, from: nested(200)) }
    do {
      _ = try JSONDecoder().decode(FlyMachineConfig.self, from: Data(#"{"x":"#.utf8) + nested(200) + Data("}".utf8))
      Issue.record("decoded 200 levels")
    } catch DecodingError.dataCorrupted(let context) {
      #expect(context.debugDescription == "nesting deeper than 128")
    }
    var value = try JSONDecoder().decode(JSONValue.self, from: nested(JSONValue.maxDepth))
    for _ in 1..<JSONValue.maxDepth { value = value.arrayValue?.first ?? .null }
    #expect(value == .array([.int(1)]))
  }

  /// Org-wide list bodies that are not data: each must be an error naming what is wrong, never an
  /// empty or partial list taken for the fleet.
  static let orgEnvelopes: [(org: String, body: @Sendable (String) -> String, says: String)] = [
    ("bare-array", { _ in "[]" }, "expected"),
    ("no-items", { _ in #"{"next_cursor":null}"# }, "no "),
    ("null-items", { #"{"\#($0)":null}"# }, "no "),
    ("trailing", { #"{"\#($0)":[]} {"\#($0)":[]}"# }, "trailing bytes"),
    ("regions-not-array", { #"{"\#($0)":[],"error_regions":"ord"}"# }, "expected"),
    ("bad-item", { #"{"\#($0)":[{"id":5}]}"# }, "expected"),
    ("items-not-array", { #"{"\#($0)":{"id":"m1"}}"# }, "expected"),
    ("cursor-loop", { #"{"\#($0)":[],"next_cursor":"c1"}"# }, "repeated a cursor"),
    (
      "deep",
      {
        #"{"\#($0)":[{"id":"x","x":"# + String(repeating: "[", count: deep) + String(repeating: "]", count: deep)
          + "}]}"
      },
      "deep"
    ),
    ("truncated", { #"{"\#($0)":[{"id":"m1","state":"sta"# }, "unterminated"),
  ]

  @Test(arguments: 0..<orgEnvelopes.count)
  func aMalformedOrgListIsAnErrorNotAList(index: Int) async throws {
    let envelope = Self.orgEnvelopes[index]
    try await withHostileServer { base in
      let client = client(base)
      let machines = await flyError {
        _ = try await client.listOrgMachines(
          org: envelope.org, updatedAfter: nil, includeDeleted: false, ownerKey: "fleet_user_id"
        ) { $0 }
      }
      let volumes = await flyError {
        _ = try await client.listOrgVolumes(org: envelope.org, updatedAfter: nil, includeDeleted: false) { $0 }
      }
      for error in [machines, volumes] {
        #expect(error?.code == .invalidResponse, "\(envelope.org): \(String(describing: error))")
        #expect(
          error?.message.lowercased().contains(envelope.says) == true, "\(envelope.org): \(String(describing: error))")
        #expect(error?.message.contains("tok-hostile") == false)
      }
    }
  }

  @Test func aWellFormedOrgListIsRead() async throws {
    try await withHostileServer { base in
      let page = try await client(base).listOrgVolumes(org: "fine", updatedAfter: nil, includeDeleted: false) { $0 }
      #expect(page.items.isEmpty && page.errorRegions.isEmpty)
    }
  }
}
