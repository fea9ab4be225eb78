/// The reconcile decision: a pure function from what should be, what is, and what the controller
/// remembers, to the actions of one pass and the drift it sees. No clock, no I/O, no randomness:
/// `now` comes in, and the same inputs always give the same plan.
///
/// Cost is O(users + machines + volumes): everything is grouped in hash maps once.
public enum Planner {
  public struct Input: Sendable {
    public var desired: DesiredSnapshot
    public var observed: Observation
    /// The dashboard's `machines` rows, by user (a lookup, so a caller need not build a map of
    /// 100k values for one pass).
    public var recorded: @Sendable (String) -> RecordedMachine?
    public var states: UserMap<UserState>
    public var guardState: GuardState
    /// Unix seconds.
    public var now: Double
    public var settings: PlannerSettings
    /// Whether this pass may create or destroy (false when the lists look suspect).
    public var listsTrusted: Bool
    /// Seconds this process has watched the fleet, by a monotonic clock (retention's floor).
    public var watching: Double = .infinity
    /// ``ConfigDigest/salt(appName:secrets:)``: the app and the secrets the template names.
    public var configSalt: UInt64 = 0
    /// The rollout as the last pass left it, and what the operator says about rollouts.
    public var rollout: RolloutState?
    public var rolloutControl = RolloutControl()
    /// The template's revision (for what the rollout says).
    public var templateRevision: Int?

    public init(
      desired: DesiredSnapshot, observed: Observation, recorded: [String: RecordedMachine] = [:],
      states: UserMap<UserState> = [:], guardState: GuardState = .init(), now: Double,
      settings: PlannerSettings = .init(), listsTrusted: Bool = true
    ) {
      self.desired = desired
      self.observed = observed
      self.recorded = { recorded[$0] }
      self.states = states
      self.guardState = guardState
      self.now = now
      self.settings = settings
      self.listsTrusted = listsTrusted
    }

    /// With the recorded rows as a lookup.
    public init(
      desired: DesiredSnapshot, observed: Observation,
      recordedBy lookup: @escaping @Sendable (String) -> RecordedMachine?,
      states: UserMap<UserState>, guardState: GuardState, now: Double, settings: PlannerSettings,
      listsTrusted: Bool, watching: Double = .infinity, configSalt: UInt64 = 0, rollout: RolloutState? = nil,
      rolloutControl: RolloutControl = RolloutControl(), templateRevision: Int? = nil
    ) {
      self.init(
        desired: desired, observed: observed, states: states, guardState: guardState, now: now, settings: settings,
        listsTrusted: listsTrusted)
      self.recorded = lookup
      self.watching = watching
      self.configSalt = configSalt
      self.rollout = rollout
      self.rolloutControl = rolloutControl
      self.templateRevision = templateRevision
    }
  }

  enum Adoption {
    case adopt(Action)
    case ambiguous(DriftFinding)
  }

  /// One app per user, an app the old provisioning code made: adopted only when it holds exactly
  /// one machine without a tag, mounting the app's only volume, for a user desired running or
  /// stopped who has no tagged machine. Anything else is reported and left alone.
  static func adoption(
    user: String, app: String, untagged: [ObservedMachine], tagged: [ObservedMachine], volumes: [ObservedVolume],
    unadopted: [ObservedVolume], desired: DesiredMachine?
  ) -> Adoption {
    func ambiguous(_ why: String, _ resource: String?) -> Adoption {
      .ambiguous(
        DriftFinding(
          kind: .adoptionAmbiguous, userID: user, resourceID: resource,
          message: "app \(app): \(why): not adopted, nothing done for \(user) until an operator sorts it out"))
    }
    guard let desired, desired.state != .absent else {
      return ambiguous("made before fleetkeeper, but \(user) is not desired running or stopped", untagged.first?.id)
    }
    guard tagged.isEmpty else {
      return ambiguous(
        "machine \(tagged[0].id) is already \(user)'s, yet the app also holds "
          + (untagged.isEmpty
            ? "volume \(unadopted[0].id) (\(unadopted[0].name)) that it does not mount"
            : "machine \(untagged[0].id) without a tag"),
        untagged.first?.id ?? unadopted.first?.id)
    }
    guard untagged.count == 1 else {
      if untagged.isEmpty {
        return ambiguous(
          "volume \(unadopted[0].id) (\(unadopted[0].name)) has no machine (it may hold data)", unadopted[0].id)
      }
      return ambiguous(
        "\(untagged.count) machines without a tag (\(untagged.map(\.id).sorted().joined(separator: ", ")))",
        untagged[0].id)
    }
    let machine = untagged[0]
    guard volumes.count == 1, let volume = volumes.first,
      machine.volumeID == volume.id || volume.attachedMachineID == machine.id
    else {
      return ambiguous(
        volumes.isEmpty
          ? "machine \(machine.id) has no volume"
          : "machine \(machine.id) and \(volumes.count) volume(s) (\(volumes.map(\.id).sorted().joined(separator: ", "))) do not pair one to one",
        machine.id)
    }
    return .adopt(
      Action(
        userID: user, call: .adoptMachine(machineID: machine.id, volumeID: volume.id, region: machine.region),
        reason:
          "adopt: machine \(machine.id) in app \(app) (made before fleetkeeper, no fleet_user_id) with volume \(volume.id): tag it for \(user), no restart"
      ))
  }

  /// What the user's app needs before a volume is made in it (one app per user).
  enum AppGate: Equatable {
    case ready
    case act(Action)
    /// The app is being deleted (the user came back meanwhile): wait until it is gone.
    case wait
  }

  /// The app first (made with an idempotency key), then its addresses; the shared app needs nothing.
  /// An app the list shows is taken as made (its addresses are read before any is added).
  static func appGate(user: String, placement: AppPlacement, apps: Set<String>?, state: UserState) -> AppGate {
    guard case .appPerUser(_, let org) = placement.topology, let app = placement.app(forUser: user) else {
      return .ready
    }
    if state.appSetup.contains(.retiring) {
      // Deleted a moment ago: nothing is made in an app on its way out; once the list drops
      // it, the user starts over with a new one.
      if apps?.contains(app) == true { return .wait }
      return .act(
        Action(userID: user, call: .createApp(app: app, org: org), reason: "desired running, no app \(app)"))
    }
    if !state.appSetup.contains(.created) && apps?.contains(app) != true {
      return .act(
        Action(userID: user, call: .createApp(app: app, org: org), reason: "desired running, no app \(app)"))
    }
    if !state.appSetup.contains(.addressed) {
      return .act(
        Action(
          userID: user, call: .assignIPs(app: app),
          reason: "app \(app) needs its public addresses (shared IPv4, IPv6)"))
    }
    return .ready
  }

