public import FleetCore
public import FlyMachines
import Foundation

/// The calls one action makes to Fly, and what Fly answered, in the lifecycle's terms
/// (``UserLifecycle/Outcome``): the I/O half of acting. No state: the reconciler decides when,
/// the lifecycle what the answer means.
struct FlyCalls: Sendable {
  let client: any FlyMachinesAPI
  let budget: WriteBudget
  let redactor: Redactor
  let secrets: SecretValues
  /// The controller's clock (how fresh a snapshot before a destructive step is).
  var clock: any FleetClock = SystemFleetClock()
  /// Where users live (this pass's desired snapshot says): one app per user scopes each user's
  /// calls to the user's app.
  var placement = AppPlacement()
  /// How new volumes are made (snapshot retention, daily backups): this pass's desired snapshot.
  var volumePolicy = VolumePolicy()

  /// The API for `user`'s machine and volume.
  func client(for user: String) -> any FlyMachinesAPI {
    placement.app(forUser: user).map { client.forApp($0) } ?? client
  }

  /// The client's error in the lifecycle's terms, redacted; a 429 pauses the write budget.
  func callError(_ error: FlyAPIError) -> UserLifecycle.CallError {
    if error.code == .rateLimited { budget.pause(retryAfter: error.retryAfter) }
    let kind: UserLifecycle.CallError.Kind =
      switch error.code {
      case .notFound: .notFound
      case .precondition, .conflict: .notYet
      case .rateLimited: .rateLimited
      default: .other
      }
    return UserLifecycle.CallError(
      kind: kind, retryable: error.isRetryable, outcomeUnknown: error.outcomeUnknown,
      aboutApp: error.code == .notFound && error.message.lowercased().contains("app"), status: error.status,
      requestID: error.requestID, code: error.code.description, message: redactor.scrub(error.description))
  }

  /// A read by id of a machine or volume the list left out.
  func read(_ action: Action) async -> UserLifecycle.Outcome {
    let client = self.client(for: action.userID)
    do {
      switch action.call {
      case .verifyMachine(let id): return .readMachine(Self.found(try await client.getMachine(id)))
      case .verifyVolume(let id): return .readVolume(Self.found(try await client.getVolume(id)))
      case .checkUpdate(let id, let listed):
        if let listed {
          // The list already tells (no health checks to read): no request.
          return .readMachine(
            UserLifecycle.FoundMachine(
              id: id, state: listed.state, owner: action.userID, versionHash: listed.versionHash))
        }
        return .readMachine(Self.found(try await client.getMachine(id)))
      case .readEvents(let id, _):
        // Exits nobody asked for (a stop of ours, or an operator's, says `requested_stop`).
        let events = try await client.machineEvents(id, limit: 50)
        return .eventsRead(
          events.compactMap { event in
            guard event.type == "exit", let exit = event.exit, exit.requestedStop != true else { return nil }
            return MachineExit(
              at: Double(event.timestamp ?? 0) / 1000, exitCode: exit.exitCode, oomKilled: exit.oomKilled == true)
          })
      default: return .refused("not a read")
      }
    } catch {
      return .readFailed(callError(error))
    }
  }

  /// Before creating again after a create: look for the resource (by the id Fly answered with;
  /// else machines by metadata, volumes by name). What may be adopted is the lifecycle's to say.
  func lookUp(_ action: Action) async -> UserLifecycle.Outcome {
    let client = self.client(for: action.userID)
    do {
      switch action.call {
      case .createMachine:
        if let id = action.knownResourceID {
          // Fly answered an earlier create with this id: a GET sees it even while lists lag.
          return .lookedUpMachines(
            try await ifPresent { () async throws(FlyAPIError) in try await client.getMachine(id) }.map(Self.found))
        }
        return .lookedUpMachines(
          try await client.listMachines(ListMachinesQuery(metadata: [FleetNames.userMetadataKey: action.userID]))
            .map(Self.found))
      case .createVolume, .restoreVolume:
        if let id = action.knownResourceID {
          return .lookedUpVolumes(
            try await ifPresent { () async throws(FlyAPIError) in try await client.getVolume(id) }.map(Self.found))
        }
        return .lookedUpVolumes(try await client.listVolumes(summary: true).map(Self.found))
      default:
        return .lookedUpMachines([])
      }
    } catch {
      return .lookUpFailed(callError(error))
    }
  }

