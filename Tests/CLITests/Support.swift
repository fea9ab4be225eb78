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

struct CLIResult: Sendable {
  var status: Int32
  var stdout: String
  var stderr: String
}

/// Runs a blocking call (a child process's pipes, `waitUntilExit`) on its own thread: blocking one of
/// the few threads of Swift's cooperative pool would stall every other test running in this process
/// (in-process servers included) until the child is done.
func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { continuation in
    Thread { continuation.resume(with: Result { try body() }) }.start()
  }
}

func offload<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
  await withCheckedContinuation { continuation in
    Thread { continuation.resume(returning: body()) }.start()
  }
}

/// Runs `fleetkeeper args…` as a real process and waits for it (off the cooperative pool).
@discardableResult
func fleetkeeper(_ args: [String], env: [String: String] = [:], directory: URL? = nil) async throws -> CLIResult {
  try await offload { try fleetkeeperBlocking(args, env: env, directory: directory) }
}

func fleetkeeperBlocking(_ args: [String], env: [String: String], directory: URL?) throws -> CLIResult {
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
