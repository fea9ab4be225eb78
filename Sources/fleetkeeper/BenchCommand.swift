import ArgumentParser
import FleetRuntime
import Foundation

struct BenchCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench", abstract: "Benchmarks against the built-in simulator (numbers for docs/benchmarks.md).",
    subcommands: [Converge.self])

  struct Converge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "N new users from empty to converged, under Fly's rate limits.")
    @Option(help: "Users.") var users: Int = 200
    @Flag(help: "Turn the simulator's rate limits (and ours) off.") var noRateLimits = false
    func run() async throws {
      let result = try await Bench.converge(users: users, rateLimits: !noRateLimits)
      print("users                \(result.users)")
      print("converged            \(result.converged) in \(String(format: "%.1f", result.seconds)) s over \(result.passes) passes")
      if !noRateLimits {
        print(
          "rate-limit bound     \(String(format: "%.1f", result.boundSeconds)) s (ratio \(String(format: "%.2f", result.seconds / result.boundSeconds)))")
      }
      print("API requests         \(result.requests) (\(result.mutations) mutations)")
      print(
        "429 answers          \(result.rateLimited) (\(String(format: "%.2f", 100 * Double(result.rateLimited) / Double(max(1, result.mutations))))% of mutations)")
      print("steady-state pass    \(result.steadyStateRequests.count) requests: \(result.steadyStateRequests.sorted().joined(separator: ", "))")
    }
  }
}
