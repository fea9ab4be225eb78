import ArgumentParser
import FleetCore
import FleetStore
import Foundation

/// `--database`, shared by every command that opens the store.
struct DatabaseOptions: ParsableArguments {
  @Option(
    name: .long,
    help:
      "SQLite file, or a libsql://, https:// or http:// URL for Turso (env FLEET_DATABASE; default fleet.sqlite3). A URL's token comes from FLEET_DATABASE_AUTH_TOKEN."
  )
  var database: String?

  var path: String { database ?? ProcessInfo.processInfo.environment["FLEET_DATABASE"] ?? "fleet.sqlite3" }

  /// The Turso token (a secret: read from the environment only, never a flag).
  var authToken: String? { ProcessInfo.processInfo.environment["FLEET_DATABASE_AUTH_TOKEN"] }

  /// Opens the store; `create` only for `migrate`. Commands other than migrate migrate first, as
  /// the loop does on start, so an existing database is always at the current schema.
  func open(create: Bool = false, migrate: Bool = true) async throws -> FleetStore {
    let store = try FleetStore.open(path, authToken: authToken, create: create)
    if migrate { try await store.migrate() }
    return store
  }
}

/// A setting (flag or environment variable) that cannot be used: the command exits 1 with this
/// message (ArgumentParser's `ValidationError` would exit 64 and print the usage).
struct SettingError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// Prints to standard error.
func complain(_ text: String) {
  FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Runs a store command: refused input and store failures become a message and exit 1.
func runStoreCommand(_ body: () async throws -> Void) async throws {
  do {
    try await body()
  } catch let error as InputErrorOrStore {
    complain("refused: \(error)")
    throw ExitCode(1)
  } catch let error as InputError {
    complain("refused: \(error)")
    throw ExitCode(1)
  } catch let error as StoreError {
    complain("error: \(error)")
    throw ExitCode(1)
  } catch let error as FieldError {
    complain("refused: \(error)")
    throw ExitCode(1)
  }
}

struct MigrateCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "migrate", abstract: "Create or upgrade the database schema (idempotent).")
  @OptionGroup var db: DatabaseOptions

  func run() async throws {
    try await runStoreCommand {
      let store = try await db.open(create: true, migrate: false)
      let applied = try await store.migrate()
      let version = try await store.schemaVersion()
      print(
        applied.isEmpty
          ? "schema is current (version \(version)) in \(store.displayName)"
          : "applied migrations \(applied.map(String.init).joined(separator: ", ")); schema version \(version) in \(store.displayName)"
      )
    }
  }
}

struct SchemaCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "schema", abstract: "Print the SQL schema (desired-state/schema.sql).")
  func run() async throws { print(Schema.fullText, terminator: "") }
}

/// Per-user fields shared by `users add` and `users set`.
struct UserFields: ParsableArguments {
  @Option(help: "The user's email (dashboard column).") var email: String?
  @Option(help: "Desired state: running, stopped or absent.") var state: String?
  @Option(help: "Fly region code, e.g. cdg.") var region: String?
  @Option(help: "Image override ('default' clears it).") var image: String?
  @Option(help: "CPU kind override: shared or performance ('default' clears it).") var cpuKind: String?
  @Option(help: "CPU count override.") var cpus: Int?
  @Option(help: "Memory override in MB.") var memoryMb: Int?
  @Option(help: "Volume size override in GB (volumes only grow).") var volumeSizeGb: Int?
  @Option(
    help:
      "Per-user env NAME=VALUE, over the template's (literal, or {{user_id}}, {{secret:KEY}}, …; never $SECRET); repeat; replaces the user's env."
  )
  var env: [String] = []
  @Flag(help: "Clear the user's env overrides.") var clearEnv = false

  func input(_ userID: String) throws -> UserInput {
    var overrides: [String: String]?
    if clearEnv { overrides = [:] }
    if !env.isEmpty {
      var map: [String: String] = [:]
      for item in env {
        guard let eq = item.firstIndex(of: "=") else {
          throw FieldError(field: "env", value: String(item.prefix { $0 != "=" }), reason: "must be NAME=VALUE")
        }
        map[String(item[..<eq])] = String(item[item.index(after: eq)...])
      }
      overrides = map
    }
    return UserInput(
      userID: userID, email: email, state: state, region: region, image: image, cpuKind: cpuKind, cpus: cpus,
      memoryMB: memoryMb, volumeSizeGB: volumeSizeGb, env: overrides)
  }
}

