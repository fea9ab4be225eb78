import AsyncHTTPClient
import FlyMachines
import FlySimulator
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Testing

/// Every error code the client can raise, produced by a real HTTP answer over loopback.
struct ClientErrorTests {
  @Test func unauthorizedOnAWrongToken() async throws {
    let simulator = FlySimulator(configuration: .fast(appName: "app", token: "right"))
    let running = try await SimulatorServer.start(simulator)
    defer { Task { await running.stop() } }
    let client = FlyClient(
      configuration: FlyClientConfiguration(baseURL: running.baseURL, appName: "app", token: FlyToken("wrong-secret")))
    let error = await flyError { _ = try await client.listMachines() }
    #expect(error?.code == .unauthorized)
    #expect(error?.status == 401)
    #expect(error?.message == "Authenticate: token validation error")
    #expect(error?.requestID?.count == 26)
    #expect(!"\(error!)".contains("wrong-secret"))
  }

  @Test func notFoundBadRequestPreconditionCapacity() async throws {
    var configuration = SimulatorConfiguration.fast(appName: "app", token: "tok")
    configuration.createSettle = 30
    try await withSimulator(configuration) { client, simulator in
      #expect(await flyError { _ = try await client.getMachine("00000000000000") }?.code == .notFound)
      #expect(await flyError { _ = try await client.getVolume("vol_nope") }?.code == .notFound)
      var bad = machineConfig()
      bad.fields["guest"] = .object(["cpus": .string("two")])
      let badRequest = await flyError {
        _ = try await client.createMachine(CreateMachineRequest(region: "ord", config: bad))
      }
      #expect(badRequest?.code == .badRequest)
      #expect(badRequest?.status == 400)
      #expect(badRequest?.isRetryable == false)

      let machine = try await client.createMachine(CreateMachineRequest(region: "ord", config: machineConfig()))
      let precondition = await flyError { try await client.startMachine(machine.id) }
      #expect(precondition?.code == .precondition)
      #expect(precondition?.message == "failed_precondition: unable to start machine from current state: 'created'")

      var faults = SimulatorFaults()
      faults.capacityExhaustedRegions = ["ams"]
      simulator.setFaults(faults)
      let capacity = await flyError {
        _ = try await client.createMachine(CreateMachineRequest(region: "ams", config: machineConfig()))
      }
      #expect(capacity?.code == .capacity)
      #expect(capacity?.flyStatus == "insufficient_capacity")
    }
  }

  @Test func rateLimitedWithAndWithoutRetryAfter() async throws {
    var faults = SimulatorFaults()
    faults.rateLimitRate = 1
    faults.retryAfterSeconds = 7
    try await withSimulator(faults: faults) { client, simulator in
      // One request (a walk waits a 429 out and goes on: `ListLimitsTests`).
      let error = await flyError { _ = try await client.listMachinesPage() }
      #expect(error?.code == .rateLimited)
      #expect(error?.retryAfter == 7)
      #expect(error?.isRetryable == true)
      faults.retryAfterSeconds = nil
      simulator.setFaults(faults)
      #expect(await flyError { _ = try await client.listMachinesPage() }?.retryAfter == nil)
    }
  }

  @Test func serverTimeoutAndLostResponsesAreOutcomeUnknown() async throws {
    try await withSimulator { client, simulator in
      var faults = SimulatorFaults()
      faults.errorRate = 1
      faults.errorStatus = 500
      simulator.setFaults(faults)
      let server = await flyError {
        _ = try await client.createVolume(CreateVolumeRequest(name: "a", region: "ord", sizeGB: 1))
      }
      #expect(server?.code == .server)
      #expect(server?.outcomeUnknown == true)

      faults = SimulatorFaults()
      faults.timeoutRate = 1
      simulator.setFaults(faults)
      let timeout = await flyError {
        _ = try await client.createVolume(CreateVolumeRequest(name: "a", region: "ord", sizeGB: 1))
      }
      #expect(timeout?.code == .timeout)
      #expect(timeout?.outcomeUnknown == true)

      faults = SimulatorFaults()
      faults.lostResponseRate = 1
      simulator.setFaults(faults)
      let lost = await flyError {
        _ = try await client.createVolume(CreateVolumeRequest(name: "lost", region: "ord", sizeGB: 1))
      }
      #expect(lost?.code == .server)
      #expect(lost?.status == 502)
      #expect(lost?.message.contains("502 Bad Gateway") == true)
      simulator.setFaults(SimulatorFaults())
      let names = try await client.listVolumes().map(\.name)
      #expect(names == ["lost"], "the lost create happened")
    }
  }