  /// Plans a pass. The states map is updated in place when the caller hands it over (moves the
  /// input in, keeping no other reference); otherwise it is copied on the first change.
  public static func plan(_ input: consuming Input) -> Plan {
    var actions: [Action] = []
    var findings: [DriftFinding] = []
    var waiting: [String] = []
    var states = input.states
    input.states = [:]
    var changedStates: [String] = []
    var verifies = 0
    var eventReadActions: [(seen: Double, action: Action)] = []
    let now = input.now
    let settings = input.settings
    // What every user's machine should run: the template's digest, once per pass; a user's own
    // overrides add theirs.
    let templateDigest = ConfigDigest.template(input.desired.template, salt: input.configSalt)
    var updates = ConfigBudget(
      inFlight: states.values.reduce(0) { $1.update != nil ? $0 + 1 : $0 }, settings: settings)
    // Machines whose template changed, ready for their rollout wave (empty outside rollouts).
    var rolloutReady: [String: ObservedMachine] = [:]
    // Updates the list shows through this pass (recorded by their checks as this pass acts).
    var listedThrough: Set<String> = []
    // Health checks live in the services, which only the template sets: once per pass, not per user.
    let templateHasChecks = Self.hasChecks(input.desired.template)
    let topology = input.desired.topology
    let placement = input.desired.placement

    // Group what Fly shows by user: indices, not copies (100k users fit a small VM).
    let machines = input.observed.machines
    let allVolumes = input.observed.volumes
    var machinesByUser = IndexGroups(capacity: input.desired.machines.count)
    // One app per user: machines without a tag, in a user's app (the old provisioning code's), by
    // the user the app's name stands for: adopted, or reported when that is ambiguous.
    var untaggedByUser = IndexGroups(capacity: 0)
    // Apps named by the rule's hashed form, by user: built only if an untagged item needs it.
    var hashedApps: [String: String]?
    func user(ofApp app: String) -> String? {
      if let user = placement.user(ofApp: app) { return user }
      guard case .appPerUser(let prefix, _) = topology, app.hasPrefix(prefix + "-h-") else { return nil }
      if hashedApps == nil {
        var map: [String: String] = [:]
        for user in input.desired.machines.keys where !(placement.app(forUser: user) ?? "").hasPrefix(prefix + "-u-") {
          if let app = placement.app(forUser: user) { map[app] = user }
        }
        hashedApps = map
      }
      return hashedApps![app]
    }
    for (index, machine) in machines.enumerated() {
      guard let user = machine.userID else {
        if let app = machine.app, !machine.isGone {
          if let owner = user(ofApp: app), input.desired.machines.contains(owner) {
            untaggedByUser.add(owner, index)
          } else {
            findings.append(
              DriftFinding(
                kind: .adoptionAmbiguous, resourceID: machine.id,
                message:
                  "machine \(machine.id) in app \(app) has no fleet_user_id and no desired user matches the app's name (map it: fleetkeeper fleet map): left alone"
              ))
          }
        } else if !machine.isGone {
          findings.append(
            DriftFinding(
              kind: .foreignMachine, resourceID: machine.id,
              message: "machine \(machine.id) (\(machine.name ?? "unnamed")) has no fleet_user_id: not ours, left alone"
            ))
        }
        continue
      }
      if let app = machine.app, app != placement.app(forUser: user) {
        // Tagged for a user, but not in that user's app (another fleet's prefix, a copy): never
        // taken for the user's, so never stopped or destroyed as a duplicate or an orphan.
        if !machine.isGone {
          findings.append(
            DriftFinding(
              kind: .foreignMachine, resourceID: machine.id,
              message:
                "machine \(machine.id) is tagged for \(user) but is in app \(app), not \(placement.app(forUser: user) ?? "-"): left alone"
            ))
        }
        continue
      }
      machinesByUser.add(user, index)
    }
    // A volume belongs to a known user (desired, tagged on a machine, or remembered) by its name.
    // Direct names (`fk_<id>`, nearly all) are read back; only hashed ones need a map.
    func known(_ user: String) -> Bool {
      input.desired.machines.contains(user) || machinesByUser.first[user] != nil || states[user] != nil
    }
    var userByHashedName: [String: String] = [:]
    func addHashed(_ user: String) {
      if !FleetNames.mapsDirectly(user) { userByHashedName[FleetNames.volumeName(forUser: user)] = user }
    }
    input.desired.machines.keys.forEach(addHashed)
    machinesByUser.keys.forEach(addHashed)
    states.keys.forEach(addHashed)
    var volumesByUser = IndexGroups(capacity: input.desired.machines.count)
    // Every listed volume's id, built only if a machine mounts a volume that is not its user's.
    var volumeIDs: Set<String>?
    func isListed(volume id: String) -> Bool {
      if volumeIDs == nil { volumeIDs = Set(allVolumes.lazy.filter { !$0.isGone }.map(\.id)) }
      return volumeIDs!.contains(id)
    }
    // Volumes on their way out are grouped too: "listed as destroyed" is what lets a remembered
    // volume be taken for gone without a read by id.
    for (index, volume) in allVolumes.enumerated() {
      if let user = FleetNames.directUser(volumeName: volume.name) {
        if known(user), volume.app == nil || volume.app == placement.app(forUser: user) {
          volumesByUser.add(user, index)
        }
      } else if let user = userByHashedName[volume.name] {
        if volume.app == nil || volume.app == placement.app(forUser: user) { volumesByUser.add(user, index) }
      } else if let app = volume.app, let user = user(ofApp: app), known(user) {
        // One app per user: whatever its name, a volume in a user's app is that user's.
        volumesByUser.add(user, index)
      }
    }

    // Every user we know of, once: desired rows, machines tagged for a user, volumes of known
    // users, remembered volumes and pending creates. An array, not a set (100k ids, tens of MB less).
    var users = input.desired.machines.keys
    for user in machinesByUser.keys where !input.desired.machines.contains(user) { users.append(user) }
    for user in volumesByUser.keys where !input.desired.machines.contains(user) && machinesByUser.first[user] == nil {
      if volumesByUser.items(user, in: allVolumes).contains(where: { !$0.isGone }) || states[user] != nil {
        users.append(user)
      }
    }
    for (user, state) in states
    where (state.pending != nil || state.volumeID != nil || state.appSetup.contains(.retiring))
      && !input.desired.machines.contains(user)
      && machinesByUser.first[user] == nil && volumesByUser.first[user] == nil
    {
      users.append(user)
    }

    // The first pass over a fleet remembers every user: the map is allocated once at its size
    // (growing it by doubling would hold the old and the new tables at once).
    if states.count < users.count / 2 { states.reserveCapacity(users.count) }

    for (user, reason) in input.desired.invalidRows {
      // Never acted on, never taken for absent.
      findings.append(
        DriftFinding(kind: .invalidDesiredRow, userID: user, message: "desired row unreadable: \(reason)"))
    }

    for user in users where input.desired.invalidRows[user] == nil {
      let original = states[user]
      var state = original ?? UserState()
      defer {
        // Written only when changed: a quiet pass never copies the states map.
        let next = state.isEmpty ? nil : state
        if next != original {
          states[user] = next
          changedStates.append(user)
        }
      }
      let desired = input.desired.machines[user]
      let listedMachines = machinesByUser.items(user, in: machines)
      let live = machinesByUser.items(user, in: machines) { !$0.isGone }
      let listedVolumes = volumesByUser.items(user, in: allVolumes)
      let volumes = volumesByUser.items(user, in: allVolumes) { !$0.isGone }
      let recorded = input.recorded(user)
      state.clampDeadlines(now: now, maxBackoff: settings.maxBackoff)

      // One app per user: a machine without a tag, or a volume fleetkeeper neither made nor adopted,
      // in the user's app. The old provisioning code's: tagged (adopted) when it is unambiguous,
      // reported otherwise; nothing else is done for the user meanwhile.
      if topology.isAppPerUser {
        let untagged = untaggedByUser.items(user, in: machines) { !$0.isGone }
        if state.volumeID == nil, untagged.isEmpty,
          let mounted = volumes.first(where: { volume in live.contains { $0.volumeID == volume.id } })
        {
          state.volumeID = mounted.id  // mounted by the user's tagged machine: ours (a state lost)
        }
        // A volume the user's tagged machine mounts is the user's (a host migration forks it under
        // a new id with the same name).
        if untagged.isEmpty,
          let mounted = volumes.first(where: { volume in
            volume.id != state.volumeID && live.contains { $0.volumeID == volume.id }
          })
        {
          state.volumeID = mounted.id
        }
        let unadopted = volumes.filter { volume in
          !FleetNames.isFleetVolumeName(volume.name) && volume.id != state.volumeID
            && !live.contains { $0.volumeID == volume.id }
        }
        if !untagged.isEmpty || !unadopted.isEmpty {
          switch Self.adoption(
            user: user, app: placement.app(forUser: user) ?? "", untagged: Array(untagged), tagged: Array(live),
            volumes: Array(volumes), unadopted: Array(unadopted), desired: desired)
          {
          case .adopt(let action):
            if (state.backoffUntil ?? 0) <= now { actions.append(action) }
          case .ambiguous(let finding):
            findings.append(finding)
          }
          waiting.append(user)
          continue
        }
      }

      // Clear a pending create whose resource has shown up (or whose answer said it exists).
      // A restore closed or withdrawn around the loop (its row no longer asks): forgotten; what it
      // made is then the user's like anything else (a second machine is a duplicate).
      if let restore = state.restore, input.desired.restores[user]?.id != restore.requestID,
        restore.newVolumeID == nil
      {
        state.restore = nil  // nothing made yet: withdrawn cleanly
      }
      if let pending = state.pending {
        let seen: Bool
        switch (pending.kind, state.restore) {
        // Restoring, the old volume and machine are listed all along: only the new ones count.
        case (.volume, let restore?):
          seen = volumes.contains { $0.id != restore.oldVolumeID && !restore.existingVolumes.contains($0.id) }
        case (.machine, let restore?):
          seen = restore.newVolumeID.map { id in live.contains { $0.volumeID == id } } ?? false
        case (.volume, nil): seen = !volumes.isEmpty
        case (.machine, nil): seen = !live.isEmpty
        }
        if seen { state.pending = nil }
      }
      let pendingActive: Bool = {
        guard let pending = state.pending else { return false }
        return now - pending.since < settings.pendingGrace
      }()
      // A failure's backoff ends when the operator edits the user's desired row after it (a fixed
      // image, region or state is tried at once, not after the old failure's wait).
      if let since = state.backoffSince, let desired, (state.backoffUntil ?? 0) > now,
        state.failures > 0 || state.lastError != nil, Double(desired.updatedAt) >= since.rounded(.down)
      {
        state.backoffUntil = nil
        state.backoffSince = nil
        state.failures = 0
        state.lastError = nil
      }
      var backedOff: Bool { (state.backoffUntil ?? 0) > now }
      if state.failures >= settings.retryBudget, let error = state.lastError {
        findings.append(
          DriftFinding(
            kind: .actionFailing, userID: user,
            message: "\(state.failures) consecutive failures; last: \(error)"))
      }
      if state.appSetup.contains(.nameTaken), let app = placement.app(forUser: user) {
        findings.append(
          DriftFinding(
            kind: .appNameTaken, userID: user, resourceID: app,
            message:
              "app name \(app) is held by another organization: never adopted; nothing is made for \(user) (asked again after a backoff)"
          ))
      }

      // Absence from a list is never proof. A machine or volume the controller made or adopted,
      // and never saw destroyed, that the list does not show is read by id before anything
      // replaces it, its row is dropped or a duplicate of it is resolved: until then the user waits.
      let unlisted = Self.unlisted(
        recorded: recorded, remembered: state.volumeID, listedMachines: listedMachines,
        listedVolumes: listedVolumes)
      if state.reads.contains(where: { $0.id != unlisted.machine && $0.id != unlisted.volume }) {
        // Listed again (or found gone): what a read said of it is over (a single 404 proved
        // nothing), and the wait for the next read with it.
        state.reads.removeAll { $0.id != unlisted.machine && $0.id != unlisted.volume }
        if state.failures == 0 { state.backoffUntil = nil }
      }
      if unlisted.machine != nil || unlisted.volume != nil {
        let justMade = now - (state.pending?.since ?? -.infinity) < settings.pendingGrace
        for (kind, id) in [(Action.Kind.verifyMachine, unlisted.machine), (.verifyVolume, unlisted.volume)] {
          guard let id else { continue }
          let noun = kind == .verifyMachine ? "machine" : "volume"
          if state.reads.contains(ReadByID(id: id, found: true)) {
            findings.append(
              DriftFinding(
                kind: .listOmits, userID: user, resourceID: id,
                message:
                  "Fly's list leaves out \(noun) \(id), which a read by id shows: nothing is created in its place"))
          }
          if justMade && state.pending?.resourceID == id || backedOff || verifies >= settings.maxVerifiesPerPass {
            continue  // made moments ago (lists lag), or read recently: wait
          }
          verifies += 1
          actions.append(
            Action(
              userID: user, call: kind == .verifyMachine ? .verifyMachine(machineID: id) : .verifyVolume(volumeID: id),
              reason: "\(noun) \(id) is not in Fly's list: read it by id before replacing it"))
        }
        waiting.append(user)
        continue
      }

      // Which machine and volume are the user's: the recorded one, the attached one, the oldest.
      // Never a volume a restore replaced (kept for its retention, then deleted).
      let retiredIDs = state.retired.map(\.id)
      let keptMachine: ObservedMachine? =
        live.first { $0.id == recorded?.machineID }
        ?? live.min { ($0.createdAt ?? 0, $0.id) < ($1.createdAt ?? 0, $1.id) }
      let keptVolume: ObservedVolume? =
        volumes.first { $0.id == keptMachine?.volumeID }
        ?? volumes.first { $0.attachedMachineID != nil && $0.attachedMachineID == keptMachine?.id }
        ?? volumes.first { $0.id == recorded?.volumeID && !retiredIDs.contains($0.id) }
        ?? volumes.first { $0.id == state.volumeID }
        ?? volumes.filter { !retiredIDs.contains($0.id) }.min {
          ($0.createdAt ?? 0, $0.id) < ($1.createdAt ?? 0, $1.id)
        }
      if let keptVolume {
        state.volumeID = keptVolume.id
        state.lostVolume = nil
      }

      // A restore asked for: carried out step by step, one step a pass, each recorded; nothing
      // else is done for the user meanwhile. One that has made its volume is finished even if its
      // row is withdrawn (stopping halfway would leave two machines, the running one a
      // "duplicate"); one this controller closed is never carried out again (its row, if it still
      // asks, is closed again).
      var request = input.desired.restores[user]
      if let closed = state.closedRestore, request?.id == closed.id {
        actions.append(
          Action(
            userID: user,
            call: .finishRestore(
              requestID: closed.id, outcome: closed.outcome, newVolumeID: nil, retiredVolumeID: nil,
              detail: closed.detail),
            reason: "restore #\(closed.id) is over (\(closed.outcome.rawValue)); its row still asks: closed again"))
        request = nil
      }
      if request == nil, let progress = state.restore, progress.newVolumeID != nil {
        request = RestoreRequest(id: progress.requestID, userID: user, snapshotID: progress.snapshotID)
      }
      if let request, let desired {
        if state.restore?.requestID != request.id {
          // Begun only once no create of the user's is in doubt (its volume could be taken for the restored one).
          if state.pending != nil {
            waiting.append(user)
            continue
          }
          let existing =
            listedVolumes.map(\.id) + state.retired.map(\.id) + [state.volumeID, recorded?.volumeID].compactMap { $0 }
          state.restore = RestoreProgress(
            requestID: request.id, snapshotID: request.snapshotID, oldMachineID: keptMachine?.id,
            oldVolumeID: keptVolume?.id ?? state.volumeID, existingVolumes: Array(Set(existing)).sorted(), since: now)
        }
        if let progress = state.restore, now - progress.since >= settings.restoreStuckAfter {
          findings.append(
            DriftFinding(
              kind: .restoreStuck, userID: user, resourceID: progress.newVolumeID ?? progress.oldVolumeID,
              message:
                "restore #\(progress.requestID) from snapshot \(progress.snapshotID) has been under way for \(Int((now - progress.since) / 60)) min\(state.lastError.map { "; last error: \($0)" } ?? "")"
            ))
        }
        if let step = Self.restoreStep(
          request, desired: desired, spec: desired.spec(from: input.desired.template), templateDigest: templateDigest,
          live: Array(live), volumes: Array(volumes), state: &state, now: now, settings: settings,
          pendingActive: pendingActive)
        {
          if !backedOff { actions.append(step) }
        }
        waiting.append(user)
        continue
      }
      for retired in state.retired {
        // What a restore replaced: kept for the retention, then deleted (a snapshot first).
        guard let volume = listedVolumes.first(where: { $0.id == retired.id }) else { continue }
        if volume.isGone {
          state.retired.removeAll { $0.id == retired.id }
          continue
        }
        if volume.attachedMachineID == nil, let retention = settings.volumeRetention, !backedOff,
          now - retired.since >= retention, input.watching >= min(retention, settings.retentionFloor)
        {
          actions.append(
            Action(
              userID: user, call: .deleteVolume(volumeID: volume.id),
              reason: "replaced by a restore; retention of \(Int(retention)) s passed"))
        }
      }

      // Duplicates: report; an extra machine is stopped and destroyed, an extra volume never deleted.
      for extra in live where extra.id != keptMachine?.id {
        findings.append(
          DriftFinding(
            kind: .duplicateMachine, userID: user, resourceID: extra.id,
            message: "second machine \(extra.id) for \(user) (keeping \(keptMachine?.id ?? "-"))"))
        if backedOff {
          waiting.append(user)  // a refused stop or destroy waits its backoff like any action
        } else if extra.state.isUp {
          actions.append(
            Action(userID: user, call: .stop(machineID: extra.id, forRemoval: true), reason: "duplicate machine"))
        } else if !extra.state.isTransitional {
          actions.append(
            Action(userID: user, call: .destroyMachine(machineID: extra.id, volumeID: nil), reason: "duplicate machine")
          )
        }
      }
      for extra in volumes where extra.id != keptVolume?.id && !retiredIDs.contains(extra.id) {
        // Never deleted as a side effect: which of two volumes holds the user's data is not
        // something a list can tell (an older one may be the original, a newer one a restore), so
        // an operator decides. Reported until then.
        findings.append(
          DriftFinding(
            kind: .duplicateVolume, userID: user, resourceID: extra.id,
            message:
              "second volume \(extra.id) named \(extra.name) (keeping \(keptVolume?.id ?? "-")); it may hold data: left for an operator"
          ))
      }

      let wanted = desired?.state ?? .absent
      if desired == nil, keptMachine != nil {
        findings.append(
          DriftFinding(
            kind: .orphanMachine, userID: user, resourceID: keptMachine?.id,
            message: "machine \(keptMachine!.id) is tagged for \(user), who has no desired row: treated as absent"))
      }
      if backedOff && wanted != .absent {
        waiting.append(user)
        continue
      }

      switch wanted {
      case .running, .stopped:
        state.volumeReleasedAt = nil
        // Resolved only when a create needs it (most users in a quiet pass need nothing).
        var spec: MachineTemplate { desired!.spec(from: input.desired.template) }
        if keptMachine != nil, !state.appSetup.isEmpty {
          state.appSetup = []  // the app is set up: its machine runs in it
        }
        if let machine = keptMachine {
          if machine.region != desired!.region {
            findings.append(
              DriftFinding(
                kind: .regionMismatch, userID: user, resourceID: machine.id,
                message:
                  "machine is in \(machine.region), desired \(desired!.region): moving loses the volume; left as is"))
          }
          if let mounted = machine.volumeID, !volumes.contains(where: { $0.id == mounted }),
            !isListed(volume: mounted)
          {
            findings.append(
              DriftFinding(
                kind: .volumeMissing, userID: user, resourceID: mounted,
                message:
                  "machine \(machine.id) mounts volume \(mounted), which Fly no longer lists; not replaced automatically (that would destroy the machine)"
              ))
          }
          track(
            machine, user: user, state: &state, findings: &findings, waiting: &waiting, now: now, settings: settings)
          if let problem = state.configProblem {
            findings.append(Self.finding(problem, user: user, machine: machine.id))
          }
          Self.health(
            machine, user: user, state: &state, findings: &findings, reads: &eventReadActions, now: now,
            watchStart: now - input.watching, settings: settings)
          let diskFull = Self.diskFull(
            keptVolume?.id == machine.volumeID ? keptVolume : nil, policy: input.desired.volumePolicy, user: user)
          if let diskFull { findings.append(diskFull) }
          if let watch = state.update {
            // An update under way: seen through (or found reverted or unhealthy) by a read by id;
            // nothing else is done to the machine meanwhile (Fly is rebooting it).
            waiting.append(user)
            if let check = Self.checkUpdate(
              machine, watch: watch, user: user, now: now, settings: settings,
              hasChecks: templateHasChecks)
            {
              actions.append(check)
              // The list alone shows it through (no checks to read): its wave need not wait a pass.
              if case .checkUpdate(_, let listed?) = check.call, listed.versionHash == watch.to,
                watch.launched ? listed.state == .started : listed.state == .stopped
              {
                listedThrough.insert(user)
              }
            }
            break
          }
          let before = actions.count
          switch (wanted, machine.state) {
          case (.running, .stopped), (.running, .suspended), (.running, .failed):
            if machine.state == .failed {
              findings.append(
                DriftFinding(
                  kind: .machineFailed, userID: user, resourceID: machine.id, message: "machine \(machine.id) failed"))
            } else if (machine.updatedAt ?? 0) > Double(desired!.updatedAt) {
              findings.append(
                DriftFinding(
                  kind: .stoppedWhileDesiredRunning, userID: user, resourceID: machine.id,
                  message: "machine \(machine.id) is \(machine.state) while desired running"))
            }
            // A failed machine whose config is behind is updated instead (the update starts it on
            // the config it should run: starting the old one again would fail again).
            let behind =
              machine.state == .failed && !state.applied.isUnknown
              && !state.applied.sameDesired(
                as: AppliedConfig(template: templateDigest, overrides: ConfigDigest.overrides(desired!.overrides)))
            if !behind {
              actions.append(
                Action(
                  userID: user, call: .start(machineID: machine.id), reason: "desired running, machine \(machine.state)"
                ))
            }
          case (.running, .created):
            if now - (machine.createdAt ?? now) >= settings.createdGrace {
              actions.append(
                Action(userID: user, call: .start(machineID: machine.id), reason: "desired running, machine created"))
            } else {
              waiting.append(user)
            }
          case (.stopped, .started):
            actions.append(
              Action(userID: user, call: .stop(machineID: machine.id, forRemoval: false), reason: "desired stopped"))
          default:
            break
          }
          // A full disk grows first (auto-extend, a snapshot first), up to the policy's cap.
          if actions.count == before, diskFull != nil, let volume = keptVolume,
            now - (state.extendedAt ?? -.infinity) >= settings.extendCooldown,
            let extend = Self.autoExtend(volume, machine: machine, policy: input.desired.volumePolicy, user: user)
          {
            actions.append(extend)
          }
          // Nothing else to do to the machine: does it run what it should?
          if actions.count == before {
            switch Self.configUpdate(
              machine, user: user, desired: desired!, template: input.desired.template, templateDigest: templateDigest,
              state: &state, budget: &updates,
              volumeSizeGB: keptVolume?.id == machine.volumeID ? keptVolume?.sizeGB : nil)
            {
            case .none: break
            case .now(let update): actions.append(update)
            case .rollout: rolloutReady[user] = machine
            }
          }
        } else if wanted == .running {
          if let recorded, state.pending == nil {
            findings.append(
              DriftFinding(
                kind: .machineMissing, userID: user, resourceID: recorded.machineID,
                message: keptVolume.map {
                  "machine \(recorded.machineID) is gone while desired running; a new one will be made on volume \($0.id)"
                }
                  ?? "machine \(recorded.machineID) is gone while desired running, and its volume too; a new machine will be made on a new volume"
              ))
          }
          if let volume = keptVolume {
            if volume.region != desired!.region {
              findings.append(
                DriftFinding(
                  kind: .regionMismatch, userID: user, resourceID: volume.id,
                  message: "volume is in \(volume.region), desired \(desired!.region): the machine follows the volume"))
            }
            if volume.attachedMachineID != nil {
              // A destroyed machine holds its volume a while; a just-created one may not be listed yet.
              waiting.append(user)
            } else if pendingActive && state.pending?.kind == .machine {
              waiting.append(user)
            } else {
              actions.append(
                Action(
                  userID: user,
                  call: .createMachine(
                    region: volume.region, volumeID: volume.id, spec: spec,
                    guard: UserLifecycle.createGuard(.machine, state)),
                  reason: "desired running, no machine",
                  target: AppliedConfig(
                    template: templateDigest, overrides: ConfigDigest.overrides(desired!.overrides))))
            }
          } else if pendingActive && state.pending?.kind == .volume {
            waiting.append(user)
          } else if case let gate = Self.appGate(
            user: user, placement: placement, apps: input.observed.apps, state: state), gate != .ready
          {
            if case .act(let step) = gate { actions.append(step) } else { waiting.append(user) }
          } else {
            if let lost = state.volumeID ?? state.lostVolume ?? recorded?.volumeID, state.pending == nil {
              findings.append(
                DriftFinding(
                  kind: .volumeMissing, userID: user, resourceID: lost,
                  message: "volume \(lost) is gone; creating a new, empty one"))
            }
            actions.append(
              Action(
                userID: user,
                call: .createVolume(
                  region: desired!.region, spec: spec, guard: UserLifecycle.createGuard(.volume, state)),
                reason: "desired running, no volume"))
          }
        }
      case .absent:
        state.pending = nil
        state.health = nil  // no machine to watch
        if backedOff && (keptMachine != nil || keptVolume != nil) {
          // A refused stop, destroy or delete waits its backoff: it neither hammers Fly nor takes a
          // place under the destroy cap from another user's.
          waiting.append(user)
          break
        }
        if let machine = keptMachine {
          state.volumeReleasedAt = nil
          switch machine.state {
          case .started, .starting:
            actions.append(
              Action(
                userID: user, call: .stop(machineID: machine.id, forRemoval: true),
                reason: "desired absent: stop before destroy"))
          case _ where machine.state.isTransitional:
            track(
              machine, user: user, state: &state, findings: &findings, waiting: &waiting, now: now, settings: settings)
          default:
            actions.append(
              Action(
                userID: user, call: .destroyMachine(machineID: machine.id, volumeID: machine.volumeID),
                reason: desired == nil ? "no desired row" : "desired absent"))
          }
        } else if let volume = keptVolume {
          if volume.attachedMachineID != nil {
            waiting.append(user)  // detaches a while after the machine is destroyed
          } else if let retention = settings.volumeRetention {
            let released = state.volumeReleasedAt ?? now
            state.volumeReleasedAt = released
            if now - released >= retention && input.watching >= min(retention, settings.retentionFloor) {
              actions.append(
                Action(
                  userID: user, call: .deleteVolume(volumeID: volume.id),
                  reason: "retention of \(Int(retention)) s passed"))
            }
          }
        } else {
          // Nothing left on Fly: forget the user's resources (the history stays in machine_events).
          state.volumeID = nil
          state.lostVolume = nil
          state.volumeReleasedAt = nil
          state.transitionalSince = nil
          // One app per user: the app goes last, once nothing of the user is left in it (the
          // executor reads it first). Remembered until the list no longer shows it.
          if let app = placement.app(forUser: user), input.observed.apps?.contains(app) == true {
            // Seen empty on two passes in a row (lists lag and lie), with every region readable:
            // then deleted (the executor reads the app first).
            if state.appSetup.contains(.retiring), input.observed.unreadableRegions.isEmpty {
              actions.append(
                Action(
                  userID: user, call: .deleteApp(app: app),
                  reason:
                    "\(desired == nil ? "no desired row" : "desired absent"): nothing of the user is left in app \(app)"
                ))
            } else {
              waiting.append(user)
            }
            state.appSetup = .retiring
          } else {
            state.appSetup = []
          }
        }
      }
    }

    // The rollout: which of the machines the template change touches are updated this pass.
    let rollout = Self.rollout(
      input, templateDigest: templateDigest, ready: rolloutReady, listedThrough: listedThrough, states: &states,
      changedStates: &changedStates,
      actions: &actions, findings: &findings, waiting: &waiting)

    // Guards.
    var guardState = input.guardState
    var desiredActive = 0
    for machine in input.desired.machines.values where machine.state != .absent { desiredActive += 1 }
    var managed = 0
    for machine in input.observed.machines where machine.userID != nil && !machine.isGone { managed += 1 }
    var destructiveAllowed = true
    if !input.listsTrusted {
      let held = actions.filter { $0.kind.isCreate || $0.isDestructive }
      if !held.isEmpty {
        findings.append(
          DriftFinding(
            kind: .listSuspect,
            message: "Fly's lists look incomplete: \(held.count) create/destroy action(s) held until they agree again"))
      }
      actions.removeAll { $0.kind.isCreate || $0.isDestructive }
      destructiveAllowed = false
    }
    let unreadable = input.observed.unreadableRegions
    if !unreadable.isEmpty {
      // A partial answer: what Fly shows in those regions may be missing or old. Creates and destroys
      // of users there wait for a whole answer (a user whose region is unknown waits too).
      var observedRegion: [String: String] = [:]
      for machine in input.observed.machines {
        if let user = machine.userID, !machine.isGone { observedRegion[user] = machine.region }
      }
      func inUnreadable(_ action: Action) -> Bool {
        guard action.kind.isCreate || action.isDestructive else { return false }
        guard let region = input.desired.machines[action.userID]?.region ?? observedRegion[action.userID] else {
          return true
        }
        return unreadable.contains(region)
      }
      let held = actions.filter(inUnreadable)
      findings.append(
        DriftFinding(
          kind: .regionsUnreadable,
          message:
            "Fly could not read region(s) \(unreadable.sorted().joined(separator: ", ")): \(held.count) create/destroy action(s) there held until it can"
        ))
      actions.removeAll(where: inUnreadable)
      if !held.isEmpty { destructiveAllowed = false }
    }
    if let baseline = guardState.desiredBaseline, !settings.allowMassDestroy {
      let shrink = baseline - desiredActive
      if shrink >= 2 && Double(shrink) > Double(max(managed, baseline)) / 2 {
        let held = actions.filter { $0.isDestructive }.count
        findings.append(
          DriftFinding(
            kind: .destroyGuardTripped,
            message:
              "the desired set shrank from \(baseline) to \(desiredActive) users (managed fleet \(managed)): no destroy until an operator confirms (--allow-mass-destroy); \(held) held"
          ))
        actions.removeAll { $0.isDestructive }
        destructiveAllowed = false
      }
    }
    if destructiveAllowed {
      guardState.desiredBaseline = desiredActive
      let destructive = actions.filter { $0.isDestructive }
      if destructive.count > settings.maxDestroysPerPass {
        var kept = 0
        actions.removeAll { action in
          guard action.isDestructive else { return false }
          kept += 1
          return kept > settings.maxDestroysPerPass
        }
        findings.append(
          DriftFinding(
            kind: .destroyCapReached,
            message:
              "\(destructive.count) destroys planned, \(settings.maxDestroysPerPass) allowed per pass; the rest wait"))
      }
    }

    // A pause holds every change of its users (reads stay: they only observe).
    var held: [Action] = []
    let pausedUsers =
      input.desired.fleetPaused ? users.count : input.desired.machines.values.lazy.filter(\.paused).count
    if pausedUsers > 0 {
      func paused(_ user: String) -> Bool {
        input.desired.fleetPaused || input.desired.machines[user]?.paused == true
      }
      held = actions.filter { !$0.kind.isRead && paused($0.userID) }
      if !held.isEmpty { actions.removeAll { !$0.kind.isRead && paused($0.userID) } }
    }

    // Order: creates first (users waiting for a machine), then starts, stops, destroys last.
    let order: [Action.Kind: Int] = [
      .verifyMachine: 0, .verifyVolume: 0, .checkUpdate: 0, .createApp: 1, .assignIPs: 1, .createVolume: 1,
      .createMachine: 2, .adoptMachine: 2, .start: 3, .updateMachine: 4, .stop: 5, .destroyMachine: 6, .deleteVolume: 7,
      .deleteApp: 8,
    ]
    actions.sort { (order[$0.kind] ?? 9, $0.userID) < (order[$1.kind] ?? 9, $1.userID) }
    var plan = Plan(
      actions: actions, findings: findings, waiting: waiting, states: states, guardState: guardState,
      changedStates: changedStates)
    plan.held = held
    plan.pausedUsers = pausedUsers
    plan.rollout = rollout
    // The machines read longest ago first (never read: first of all), at most the budget a pass:
    // many machines moving at once are all read in turn, none starved.
    plan.eventReads = eventReadActions.sorted { ($0.seen, $0.action.userID) < ($1.seen, $1.action.userID) }
      .prefix(settings.maxEventReadsPerPass).map(\.action)
    return plan
  }

