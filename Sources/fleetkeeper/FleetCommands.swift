import ArgumentParser
import FleetCore
import FleetStore

/// `fleetkeeper fleet show|set`: where users' machines live.
struct FleetCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fleet", abstract: "Where users' machines live: one shared app, or one app per user.",
    subcommands: [Show.self, Set.self], defaultSubcommand: Show.self)

  struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the fleet's topology.")
    @OptionGroup var db: DatabaseOptions

    func run() async throws {
      try await runStoreCommand {
        let store = try await db.open()
        guard let topology = try await store.topology() else {
          complain("error: fleet_topology has no valid row 1 (run `fleetkeeper fleet set`)")
          throw ExitCode(1)
        }
        switch topology {
        case .sharedApp:
          print("topology: shared-app (every user's machine in the app fleetkeeper runs against: FLY_APP)")
        case .appPerUser(let prefix, let org):
          print("topology: app-per-user")
          print("org: \(org)")
          print(
            "app names: \(FleetNames.appName(prefix: prefix, userID: "<user id>")) (e.g. user ada: \(FleetNames.appName(prefix: prefix, userID: "ada")))"
          )
          print("hostnames: <app>.fly.dev")
        }
      }
    }
  }

  struct Set: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Choose the topology. app-per-user (recommended for agents that run code) needs --app-prefix and --org."
    )
    @OptionGroup var db: DatabaseOptions
    @Option(name: .long, help: "shared-app or app-per-user.") var topology: String
    @Option(name: .long, help: "app-per-user: the prefix of every user app's name (<prefix>-u-<user id>).")
    var appPrefix: String?
    @Option(name: .long, help: "app-per-user: the Fly organization the apps are made in (its slug).") var org: String?
    @Flag(name: .long, help: "Change the topology although users already have machines on record.")
    var force = false

    func run() async throws {
      try await runStoreCommand {
        let wanted: Topology
        switch topology {
        case "shared-app":
          wanted = .sharedApp
        case "app-per-user":
          guard let appPrefix else {
            throw FieldError(field: "app_prefix", value: "", reason: "app-per-user needs --app-prefix")
          }
          if let problem = Topology.prefixProblem(appPrefix) {
            throw FieldError(field: "app_prefix", value: appPrefix, reason: problem)
          }
          guard let org, !org.isEmpty, org.count <= 100 else {
            throw FieldError(field: "org", value: org ?? "", reason: "app-per-user needs --org (1 to 100 characters)")
          }
          wanted = .appPerUser(prefix: appPrefix, org: org)
        default:
          throw FieldError(field: "topology", value: topology, reason: "must be shared-app or app-per-user")
        }
        let store = try await db.open()
        let current = try await store.topology()
        if current != wanted, !force, try await store.machineRowCount() > 0 {
          complain(
            "refused: users already have machines on record in the \(current?.name ?? "current") topology; "
              + "changing it would make each user a new machine and volume elsewhere (their data stays where it is). "
              + "Pass --force if that is what you want.")
          throw ExitCode(1)
        }
        try await store.setTopology(wanted)
        print("topology: \(wanted.name)")
      }
    }
  }
}