  @Test func waitTimesOutWith408() async throws {
    var configuration = SimulatorConfiguration.fast(appName: "app", token: "tok")
    configuration.createSettle = 30
    // A generous client deadline, so Fly's 408 (after 1 s) ends the wait even on a loaded machine.
    try await withSimulator(configuration, timeout: .seconds(60)) { client, _ in
      let machine = try await client.createMachine(CreateMachineRequest(region: "ord", config: machineConfig()))
      let error = await flyError { try await client.waitMachine(machine.id, state: "started", timeout: .seconds(1)) }
      #expect(error?.code == .timeout)
      #expect(error?.message.hasPrefix("deadline_exceeded:") == true)
    }
  }

  @Test func transportConnectAndDeadline() async throws {
    // A port nothing listens on: bind a server, note its port, stop it.
    let probe = try await SimulatorServer.start(FlySimulator(configuration: .fast()))
    let deadPort = probe.port
    await probe.stop()
    let client = FlyClient(
      configuration: FlyClientConfiguration(
        baseURL: "http://127.0.0.1:\(deadPort)", appName: "app", token: FlyToken("tok"), requestTimeout: .seconds(2)))
    let connect = await flyError { _ = try await client.listMachines() }
    #expect(connect?.code == .transport)
    #expect(connect?.transportKind == .connect)
    #expect(connect?.outcomeUnknown == false)

    var faults = SimulatorFaults()
    faults.latencyMs = 20_000
    try await withSimulator(faults: faults, timeout: .milliseconds(200)) { client, _ in
      let started = ContinuousClock.now
      let deadline = await flyError {
        _ = try await client.createVolume(CreateVolumeRequest(name: "a", region: "ord", sizeGB: 1))
      }
      #expect(deadline?.code == .transport)
      #expect(deadline?.transportKind == .deadline)
      #expect(deadline?.outcomeUnknown == true)
      #expect(ContinuousClock.now - started < .seconds(10), "the 200 ms deadline, not the 20 s answer, ended the call")
    }
  }

  /// Answers that make no sense, from a canned server.
  @Test(arguments: [
    (200, "text/html", "<html><body>Welcome to nginx</body></html>", "not JSON"),
    (200, "application/json", #"[{"id":"abc","state":"started""#, "not JSON"),
    (200, "application/json", #"{"machines":[]}"#, "wrong type"),
    (200, "application/json", #"[{"state":"started"}]"#, "missing field id"),
  ])
  func invalidResponses(status: Int, contentType: String, body: String, reason: String) async throws {
    let router = Router()
    router.get("/v1/apps/app/machines") { _, _ in
      Response(
        status: .init(code: status), headers: [.contentType: contentType, HTTPField.Name("fly-request-id")!: "req-1"],
        body: .init(byteBuffer: ByteBuffer(string: body)))
    }
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    var quiet = Logger(label: "canned")
    quiet.logLevel = .critical
    let app = Application(
      router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
      onServerRunning: { channel in continuation.yield(channel.localAddress!.port!) }, logger: quiet)
    let task = Task { try await app.runService() }
    var iterator = ports.makeAsyncIterator()
    let port = await iterator.next()!
    let client = FlyClient(
      configuration: FlyClientConfiguration(baseURL: "http://127.0.0.1:\(port)", appName: "app", token: FlyToken("t")))
    let error = await flyError { _ = try await client.listMachines() }
    task.cancel()
    #expect(error?.code == .invalidResponse)
    #expect(error?.status == status)
    #expect(error?.requestID == "req-1")
    #expect(error?.message.hasPrefix(reason) == true, "\(String(describing: error))")
  }

  @Test(arguments: [
    (FlyAPIError.Code.server, nil as FlyAPIError.TransportKind?, 503 as Int?, true, true),
    (.timeout, nil, 408, true, true),
    (.transport, .connect, nil, true, false),
    (.transport, .reset, nil, true, true),
    (.transport, .deadline, nil, true, true),
    (.invalidResponse, nil, 200, false, true),
    (.invalidResponse, nil, 302, false, false),
    (.rateLimited, nil, 429, true, false),
    (.precondition, nil, 412, true, false),
    (.unauthorized, nil, 401, false, false),
    (.notFound, nil, 404, false, false),
    (.badRequest, nil, 400, false, false),
    (.capacity, nil, 412, true, false),
    (.conflict, nil, 409, true, false),
  ])
  func retryAndOutcomeTable(
    code: FlyAPIError.Code, kind: FlyAPIError.TransportKind?, status: Int?, retryable: Bool, unknown: Bool
  ) {
    let error = FlyAPIError(code: code, status: status, message: "m", transportKind: kind, operation: "POST /x")
    #expect(error.isRetryable == retryable)
    #expect(error.outcomeUnknown == unknown)
  }
}
