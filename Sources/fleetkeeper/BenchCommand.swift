import ArgumentParser
import FleetDevTools
import FleetRuntime
import Foundation

struct BenchCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench", abstract: "Benchmarks against the built-in simulator (numbers for docs/benchmarks.md).",
    subcommands: [
      Converge.self, ScaleCommand.self, PlannerCommand.self, ObserveCommand.self, RolloutCommand.self, AppsCommand.self,
      PagesCommand.self, EnsureCommand.self,
    ])

  struct AppsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "apps",
      abstract:
        "One app per user under Fly's rate limits: N new users (app, addresses, volume, machine), and N apps made the old way adopted."
    )
    @Option(help: "Users for the new-users scenario.") var users: Int = 1000
    @Option(help: "Apps made the old way, for the adoption scenario.") var adopt: Int = 10_000
    @Option(help: "Scenarios, comma-separated: new, adopt.") var scenarios: String = "new,adopt"
    func run() async throws {
      for scenario in scenarios.split(separator: ",").map(String.init) {
        let r = try await AppsBench.run(
          scenario: scenario, users: scenario == "adopt" ? adopt : users,
          say: { line in
            print(line)
            fflush(nil)
          })
        let count = { (endpoint: String) in r.byEndpoint[endpoint] ?? 0 }
        print(
          "\(r.scenario): \(r.users) users \(r.converged ? "converged" : "NOT converged") in \(String(format: "%.1f", r.seconds)) s (bound \(String(format: "%.1f", r.boundSeconds)) s, ratio \(String(format: "%.2f", r.seconds / r.boundSeconds))) over \(r.passes) passes"
        )
        print(
          "  apps created \(count("POST /apps")), IPs assigned \(count("POST /ip_assignments")), volumes created \(count("POST /volumes")), machines created \(count("POST /machines"))"
        )
        print(
          "  machines destroyed \(count("DELETE /machines/{id}")), volumes deleted \(count("DELETE /volumes/{id}")), apps deleted \(count("DELETE /apps/{app}")), metadata writes \(count("POST /machines/{id}/metadata/{key}"))"
        )
        print("  \(r.requests) API requests, \(r.rateLimited) answered 429")
        print("  quiet pass: \(r.quietPass.count) requests: \(r.quietPass.joined(separator: ", "))")
        fflush(nil)
      }
    }
  }

  struct EnsureCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "ensure",
      abstract:
        "The dashboard's ensure against the loop, with Fly's timings and rate limits on: one new user's overhead after its machine started, then N new users at once against the write budget's bound."
    )
    @Option(help: "New users ensured at once.") var users: Int = 100
    func run() async throws {
      let r = try await EnsureBench.run(users: users)
      print(
        String(
          format:
            "one new user: answered after %.2f s; the simulator's machine was started after %.2f s; overhead %.3f s",
          r.single, r.singleStartedAfter, r.overhead))
      print(
        String(
          format:
            "%d new users at once: %d answered started in %.1f s (bound %.1f s, ratio %.2f); %d machines; %d requests, %d answered 429",
          r.users, r.ready, r.seconds, r.bound, r.seconds / r.bound, r.machines, r.requests, r.rateLimited))
      fflush(nil)
    }
  }

  struct PagesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "pages",
      abstract:
        "The status board and the operator's pages at N users, some not in sync: our own CPU only (no Fly), medians in ms."
    )
    @Option(help: "Users.") var users: Int = 100_000
    @Option(help: "Users not in sync (a full disk each).") var drifting: Int = 5000
    func run() async throws {
      let r = try await PagesBench.run(users: users, drifting: drifting)
      func ms(_ value: Double) -> String { String(format: "%.1f ms", value) }
      print("\(r.users) users, \(r.drifting) not in sync (medians; our CPU only, no Fly)")
      print("  every user's condition after a pass (FleetStatus.board): \(ms(r.statuses))")
      print("  status board update: \(ms(r.boardUpdate))")
      print("  overview page: \(ms(r.overview)) (\(r.overviewBytes) bytes)")
      print(
        "  not-in-sync list: \(ms(r.list)); filtered by condition: \(ms(r.filtered)); searched: \(ms(r.searched)); page 40: \(ms(r.laterPage))"
      )
      print("  a user's page: \(ms(r.userPage))")
      fflush(nil)
    }
  }

  struct RolloutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "rollout",
      abstract:
        "N users rolled from v1 to v2 under Fly's timings and rate limits: clean, with silent reverts, with a v2 that does not boot."
    )
    @Option(help: "Users.") var users: Int = 1000
    @Option(help: "Scenarios, comma-separated: clean, reverts, boot-failure.") var scenarios: String =
      "clean,reverts,boot-failure"
    @Option(help: "Share of updates silently reverted in the reverts scenario.") var revertRate: Double = 0.03
    func run() async throws {
      for scenario in scenarios.split(separator: ",").map(String.init) {
        let r = try await RolloutBench.run(
          users: users, scenario: scenario, revertRate: revertRate,
          say: { line in
            print(line)
            fflush(nil)
          })
        print(
          "\(r.scenario): \(r.status) in \(String(format: "%.1f", r.seconds)) s (bound \(String(format: "%.1f", r.boundSeconds)) s, ratio \(String(format: "%.2f", r.seconds / r.boundSeconds))), \(r.waves) wave(s), \(r.through) through, \(r.failed) failed"
        )
        print(
          "  updates sent \(r.updatesSent), machines on v2 \(r.onV2) of \(r.users); silent reverts injected \(r.revertsInjected), found \(r.revertsFound); reported done but not on v2: \(r.reportedDoneButNot)"
        )
        print("  \(r.requests) API requests (\(r.rateLimited) answered 429) over \(r.passes) passes")
        fflush(nil)
      }
    }
  }

  struct Converge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "N new users from empty to converged, under Fly's rate limits.")
    @Option(help: "Users.") var users: Int = 200
    @Flag(help: "Turn the simulator's rate limits (and ours) off.") var noRateLimits = false
    func run() async throws {
      let result = try await Bench.converge(users: users, rateLimits: !noRateLimits)
      print("users                \(result.users)")
      print(
        "converged            \(result.converged) in \(String(format: "%.1f", result.seconds)) s over \(result.passes) passes"
      )
      if !noRateLimits {
        print(
          "rate-limit bound     \(String(format: "%.1f", result.boundSeconds)) s (ratio \(String(format: "%.2f", result.seconds / result.boundSeconds)))"
        )
      }
      print("API requests         \(result.requests) (\(result.mutations) mutations)")
      print(
        "429 answers          \(result.rateLimited) (\(String(format: "%.2f", 100 * Double(result.rateLimited) / Double(max(1, result.mutations))))% of mutations)"
      )
      print(
        "steady-state pass    \(result.steadyStateRequests.count) requests: \(result.steadyStateRequests.sorted().joined(separator: ", "))"
      )
    }
  }
}

