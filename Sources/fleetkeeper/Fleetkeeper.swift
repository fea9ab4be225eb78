import ArgumentParser
import FleetRuntime

@main
struct Fleetkeeper: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fleetkeeper",
    abstract: "A reconciling controller for a fleet of per-user Fly Machines.",
    version: "fleetkeeper \(BuildInfo.version) (Swift \(BuildInfo.swiftVersion))",
    subcommands: [
      MigrateCommand.self, SchemaCommand.self, UsersCommand.self, TemplateCommand.self, RegionsCommand.self,
      EventsCommand.self, PlanCommand.self, ReconcileCommand.self, RunCommand.self, StatusCommand.self,
      DescribeCommand.self,
      PauseCommand.self, ResumeCommand.self, RolloutCommand.self, DemoCommand.self,
      AlertsCommand.self, SimCommand.self, HranaCommand.self, BenchCommand.self, FleetCommand.self,
    ]
  )

  /// ArgumentParser's entry point, after the allocator is tuned (before any thread allocates).
  static func main() async {
    MemoryTuning.apply()
    await main(nil)
  }
}
