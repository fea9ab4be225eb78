import ArgumentParser
import FleetCore
import FleetStore
import FlyMachines
import Foundation

/// `fleetkeeper rollout …`: how a template change reaches the fleet, and the operator's hand on it.
struct RolloutCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rollout",
    abstract: "Template rollouts: status, pause, resume, abort, undo, and their settings.",
    subcommands: [Status.self, Pause.self, Resume.self, Abort.self, Undo.self, Set.self],
    defaultSubcommand: Status.self)

  struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract:
        "The current rollout: what it rolls out, its wave, what is through and what failed. Exit 0: none under way or done; 2: under way (running, waiting for a window, paused); 1: halted."
    )
    @OptionGroup var db: DatabaseOptions
    @Flag(help: "JSON output.") var json = false

    func run() async throws {
      var halted = false
      var active = false
      try await runStoreCommand {
        let store = try await db.open()
        let rollout = try await store.loadRollout()
        let control = try await store.rolloutControl()
        let revisions = try await store.templateRevisions(limit: 50)
        let failed = try await store.userStates(rollout?.failed.prefix(20).map { $0 } ?? [])
        halted = rollout?.status == .halted
        active = rollout?.isActive == true
        let current = revisions.first
        let rolled = revisions.first { $0.revision == rollout?.revision } ?? current
        let before = revisions.first { $0.revision < (rolled?.revision ?? 0) }
        let changes =
          rolled.flatMap { to in before.map { TemplateDiff.lines(from: $0.template, to: to.template) } } ?? []
        if json {
          var fields: [String: JSONValue] = [
            "template_revision": current.map { .int(Int64($0.revision)) } ?? .null,
            "settings": .object(settingsJSON(control)),
          ]
          if let rollout {
            fields["rollout"] = .object([
              "status": .string(rollout.status.rawValue), "revision": rollout.revision.map { .int(Int64($0)) } ?? .null,
              "changes": .array(changes.map(JSONValue.string)), "total": .int(Int64(rollout.total)),
              "through": .int(Int64(rollout.through)), "remaining": .int(Int64(rollout.remaining)),
              "failed": .array(rollout.failed.map(JSONValue.string)), "wave": .int(Int64(rollout.wave)),
              "wave_size": .int(Int64(rollout.waveMembers.count)),
              "message": rollout.message.map(JSONValue.string) ?? .null,
              "started_at": .int(Int64(rollout.startedAt)),
            ])
          } else {
            fields["rollout"] = .null
          }
          print(String(decoding: try JSONEncoder().encode(JSONValue.object(fields)), as: UTF8.self))
          return
        }
        print("template revision \(current.map { String($0.revision) } ?? "?")")
        guard let rollout else {
          print("no rollout yet: every machine runs the template it was made with")
          print("settings: \(settingsText(control))")
          return
        }
        let wave = rollout.wave < 0 ? "no wave yet" : rollout.wave == 0 ? "the canary (wave 0)" : "wave \(rollout.wave)"
        print(
          "rollout of revision \(rollout.revision.map(String.init) ?? "?"): \(rollout.status.rawValue.uppercased()), \(wave), \(rollout.through) of \(rollout.total) through, \(rollout.failed.count) failed, \(rollout.remaining) to go"
        )
        if !changes.isEmpty { print("  changes: " + changes.joined(separator: "; ")) }
        if rollout.isActive, rollout.wave >= 0 {
          print("  this wave: \(rollout.waveMembers.count) machine(s)")
        }
        if let message = rollout.message { print("  \(message)") }
        for user in rollout.failed.prefix(20) {
          print("  failed \(user): \(failed[user]?.configProblem?.detail ?? failed[user]?.lastError ?? "-")")
        }
        if rollout.failed.count > 20 { print("  … and \(rollout.failed.count - 20) more") }
        switch rollout.status {
        case .halted:
          print("next: fix the cause, then `fleetkeeper rollout resume` (retries the failed), or `rollout undo`")
        case .paused: print("next: `fleetkeeper rollout resume`")
        default: break
        }
        print("settings: \(settingsText(control))")
      }
      if halted { throw ExitCode(1) }
      if active { throw ExitCode(2) }
    }
  }

  struct Pause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "No new wave starts; updates under way finish. Repairs and users' own changes go on.")
    @OptionGroup var db: DatabaseOptions
    func run() async throws {
      try await runStoreCommand {
        try await db.open().rolloutCommand(.pause)
        print("rollouts paused: no new wave until `fleetkeeper rollout resume`")
      }
    }
  }

  struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Resume a paused rollout, or continue a halted one (its failed machines are tried again first).")
    @OptionGroup var db: DatabaseOptions
    func run() async throws {
      try await runStoreCommand {
        try await db.open().rolloutCommand(.resume)
        print("rollouts resumed: a halted rollout tries its failed machines again, then goes on")
      }
    }
  }

  struct Abort: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract:
        "End the current rollout: machines not yet updated stay as they are (`rollout undo` moves the updated back).")
    @OptionGroup var db: DatabaseOptions
    func run() async throws {
      try await runStoreCommand {
        try await db.open().rolloutCommand(.abort)
        print(
          "the current rollout is aborted: no more waves; updated machines stay updated (`rollout undo` to go back)")
      }
    }
  }

  struct Undo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Put the previous template revision back (as a new revision, rolled out like any change).")
    @OptionGroup var db: DatabaseOptions
    func run() async throws {
      try await runStoreCommand {
        let store = try await db.open()
        let before = try await store.templateRevisions(limit: 2)
        let (from, to) = try await store.undoTemplate()
        let now = try await store.templateRevisions(limit: 1)
        print("template back to revision \(to) (now revision \(now.first?.revision ?? 0)), from \(from)")
        if before.count == 2 {
          for line in TemplateDiff.lines(from: before[0].template, to: before[1].template) { print("  \(line)") }
        }
        print("it rolls out in waves like any change: `fleetkeeper rollout status`")
      }
    }
  }

  struct Set: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Change how rollouts go.")
    @OptionGroup var db: DatabaseOptions
    @Option(help: "The canary: at least this many machines…") var canaryMachines: Int?
    @Option(help: "…or this percentage of the rollout, whichever is more.") var canaryPercent: Double?
    @Option(help: "A wave updates at most this percentage of the machines at once.") var maxUnavailable: Double?
    @Option(help: "Halt when this many machines of one wave fail.") var waveFailures: Int?
    @Option(help: "Halt when more than this percentage of the rollout failed.") var failurePercent: Double?
    @Option(help: "Attempts per machine before it counts as failed (a silent revert is retried).") var maxAttempts: Int?
    @Option(
      help:
        "Maintenance windows, ';'-separated, e.g. 'sat 02:00-06:00 UTC' or 'mon-fri 22:00-02:00 UTC': waves start only inside one."
    ) var window: String?
    @Flag(help: "No window: waves start any time.") var anyTime = false

    func run() async throws {
      try await runStoreCommand {
        var patch = RolloutSettingsPatch()
        patch.canaryMachines = canaryMachines
        patch.canaryPercent = canaryPercent
        patch.maxUnavailablePercent = maxUnavailable
        patch.waveFailures = waveFailures
        patch.failurePercent = failurePercent
        patch.maxAttempts = maxAttempts
        patch.windows = anyTime ? "" : window
        let store = try await db.open()
        try await store.setRolloutSettings(patch)
        print("rollout settings: \(settingsText(try await store.rolloutControl()))")
      }
    }
  }
}

func settingsText(_ control: RolloutControl) -> String {
  let windows = control.windows.isEmpty ? "any time" : control.windows.map(\.description).joined(separator: "; ")
  var text =
    "canary max(\(control.canaryMachines), \(number(control.canaryPercent))%), waves of \(number(control.maxUnavailablePercent))%, halt at \(control.waveFailures) failed in a wave or above \(number(control.failurePercent))%, \(control.maxAttempts) attempt(s) per machine, windows: \(windows)"
  if control.paused { text += ", PAUSED" }
  if let problem = control.problem { text += " (unreadable: \(problem))" }
  return text
}

func settingsJSON(_ control: RolloutControl) -> [String: JSONValue] {
  [
    "canary_machines": .int(Int64(control.canaryMachines)), "canary_percent": .double(control.canaryPercent),
    "max_unavailable_percent": .double(control.maxUnavailablePercent),
    "wave_failures": .int(Int64(control.waveFailures)), "failure_percent": .double(control.failurePercent),
    "max_attempts": .int(Int64(control.maxAttempts)),
    "windows": .array(control.windows.map { .string($0.description) }), "paused": .bool(control.paused),
  ]
}

private func number(_ value: Double) -> String {
  value == value.rounded() ? String(Int(value)) : String(value)
}
