import AsyncHTTPClient
import FleetAlerts
import FleetCore
import FleetStore
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// Against a real Prometheus Alertmanager (Debian's `prometheus-alertmanager`), started on loopback.
@Suite(.serialized) struct AlertmanagerTests {
  static let binary = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"].first {
    FileManager.default.isExecutableFile(atPath: $0)
  }

  func freePort() -> Int { Int.random(in: 20_000...40_000) }

  func get(_ url: String) async throws -> (Int, String) {
    let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
    let body = try await response.body.collect(upTo: 1 << 20)
    return (Int(response.status.code), String(buffer: body))
  }

  @Test(.enabled(if: binary != nil, "prometheus-alertmanager is not installed (.ci/run installs it)"))
  func alertAppearsAndResolves() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fk-am-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let config = dir.appendingPathComponent("am.yml")
    try "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n".write(
      to: config, atomically: true, encoding: .utf8)
    let port = freePort()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: Self.binary!)
    process.arguments = [
      "--config.file=\(config.path)", "--storage.path=\(dir.path)", "--web.listen-address=127.0.0.1:\(port)",
      "--cluster.listen-address=",
    ]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    defer { process.terminate() }
    let base = "http://127.0.0.1:\(port)"
    var ready = false
    for _ in 0..<100 where !ready {
      ready = ((try? await get(base + "/-/ready"))?.0 == 200)
      if !ready { try await Task.sleep(for: .milliseconds(100)) }
    }
    try #require(ready)

    let store = try await freshStore()
    let alerter = Alerter(
      store: store, app: "users-app", receivers: [AlertReceiver(key: "env:0", kind: .alertmanager, target: base)])
    let sender = AlertSender(alerter: alerter, store: store)
    let finding = DriftFinding(kind: .destroyGuardTripped, message: "the desired set shrank")
    let now = Date().timeIntervalSince1970
    await alerter.process([finding], now: now)
    await sender.sweep(now: now)
    let (_, firing) = try await get(base + "/api/v2/alerts")
    #expect(firing.contains("destroy_guard_tripped"))
    #expect(firing.contains(#""service":"fleetkeeper""#))

    await alerter.process([], now: now + 1)
    await sender.sweep(now: now + 1)
    var resolved = false
    for _ in 0..<50 where !resolved {
      let (_, active) = try await get(base + "/api/v2/alerts?active=true")
      resolved = !active.contains("destroy_guard_tripped")
      if !resolved { try await Task.sleep(for: .milliseconds(100)) }
    }
    #expect(resolved)
    #expect(try await store.outbox().allSatisfy { $0.status == "delivered" })
  }
}
