import FlyMachines
import Foundation
import Testing

@testable import FlySimulator

/// Every request body the client can produce uses only fields Fly's OpenAPI spec defines, with the
/// spec's types. The spec is the shipped copy of `machines-api.openapi3.json`.
struct ContractTests {
  static let validator = SpecValidator.bundled

  static func check(_ body: some Encodable, against schema: String) throws -> (String?, [String]) {
    let data = try JSONEncoder().encode(body)
    let json = try #require(SimJSON.parse(data))
    let outcome = validator.validate(json, against: schema)
    return (outcome.error, outcome.unknownFields)
  }

  @Test func specIsLoaded() { #expect(Self.validator.isLoaded) }

  @Test func createMachineWithEveryFieldWeSet() throws {
    let request = CreateMachineRequest(
      name: "fk-u1", region: "cdg", config: machineConfig(volume: "vol_0123456789abcdef"), skipLaunch: true)
    let (error, unknown) = try Self.check(request, against: "CreateMachineRequest")
    #expect(error == nil)
    #expect(unknown == [])
  }

  @Test func createVolume() throws {
    let (error, unknown) = try Self.check(
      CreateVolumeRequest(name: "fk_u1", region: "cdg", sizeGB: 3, encrypted: true), against: "CreateVolumeRequest")
    #expect(error == nil)
    #expect(unknown == [])
  }

  @Test func stopRequest() throws {
    let (error, unknown) = try Self.check(StopMachineRequest(signal: "SIGTERM", timeout: "10s"), against: "StopRequest")
    #expect(error == nil)
    #expect(unknown == [])
  }

  /// The checker itself catches what it should (a test that cannot fail is a defect).
  @Test func checkerCatchesWrongTypes() throws {
    var config = machineConfig()
    config.fields["guest"] = .object(["memory_mb": .string("512")])
    let (error, _) = try Self.check(
      CreateMachineRequest(region: "ord", config: config), against: "CreateMachineRequest")
    #expect(error?.contains("config.guest.memory_mb") == true)
  }

  @Test func checkerCatchesUnknownFields() throws {
    var config = machineConfig()
    config.fields["made_up"] = .bool(true)
    let (error, unknown) = try Self.check(
      CreateMachineRequest(region: "ord", config: config), against: "CreateMachineRequest")
    #expect(error == nil)
    #expect(unknown == ["config.made_up"])
  }
}