struct UsersCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "users", abstract: "Edit the desired state of users' machines.",
    subcommands: [
      Add.self, Set.self, Remove.self, List.self, Import.self, Pause.self, Resume.self, TakeSnapshot.self,
      ListSnapshots.self, Restore.self, Restores.self,
    ])

  struct Pause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Pause a user: observed and reported (plan shows what is held), never changed.")
    @OptionGroup var db: DatabaseOptions
    @Argument(help: "The user id.") var userID: String
    func run() async throws {
      try await runStoreCommand {
        try await db.open().setUserPaused(userID, true)
        print("\(userID) is paused: fleetkeeper observes it and changes nothing until `users resume \(userID)`")
      }
    }
  }

  struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Resume a paused user.")
    @OptionGroup var db: DatabaseOptions
    @Argument(help: "The user id.") var userID: String
    func run() async throws {
      try await runStoreCommand {
        try await db.open().setUserPaused(userID, false)
        print("\(userID) is resumed")
      }
    }
  }

  struct Add: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Add a user (desired running unless --state).")
    @OptionGroup var db: DatabaseOptions
    @Argument(help: "The user id.") var userID: String
    @OptionGroup var fields: UserFields
    func run() async throws {
      try await runStoreCommand {
        let store = try await db.open()
        try await store.addUser(try fields.input(userID))
        print("added \(userID)")
      }
    }
  }

  struct Set: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Change a user's desired state, region or overrides.")
    @OptionGroup var db: DatabaseOptions
    @Argument(help: "The user id.") var userID: String
    @OptionGroup var fields: UserFields
    func run() async throws {
      try await runStoreCommand {
        let store = try await db.open()
        try await store.setUser(try fields.input(userID))
        print("updated \(userID)")
      }
    }
  }

  struct Remove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Mark a user absent: the machine goes, the volume is retained, history stays.")
    @OptionGroup var db: DatabaseOptions
    @Argument(help: "The user id.") var userID: String
    func run() async throws {
      try await runStoreCommand {
        let store = try await db.open()
        try await store.removeUser(userID)
        print("\(userID) is now desired absent")
      }
    }
  }

  struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List users and their desired state.")
    @OptionGroup var db: DatabaseOptions
    @Flag(help: "JSON output.") var json = false
    func run() async throws {
      try await runStoreCommand {
        let store = try await db.open()
        let users = try await store.listUsers()
        if json {
          for user in users { JSONOutput.print(UserJSON(user)) }
        } else {
          print(pad("USER", 28) + pad("STATE", 9) + pad("REGION", 7) + pad("IMAGE", 40) + "EMAIL")
          for user in users {
            print(
              pad(user.userID, 28) + pad(user.state.rawValue, 9) + pad(user.region, 7)
                + pad(user.overrides.image ?? "(template)", 40) + (user.email ?? ""))
          }
        }
      }
    }
  }

  struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Import new users from CSV (header row) or JSON lines; all or nothing.")
    @OptionGroup var db: DatabaseOptions
    @Argument(help: "The file (CSV with user_id,email,region,state,image or JSON lines).") var file: String
    @Option(help: "Region for rows that name none.") var region: String?
    func run() async throws {
      try await runStoreCommand {
        let store = try await db.open()
        guard let data = FileManager.default.contents(atPath: file) else {
          throw FieldError(field: "file", value: file, reason: "cannot be read")
        }
        let started = ContinuousClock.now
        let inputs = try ImportParser.parse(String(decoding: data, as: UTF8.self), defaultRegion: region)
        try await store.importUsers(inputs)
        print("imported \(inputs.count) users in \(ContinuousClock.now - started)")
      }
    }
  }
}

