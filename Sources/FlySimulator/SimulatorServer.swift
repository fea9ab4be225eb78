import Foundation
import HTTPTypes
public import Hummingbird
public import Logging
import NIOCore
import NIOFoundationCompat

/// Serves a ``FlySimulator`` over HTTP with Hummingbird.
public enum SimulatorServer {
  /// A running simulator server; ``stop()`` shuts it down.
  public struct Running: Sendable {
    public let simulator: FlySimulator
    /// The bound port (useful with port 0).
    public let port: Int
    public let host: String
    private let task: Task<Void, any Error>

    init(simulator: FlySimulator, port: Int, host: String, task: Task<Void, any Error>) {
      self.simulator = simulator
      self.port = port
      self.host = host
      self.task = task
    }

    /// `http://host:port`, the base URL to give a Fly client.
    public var baseURL: String { "http://\(host):\(port)" }

    /// Stops serving and waits for the server to close.
    public func stop() async {
      task.cancel()
      _ = await task.result
    }
  }

  /// The Hummingbird application that fronts `simulator`.
  public static func application(
    _ simulator: FlySimulator, host: String = "127.0.0.1", port: Int = 0, logger: Logger? = nil,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
  ) -> some ApplicationProtocol {
    let responder = CallbackResponder<BasicRequestContext> { request, context in
      var request = request
      let body = try await request.collectBody(upTo: 16 << 20)
      var headers: [String: String] = [:]
      for field in request.headers { headers[field.name.canonicalName] = field.value }
      let target = request.uri.string
      let pathAndQuery = target.hasPrefix("/") ? target : "/" + target
      let simRequest = SimulatorRequest(
        method: request.method.rawValue, target: pathAndQuery, headers: headers, body: Data(buffer: body))
      let answer = await simulator.handle(simRequest)
      var fields = HTTPFields()
      for (name, value) in answer.headers {
        if let name = HTTPField.Name(name) { fields.append(HTTPField(name: name, value: value)) }
      }
      return Response(
        status: HTTPResponse.Status(code: answer.status), headers: fields,
        body: ResponseBody(byteBuffer: ByteBuffer(data: answer.body)))
    }
    var quiet = Logger(label: "fly-simulator")
    quiet.logLevel = .critical
    return Application(
      responder: responder, configuration: .init(address: .hostname(host, port: port), serverName: "Fly/sim"),
      onServerRunning: onServerRunning, logger: logger ?? quiet)
  }

  /// Serves `simulator` until SIGINT or SIGTERM; `onListening` gets the bound port.
  public static func run(
    _ simulator: FlySimulator, host: String = "127.0.0.1", port: Int = 0,
    onListening: @escaping @Sendable (Int) -> Void
  ) async throws {
    let app = application(simulator, host: host, port: port) { channel in
      onListening(channel.localAddress?.port ?? port)
    }
    try await app.run()
  }

  /// Starts serving `simulator` in a background task and returns once it listens.
  public static func start(
    _ simulator: FlySimulator, host: String = "127.0.0.1", port: Int = 0, logger: Logger? = nil
  ) async throws -> Running {
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let app = application(simulator, host: host, port: port, logger: logger) { channel in
      continuation.yield(channel.localAddress?.port ?? port)
      continuation.finish()
    }
    let task = Task {
      defer { continuation.finish() }
      try await app.runService()
    }
    var iterator = ports.makeAsyncIterator()
    guard let bound = await iterator.next() else {
      let result = await task.result
      if case .failure(let error) = result { throw error }
      throw CancellationError()
    }
    return Running(simulator: simulator, port: bound, host: host, task: task)
  }
}