  /// A GET by id as a list of zero or one: a 404 means gone, any other error is thrown.
  func ifPresent<T>(_ get: () async throws(FlyAPIError) -> T) async throws(FlyAPIError) -> [T] {
    do {
      return [try await get()]
    } catch {
      if error.code == .notFound { return [] }
      throw error
    }
  }

  static func found(_ machine: FlyMachine) -> UserLifecycle.FoundMachine {
    UserLifecycle.FoundMachine(
      id: machine.id, state: MachineState(machine.state), owner: machine.config?.metadata[FleetNames.userMetadataKey],
      region: machine.region, volumeID: machine.config?.mounts.first?.volume, privateIP: machine.privateIP,
      version: machine.version,
      healthy: machine.checks.flatMap { $0.isEmpty ? nil : $0.allSatisfy { $0.status == "passing" } })
  }

  static func found(_ volume: FlyVolume) -> UserLifecycle.FoundVolume {
    UserLifecycle.FoundVolume(id: volume.id, name: volume.name, state: VolumeState(volume.state), region: volume.region)
  }

  /// Makes the call.
  func perform(_ action: Action) async -> UserLifecycle.Outcome {
    let client = self.client(for: action.userID)
    do {
      switch action.call {
      case .createVolume(let region, let spec, _):
        let volume = try await client.createVolume(
          CreateVolumeRequest(
            name: FleetNames.volumeName(forUser: action.userID), region: region, sizeGB: spec.volumeSizeGB,
            encrypted: spec.encrypted, snapshotRetention: volumePolicy.snapshotRetentionDays,
            autoBackupEnabled: volumePolicy.autoBackup))
        return .done(UserLifecycle.Made(id: volume.id))
      case .restoreVolume(let region, let snapshotID, let sizeGB, let spec, let replacing, let existing, _):
        // Only a snapshot of this user's own volumes (a row written by hand, or by a dashboard,
        // must never put another user's data in this user's machine).
        var volumes = existing
        if let replacing, !volumes.contains(replacing) { volumes.insert(replacing, at: 0) }
        var owned = false
        for id in volumes where !owned {
          do {
            owned = try await client.listSnapshots(volumeID: id).contains { $0.id == snapshotID }
          } catch  where error.code == .notFound {
            continue  // a volume gone: its snapshots are not listed under it
          }
        }
        guard owned else {
          return .failed(
            UserLifecycle.CallError(
              kind: .other, code: "snapshot_not_users",
              message:
                "snapshot \(snapshotID) is not a snapshot of \(action.userID)'s volumes (\(volumes.joined(separator: ", ")))"
            ))
        }
        // The volume it replaces stays (kept for the retention once the restore is done), but a
        // snapshot of it comes first all the same: a restore is a step back in the user's data.
        var snapshot: UserLifecycle.Snapshot?
        if let replacing {
          do {
            snapshot = try await snapshotBefore("restoring over", volumeID: replacing, client: client)
          } catch  where error.code == .notFound {
            snapshot = nil  // gone already: nothing left to keep
          }
        }
        let volume = try await client.createVolume(
          CreateVolumeRequest(
            name: FleetNames.volumeName(forUser: action.userID), region: region, sizeGB: sizeGB,
            encrypted: spec.encrypted, snapshotRetention: volumePolicy.snapshotRetentionDays,
            autoBackupEnabled: volumePolicy.autoBackup, snapshotID: snapshotID))
        return .done(UserLifecycle.Made(id: volume.id, snapshot: snapshot))
      case .finishRestore:
        return .done(nil)
      case .extendVolume(let id, _, let toGB):
        // Read first: grown already (a lagging list, an earlier attempt) is done, never grown twice.
        let volume = try await client.getVolume(id)
        guard let size = volume.sizeGB, size < toGB else { return .done(UserLifecycle.Made(id: id)) }
        let snapshot = try await snapshotBefore("extending", volumeID: id, client: client)
        _ = try await client.extendVolume(id, sizeGB: toGB)
        return .done(UserLifecycle.Made(id: id, snapshot: snapshot))
      case .readEvents:
        return await read(action)
      case .createMachine(let region, _, _, _):
        let built: (config: FlyMachineConfig, secrets: [String: String])
        do {
          built = try machineConfigAndSecrets(action)
        } catch {
          return .refused(redactor.scrub("\(error)"))
        }
        // One app per user: the app's secrets first, and the machine made to see that version.
        let secretsVersion = try await setAppSecrets(built.secrets, client: client)
        let machine = try await client.createMachine(
          CreateMachineRequest(
            name: FleetNames.machineName(forUser: action.userID), region: region, config: built.config,
            minSecretsVersion: secretsVersion))
        return .done(
          UserLifecycle.Made(
            id: machine.id, state: MachineState(machine.state), privateIP: machine.privateIP, version: machine.version))
      case .updateMachine(let id, _, _, _, _):
        return try await update(id, action)
      case .start(let id):
        _ = try await client.startMachine(id, leaseNonce: nil)
      case .stop(let id, _):
        try await client.stopMachine(id, nil, leaseNonce: nil)
      case .destroyMachine(let id, _):
        try await client.destroyMachine(id, force: false, leaseNonce: nil)
      case .deleteVolume(let id):
        // The data goes with it: a snapshot first, or the delete waits (retried, then alerted).
        let snapshot = try await snapshotBefore("deleting", volumeID: id, client: client)
        _ = try await client.deleteVolume(id)
        return .done(UserLifecycle.Made(id: id, snapshot: snapshot))
      case .verifyMachine, .verifyVolume, .checkUpdate:
        return await read(action)
      case .createApp(let app, let org):
        return try await createApp(app, org: org, user: action.userID)
      case .assignIPs(let app):
        let scoped = self.client.forApp(app)
        let ips = try await scoped.listIPs()
        if !ips.contains(where: { $0.isV4 }) { _ = try await scoped.assignIP(AssignIPRequest(type: "shared_v4")) }
        if !ips.contains(where: { !$0.isV4 && !$0.ip.hasPrefix("fdaa:") }) {
          _ = try await scoped.assignIP(AssignIPRequest(type: "v6"))
        }
      case .deleteApp(let app):
        return try await deleteApp(app)
      case .adoptMachine(let id, let volumeID, _):
        // Read first: tagged only if it is still untagged (or already this user's), not gone, and
        // mounts the volume the plan saw.
        let machine = try await client.getMachine(id)
        let owner = machine.config?.metadata[FleetNames.userMetadataKey]
        if let owner, owner != action.userID {
          return .refused("machine \(id) is tagged for user \(owner), not \(action.userID): not adopted")
        }
        if MachineState(machine.state).isGone {
          return .refused("machine \(id) is \(machine.state): not adopted")
        }
        let mounted = machine.config?.mounts.first?.volume
        guard mounted == volumeID else {
          return .refused("machine \(id) mounts \(mounted ?? "no volume"), not \(volumeID): not adopted")
        }
        if owner == nil {
          try await client.setMetadata(machineID: id, key: FleetNames.userMetadataKey, value: action.userID)
        }
        return .done(
          UserLifecycle.Made(
            id: id, state: MachineState(machine.state), privateIP: machine.privateIP, version: machine.version))
      }
      return .done(nil)
    } catch {
      return .failed(callError(error))
    }
  }

