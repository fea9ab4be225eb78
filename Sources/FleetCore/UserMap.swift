/// A map from user id to a value, stored densely: the values in one array and a hash index of
/// their positions.
///
/// A Swift dictionary keeps a bucket per slot of a power-of-two table at most 3/4 full: at 100k
/// users that is 262,144 buckets of key and value (23 MB for the desired rows). Here the index
/// holds 4-byte positions and the values are stored once each (14 MB). Removal moves the last
/// value into the hole; iteration order is insertion order, give or take removals.
public struct UserMap<Value: Sendable>: Sendable {
  public private(set) var keys: [String] = []
  public private(set) var values: [Value] = []
  private var index: [String: Int32] = [:]

  public init() {}

  public init(minimumCapacity: Int) {
    reserveCapacity(minimumCapacity)
  }

  public init(_ dictionary: [String: Value]) {
    reserveCapacity(dictionary.count)
    for (key, value) in dictionary { self[key] = value }
  }

  public var count: Int { values.count }
  public var isEmpty: Bool { values.isEmpty }

  public mutating func reserveCapacity(_ capacity: Int) {
    keys.reserveCapacity(capacity)
    values.reserveCapacity(capacity)
    index.reserveCapacity(capacity)
  }

  public func contains(_ key: String) -> Bool { index[key] != nil }

  public subscript(key: String) -> Value? {
    get { index[key].map { values[Int($0)] } }
    set {
      if let position = index[key].map(Int.init) {
        if let newValue {
          values[position] = newValue
        } else {
          index[key] = nil
          let last = values.count - 1
          if position != last {
            keys.swapAt(position, last)
            values.swapAt(position, last)
            index[keys[position]] = Int32(position)
          }
          keys.removeLast()
          values.removeLast()
        }
      } else if let newValue {
        index[key] = Int32(values.count)
        keys.append(key)
        values.append(newValue)
      }
    }
  }

  /// The same map with each value transformed.
  public func mapValues<T>(_ transform: (Value) throws -> T) rethrows -> UserMap<T> {
    var result = UserMap<T>()
    result.keys = keys
    result.values = try values.map(transform)
    result.index = index
    return result
  }
}

extension UserMap: Sequence {
  public struct Iterator: IteratorProtocol {
    var keys: IndexingIterator<[String]>
    var values: IndexingIterator<[Value]>
    public mutating func next() -> (key: String, value: Value)? {
      guard let key = keys.next(), let value = values.next() else { return nil }
      return (key, value)
    }
  }
  public func makeIterator() -> Iterator { Iterator(keys: keys.makeIterator(), values: values.makeIterator()) }
  public var underestimatedCount: Int { count }
}

extension UserMap: ExpressibleByDictionaryLiteral {
  public init(dictionaryLiteral elements: (String, Value)...) {
    reserveCapacity(elements.count)
    for (key, value) in elements { self[key] = value }
  }
}

extension UserMap: Equatable where Value: Equatable {
  /// Same keys with equal values, whatever the order.
  public static func == (a: UserMap, b: UserMap) -> Bool {
    a.count == b.count && zip(a.keys, a.values).allSatisfy { b[$0.0] == $0.1 }
  }
}

extension UserMap: Hashable where Value: Hashable {
  public func hash(into hasher: inout Hasher) { hasher.combine(count) }
}

extension UserMap: CustomStringConvertible {
  public var description: String {
    "[" + zip(keys, values).map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "]"
  }
}
