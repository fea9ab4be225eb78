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
      return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
    router.get("/v1/apps/deep/machines") { _, _ in
      let body =
        #"[{"id":"3d8d413b29d089","state":"started","region":"ord","config":{"metadata":{"fleet_user_id":"u1"},"x":"#
        + String(repeating: "[", count: deep) + String(repeating: "]", count: deep) + "}}]"
      return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
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

  func client(_ base: String, app: String = "app", timeout: Duration = .seconds(5)) -> FlyClient {
    FlyClient(
      configuration: FlyClientConfiguration(
        baseURL: base, appName: app, token: FlyToken("tok-hostile-1234"), requestTimeout: timeout, pageSize: 1000))
  }

  @Test func aCursorThatNeverEndsIsBoundedPages() async throws {
    try await withHostileServer { base in
      let client = client(base)
      let error = await flyError {
        _ = try await client.listMachineListings(ownerKey: "fleet_user_id", previous: nil) { $0 }
      }
      #expect(error?.code == .invalidResponse)
      #expect(error?.message.contains("exceeded \(client.configuration.maxPages) pages") == true, "\(String(describing: error))")
      let whole = await flyError { _ = try await client.listMachines() }
      #expect(whole?.code == .invalidResponse)
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

  @Test func aMillionNestedArraysAreAnErrorNotACrash() async throws {
    try await withHostileServer { base in
      let listed = await flyError {
        _ = try await client(base, app: "deep").listMachineListings(ownerKey: "fleet_user_id", previous: nil) { $0 }
      }
      #expect(listed?.code == .invalidResponse)
      #expect(listed?.message.contains("nesting deeper than") == true, "\(String(describing: listed))")
      let read = await flyError { _ = try await client(base).getMachine("deep") }
      #expect(read?.code == .invalidResponse, "\(String(describing: read))")
    }
  }
}