  /// Runs ``Rollout/step(_:)`` over the users the template change touches (not the paused: a wave
  /// must not wait on them) and turns its choice into updates.
  static func rollout(
    _ input: borrowing Input, templateDigest: UInt64, ready: [String: ObservedMachine], listedThrough: Set<String>,
    states: inout UserMap<UserState>,
    changedStates: inout [String], actions: inout [Action], findings: inout [DriftFinding], waiting: inout [String]
  ) -> RolloutState? {
    let control = input.rolloutControl
    var outdated: [String] = []
    for machine in input.desired.machines.values where machine.state != .absent && !machine.paused {
      guard let state = states[machine.userID], !state.applied.isUnknown else { continue }
      if state.applied.template != templateDigest { outdated.append(machine.userID) }
    }
    guard !outdated.isEmpty || input.rollout?.isActive == true || input.rollout?.target != templateDigest
    else { return input.rollout }
    outdated.sort()
    var control2 = control
    control2.paused = control.paused || input.desired.fleetPaused
    let view = states  // shared, not copied: copied only if a resume resets a count below
    let output = Rollout.step(
      Rollout.Input(
        previous: input.rollout, control: control2, target: templateDigest, revision: input.templateRevision,
        outdated: outdated,
        member: { user in
          guard let state = view[user] else { return .waiting }
          if state.update != nil { return listedThrough.contains(user) ? .through : .underWay }
          // Failed for this rollout's template: every attempt reverted, or its new version unhealthy.
          if let problem = state.configProblem, problem.target == templateDigest,
            state.updateFailures >= control.maxAttempts || problem.kind == .unhealthy
          {
            return .failed
          }
          if state.applied.template == templateDigest { return .through }
          return ready[user] != nil ? .ready : .waiting
        }, now: input.now))
    findings += output.findings
    for user in output.retry where states[user]?.updateFailures ?? 0 > 0 {
      states[user]?.updateFailures = 0
      changedStates.append(user)
    }
    // A running rollout with machines still to go brings the loop back soon (one waiting user
    // says so; a rollout between windows, paused or halted does not).
    if let state = output.state, state.status == .running, state.remaining > 0,
      let member = state.waveMembers.first ?? outdated.first, !waiting.contains(member)
    {
      waiting.append(member)
    }
    for user in output.update {
      guard let machine = ready[user], let desired = input.desired.machines[user] else { continue }
      actions.append(
        update(
          machine, user: user, desired: desired, template: input.desired.template,
          target: AppliedConfig(template: templateDigest, overrides: ConfigDigest.overrides(desired.overrides)),
          reason:
            "rollout wave \(output.state?.wave ?? 0) of template revision \(input.templateRevision.map(String.init) ?? "?")"
        ))
    }
    return output.state
  }

