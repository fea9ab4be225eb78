import Foundation

/// One IP address assigned to an app (`POST /v1/apps/{app}/ip_assignments`).
struct SimIP: Sendable {
  var ip: String
  /// `shared_v4`, `v6` or `private_v6`.
  var type: String
  var region: String
  var createdAt: Double
  var shared: Bool { type == "shared_v4" }
}

/// One Fly app: a name in the one global namespace, its org, its IPs and its secrets.
struct SimApp: Sendable {
  var seq: Int
  var id: String
  var name: String
  var org: String
  var network: String
  /// The key of the create that made it: a create again with the same key (and the same name,
  /// or none) answers this app instead of making another.
  var idempotencyKey: String?
  var createdAt: Double
  var ips: [SimIP] = []
  /// Secret values by name (never shown: lists give names and digests only).
  var secrets: [String: (value: String, updatedAt: Double)] = [:]
  /// Bumped by every `POST …/secrets`; a machine made or updated since holds this version.
  var secretsVersion = 0
}

/// Fly's apps as the spec and API-FACTS-2 describe them: create with `idempotency_key`, a taken
/// name answered 422 `name_taken`, delete cascading to the app's machines and volumes and limited
/// to 100 a minute, `ip_assignments`, secrets with versions, and machine metadata written without
/// a new version.
extension SimulatorModel {
  /// Fly app names: 1 to 63 lowercase letters, digits and dashes, starting with a letter, not
  /// ending with a dash.
  static func isValidAppName(_ name: String) -> Bool {
    let bytes = Array(name.utf8)
    guard let first = bytes.first, let last = bytes.last, bytes.count <= 63 else { return false }
    guard first >= 0x61 && first <= 0x7a, last != 0x2d else { return false }
    return bytes.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }
  }

  /// An app of this simulator's org (an app of another org is someone else's name, not found here).
  func ownApp(_ name: String) -> SimApp? {
    guard let app = apps[name], app.org == configuration.orgSlug else { return nil }
    return app
  }

  /// `POST /v1/apps`.
  mutating func createApp(
    name: String?, org: String?, network: String?, idempotencyKey: String?, now: Double
  ) -> SimAnswer {
    guard let org, !org.isEmpty else { return .error(400, "invalid_argument: org_slug is required") }
    guard org == configuration.orgSlug else { return .error(404, "organization not found") }
    if let key = idempotencyKey, !key.isEmpty,
      let first = apps.values.first(where: { $0.idempotencyKey == key && $0.org == org })
    {
      guard name == nil || name == first.name else {
        return .error(
          422,
          "invalid_argument: idempotency_key was used to create app \(first.name), not \(name ?? "")",
          flyStatus: "idempotency_key_reused")
      }
      return .json(render(app: first), status: 201)
    }
    guard let name, Self.isValidAppName(name) else {
      return .error(
        400,
        "invalid_argument: app name \(name ?? "") must be 1 to 63 lowercase letters, digits or dashes, starting with a letter"
      )
    }
    guard apps[name] == nil else {
      return .error(422, "app name \(name) is already taken", flyStatus: "name_taken")
    }
    let seq = nextSeq()
    let app = SimApp(
      seq: seq, id: "app_" + randomAppID(), name: name, org: org, network: network ?? "default",
      idempotencyKey: idempotencyKey?.isEmpty == false ? idempotencyKey : nil, createdAt: now)
    apps[name] = app
    appOrder.append(name)
    return .json(render(app: app), status: 201)
  }

  private mutating func randomAppID() -> String {
    String(newMachineID().prefix(12))
  }

  /// Someone else (another org) holds `name`.
  mutating func createForeignApp(name: String, org: String, now: Double) -> Bool {
    guard apps[name] == nil, Self.isValidAppName(name), org != configuration.orgSlug else { return false }
    apps[name] = SimApp(
      seq: nextSeq(), id: "app_" + randomAppID(), name: name, org: org, network: "default", idempotencyKey: nil,
      createdAt: now)
    appOrder.append(name)
    return true
  }

  /// `DELETE /v1/apps/{app}`: 202, and everything in the app goes with it (machines destroyed,
  /// volumes deleted). At most `appDeletesPerMinute` in any minute: the rest answer 429.
  mutating func deleteApp(_ name: String, now: Double) -> SimAnswer {
    appDeletes.removeAll { $0 <= now - 60 }
    guard appDeletes.count < configuration.appDeletesPerMinute else {
      return .error(429, "rate limit exceeded: app deletions are limited to 100 per minute")
    }
    guard ownApp(name) != nil else { return .error(404, "app not found") }
    appDeletes.append(now)
    for id in machineOrder where machines[id]?.app == name {
      advance(machine: id, now: now)
      guard var machine = machines[id], machine.destroyedAt == nil, machine.state != "destroying" else { continue }
      machine.state = "destroying"
      machine.updatedAt = now
      machine.next = ("destroyed", now + configuration.destroyDuration)
      machine.lease = nil
      setMachine(machine)
      advance(machine: id, now: now)
    }
    for id in volumeOrder where volumes[id]?.app == name {
      guard var volume = volumes[id], volume.deletedAt == nil else { continue }
      volume.attachedMachineID = nil
      volume.deletedAt = now
      volume.updatedAt = now
      volume.state = "pending_destroy"
      setVolume(volume)
    }
    apps[name] = nil
    appOrder.removeAll { $0 == name }
    return SimAnswer(status: 202, body: "")
  }

  /// `GET /v1/apps?org_slug=…`: every app of the org in one answer, or pages of `limit` with
  /// `next_cursor` (the cursor names the last app's creation sequence).
  func listApps(org: String, limit: Int?, cursor: String?) -> SimAnswer {
    guard org == configuration.orgSlug else { return .error(404, "organization not found") }
    var after = -1
    if let cursor, !cursor.isEmpty {
      guard limit != nil, cursor.hasPrefix("a_"), let value = Int(cursor.dropFirst(2)) else {
        return .error(400, "invalid cursor")
      }
      after = value
    }
    var machineCounts: [String: Int] = [:]
    for machine in machines.values where machine.destroyedAt == nil && machine.state != "destroying" {
      machineCounts[machine.app, default: 0] += 1
    }
    var volumeCounts: [String: Int] = [:]
    for volume in volumes.values where volume.deletedAt == nil { volumeCounts[volume.app, default: 0] += 1 }
    let own = appOrder.compactMap { apps[$0] }.filter { $0.org == org }
    let remaining = own.filter { $0.seq > after }
    let taken = limit.map { Array(remaining.prefix($0)) } ?? remaining
    var writer = JSONWriter()
    writer.add("total_apps", own.count)
    let items = taken.map {
      render(app: $0, machineCount: machineCounts[$0.name] ?? 0, volumeCount: volumeCounts[$0.name] ?? 0)
    }
    writer.add("apps", raw: "[" + items.joined(separator: ",") + "]")
    if taken.count < remaining.count, let last = taken.last { writer.add("next_cursor", "a_\(last.seq)") }
    return .json(writer.finished())
  }

  /// The app's live machines and volumes (what `machine_count` and `volume_count` say).
  func counts(app name: String) -> (Int, Int) {
    let machines = machines.values.filter { $0.app == name && $0.destroyedAt == nil && $0.state != "destroying" }
    let volumes = volumes.values.filter { $0.app == name && $0.deletedAt == nil }
    return (machines.count, volumes.count)
  }

  func render(app: SimApp, machineCount: Int? = nil, volumeCount: Int? = nil) -> String {
    var writer = JSONWriter()
    writer.add("id", app.id)
    writer.add("name", app.name)
    writer.add(
      "organization", raw: #"{"slug":\#(SimJSON.string(app.org).text),"name":\#(SimJSON.string(app.org).text)}"#)
    writer.add("network", app.network)
    writer.add("status", "deployed")
    if let machineCount { writer.add("machine_count", machineCount) }
    if let volumeCount { writer.add("volume_count", volumeCount) }
    return writer.finished()
  }

  /// What `/_sim/state` shows of an app: secret names and digests, never values.
  func renderSnapshot(app: SimApp) -> String {
    var writer = JSONWriter()
    writer.add("name", app.name)
    writer.add("org", app.org)
    writer.add("idempotency_key", app.idempotencyKey)
    writer.add("ips", raw: "[" + app.ips.map(render(ip:)).joined(separator: ",") + "]")
    writer.add("secrets_version", app.secretsVersion)
    writer.add(
      "secrets",
      raw: "[" + app.secrets.keys.sorted().map { SimJSON.string($0).text }.joined(separator: ",") + "]")
    return writer.finished()
  }

  // MARK: IPs

  /// `POST …/ip_assignments`: a shared IPv4 is the app's one (asked again, the same answer); every
  /// `v6` or `private_v6` is a new address.
  mutating func assignIP(app name: String, type: String?, region: String?, now: Double) -> SimAnswer {
    guard var app = ownApp(name) else { return .error(404, "app not found") }
    let type = type ?? "v6"
    let ip: SimIP
    switch type {
    case "shared_v4":
      if let existing = app.ips.first(where: { $0.shared }) { return .json(render(ip: existing)) }
      let n = nextSeq()
      ip = SimIP(ip: "66.241.\(124 + (n >> 8) % 4).\(n % 256)", type: type, region: "global", createdAt: now)
    case "v6", "private_v6":
      let n = nextSeq()
      let prefix = type == "v6" ? "2a09:8280:1" : "fdaa:0:1"
      ip = SimIP(
        ip: "\(prefix)::\(String(n, radix: 16)):\(String(Int(random.next() % 65536), radix: 16))", type: type,
        region: region ?? "global", createdAt: now)
    default:
      return .error(400, "invalid_argument: type must be shared_v4, v6 or private_v6, not \(type)")
    }
    app.ips.append(ip)
    apps[name] = app
    return .json(render(ip: ip))
  }

  func listIPs(app name: String) -> SimAnswer {
    guard let app = ownApp(name) else { return .error(404, "app not found") }
    return .json(#"{"ips":[\#(app.ips.map(render(ip:)).joined(separator: ","))]}"#)
  }

  func render(ip: SimIP) -> String {
    var writer = JSONWriter()
    writer.add("ip", ip.ip)
    writer.add("region", ip.region)
    writer.add("shared", ip.shared)
    writer.add("network", raw: #"{"name":"default"}"#)
    writer.add("created_at", isoTimestamp(ip.createdAt))
    return writer.finished()
  }

  // MARK: Secrets

  /// `POST …/secrets {values: {NAME: value|null}}`: sets and unsets in one new version.
  mutating func setSecrets(app name: String, values: [String: SimJSON], now: Double) -> SimAnswer {
    guard var app = ownApp(name) else { return .error(404, "app not found") }
    for (key, value) in values {
      guard !key.isEmpty,
        key.utf8.allSatisfy({ $0 == 0x5f || ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a) })
      else { return .error(400, "invalid_argument: invalid secret name \(key)") }
      switch value {
      case .null: continue
      case .string: continue
      default: return .error(400, "invalid_argument: the value of \(key) must be a string or null")
      }
    }
    for (key, value) in values {
      if case .string(let text) = value { app.secrets[key] = (text, now) } else { app.secrets[key] = nil }
    }
    app.secretsVersion += 1
    apps[name] = app
    var writer = JSONWriter()
    writer.add("version", app.secretsVersion)
    writer.add("secrets", raw: renderSecrets(app))
    return .json(writer.finished())
  }

  func listSecrets(app name: String) -> SimAnswer {
    guard let app = ownApp(name) else { return .error(404, "app not found") }
    return .json(#"{"secrets":\#(renderSecrets(app))}"#)
  }

  /// Names and digests (a hash of the value): what Fly shows without `show_secrets`.
  private func renderSecrets(_ app: SimApp) -> String {
    let items = app.secrets.keys.sorted().map { key -> String in
      let secret = app.secrets[key]!
      var hash: UInt64 = 0xCBF2_9CE4_8422_2325
      for byte in secret.value.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
      var writer = JSONWriter()
      writer.add("name", key)
      writer.add("digest", String(hash, radix: 16))
      writer.add("updated_at", isoTimestamp(secret.updatedAt))
      return writer.finished()
    }
    return "[" + items.joined(separator: ",") + "]"
  }

  /// Whether a create or update's `min_secrets_version` is one the app has (nil when it is).
  func checkSecretsVersion(app name: String, _ wanted: Int64?) -> SimAnswer? {
    guard let wanted else { return nil }
    let current = ownApp(name)?.secretsVersion ?? 0
    guard Int(wanted) > current else { return nil }
    return .error(
      400, "invalid_argument: min_secrets_version \(wanted) is newer than the app's secrets (version \(current))")
  }

  /// What a machine's environment holds of its app's secrets: the secrets of the version it was
  /// made or updated with (the simulator keeps only the latest values, so it answers those when
  /// the machine is on the latest version, and nil otherwise: it must be updated to see them).
  func machineSecrets(_ id: String) -> [String: String]? {
    guard let machine = machines[id], let app = apps[machine.app], machine.secretsVersion == app.secretsVersion
    else { return nil }
    return app.secrets.mapValues(\.value)
  }

  // MARK: Metadata

  /// `POST …/machines/{id}/metadata/{key} {value}` (a value) and `DELETE …/metadata/{key}` (nil):
  /// the key set or removed in the machine's config, with no new version and no restart.
  mutating func writeMetadata(machine id: String, key: String, value: String?, now: Double) -> SimAnswer {
    guard var machine = visibleMachine(id, now: now), machine.destroyedAt == nil else {
      return .error(404, "machine not found")
    }
    guard !key.isEmpty else { return .error(400, "invalid_argument: metadata key is required") }
    machine.metadata[key] = value
    if var config = SimJSON.parse(Data(machine.configText.utf8))?.object {
      config["metadata"] = .object(machine.metadata.mapValues { .string($0) })
      machine.configText = SimJSON.object(config).text
    }
    machine.updatedAt = now
    setMachine(machine)
    return SimAnswer(status: 204, body: "")
  }

  mutating func metadata(machine id: String, now: Double) -> SimAnswer {
    guard let machine = visibleMachine(id, now: now) else { return .error(404, "machine not found") }
    return .json(SimJSON.object(machine.metadata.mapValues { .string($0) }).text)
  }

  // MARK: Seeding

  /// A fleet of one app per user, as the old provisioning code made it: app
  /// `<appPrefix>-u-<user>` (user `<userPrefix><i>`) with a shared IPv4 and an IPv6, secrets, one
  /// volume named `volumeName`, one started machine mounting it. `tagged`: the machine carries
  /// `fleet_user_id` (made by fleetkeeper); otherwise it has no fleet metadata at all.
  mutating func seedApps(
    count: Int, appPrefix: String, userPrefix: String, region: String, image: String, volumeName: String,
    tagged: Bool, now end: Double, spread: Double = 0
  ) {
    for index in 0..<count {
      let now = end - spread + spread * Double(index + 1) / Double(count)
      let user = "\(userPrefix)\(index)"
      let appName = "\(appPrefix)-u-\(user)"
      var app = SimApp(
        seq: nextSeq(), id: "app_" + randomAppID(), name: appName, org: configuration.orgSlug, network: "default",
        idempotencyKey: nil, createdAt: now)
      app.ips = [
        SimIP(ip: "66.241.125.\(index % 256)", type: "shared_v4", region: "global", createdAt: now),
        SimIP(ip: "2a09:8280:1::\(String(index, radix: 16)):1", type: "v6", region: "global", createdAt: now),
      ]
      app.secrets = ["GATEWAY_TOKEN": ("seeded-\(index)", now)]
      app.secretsVersion = 1
      apps[appName] = app
      appOrder.append(appName)
      let volumeID = newVolumeID()
      let id = newMachineID()
      setVolume(
        SimVolume(
          seq: nextSeq(), app: appName, id: volumeID, name: volumeName, region: region, zone: "a1b2", sizeGB: 1,
          encrypted: true, state: "created", attachedMachineID: id, createdAt: now, updatedAt: now, visibleAt: now,
          deletedAt: nil))
      let metadata = tagged ? ["fleet_user_id": user] : [:]
      let config: [String: SimJSON] = [
        "image": .string(image),
        "metadata": .object(metadata.mapValues { .string($0) }),
        "env": .object(["USER_ID": .string(user)]),
        "mounts": .array([.object(["volume": .string(volumeID), "path": .string("/data")])]),
        "guest": .object(["cpu_kind": .string("shared"), "cpus": .int(1), "memory_mb": .int(256)]),
        "restart": .object(["policy": .string("always")]),
      ]
      var machine = SimMachine(
        seq: nextSeq(), app: appName, id: id, name: "agent", region: region, state: "started",
        configText: SimJSON.object(config).text, metadata: metadata, image: image, volumeID: volumeID,
        instanceID: newULID(), privateIP: "fdaa:0:1:a7b:\(index % 65536):2:1:2", createdAt: now, updatedAt: now,
        visibleAt: now, next: nil, settledAt: now)
      machine.secretsVersion = 1
      setMachine(machine)
    }
  }
}

/// One snapshot of a volume (`GET/POST …/volumes/{id}/snapshots`).
struct SimSnapshot: Sendable {
  var id: String
  var app: String
  var volumeID: String
  /// Bytes of data it holds (the volume's `bytes_used` when taken).
  var size: Int
  var volumeSizeGB: Int
  var createdAt: Double
  var retentionDays: Int
  var automatic: Bool
}

/// Snapshots as API-FACTS-2 describes them: daily ones for volumes with `auto_backup_enabled`,
/// one on demand with `POST`, each kept `snapshot_retention` days (the volume's, when taken), kept
/// after the volume is deleted until then; a volume created with `snapshot_id` holds its data and
/// must be at least as big as the snapshot's volume.
extension SimulatorModel {
  /// Takes the daily snapshots due for `volumeID` up to `now`, and drops expired ones.
  mutating func advanceSnapshots(_ volumeID: String, now: Double) {
    if var volume = volumes[volumeID], volume.autoBackup, volume.deletedAt == nil {
      var last = volume.lastAutoSnapshot ?? volume.createdAt
      while last + 86_400 <= now {
        last += 86_400
        snapshots[volumeID, default: []].append(
          SimSnapshot(
            id: "vs_" + String(newMachineID().prefix(12)), app: volume.app, volumeID: volumeID, size: volume.bytesUsed,
            volumeSizeGB: volume.sizeGB, createdAt: last, retentionDays: volume.snapshotRetention, automatic: true))
      }
      volume.lastAutoSnapshot = last
      setVolume(volume)
    }
    snapshots[volumeID]?.removeAll { now >= $0.createdAt + Double($0.retentionDays) * 86_400 }
  }

  func snapshot(_ id: String, now: Double) -> SimSnapshot? {
    for list in snapshots.values {
      if let found = list.first(where: { $0.id == id }), now < found.createdAt + Double(found.retentionDays) * 86_400 {
        return found
      }
    }
    return nil
  }

  mutating func listSnapshots(volume id: String, now: Double) -> SimAnswer {
    guard volumes[id] != nil else { return .error(404, "volume not found") }
    advanceSnapshots(id, now: now)
    return .json("[" + (snapshots[id] ?? []).map(render(snapshot:)).joined(separator: ",") + "]")
  }

  mutating func createSnapshot(volume id: String, now: Double) -> SimAnswer {
    guard let volume = visibleVolume(id, now: now), volume.deletedAt == nil else {
      return .error(404, "volume not found")
    }
    advanceSnapshots(id, now: now)
    let snapshot = SimSnapshot(
      id: "vs_" + String(newMachineID().prefix(12)), app: volume.app, volumeID: id, size: volume.bytesUsed,
      volumeSizeGB: volume.sizeGB, createdAt: now, retentionDays: volume.snapshotRetention, automatic: false)
    snapshots[id, default: []].append(snapshot)
    return .json(render(snapshot: snapshot))
  }

  func render(snapshot: SimSnapshot) -> String {
    var writer = JSONWriter()
    writer.add("id", snapshot.id)
    writer.add("size", snapshot.size)
    writer.add("volume_size", snapshot.volumeSizeGB)
    var digest: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in snapshot.id.utf8 { digest = (digest ^ UInt64(byte)) &* 0x100_0000_01B3 }
    writer.add("digest", String(digest, radix: 16))
    writer.add("created_at", isoTimestamp(snapshot.createdAt))
    writer.add("status", "created")
    writer.add("retention_days", snapshot.retentionDays)
    return writer.finished()
  }

  /// Someone's data fills the volume (tests of full disks).
  mutating func driftFill(_ id: String, bytesUsed: Int, now: Double) -> Bool {
    guard var volume = volumes[id], volume.deletedAt == nil else { return false }
    volume.bytesUsed = max(0, min(bytesUsed, volume.sizeGB << 30))
    volume.updatedAt = now
    setVolume(volume)
    return true
  }
}