struct UserJSON: Encodable {
  var user_id: String
  var email: String?
  var state: String
  var region: String
  var image: String?
  var cpu_kind: String?
  var cpus: Int?
  var memory_mb: Int?
  var volume_size_gb: Int?
  var env: [String: String]?
  var updated_at: Int64
  init(_ user: DesiredMachine) {
    user_id = user.userID
    email = user.email
    state = user.state.rawValue
    region = user.region
    image = user.overrides.image
    cpu_kind = user.overrides.cpuKind
    cpus = user.overrides.cpus
    memory_mb = user.overrides.memoryMB
    volume_size_gb = user.overrides.volumeSizeGB
    env = user.overrides.env
    updated_at = user.updatedAt
  }
}

func pad(_ text: String, _ width: Int) -> String {
  text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

struct TemplateCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "template", abstract: "Show or change the machine template.", subcommands: [Show.self, Set.self])

  struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Show the machine template (env values that name secrets stay names).")
    @OptionGroup var db: DatabaseOptions
    func run() async throws {
      try await runStoreCommand {
        let store = try await db.open()
        let template = try await store.template()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        print(String(decoding: try encoder.encode(template), as: UTF8.self))
        if let policy = try await store.volumePolicy() {
          print(
            "volumes: snapshots kept \(policy.snapshotRetentionDays.map { "\($0) days" } ?? "Fly's default (5 days)"), daily backups \(policy.autoBackup ? "on" : "off"), disk_full above \(policy.diskFullPercent)%, auto-extend \(policy.autoExtendToGB.map { "up to \($0) GB by \(policy.autoExtendStepGB) GB" } ?? "off")"
          )
        }
      }
    }
  }

  struct Set: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Change fields of the machine template.")
    @OptionGroup var db: DatabaseOptions
    @Option(help: "Image reference.") var image: String?
    @Option(help: "shared or performance.") var cpuKind: String?
    @Option(help: "CPU count.") var cpus: Int?
    @Option(help: "Memory in MB.") var memoryMb: Int?
    @Option(help: "init command as a JSON array of strings ({{user_id}}, {{secret:NAME}}, … allowed); [] clears it.")
    var initCmd: String?
    @Option(help: "Fly services as a JSON array; '' clears them.") var services: String?
    @Option(
      help:
        "Env variable NAME=VALUE (VALUE $SECRET names a controller secret; {{user_id}}, {{app_name}}, {{hostname}}, {{secret:KEY}} are per-user, docs/configuration.md); repeat; replaces the env."
    )
    var env: [String] = []
    @Flag(help: "Clear the env.") var clearEnv = false
    @Option(help: "Volume mount path.") var mountPath: String?
    @Option(help: "Volume size in GB (volumes only grow).") var volumeSizeGb: Int?
    @Option(help: "Encrypt volumes: true or false.") var encrypted: Bool?
    @Option(help: "Restart policy: no, always, on-failure.") var restartPolicy: String?
    @Option(help: "Days Fly keeps each snapshot of a new volume, 1 to 60 (Fly's default: 5).")
    var snapshotRetentionDays: Int?
    @Option(help: "Fly takes a daily snapshot of each new volume: true or false (default true).")
    var autoBackup: Bool?
    @Option(help: "A volume fuller than this percent is reported (disk_full), 50 to 99 (default 85).")
    var diskFullPercent: Int?
    @Option(help: "Grow a full volume up to this many GB, a step at a time, a snapshot first (0: never; default).")
    var autoExtendToGb: Int?
    @Option(help: "How many GB each automatic extend adds, 1 to 100 (default 1).") var autoExtendStepGb: Int?
    func run() async throws {
      try await runStoreCommand {
        let store = try await db.open()
        var patch = TemplatePatch()
        patch.image = image
        patch.cpuKind = cpuKind
        patch.cpus = cpus
        patch.memoryMB = memoryMb
        if let initCmd {
          guard let data = initCmd.data(using: .utf8),
            let command = try? JSONDecoder().decode([String].self, from: data)
          else {
            throw FieldError(field: "init_cmd", value: initCmd, reason: "must be a JSON array of strings")
          }
          patch.initCommand = command
        }
        patch.servicesJSON = services
        if clearEnv { patch.env = [:] }
        if !env.isEmpty {
          var map: [String: String] = [:]
          for item in env {
            guard let eq = item.firstIndex(of: "=") else {
              throw FieldError(field: "env", value: String(item.prefix { $0 != "=" }), reason: "must be NAME=VALUE")
            }
            map[String(item[..<eq])] = String(item[item.index(after: eq)...])
          }
          patch.env = map
        }
        patch.mountPath = mountPath
        patch.volumeSizeGB = volumeSizeGb
        patch.encrypted = encrypted
        patch.restartPolicy = restartPolicy
        // The volume policy's fields first (checked, nothing written if one is refused), then the template's.
        try await store.setVolumePolicy(
          snapshotRetentionDays: snapshotRetentionDays, autoBackup: autoBackup, diskFullPercent: diskFullPercent,
          autoExtendToGB: autoExtendToGb, autoExtendStepGB: autoExtendStepGb, dryRun: true)
        try await store.setTemplate(patch)
        try await store.setVolumePolicy(
          snapshotRetentionDays: snapshotRetentionDays, autoBackup: autoBackup, diskFullPercent: diskFullPercent,
          autoExtendToGB: autoExtendToGb, autoExtendStepGB: autoExtendStepGb)
        print("template updated")
      }
    }
  }
}

