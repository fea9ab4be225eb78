public import FleetStore
import Foundation
import HTTPTypes
public import Hummingbird
public import Logging
import NIOCore
import Synchronization

/// What `/readyz` answers from.
public final class Readiness: Sendable {
  private struct State {
    var lastGoodPass: Double?
    var standby = false
  }
  private let state = Mutex(State())
  public init() {}
  public func passSucceeded(at time: Double) { state.withLock { $0.lastGoodPass = time } }
  public func setStandby(_ value: Bool) { state.withLock { $0.standby = value } }
  public var lastGoodPass: Double? { state.withLock { $0.lastGoodPass } }
  public var isStandby: Bool { state.withLock { $0.standby } }
}

/// The HTTP endpoints for Fly's checks and a metrics scraper: `/healthz` (alive), `/readyz` (a
/// full pass succeeded within three intervals and the database is readable; a standby waiting for
/// the writer lease is ready too), `/metrics` (Prometheus text format).
public enum OpsServer {
  public static func application(
    host: String, port: Int, store: FleetStore, metrics: FleetMetrics, readiness: Readiness, interval: Double,
    clock: any FleetClock = SystemFleetClock(), logger: Logger, api: DashboardAPI? = nil, pages: Pages? = nil,
    onListening: @escaping @Sendable (Int) -> Void = { _ in }
  ) -> some ApplicationProtocol {
    let router = Router()
    if let pages {
      // The operator's pages (their own token): HTML, no script at all.
      let handler: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
        var query: [String: String] = [:]
        for (key, value) in request.uri.queryParameters where query[String(key)] == nil {
          query[String(key)] = String(value)
        }
        let page = await pages.handle(path: request.uri.path, query: query, cookieHeader: request.headers[.cookie])
        var headers: HTTPFields = [
          .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
          .contentSecurityPolicy:
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ]
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        for (name, value) in page.headers {
          if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return Response(
          status: HTTPResponse.Status(code: page.status), headers: headers,
          body: .init(byteBuffer: ByteBuffer(string: page.body)))
      }
      router.get("/ui", use: handler)
      router.get("/ui/**", use: handler)
    }
    if let api {
      // The dashboard's API (its own bearer token): `/v1/…`.
      for method in [HTTPRequest.Method.get, .put, .post] {
        router.on("/v1/**", method: method) { request, _ -> Response in
          var request = request
          let body = try await request.collectBody(upTo: 64 << 10)
          var query: [String: String] = [:]
          for (key, value) in request.uri.queryParameters where query[String(key)] == nil {
            query[String(key)] = String(value)
          }
          let answer = await api.handle(
            method: request.method.rawValue, path: request.uri.path, query: query,
            authorization: request.headers[.authorization], body: Data(body.readableBytesView))
          var headers: HTTPFields = [.contentType: "application/json"]
          if answer.status == 401 { headers[.wwwAuthenticate] = "Bearer" }
          return Response(
            status: HTTPResponse.Status(code: answer.status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: answer.body)))
        }
      }
    }
    router.get("/healthz") { _, _ in "ok\n" }
    router.get("/readyz") { _, _ -> Response in
      let (ready, reason) = await check(store: store, readiness: readiness, interval: interval, now: clock.now())
      return Response(
        status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
        body: .init(byteBuffer: ByteBuffer(string: reason + "\n")))
    }
    router.get("/metrics") { _, _ -> Response in
      Response(
        status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
    }
    var quiet = logger
    quiet.logLevel = .warning
    return Application(
      router: router, configuration: .init(address: .hostname(host, port: port), serverName: "fleetkeeper"),
      onServerRunning: { channel in onListening(channel.localAddress?.port ?? port) }, logger: quiet)
  }

  /// Readiness, with the reason for the body.
  public static func check(store: FleetStore, readiness: Readiness, interval: Double, now: Double) async -> (
    Bool, String
  ) {
    do {
      _ = try await store.desiredVersion()
    } catch {
      return (false, "database unreadable: \(error.code.rawValue)")
    }
    if readiness.isStandby { return (true, "standby: another process holds the writer lease") }
    guard let last = readiness.lastGoodPass else { return (false, "no pass has succeeded yet") }
    if now - last > 3 * interval { return (false, "last good pass \(Int(now - last)) s ago (more than 3 intervals)") }
    return (true, "ready")
  }
}