  /// The user's machine (its `machines` row) and remembered volume when the lists show neither it
  /// nor its destruction. A row whose status says destroyed was listed so before.
  static func unlisted(
    recorded: RecordedMachine?, remembered: String?, listedMachines: Few<ObservedMachine>,
    listedVolumes: Few<ObservedVolume>
  ) -> (machine: String?, volume: String?) {
    var machine: String?
    if let recorded, !MachineState(recorded.status ?? "").isGone,
      !listedMachines.contains(where: { $0.id == recorded.machineID })
    {
      machine = recorded.machineID
    }
    var volume: String?
    if let remembered, !listedVolumes.contains(where: { $0.id == remembered }) { volume = remembered }
    return (machine, volume)
  }

  /// How many updates a pass may start outside a rollout, and config checks of machines whose
  /// config was never recorded.
  struct ConfigBudget {
    var inFlight: Int
    var checks = 0
    let settings: PlannerSettings

    mutating func takeUpdate() -> Bool {
      guard inFlight < settings.maxUpdatesInFlight else { return false }
      inFlight += 1
      return true
    }

    mutating func takeCheck() -> Bool {
      guard checks < settings.maxConfigChecksPerPass else { return false }
      checks += 1
      return true
    }
  }

  /// What a settled machine's config needs.
  enum ConfigNeed {
    case none
    /// An update now (a user's own change, drift put back, a first check).
    case now(Action)
    /// The template changed: the machine waits for its rollout wave.
    case rollout
  }

