import ArgumentParser
import FleetCore
import FleetStore
import Foundation

/// `fleetkeeper fleet show|set`: where users' machines live.
struct FleetCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fleet", abstract: "Where users' machines live: one shared app, or one app per user.",
    subcommands: [Show.self, Set.self, Map.self], defaultSubcommand: Show.self)

  struct Map: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract:
        "One app per user: map apps whose names do not follow the rule to their users (for adoption). A CSV of app_name,user_id lines (a header line is skipped), or one APP USER pair."
    )
    @OptionGroup var db: DatabaseOptions
    @Option(name: .long, help: "A CSV file: app_name,user_id per line.") var file: String?
    @Argument(help: "APP USER") var pair: [String] = []

    func run() async throws {
      try await runStoreCommand {
        var pairs: [(app: String, user: String)] = []
        var errors: [FieldError] = []
        func add(_ app: String, _ user: String, line: Int?) {
          let app = app.trimmingCharacters(in: .whitespaces)
          let user = user.trimmingCharacters(in: .whitespaces)
          let bytes = Array(app.utf8)
          let valid =
            (1...63).contains(bytes.count) && bytes[0] >= 0x61 && bytes[0] <= 0x7a && bytes.last != 0x2d
            && bytes.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }
          if !valid {
            errors.append(
              FieldError(
                field: "app_name", value: app, reason: "not a Fly app name (lowercase letters, digits, dashes)",
                line: line))
            return
          }
          do throws(FieldError) {
            pairs.append((app, try FleetValidation.userID(user)))
          } catch {
            var error = error
            error.line = line
            errors.append(error)
          }
        }
        if let file {
          let text = try String(contentsOfFile: file, encoding: .utf8)
          for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty || (index == 0 && trimmed.hasPrefix("app_name")) { continue }
            let fields = trimmed.split(separator: ",", omittingEmptySubsequences: false)
            guard fields.count == 2 else {
              errors.append(
                FieldError(field: "line", value: trimmed, reason: "expected app_name,user_id", line: index + 1))
              continue
            }
            add(String(fields[0]), String(fields[1]), line: index + 1)
          }
        }
        if !pair.isEmpty {
          guard pair.count == 2 else {
            throw FieldError(field: "pair", value: pair.joined(separator: " "), reason: "expected APP USER")
          }
          add(pair[0], pair[1], line: nil)
        }
        guard errors.isEmpty else { throw InputError(errors) }
        guard !pairs.isEmpty else {
          let mapping = try await db.open().appMapping()
          for (app, user) in mapping { print("\(app)\t\(user)") }
          return
        }
        let store = try await db.open()
        try await store.mapApps(pairs)
        print("mapped \(pairs.count) app(s)")
      }
    }
  }

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
