import Foundation

@testable import FlySimulator

extension FlySimulator {
  /// One request through `handle` with the token `t`: its status and its body parsed.
  func call(_ method: String, _ target: String, body: String? = nil) async -> (Int, SimJSON?) {
    let response = await handle(
      SimulatorRequest(
        method: method, target: target, headers: ["authorization": "Bearer t"], body: Data((body ?? "").utf8)))
    return (response.status, SimJSON.parse(response.body))
  }
}