  /// The update a settled machine needs, if any: its config was never recorded (read and compare:
  /// most match, and nothing is sent), it runs a version the controller did not make (someone
  /// updated it: compared, put back if it differs), its user's own config changed, or the
  /// template changed (a rollout's business: ``Rollout``).
  static func configUpdate(
    _ machine: ObservedMachine, user: String, desired: DesiredMachine, template: MachineTemplate,
    templateDigest: UInt64, state: inout UserState, budget: inout ConfigBudget, volumeSizeGB: Int? = nil
  ) -> ConfigNeed {
    let wanted = desired.state
    guard
      (wanted == .running && (machine.state == .started || machine.state == .failed))
        || (wanted == .stopped && machine.state == .stopped)
    else { return .none }
    let target = AppliedConfig(template: templateDigest, overrides: ConfigDigest.overrides(desired.overrides))
    let applied = state.applied
    let reason: String
    if applied.isUnknown {
      // Made before configs were recorded (or adopted): what the list shows of its config (image,
      // size) is compared; the same is taken as the desired config at this version, with no read.
      guard machine.versionHash != 0, machine.overviewHash != 0 else { return .none }
      let spec = desired.spec(from: template)
      if machine.overviewHash == ConfigDigest.overview(spec), (volumeSizeGB ?? .max) >= spec.volumeSizeGB {
        state.applied = AppliedConfig(
          template: target.template, overrides: target.overrides, version: machine.versionHash)
        return .none
      }
      guard budget.takeCheck() else { return .none }
      reason = "config never recorded, and its image or size differ: read, compare, update"
    } else if machine.versionHash != 0 && machine.versionHash != applied.version {
      guard budget.takeUpdate() else { return .none }
      reason = "machine runs a version fleetkeeper did not make: compare and put back"
    } else if applied.overrides != target.overrides {
      // The user's own change: at once, outside any wave (with the template, if that changed too).
      guard budget.takeUpdate() else { return .none }
      reason = "user's config changed"
    } else if applied.template != target.template {
      return .rollout
    } else if let size = volumeSizeGB, case let wantedGB = desired.overrides.volumeSizeGB ?? template.volumeSizeGB,
      size < wantedGB
    {
      // Recorded as done, yet the list shows the volume smaller (an extend lost, or made before): repaired.
      // (Checked for every settled machine each planning pass: no spec is built for it.)
      guard budget.takeUpdate() else { return .none }
      reason = "volume \(size) GB, desired \(wantedGB) GB: extend"
    } else {
      return .none
    }
    return .now(
      update(
        machine, user: user, desired: desired, template: template, target: target, reason: reason,
        volumeSizeGB: volumeSizeGB))
  }