  /// A complete snapshot of `volumeID` from the last few minutes, or one taken now: what a step
  /// that destroys data stands on. Without one the step does not go (the error says so).
  func snapshotBefore(
    _ step: String, volumeID: String, client: any FlyMachinesAPI
  ) async throws(FlyAPIError) -> UserLifecycle.Snapshot {
    do {
      let (snapshot, reused) = try await Snapshots.fresh(client, volumeID: volumeID, now: clock.now())
      return UserLifecycle.Snapshot(id: snapshot.id, volumeID: volumeID, reused: reused)
    } catch {
      // A volume already gone stays "already gone" (404); anything else holds the step.
      if error.code == .notFound { throw error }
      var held = error
      held.message =
        "no snapshot of volume \(volumeID) before \(step) it (\(error.message)): waits until one is taken"
      // "Not yet" for what may pass (a 5xx, a snapshot still being taken); a refusal stays one.
      if held.code != .rateLimited && held.isRetryable { held.code = .precondition }
      throw held
    }
  }

  /// `POST /v1/apps` with a key from the user id: the same create again (a lost answer) answers the
  /// same app. A name answered taken is read: an app of our org is ours (made before the key was
  /// kept, or by the old provisioning code: the user's app either way), one we cannot read is
  /// someone else's, never adopted.
  func createApp(_ app: String, org: String, user: String) async throws(FlyAPIError) -> UserLifecycle.Outcome {
    let key = "fleetkeeper-" + Digests.hex(Digests.sha256(Array("\(org)/\(user)/\(app)".utf8))).prefix(32)
    do {
      let made = try await client.createApp(CreateAppRequest(name: app, orgSlug: org, idempotencyKey: String(key)))
      return .done(UserLifecycle.Made(id: made.name))
    } catch  where error.flyStatus == "name_taken" {
      let ours: FlyApp?
      do {
        ours = try await client.forApp(app).getApp()
      } catch  where error.code == .notFound {
        ours = nil
      }
      if let ours, ours.organization?.slug == org {
        return .done(UserLifecycle.Made(id: ours.name))
      }
      return .failed(
        UserLifecycle.CallError(
          kind: .other, status: 422, requestID: error.requestID, code: "name_taken",
          message: "app name \(app) is held by another organization: not adopted"))
    }
  }

