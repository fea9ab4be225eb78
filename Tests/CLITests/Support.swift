import Foundation

/// The `fleetkeeper` binary built beside the test bundle.
let fleetkeeperBinary: URL = {
  var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
  for _ in 0..<3 {
    let candidate = dir.appendingPathComponent("fleetkeeper")
    if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    dir = dir.deletingLastPathComponent()
  }
  return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(
    "fleetkeeper")
}()

struct CLIResult {
  var status: Int32
  var stdout: String
  var stderr: String
}

/// Runs `fleetkeeper args…` as a real process and waits for it.
@discardableResult
func fleetkeeper(_ args: [String], env: [String: String] = [:], directory: URL? = nil) throws -> CLIResult {
  let process = Process()
  process.executableURL = fleetkeeperBinary
  process.arguments = args
  var environment = ProcessInfo.processInfo.environment
  for (key, value) in env { environment[key] = value }
  process.environment = environment
  if let directory { process.currentDirectoryURL = directory }
  let out = Pipe()
  let err = Pipe()
  process.standardOutput = out
  process.standardError = err
  try process.run()
  let outData = out.fileHandleForReading.readDataToEndOfFile()
  let errData = err.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return CLIResult(
    status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
    stderr: String(decoding: errData, as: UTF8.self))
}

func temporaryDirectory() -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("fk-cli-\(UUID().uuidString)")
  try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}