  static func update(
    _ machine: ObservedMachine, user: String, desired: DesiredMachine, template: MachineTemplate,
    target: AppliedConfig, reason: String, volumeSizeGB: Int? = nil
  ) -> Action {
    Action(
      userID: user,
      call: .updateMachine(
        machineID: machine.id, volumeID: machine.volumeID, spec: desired.spec(from: template),
        skipLaunch: machine.state == .stopped, listedVolumeGB: volumeSizeGB),
      reason: reason, target: target)
  }

  /// The read that sees an update through, when it is due: the list shows the machine settled on
  /// the new version, or back on the old one (a silent revert), or failed, or the deadline passed.
  static func checkUpdate(
    _ machine: ObservedMachine, watch: UpdateWatch, user: String, now: Double, settings: PlannerSettings,
    hasChecks: Bool = true
  ) -> Action? {
    let age = now - watch.since
    guard age >= settings.updateSettle else { return nil }
    let settled = !machine.state.isTransitional
    let due =
      age >= settings.updateDeadline || (settled && machine.versionHash == watch.to)
      || (settled && machine.versionHash == watch.from) || machine.state == .failed || machine.versionHash == 0
    guard due else { return nil }
    // Without health checks, what the list shows tells as much as a read would: no request.
    let listed =
      !hasChecks && settled && machine.versionHash != 0
      ? ListedMachine(state: machine.state, versionHash: machine.versionHash) : nil
    return Action(
      userID: user, call: .checkUpdate(machineID: machine.id, listed: listed),
      reason: "see the update of \(machine.id) through")
  }