struct ScaleCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "scale",
    abstract: "Planner, quiet pass, 1% drift pass, naive controller and memory at 1k, 10k, 100k users.")
  @Option(parsing: .upToNextOption, help: "Fleet sizes.") var users: [Int] = [1000, 10_000, 100_000]
  @Flag(help: "Skip the naive per-user controller.") var noNaive = false
  func run() async throws {
    var rows: [ScaleBench.Row] = []
    for count in users {
      rows.append(
        try await ScaleBench.run(users: count, binary: CommandLine.arguments[0], naive: !noNaive) {
          print($0); fflush(nil)
        })
    }
    print("")
    print(
      "| users | planner | quiet pass wall | quiet pass CPU | quiet pass requests | quiet pass DB statements | steady pass wall | steady pass CPU | steady requests | steady DB statements | 1% drift pass wall | 1% drift CPU | 1% drift requests | naive pass wall | naive requests | requests ratio | time ratio | peak RSS | restart: one pass in a new process (CPU, peak RSS) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows {
      let f = { (v: Double) in String(format: "%.1f", v) }
      print(
        "| \(r.users) | \(f(r.plannerMs)) ms | \(f(r.idleWallMs)) ms | \(f(r.idleCPUMs)) ms | \(r.idleRequests) | \(r.idleQueries) | \(f(r.steadyWallMs)) ms\(r.steadyTaken ? "" : " (not steady)") | \(f(r.steadyCPUMs)) ms | \(r.steadyRequests) | \(r.steadyQueries) | \(f(r.driftWallMs)) ms | \(f(r.driftCPUMs)) ms | \(r.driftRequests) | \(f(r.naiveWallMs)) ms | \(r.naiveRequests) | \(r.idleRequests > 0 ? String(format: "%.0f×", Double(r.naiveRequests) / Double(r.idleRequests)) : "-") | \(r.idleWallMs > 0 ? String(format: "%.1f×", r.naiveWallMs / r.idleWallMs) : "-") | \(f(r.peakRSSMB)) MB | \(r.restartExit == 0 ? "" : "exit \(r.restartExit): ")\(f(r.restartCPUMs)) ms, \(f(r.restartPeakRSSMB)) MB |"
      )
    }
  }
}

