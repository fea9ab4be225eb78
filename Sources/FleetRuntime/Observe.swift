public import FleetCore
public import FlyMachines

extension ObservedMachine {
  /// A machine from Fly's list, as the planner sees it.
  public init(_ machine: FlyMachine) {
    self.init(
      id: machine.id, name: machine.name, state: MachineState(machine.state), region: machine.region ?? "",
      userID: machine.config?.metadata[FleetNames.userMetadataKey], volumeID: machine.config?.mounts.first?.volume,
      privateIP: machine.privateIP,
      createdAt: machine.createdAt.flatMap(parseFlyTimestamp), updatedAt: machine.updatedAt.flatMap(parseFlyTimestamp))
  }
}

extension ObservedMachine {
  /// A machine from a list scanned for listings (the quiet pass's fast path).
  public init(_ listing: FlyMachineListing) {
    self.init(
      id: listing.id, name: listing.name, state: MachineState(listing.state), region: listing.region ?? "", userID: listing.owner,
      volumeID: listing.volumeID, privateIP: listing.privateIP, createdAt: listing.createdAt.flatMap(parseFlyTimestamp),
      updatedAt: listing.updatedAt.flatMap(parseFlyTimestamp))
  }
}

extension ObservedVolume {
  public init(_ volume: FlyVolume) {
    self.init(
      id: volume.id, name: volume.name, state: VolumeState(volume.state), region: volume.region,
      attachedMachineID: volume.attachedMachineID.flatMap { $0.isEmpty ? nil : $0 }, sizeGB: volume.sizeGB,
      createdAt: volume.createdAt.flatMap(parseFlyTimestamp))
  }
}

/// Unix seconds from Fly's RFC 3339 timestamps (`2023-09-01T19:47:14.774Z`, `2022-05-18T16:15:13Z`).
public func parseFlyTimestamp(_ text: String) -> Double? {
  let bytes = Array(text.utf8)
  guard bytes.count >= 20 else { return nil }
  func number(_ from: Int, _ count: Int) -> Int? {
    var value = 0
    for i in from..<(from + count) {
      let b = bytes[i]
      guard b >= 48 && b <= 57 else { return nil }
      value = value * 10 + Int(b - 48)
    }
    return value
  }
  guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
    let minute = number(14, 2), let second = number(17, 2)
  else { return nil }
  var fraction = 0.0
  var index = 19
  if index < bytes.count && bytes[index] == 46 {
    index += 1
    var scale = 0.1
    while index < bytes.count, bytes[index] >= 48 && bytes[index] <= 57 {
      fraction += Double(bytes[index] - 48) * scale
      scale /= 10
      index += 1
    }
  }
  var offset = 0
  if index < bytes.count, bytes[index] == 43 || bytes[index] == 45, index + 5 < bytes.count + 1,
    let h = number(index + 1, 2), let m = number(index + 4, 2)
  {
    offset = (h * 3600 + m * 60) * (bytes[index] == 43 ? 1 : -1)
  }
  // Days from civil (Howard Hinnant).
  let y = month <= 2 ? year - 1 : year
  let era = (y >= 0 ? y : y - 399) / 400
  let yoe = y - era * 400
  let mp = (month + 9) % 12
  let doy = (153 * mp + 2) / 5 + day - 1
  let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
  let days = era * 146_097 + doe - 719_468
  return Double(days * 86_400 + hour * 3600 + minute * 60 + second - offset) + fraction
}
