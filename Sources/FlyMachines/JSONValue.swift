public import Foundation

/// A JSON value kept verbatim, so that fields fleetkeeper does not model (a machine's config has
/// dozens) survive a decode and an encode unchanged.
public enum JSONValue: Sendable, Hashable, Codable {
  case null
  case bool(Bool)
  case int(Int64)
  case double(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  /// The deepest nesting of arrays and objects fleetkeeper reads in a Fly answer (real configs nest
  /// a handful of levels). Deeper input is an error naming this limit, never a stack overflow: a
  /// machine whose config nests a million arrays must not crash the controller.
  public static let maxDepth = 128

  /// Decodes any JSON value; arrays and objects nested deeper than ``maxDepth`` (counted by the
  /// decoder's coding path) throw `DecodingError.dataCorrupted` "nesting deeper than 128".
  public init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Int64.self) {
      self = .int(value)
    } else if let value = try? container.decode(Double.self) {
      self = .double(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if decoder.codingPath.count >= Self.maxDepth {
      throw DecodingError.dataCorrupted(
        .init(codingPath: decoder.codingPath, debugDescription: "nesting deeper than \(Self.maxDepth)"))
    } else if var array = try? decoder.unkeyedContainer() {
      // Elements are decoded one by one, so an error inside (the depth limit) is reported as is,
      // not masked as "not an object" by a fallback.
      var elements: [JSONValue] = []
      if let count = array.count { elements.reserveCapacity(count) }
      while !array.isAtEnd { elements.append(try array.decode(JSONValue.self)) }
      self = .array(elements)
    } else {
      self = .object(try container.decode([String: JSONValue].self))
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    switch self {
    case .null: try container.encodeNil()
    case .bool(let value): try container.encode(value)
    case .int(let value): try container.encode(value)
    case .double(let value): try container.encode(value)
    case .string(let value): try container.encode(value)
    case .array(let value): try container.encode(value)
    case .object(let value): try container.encode(value)
    }
  }

  /// The string, when this is a string.
  public var stringValue: String? {
    if case .string(let value) = self { return value }
    return nil
  }

  /// The integer, when this is a whole number.
  public var intValue: Int? {
    switch self {
    case .int(let value): return Int(value)
    case .double(let value) where value.rounded() == value: return Int(value)
    default: return nil
    }
  }

  /// The members, when this is an object.
  public var objectValue: [String: JSONValue]? {
    if case .object(let value) = self { return value }
    return nil
  }

  /// The elements, when this is an array.
  public var arrayValue: [JSONValue]? {
    if case .array(let value) = self { return value }
    return nil
  }

  /// A string map (`env`, `metadata`) as JSON.
  public static func stringMap(_ map: [String: String]) -> JSONValue {
    .object(map.mapValues { .string($0) })
  }

  /// A string list (`init.cmd`) as JSON.
  public static func stringList(_ list: [String]) -> JSONValue {
    .array(list.map { .string($0) })
  }
}

/// A pre-check of a body's nesting, for the bodies handed to `JSONDecoder`: a linear pass, no
/// recursion, that finds the first array or object nested deeper than a limit (brackets inside
/// strings do not count). The rest of the shape is the parser's business.
enum JSONNesting {
  /// The byte offset of the first `[` or `{` nested deeper than `limit`, or nil.
  static func tooDeep(_ raw: UnsafeRawBufferPointer, limit: Int = JSONValue.maxDepth) -> Int? {
    var depth = 0
    var inString = false
    var escaped = false
    for offset in 0..<raw.count {
      let byte = raw[offset]
      if inString {
        if escaped {
          escaped = false
        } else if byte == UInt8(ascii: "\\") {
          escaped = true
        } else if byte == UInt8(ascii: "\"") {
          inString = false
        }
        continue
      }
      switch byte {
      case UInt8(ascii: "\""): inString = true
      case UInt8(ascii: "["), UInt8(ascii: "{"):
        depth += 1
        if depth > limit { return offset }
      case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
      default: break
      }
    }
    return nil
  }
}