  /// Reads the app's machines and volumes first: an app that still holds either is not deleted
  /// (deleting an app deletes everything in it).
  func deleteApp(_ app: String) async throws(FlyAPIError) -> UserLifecycle.Outcome {
    let scoped = client.forApp(app)
    // The app's own counts first, then its lists: any of them showing something holds the delete.
    let counts = try await scoped.getApp()
    if (counts.machineCount ?? 0) > 0 || (counts.volumeCount ?? 0) > 0 {
      return .failed(
        UserLifecycle.CallError(
          kind: .notYet, code: "app_not_empty",
          message:
            "app \(app) still counts \(counts.machineCount ?? 0) machine(s) and \(counts.volumeCount ?? 0) volume(s): not deleted"
        ))
    }
    let machines = try await scoped.listMachines(ListMachinesQuery())
    let volumes = try await scoped.listVolumes(summary: true)
    let liveMachines = machines.filter { !MachineState($0.state).isGone }
    let liveVolumes = volumes.filter { !VolumeState($0.state).isGone }
    guard liveMachines.isEmpty && liveVolumes.isEmpty else {
      let held = liveMachines.map { "machine \($0.id)" } + liveVolumes.map { "volume \($0.id)" }
      return .failed(
        UserLifecycle.CallError(
          kind: .notYet, code: "app_not_empty",
          message: "app \(app) still holds \(held.joined(separator: ", ")): not deleted"))
    }
    try await scoped.deleteApp()
    return .done(nil)
  }