struct RegionsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "regions", abstract: "List or extend the Fly regions desired rows may name.",
    subcommands: [List.self, Add.self])
  struct List: AsyncParsableCommand {
    @OptionGroup var db: DatabaseOptions
    func run() async throws {
      try await runStoreCommand {
        print(try await db.open().knownRegions().sorted().joined(separator: " "))
      }
    }
  }
  struct Add: AsyncParsableCommand {
    @OptionGroup var db: DatabaseOptions
    @Argument var code: String
    func run() async throws {
      try await runStoreCommand {
        try await db.open().addRegion(code)
        print("region \(code) allowed")
      }
    }
  }
}

struct EventsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "events", abstract: "Read the audit log (machine_events).")
  @OptionGroup var db: DatabaseOptions
  @Option(help: "Only this user's events.") var user: String?
  @Option(help: "Only events from this time on: 15m, 2h, 1d ago, or an RFC 3339 time (2026-12-04T09:00:00Z).")
  var since: String?
  @Option(help: "Only events after this event id (to follow the log).") var afterID: Int64?
  @Option(help: "At most this many (the newest, unless --since or --after-id).") var limit: Int = 50
  @Flag(help: "JSON lines.") var json = false

  /// `--since` as Unix seconds: a duration back from now, or a time.
  static func since(_ text: String, now: Double) throws -> Int64 {
    if let time = parseRFC3339(text) { return Int64(time) }
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
    if let unit = text.last.flatMap({ units[$0] }), let count = Double(text.dropLast()), count >= 0, count.isFinite {
      return Int64(now - count * unit)
    }
    throw SettingError(
      "--since \"\(text)\": a duration back from now (90s, 15m, 2h, 1d) or an RFC 3339 time (2026-12-04T09:00:00Z)")
  }

  func run() async throws {
    let notBefore = try since.map { try Self.since($0, now: Date().timeIntervalSince1970) }
    try await runStoreCommand {
      let events = try await db.open().events(user: user, afterID: afterID, notBefore: notBefore, limit: limit)
      for event in events {
        if json {
          JSONOutput.print(EventJSON(event))
        } else {
          let time = rfc3339(Double(event.createdAt))
          print(
            "\(event.id)\t\(time)\t\(pad(event.eventType, 24))\tuser=\(event.userID ?? "-")\tmachine=\(event.machineID ?? "-")\tvolume=\(event.volumeID ?? "-")\t\(event.detailsJSON)"
          )
        }
      }
    }
  }
}

struct PauseCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "pause",
    abstract: "Pause the whole fleet: every user observed and reported, nothing created, started, stopped or destroyed."
  )
  @OptionGroup var db: DatabaseOptions
  func run() async throws {
    try await runStoreCommand {
      try await db.open().setFleetPaused(true)
      print("the fleet is paused: fleetkeeper observes and reports, and changes nothing until `fleetkeeper resume`")
    }
  }
}

struct ResumeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a paused fleet.")
  @OptionGroup var db: DatabaseOptions
  func run() async throws {
    try await runStoreCommand {
      try await db.open().setFleetPaused(false)
      print("the fleet is resumed")
    }
  }
}