struct PlannerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "planner",
    abstract: "The planner alone on a synthetic quiet fleet (for time, and allocations under heaptrack).")
  @Option(help: "Users.") var users: Int = 10_000
  @Option(name: .customLong("repeat"), help: "Plans to run.") var count: Int = 20
  func run() async throws {
    let result = PlannerBench.run(users: users, repeat: count)
    print(
      "users \(users): \(String(format: "%.2f", result.meanMs)) ms per plan over \(count) plans, \(result.actions) actions"
    )
  }
}

struct ObserveCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "observe",
    abstract: "Org-wide incremental observation against the app's lists, with Fly's rate limits on.")
  @Option(help: "Users.") var users: Int = 100_000
  @Option(help: "Drifts measured with the org-wide lists.") var drifts: Int = 20
  @Option(help: "Drifts measured with the app's lists (each takes a whole walk or two).") var appDrifts: Int = 2
  @Option(parsing: .upToNextOption, help: "Which observers to measure: org, app.") var modes: [String] = ["org", "app"]
  func run() async throws {
    let results = try await ObserveBench.run(
      users: users, drifts: drifts, appDrifts: appDrifts, modes: modes, binary: CommandLine.arguments[0]
    ) {
      print($0)
      fflush(nil)
    }
    let f = { (v: Double) in String(format: "%.1f", v) }
    print("")
    print(
      "| users | observe | first pass | full read (bound) | ratio | quiet pass requests | quiet pass CPU (median, max) | quiet passes steady | drift → start (p50, p99, max) | 429s | peak RSS | restart: CPU, peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results {
      let median = ObserveBench.percentile(r.steadyCPUMs, 50)
      let restart = r.mode == "org" ? "\(f(r.restartCPUMs)) ms, \(f(r.restartPeakRSSMB)) MB" : "-"
      print(
        "| \(users) | \(r.mode) | \(f(r.firstPassWallS)) s | \(f(r.fullReadWallS)) s (\(f(r.fullReadBoundS)) s) | \(String(format: "%.2f", r.fullReadWallS / max(1, r.fullReadBoundS))) | \(Set(r.steadyRequests).sorted()) | \(f(median)), \(f(r.steadyCPUMs.max() ?? 0)) ms | \(r.steadyTaken) of \(r.steadyRequests.count) | \(f(ObserveBench.percentile(r.driftLatenciesS, 50))), \(f(ObserveBench.percentile(r.driftLatenciesS, 99))), \(f(r.driftLatenciesS.max() ?? 0)) s (\(r.driftLatenciesS.count) drifts) | \(r.rateLimited) | \(f(r.peakRSSMB)) MB | \(restart) |"
      )
    }
  }
}