  /// An update: read the machine (its version, its config, its state), build the desired config
  /// on the machine's own volume, and send it only when a field differs, guarded by
  /// `current_version` (a machine changed since answers 409: read again next pass, never
  /// clobbered). A stopped machine is updated with `skip_launch` and stays stopped.
  func update(_ id: String, _ action: Action) async throws(FlyAPIError) -> UserLifecycle.Outcome {
    let client = self.client(for: action.userID)
    let current = try await client.getMachine(id)
    guard let observed = current.config, current.hostStatus == nil || current.hostStatus == "ok" else {
      return .failed(
        UserLifecycle.CallError(
          kind: .notYet, code: "incomplete_config",
          message: "machine \(id)'s config cannot be read now (host \(current.hostStatus ?? "unknown")): not updated"))
    }
    if let owner = observed.metadata[FleetNames.userMetadataKey], owner != action.userID {
      return .refused("machine \(id) is tagged for user \(owner), not \(action.userID): not updated")
    }
    let desired: FlyMachineConfig
    let secrets: [String: String]
    do {
      (desired, secrets) = try machineConfigAndSecrets(action, volume: observed.mounts.first?.volume)
    } catch {
      return .refused(redactor.scrub("\(error)"))
    }
    let configDiff = ConfigDiff.lines(current: observed, desired: desired)
    var diff = configDiff
    // A stopped machine stays stopped; a running (or failed) one boots on the new config.
    let skipLaunch = current.state == "stopped" || current.state == "suspended" || current.state == "created"
    let launched = !skipLaunch
    // A bigger volume first (grow only): Fly says whether the machine must restart to see it, and
    // the update's reboot is that restart, inside the rollout's wave.
    var extended: (volumeID: String, from: Int, to: Int)?
    var snapshot: UserLifecycle.Snapshot?
    var restart = false
    if let volumeID = observed.mounts.first?.volume, let wanted = action.spec?.volumeSizeGB {
      // The list's size, when it showed this volume; else a read.
      var listed: Int?
      if case .updateMachine(_, let listedVolume, _, _, let gb) = action.call, listedVolume == volumeID { listed = gb }
      var current = listed
      if current == nil { current = try await client.getVolume(volumeID).sizeGB }
      if let size = current, size < wanted {
        snapshot = try await snapshotBefore("extending", volumeID: volumeID, client: client)
        let answer = try await client.extendVolume(volumeID, sizeGB: wanted)
        extended = (volumeID, size, wanted)
        restart = launched && (answer.needsRestart ?? true)
        diff.append("volume \(volumeID): \(size) GB → \(wanted) GB\(restart ? " (restart)" : "")")
      }
    }
    guard !diff.isEmpty else { return .configMatches(version: current.version) }
    guard !configDiff.isEmpty || restart else {
      // Only the volume grew, and no restart is needed (the machine is stopped): nothing to send.
      return .updated(
        UserLifecycle.Updated(
          from: current.version, to: current.version, diff: diff, launched: false, extended: extended,
          snapshot: snapshot))
    }
    // One app per user: the app's secrets first (a rotation shows as a new digest in the env), and
    // the machine updated to see that version.
    let secretsVersion = configDiff.isEmpty ? nil : try await setAppSecrets(secrets, client: client)
    let answer = try await client.updateMachine(
      id,
      UpdateMachineRequest(
        config: desired, currentVersion: current.version, skipLaunch: skipLaunch ? true : nil,
        minSecretsVersion: secretsVersion))
    return .updated(
      UserLifecycle.Updated(
        from: current.version, to: answer.version, diff: diff, launched: launched, extended: extended,
        snapshot: snapshot))
  }

  /// A missing secret named by the template.
  struct MissingSecret: Error, CustomStringConvertible {
    var variable: String
    var secret: String
    var description: String { "env \(variable) names secret $\(secret), which the controller does not hold" }
  }

  /// A missing key named by a template's `{{secret:NAME}}`.
  struct MissingKey: Error, CustomStringConvertible {
    var field: String
    var key: String
    var description: String {
      "\(field) derives a per-user secret from key $\(key) ({{secret:\(key)}}), which the controller does not hold"
    }
  }

  /// A template text whose placeholders cannot be read.
  struct BadPlaceholder: Error, CustomStringConvertible {
    var field: String
    var reason: String
    var description: String { "\(field): \(reason)" }
  }

  /// The env variable that carries, in a user's own app, a digest of the secrets the app holds for
  /// the machine: a rotated secret changes it, so the machine's config differs and is updated (to
  /// see the app's new secrets version) like any other change. The digest, never a value.
  static let secretsDigestVariable = "FLEETKEEPER_SECRETS_DIGEST"

