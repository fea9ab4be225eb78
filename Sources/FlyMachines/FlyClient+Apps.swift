import Foundation
import NIOHTTP1

/// Apps, their IPs, secrets, and machine metadata: what one app per user needs.
extension FlyClient {
  /// `GET /v1/apps?org_slug=…`: every app of the org in one answer (no `limit`: Fly then sends all
  /// of them at once); a `next_cursor` in the answer is followed all the same.
  public func listApps(org: String) async throws(FlyAPIError) -> [FlyApp] {
    var apps: [FlyApp] = []
    var cursor: String?
    var seen: Set<String> = []
    repeat {
      var query = [("org_slug", org)]
      if let cursor { query += [("limit", "5000"), ("cursor", cursor)] }
      let page = try decode(
        ListAppsResponse.self, try await send(.GET, "/v1/apps", query: query, endpoint: "GET /apps"))
      apps.append(contentsOf: page.apps)
      cursor = page.nextCursor.flatMap { $0.isEmpty ? nil : $0 }
      if let next = cursor, !seen.insert(next).inserted {
        throw FlyAPIError(code: .invalidResponse, message: "next_cursor repeated", operation: "GET /v1/apps")
      }
    } while cursor != nil
    return apps
  }

  /// `POST /v1/apps`: safe to repeat with the same `idempotencyKey` and name. A name someone else
  /// holds answers 422 `name_taken`.
  public func createApp(_ request: CreateAppRequest) async throws(FlyAPIError) -> FlyApp {
    try decode(FlyApp.self, try await send(.POST, "/v1/apps", body: request, endpoint: "POST /apps"))
  }

  /// `GET /v1/apps/{app}` of this client's app.
  public func getApp() async throws(FlyAPIError) -> FlyApp {
    try decode(FlyApp.self, try await send(.GET, appPath, endpoint: "GET /apps/{app}"))
  }

  /// `DELETE /v1/apps/{app}` of this client's app: everything in it goes too (202).
  public func deleteApp() async throws(FlyAPIError) {
    _ = try await send(.DELETE, appPath, endpoint: "DELETE /apps/{app}")
  }

  /// `POST …/ip_assignments`.
  public func assignIP(_ request: AssignIPRequest) async throws(FlyAPIError) -> FlyIPAssignment {
    try decode(
      FlyIPAssignment.self,
      try await send(.POST, "\(appPath)/ip_assignments", body: request, endpoint: "POST /ip_assignments"))
  }

  /// `GET …/ip_assignments`.
  public func listIPs() async throws(FlyAPIError) -> [FlyIPAssignment] {
    struct Answer: Decodable { var ips: [FlyIPAssignment]? }
    return try decode(
      Answer.self, try await send(.GET, "\(appPath)/ip_assignments", endpoint: "GET /ip_assignments")
    ).ips ?? []
  }

  /// `POST …/secrets {values}` (nil unsets a name): the app's new secrets version.
  public func setSecrets(_ values: [String: String?]) async throws(FlyAPIError) -> Int {
    struct Body: Encodable, Sendable {
      var values: [String: String?]
      func encode(to encoder: any Encoder) throws {
        // nil must be sent as null (unset), not left out.
        var container = encoder.container(keyedBy: Key.self)
        var nested = container.nestedContainer(keyedBy: Key.self, forKey: Key("values"))
        for (name, value) in values {
          if let value { try nested.encode(value, forKey: Key(name)) } else { try nested.encodeNil(forKey: Key(name)) }
        }
      }
    }
    struct Key: CodingKey {
      var stringValue: String
      var intValue: Int? { nil }
      init(_ value: String) { stringValue = value }
      init?(stringValue: String) { self.stringValue = stringValue }
      init?(intValue: Int) { nil }
    }
    struct Answer: Decodable { var version: Int? }
    let answer = try decode(
      Answer.self, try await send(.POST, "\(appPath)/secrets", body: Body(values: values), endpoint: "POST /secrets"))
    guard let version = answer.version else {
      throw FlyAPIError(
        code: .invalidResponse, message: "the secrets answer has no version", operation: "POST \(appPath)/secrets")
    }
    return version
  }

  /// `GET …/secrets`: names and digests.
  public func listSecrets() async throws(FlyAPIError) -> [FlyAppSecret] {
    struct Answer: Decodable { var secrets: [FlyAppSecret]? }
    return try decode(Answer.self, try await send(.GET, "\(appPath)/secrets", endpoint: "GET /secrets")).secrets ?? []
  }

  /// `POST …/machines/{id}/metadata/{key}`: sets one key, with no new version and no restart.
  public func setMetadata(machineID: String, key: String, value: String) async throws(FlyAPIError) {
    struct Body: Encodable, Sendable { var value: String }
    _ = try await send(
      .POST, machinePath(machineID) + "/metadata/\(Self.escape(key))", body: Body(value: value),
      endpoint: "POST /machines/{id}/metadata/{key}")
  }
}
