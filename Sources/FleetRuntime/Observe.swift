public import FleetCore
public import FlyMachines

extension ObservedMachine {
  /// A machine from Fly's list, as the planner sees it.
  public init(_ machine: FlyMachine) {
    self.init(
      id: machine.id, name: machine.name, state: MachineState(machine.state), region: machine.region ?? "",
      userID: machine.config?.metadata[FleetNames.userMetadataKey], volumeID: machine.config?.mounts.first?.volume,
      privateIP: machine.privateIP,
      createdAt: machine.createdAt.flatMap(parseRFC3339), updatedAt: machine.updatedAt.flatMap(parseRFC3339))
  }
}

extension ObservedMachine {
  /// A machine from a list scanned for listings (the quiet pass's fast path).
  public init(_ listing: FlyMachineListing) {
    self.init(
      id: listing.id, name: listing.name, state: MachineState(listing.state), region: listing.region ?? "",
      userID: listing.owner,
      volumeID: listing.volumeID, privateIP: listing.privateIP, createdAt: listing.createdAt.flatMap(parseRFC3339),
      updatedAt: listing.updatedAt.flatMap(parseRFC3339), versionHash: ConfigDigest.version(listing.version),
      overviewHash: ConfigDigest.overview(
        image: listing.image, cpuKind: listing.guest?.cpuKind, cpus: listing.guest?.cpus,
        memoryMB: listing.guest?.memoryMB))
  }
}

extension ObservedVolume {
  public init(_ volume: FlyVolume) {
    self.init(
      id: volume.id, name: volume.name, state: VolumeState(volume.state), region: volume.region,
      attachedMachineID: volume.attachedMachineID.flatMap { $0.isEmpty ? nil : $0 }, sizeGB: volume.sizeGB,
      createdAt: volume.createdAt.flatMap(parseRFC3339), updatedAt: volume.updatedAt.flatMap(parseRFC3339))
    if let used = volume.bytesUsed, let total = volume.bytesTotal ?? volume.sizeGB.map({ $0 << 30 }), total > 0 {
      usedPercent = Double(used) / Double(total) * 100
    }
  }
}