  /// The machine's config and, one app per user, the env values that are secrets (a `$NAME` the
  /// controller holds, or a value deriving `{{secret:KEY}}`), taken out of the env: they become
  /// the app's secrets, which Fly gives the machine as env. In the shared app they stay in the env
  /// (app secrets there would be every user's).
  func machineConfigAndSecrets(_ action: Action, volume: String?? = nil) throws -> (
    config: FlyMachineConfig, secrets: [String: String]
  ) {
    var config = try machineConfig(action, volume: volume)
    guard placement.app(forUser: action.userID) != nil else { return (config, [:]) }
    let spec = action.spec ?? MachineTemplate()
    var secrets: [String: String] = [:]
    for (name, value) in spec.env where (value.hasPrefix("$") && value.count > 1) || value.contains("{{secret:") {
      if let resolved = config.env[name] {
        secrets[name] = resolved
        config.env[name] = nil
      }
    }
    if !secrets.isEmpty {
      let lines = secrets.keys.sorted().map { "\($0)=\(secrets[$0]!)" }.joined(separator: "\n")
      config.env[Self.secretsDigestVariable] = String(Digests.hex(Digests.sha256(Array(lines.utf8))).prefix(32))
    }
    return (config, secrets)
  }

  /// Sets the app's secrets (one app per user) and answers the version a machine must see; nil
  /// when there is none to set.
  func setAppSecrets(_ secrets: [String: String], client: any FlyMachinesAPI) async throws(FlyAPIError) -> Int? {
    guard !secrets.isEmpty else { return nil }
    return try await client.setSecrets(secrets.mapValues { Optional($0) })
  }

  /// The config of a user's machine: the template with overrides, secrets resolved, the user's
  /// placeholders expanded (``Placeholders``), tagged ours. Every secret value, shared or derived,
  /// is taught to the redactor before it leaves this function.
  func machineConfig(_ action: Action, volume: String?? = nil) throws -> FlyMachineConfig {
    let spec = action.spec ?? MachineTemplate()
    var config = FlyMachineConfig()
    config.image = spec.image
    config.guest = FlyGuest(cpuKind: spec.cpuKind, cpus: spec.cpus, memoryMB: spec.memoryMB)
    let context = Placeholders.Context(userID: action.userID, appName: client(for: action.userID).appName)
    func expand(_ text: String, field: String) throws -> String {
      // A template written straight into the table may hold what `template set` refuses.
      do throws(Placeholders.Problem) { _ = try Placeholders.parse(text) } catch {
        throw BadPlaceholder(field: field, reason: error.reason)
      }
      return try Placeholders.expand(text, context) { (key: String) throws(MissingKey) -> String in
        guard let value = secrets[key], !value.isEmpty else { throw MissingKey(field: field, key: key) }
        let derived = Placeholders.derivedSecret(key: value, userID: action.userID)
        redactor.add([derived])
        return derived
      }
    }
    var env: [String: String] = [:]
    for (name, value) in spec.env {
      if value.hasPrefix("$"), value.count > 1 {
        let secret = String(value.dropFirst())
        guard let resolved = secrets[secret] else { throw MissingSecret(variable: name, secret: secret) }
        redactor.add([resolved])
        env[name] = resolved
      } else {
        env[name] = try expand(value, field: "env \(name)")
      }
    }
    config.env = env
    config.initCommand = try spec.initCommand?.map { try expand($0, field: "init command") }
    if let services = spec.servicesJSON,
      let value = try? JSONDecoder().decode(JSONValue.self, from: Data(services.utf8))
    {
      config.services = value
    }
    if let volume = volume ?? action.volumeID { config.mounts = [FlyMount(volume: volume, path: spec.mountPath)] }
    config.metadata = [FleetNames.userMetadataKey: action.userID, "fleet_managed_by": "fleetkeeper"]
    config.restartPolicy = spec.restartPolicy
    return config
  }
}
