import ArgumentParser
import Foundation
import HranaServer

/// `fleetkeeper libsql-server`: an SQLite file served over libSQL's HTTP protocol (Hrana), the
/// protocol Turso speaks: to rehearse the Turso setup, or share one database between two local
/// controllers, with no account.
struct HranaCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "libsql-server",
    abstract: "Serve an SQLite file over libSQL's HTTP protocol (Turso's), on loopback, for rehearsals.")

  @Option(help: "Port to listen on; 0 picks a free one and prints it.") var port: Int = 8080
  @Option(help: "Address to bind.") var host: String = "127.0.0.1"
  @Option(help: "The SQLite file served (created if missing).") var file: String = "libsql.sqlite3"
  @Flag(help: "Accept requests without a token (else FLEET_DATABASE_AUTH_TOKEN must be set and sent).")
  var noAuth = false

  func run() async throws {
    let token = ProcessInfo.processInfo.environment["FLEET_DATABASE_AUTH_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    if token == nil && !noAuth {
      FileHandle.standardError.write(Data("set FLEET_DATABASE_AUTH_TOKEN, or pass --no-auth\n".utf8))
      throw ExitCode(2)
    }
    let server = HranaServer(path: file, token: noAuth ? nil : token)
    let host = host
    try await server.run(host: host, port: port) { bound in
      print("libsql server listening on http://\(host):\(bound) (file \(self.file))")
      print("FLEET_DATABASE=http://\(host):\(bound)")
      fflush(nil)
    }
  }
}
