/// A map from user id to a value, stored densely: the values in one array and a hash index of
/// their positions.
///
/// A Swift dictionary keeps a bucket of key and value per slot of a power-of-two table at most 3/4
/// full; here the keys and values are stored once each and the index (``PositionIndex``) holds
/// 4-byte positions (the figures: docs/benchmarks.md). Removal moves the last value into the hole; iteration order is insertion
/// order, give or take removals.
public struct UserMap<Value: Sendable>: Sendable {
  @usableFromInline var storedKeys: [String] = []
  @usableFromInline var storedValues: [Value] = []
  @usableFromInline var index = PositionIndex()
  @inlinable public var keys: [String] { storedKeys }
  @inlinable public var values: [Value] { storedValues }

  // Inlinable: generic code is specialized only where its body is visible (the planner, the store
  // and the reconciler are other modules), and unspecialized lookups cost metadata calls per use.
  @inlinable public init() {}

  @inlinable public init(minimumCapacity: Int) {
    reserveCapacity(minimumCapacity)
  }

  @inlinable public init(_ dictionary: [String: Value]) {
    reserveCapacity(dictionary.count)
    for (key, value) in dictionary { self[key] = value }
  }

  @inlinable public var count: Int { storedValues.count }
  @inlinable public var isEmpty: Bool { storedValues.isEmpty }

  @inlinable public mutating func reserveCapacity(_ capacity: Int) {
    storedKeys.reserveCapacity(capacity)
    storedValues.reserveCapacity(capacity)
    index.reserveCapacity(capacity, keyAt: { [storedKeys] in storedKeys[$0] })
  }

  @inlinable func position(of key: String) -> Int? {
    index.find(key, keyAt: { [storedKeys] in storedKeys[$0] })
  }

  @inlinable public func contains(_ key: String) -> Bool { position(of: key) != nil }

  @inlinable public subscript(key: String) -> Value? {
    get { position(of: key).map { storedValues[$0] } }
    set {
      let keys = storedKeys
      if let position = index.find(key, keyAt: { keys[$0] }) {
        if let newValue {
          storedValues[position] = newValue
        } else {
          index.remove(key, keyAt: { keys[$0] })
          let last = storedValues.count - 1
          if position != last { index.move(keys[last], to: position, keyAt: { keys[$0] }) }
          // `keys` is let go before the arrays change, so that they are changed in place.
          _ = consume keys
          if position != last {
            storedKeys.swapAt(position, last)
            storedValues.swapAt(position, last)
          }
          storedKeys.removeLast()
          storedValues.removeLast()
        }
      } else if let newValue {
        index.insert(key, at: storedValues.count, keyAt: { keys[$0] })
        _ = consume keys
        storedKeys.append(key)
        storedValues.append(newValue)
      }
    }
  }

}

extension UserMap: Sequence {
  public struct Iterator: IteratorProtocol {
    @usableFromInline var keys: IndexingIterator<[String]>
    @usableFromInline var values: IndexingIterator<[Value]>
    @inlinable init(keys: IndexingIterator<[String]>, values: IndexingIterator<[Value]>) {
      self.keys = keys
      self.values = values
    }
    @inlinable public mutating func next() -> (key: String, value: Value)? {
      guard let key = keys.next(), let value = values.next() else { return nil }
      return (key, value)
    }
  }
  @inlinable public func makeIterator() -> Iterator {
    Iterator(keys: storedKeys.makeIterator(), values: storedValues.makeIterator())
  }
  @inlinable public var underestimatedCount: Int { count }
}

extension UserMap: ExpressibleByDictionaryLiteral {
  @inlinable public init(dictionaryLiteral elements: (String, Value)...) {
    reserveCapacity(elements.count)
    for (key, value) in elements { self[key] = value }
  }
}

extension UserMap: Equatable where Value: Equatable {
  /// Same keys with equal values, whatever the order.
  @inlinable public static func == (a: UserMap, b: UserMap) -> Bool {
    a.count == b.count && zip(a.keys, a.values).allSatisfy { b[$0.0] == $0.1 }
  }
}

extension UserMap: Hashable where Value: Hashable {
  @inlinable public func hash(into hasher: inout Hasher) { hasher.combine(count) }
}

extension UserMap: CustomStringConvertible {
  public var description: String {
    "[" + zip(keys, values).map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "]"
  }
}