  /// Whether a machine of this spec has health checks (in its services) that only a read shows.
  static func hasChecks(_ spec: MachineTemplate) -> Bool {
    spec.servicesJSON?.contains("\"checks\"") ?? false
  }

  static func finding(_ problem: ConfigProblem, user: String, machine: String) -> DriftFinding {
    switch problem.kind {
    case .drift:
      DriftFinding(
        kind: .configDrift, userID: user, resourceID: machine,
        message: "machine \(machine) runs a config fleetkeeper did not make: \(problem.detail)")
    case .reverted:
      DriftFinding(kind: .updateReverted, userID: user, resourceID: machine, message: problem.detail)
    case .unhealthy:
      DriftFinding(kind: .updateUnhealthy, userID: user, resourceID: machine, message: problem.detail)
    }
  }

  /// Tracks how long a machine has been transitional, and reports it stuck past the limit.
  private static func track(
    _ machine: ObservedMachine, user: String, state: inout UserState, findings: inout [DriftFinding],
    waiting: inout [String], now: Double, settings: PlannerSettings
  ) {
    guard machine.state.isTransitional else {
      state.transitionalSince = nil
      return
    }
    waiting.append(user)
    let since = state.transitionalSince ?? now
    state.transitionalSince = since
    if now - since >= settings.stuckAfter {
      findings.append(
        DriftFinding(
          kind: .stuck, userID: user, resourceID: machine.id,
          message: "machine \(machine.id) has been \(machine.state) for \(Int(now - since)) s"))
    }
  }

  /// Crash loops and OOM kills: findings from the exits the machine's events showed (within the
  /// crash window), and a read of its events when its `updated_at` moved since they were last
  /// read (a restart moves it) and since this process began watching: a quiet machine is never read.
  static func health(
    _ machine: ObservedMachine, user: String, state: inout UserState, findings: inout [DriftFinding],
    reads: inout [(seen: Double, action: Action)], now: Double, watchStart: Double, settings: PlannerSettings
  ) {
    if let health = state.health, health.machineID != machine.id { state.health = nil }
    if var health = state.health {
      let kept = health.exits.filter { now - $0.at < UserLifecycle.crashWindow }
      if kept != health.exits {
        health.exits = kept
        state.health = health
      }
    }
    let recent = state.health?.exits ?? []
    let minutes = Int(UserLifecycle.crashWindow / 60)
    if recent.count >= settings.crashLoopExits {
      let codes = recent.suffix(5).map { $0.oomKilled ? "OOM" : $0.exitCode.map(String.init) ?? "?" }
      findings.append(
        DriftFinding(
          kind: .crashLooping, userID: user, resourceID: machine.id,
          message:
            "machine \(machine.id) exited \(recent.count) times in the last \(minutes) min (exit codes \(codes.joined(separator: ", "))), restarted by Fly each time"
        ))
    }
    let ooms = recent.filter(\.oomKilled).count
    if ooms > 0 {
      findings.append(
        DriftFinding(
          kind: .outOfMemory, userID: user, resourceID: machine.id,
          message:
            "machine \(machine.id) was killed for running out of memory \(ooms) time(s) in the last \(minutes) min: give it more (users set \(user) --memory-mb, or template set --memory-mb)"
        ))
    }
    // A machine's own boot moves `updated_at` too: only a move a minute after its creation counts.
    guard let updated = machine.updatedAt, updated > max(state.health?.seenUpdatedAt ?? -.infinity, watchStart),
      updated - (machine.createdAt ?? -.infinity) > 60, !machine.state.isTransitional
    else { return }
    reads.append(
      (
        state.health?.seenUpdatedAt ?? -.infinity,
        Action(
          userID: user, call: .readEvents(machineID: machine.id, updatedAt: updated),
          reason: "machine \(machine.id) changed since its events were read: read its recent exits")
      ))
  }

  /// A volume fuller than the policy's threshold (`bytes_used` as the list shows it).
  static func diskFull(_ volume: ObservedVolume?, policy: VolumePolicy, user: String) -> DriftFinding? {
    guard let volume, let used = volume.usedPercent, used >= Double(policy.diskFullPercent) else { return nil }
    let size = volume.sizeGB.map { "\($0) GB" } ?? "? GB"
    var message =
      "volume \(volume.id) is \(Int(used.rounded(.down)))% full (\(size); reported above \(policy.diskFullPercent)%)"
    if let cap = policy.autoExtendToGB {
      message +=
        (volume.sizeGB ?? 0) < cap
        ? "; auto-extend grows it up to \(cap) GB" : "; auto-extend is at its cap of \(cap) GB"
    }
    return DriftFinding(kind: .diskFull, userID: user, resourceID: volume.id, message: message)
  }

