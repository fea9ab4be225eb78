import Foundation
public import ServiceLifecycle

/// The sender as a Service: sweeps the outbox every second until shutdown.
public struct AlertSenderService: Service {
  public let sender: AlertSender
  public var interval: Duration = .seconds(1)
  public init(sender: AlertSender) { self.sender = sender }

  public func run() async throws {
    while !Task.isCancelled && !Task.isShuttingDownGracefully {
      await sender.sweep(now: Date().timeIntervalSince1970)
      try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
    }
  }
}
