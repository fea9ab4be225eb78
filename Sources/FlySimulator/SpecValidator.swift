import Foundation

/// Checks request bodies against the schemas of Fly's own OpenAPI spec
/// (`machines-api.openapi3.json`, shipped as a resource), the way Fly's Go server decodes them: a
/// value of the wrong JSON type is refused with Go's `cannot unmarshal` wording; a field the schema
/// does not define is ignored, and recorded so a test can assert that the client never sends one.
struct SpecValidator: Sendable {
  private let schemas: [String: SimJSON]

  init(specData: Data) {
    schemas = SimJSON.parse(specData)?.object?["components"]?.object?["schemas"]?.object ?? [:]
  }

  static let bundled: SpecValidator = {
    guard let url = Bundle.module.url(forResource: "machines-api.openapi3", withExtension: "json"),
      let data = try? Data(contentsOf: url)
    else { return SpecValidator(specData: Data()) }
    return SpecValidator(specData: data)
  }()

  var isLoaded: Bool { !schemas.isEmpty }

  struct Outcome {
    /// Go's error text for the first type mismatch, if any.
    var error: String?
    /// Dotted paths of fields the schema does not define.
    var unknownFields: [String] = []
  }

  func validate(_ value: SimJSON, against schemaName: String) -> Outcome {
    var outcome = Outcome()
    check(value, schema: .object(["$ref": .string("#/components/schemas/\(schemaName)")]), path: "", outcome: &outcome)
    return outcome
  }

  private func resolve(_ schema: SimJSON) -> [String: SimJSON] {
    var object = schema.object ?? [:]
    if let ref = object["$ref"]?.string, let name = ref.split(separator: "/").last {
      object = schemas[String(name)]?.object ?? [:]
    }
    if let parts = object["allOf"]?.array {
      var merged = object
      merged["allOf"] = nil
      for part in parts {
        let resolved = resolve(part)
        for (key, value) in resolved where merged[key] == nil { merged[key] = value }
        if let props = resolved["properties"]?.object {
          var mine = merged["properties"]?.object ?? [:]
          for (key, value) in props { mine[key] = value }
          merged["properties"] = .object(mine)
        }
      }
      object = merged
    }
    return object
  }

  private func check(_ value: SimJSON, schema: SimJSON, path: String, outcome: inout Outcome) {
    guard outcome.error == nil else { return }
    let resolved = resolve(schema)
    if case .null = value { return }  // Go leaves the zero value.
    let type = resolved["type"]?.string ?? (resolved["properties"] != nil ? "object" : nil)
    func mismatch(_ goType: String) {
      outcome.error =
        "json: cannot unmarshal \(value.goKind) into Go struct field \(path.isEmpty ? "." : path) of type \(goType)"
    }
    switch type {
    case "string":
      if value.string == nil { mismatch("string") }
    case "integer":
      if value.int == nil { mismatch("int") }
    case "number":
      if value.double == nil { mismatch("float64") }
    case "boolean":
      if value.bool == nil { mismatch("bool") }
    case "array":
      guard let items = value.array else { return mismatch("[]") }
      let itemSchema = resolved["items"] ?? .object([:])
      for (index, item) in items.enumerated() {
        check(item, schema: itemSchema, path: "\(path)[\(index)]", outcome: &outcome)
      }
    case "object":
      guard let members = value.object else { return mismatch("object") }
      let properties = resolved["properties"]?.object ?? [:]
      let additional = resolved["additionalProperties"]
      for key in members.keys.sorted() {
        let childPath = path.isEmpty ? key : "\(path).\(key)"
        if let propertySchema = properties[key] {
          check(members[key]!, schema: propertySchema, path: childPath, outcome: &outcome)
        } else if let additional, additional.object != nil {
          check(members[key]!, schema: additional, path: childPath, outcome: &outcome)
        } else if properties.isEmpty && additional == nil && resolved["type"] == nil {
          continue  // a free-form object
        } else {
          outcome.unknownFields.append(childPath)
        }
      }
    default:
      break
    }
  }
}
