import AsyncHTTPClient
import FlyMachines
import FlySimulator
import Foundation

/// Runs `body` against a fresh simulator served on a loopback port.
func withSimulator<T>(
  _ configuration: SimulatorConfiguration = .fast(appName: "app", token: "tok"), faults: SimulatorFaults = .init(),
  timeout: Duration = .seconds(5), pageSize: Int = 1000,
  _ body: (FlyClient, FlySimulator) async throws -> T
) async throws -> T {
  let simulator = FlySimulator(configuration: configuration, faults: faults)
  let running = try await SimulatorServer.start(simulator)
  var clientConfiguration = FlyClientConfiguration(
    baseURL: running.baseURL, appName: configuration.appName, token: FlyToken(configuration.token),
    requestTimeout: timeout, pageSize: pageSize)
  // Lists paced as the simulator limits them (not at all when its limits are off).
  clientConfiguration.listPacing =
    configuration.rateLimitsEnabled
    ? FlyClientConfiguration.Pacing(rate: configuration.listRate, burst: configuration.listBurst) : nil
  let client = FlyClient(configuration: clientConfiguration)
  do {
    let result = try await body(client, simulator)
    await running.stop()
    return result
  } catch {
    await running.stop()
    throw error
  }
}

func machineConfig(image: String = "registry.fly.io/agent:1", user: String = "u1", volume: String? = nil)
  -> FlyMachineConfig
{
  var config = FlyMachineConfig()
  config.image = image
  config.metadata = ["fleet_user_id": user]
  config.guest = FlyGuest(cpuKind: "shared", cpus: 1, memoryMB: 512)
  config.env = ["AGENT_MODE": "always-on"]
  config.initCommand = ["/bin/agent", "serve"]
  config.restartPolicy = "always"
  config.services = .array([
    .object([
      "protocol": .string("tcp"), "internal_port": .int(8080),
      "ports": .array([.object(["port": .int(443), "handlers": .array([.string("tls"), .string("http")])])]),
    ])
  ])
  if let volume { config.mounts = [FlyMount(volume: volume, path: "/data")] }
  return config
}

/// Expects `body` to throw a ``FlyAPIError`` and returns it.
func flyError(_ body: () async throws -> Void) async -> FlyAPIError? {
  do {
    try await body()
    return nil
  } catch let error as FlyAPIError {
    return error
  } catch {
    return nil
  }
}