  /// The policy's next extend of a full volume: one step, never past the cap.
  static func autoExtend(_ volume: ObservedVolume, machine: ObservedMachine, policy: VolumePolicy, user: String)
    -> Action?
  {
    guard let cap = policy.autoExtendToGB, let size = volume.sizeGB, size < cap else { return nil }
    let target = min(cap, size + policy.autoExtendStepGB)
    return Action(
      userID: user, call: .extendVolume(volumeID: volume.id, machineID: machine.id, toGB: target),
      reason:
        "volume \(volume.id) is \(Int((volume.usedPercent ?? 0).rounded(.down)))% full: \(size) GB → \(target) GB (auto-extend, up to \(cap) GB)"
    )
  }

  /// The next step of a restore (nil: wait, something is settling): a new volume from the
  /// snapshot, a new machine on it, that machine started, the old machine stopped and destroyed,
  /// then the request closed. Each step is read back off Fly before the next, so a crash or a lost
  /// answer at any step resumes without a duplicate (creates carry the usual look-up guard).
  static func restoreStep(
    _ request: RestoreRequest, desired: DesiredMachine, spec: MachineTemplate, templateDigest: UInt64,
    live: [ObservedMachine], volumes: [ObservedVolume], state: inout UserState, now: Double,
    settings: PlannerSettings, pendingActive: Bool
  ) -> Action? {
    guard var progress = state.restore else { return nil }
    defer { state.restore = progress }
    let user = desired.userID
    let label = "restore #\(request.id) from snapshot \(request.snapshotID)"
    if desired.state == .absent {
      return Action(
        userID: user,
        call: .finishRestore(
          requestID: request.id, outcome: .cancelled, newVolumeID: nil, retiredVolumeID: nil,
          detail: "the user is desired absent: not restored"),
        reason: "\(label): the user is desired absent")
    }
    if progress.newVolumeID == nil,
      let made = volumes.first(where: {
        $0.id != progress.oldVolumeID && !progress.existingVolumes.contains($0.id)
          && ($0.createdAt ?? .infinity) >= progress.since - 900
      })
    {
      // Made by this restore (the user had no such volume when it began) and listed, though its
      // answer was lost: the restored volume, never made twice.
      progress.newVolumeID = made.id
    }
    if let id = progress.newVolumeID { state.volumeID = id }
    guard let newID = progress.newVolumeID else {
      if pendingActive && state.pending?.kind == .volume { return nil }
      return Action(
        userID: user,
        call: .restoreVolume(
          region: desired.region, snapshotID: request.snapshotID, sizeGB: max(request.sizeGB ?? 0, spec.volumeSizeGB),
          spec: spec, replacing: progress.oldVolumeID, existing: progress.existingVolumes,
          guard: UserLifecycle.createGuard(.volume, state)),
        reason: "\(label): a new volume from the snapshot")
    }
    // Not listed yet: lists lag (a read by id of it goes before, as for any volume of the user).
    guard let volume = volumes.first(where: { $0.id == newID }) else { return nil }
    let onNew = live.filter { $0.volumeID == newID }
    guard let machine = onNew.min(by: { ($0.createdAt ?? 0, $0.id) < ($1.createdAt ?? 0, $1.id) }) else {
      if volume.attachedMachineID != nil || (pendingActive && state.pending?.kind == .machine) { return nil }
      return Action(
        userID: user,
        call: .createMachine(
          region: volume.region, volumeID: newID, spec: spec, guard: UserLifecycle.createGuard(.machine, state)),
        reason: "\(label): a new machine on volume \(newID)",
        target: AppliedConfig(template: templateDigest, overrides: ConfigDigest.overrides(desired.overrides)))
    }
    switch machine.state {
    case .started:
      break
    case .created where now - (machine.createdAt ?? now) < settings.createdGrace:
      return nil
    case .created, .stopped, .suspended, .failed:
      return Action(
        userID: user, call: .start(machineID: machine.id),
        reason: "\(label): start the new machine before the old one goes")
    default:
      return nil  // starting, or on its way somewhere: read again next pass
    }
    // The new machine has run a while (a crash at boot would show): the old one (any other of
    // the user's) goes, stopped first.
    let others = live.filter { $0.volumeID != newID && $0.id != machine.id }
    if !others.isEmpty, now - (machine.updatedAt ?? now) < settings.restoreSettle { return nil }
    if let old = others.first {
      if old.state.isUp {
        return Action(
          userID: user, call: .stop(machineID: old.id, forRemoval: true),
          reason: "\(label): the new machine \(machine.id) is started; the old one stops")
      }
      if old.state.isTransitional { return nil }
      return Action(
        userID: user, call: .destroyMachine(machineID: old.id, volumeID: old.volumeID),
        reason: "\(label): the new machine \(machine.id) is started; the old one goes (its volume is kept)")
    }
    let retired = progress.oldVolumeID.flatMap { $0 == newID ? nil : $0 }
    return Action(
      userID: user,
      call: .finishRestore(
        requestID: request.id, outcome: .done, newVolumeID: newID, retiredVolumeID: retired,
        detail:
          "machine \(machine.id) runs on volume \(newID), restored from snapshot \(request.snapshotID)\(retired.map { "; volume \($0) kept for the retention" } ?? "")"
      ),
      reason: "\(label): the new machine runs and the old one is gone")
  }

  /// Whether a fresh list looks like one of Fly's bad days (empty, or sharply shorter than the
  /// last trusted one) and should be read again before anything is created or destroyed.
  public static func listLooksSuspect(previous: Int?, current: Int) -> Bool {
    guard let previous, previous >= 2 else { return false }
    return current == 0 || Double(current) < Double(previous) * 0.5
  }
}

/// Items grouped by a key as indices into their array, without an array per key: nearly every
/// user has one machine and one volume, so a group is one `Int32` in a map.
public struct IndexGroups: Sendable {
  /// Each group's first item (a ``UserMap``: at 100k users 3 MB, where a dictionary is 5.3 MB).
  public private(set) var first = UserMap<Int32>()
  private var more: [String: [Int32]] = [:]

  public init(capacity: Int = 0) { first.reserveCapacity(capacity) }

  public mutating func add(_ key: String, _ index: Int) {
    if first[key] == nil {
      first[key] = Int32(index)
    } else {
      more[key, default: []].append(Int32(index))
    }
  }

  public var keys: [String] { first.keys }

  /// The group's items, in the order they were added (no allocation for a group of one).
  public func items<T>(_ key: String, in all: [T], where keep: (T) -> Bool = { _ in true }) -> Few<T> {
    var result = Few<T>()
    guard let head = first[key] else { return result }
    if keep(all[Int(head)]) { result.append(all[Int(head)]) }
    for index in more[key] ?? [] where keep(all[Int(index)]) { result.append(all[Int(index)]) }
    return result
  }
}

/// A collection that holds its first element inline: the one machine or volume nearly every user
/// has costs no heap allocation.
public struct Few<Element>: RandomAccessCollection {
  private var head: Element?
  private var rest: [Element] = []

  public init() {}
  public var startIndex: Int { 0 }
  public var endIndex: Int { head == nil ? 0 : 1 + rest.count }
  public subscript(position: Int) -> Element { position == 0 ? head! : rest[position - 1] }

  public mutating func append(_ element: Element) {
    if head == nil { head = element } else { rest.append(element) }
  }
}
