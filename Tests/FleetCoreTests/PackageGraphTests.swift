import Foundation
import Testing

/// The package's edges are honest: every module a target imports is declared in Package.swift,
/// every declared dependency is imported, and docs/architecture.md's table says the same.
struct PackageGraphTests {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  /// Modules of the toolchain: never declared.
  static let system: Set<String> = [
    "Foundation", "FoundationEssentials", "Synchronization", "Dispatch", "Glibc", "Musl", "Darwin", "_Concurrency",
    "SQLite3", "CSQLite", "Testing", "XCTest",
  ]

  struct Target {
    var name: String
    var kind: String
    var dependencies: Set<String>
  }

  /// The targets of Package.swift and the modules each depends on (a product by its name).
  static func manifest() throws -> [String: Target] {
    let text = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
    var targets: [String: Target] = [:]
    let opener = /\.(target|executableTarget|testTarget|systemLibrary)\(\s*name:\s*"([^"]+)"/
    for match in text.matches(of: opener) {
      let kind = String(match.output.1)
      let name = String(match.output.2)
      // The call's text: up to its closing parenthesis.
      var depth = 0
      var end = match.range.lowerBound
      for index in text[match.range.lowerBound...].indices {
        if text[index] == "(" { depth += 1 }
        if text[index] == ")" {
          depth -= 1
          if depth == 0 {
            end = index
            break
          }
        }
      }
      let call = String(text[match.range.upperBound..<end])
      var dependencies: Set<String> = []
      if let list = call.firstMatch(of: /dependencies:\s*\[([^\]]*)\]/) {
        var body = String(list.output.1)
        for product in body.matches(of: /\.product\(\s*name:\s*"([^"]+)"[^)]*\)/) {
          dependencies.insert(String(product.output.1))
        }
        body = body.replacing(/\.product\([^)]*\)/, with: "")
        for plain in body.matches(of: /"([^"]+)"/) { dependencies.insert(String(plain.output.1)) }
      }
      targets[name] = Target(name: name, kind: kind, dependencies: dependencies)
    }
    return targets
  }

  /// The modules the Swift files under `folder` import (toolchain modules left out).
  static func imports(in folder: URL) throws -> Set<String> {
    let pattern =
      /^(?:@\w+\s+)*(?:(?:public|package|internal|fileprivate|private)\s+)?import\s+(?:(?:struct|class|enum|protocol|func|typealias|var|let)\s+)?(\w+)/
    var modules: Set<String> = []
    let files = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil)
    while let file = files?.nextObject() as? URL {
      guard file.pathExtension == "swift" else { continue }
      let text = try String(contentsOf: file, encoding: .utf8)
      // Top-level imports, and imports indented inside `#if` blocks (never a script in a string).
      var conditional = 0
      for line in text.split(separator: "\n") {
        let trimmed = line.drop { $0 == " " }
        if trimmed.hasPrefix("#if") { conditional += 1 }
        if trimmed.hasPrefix("#endif") { conditional = max(0, conditional - 1) }
        guard line.contains("import ") else { continue }
        if let match = (conditional > 0 ? trimmed : line).firstMatch(of: pattern) {
          modules.insert(String(match.output.1))
        }
      }
    }
    return modules.subtracting(system)
  }

  @Test func everyImportIsDeclaredAndEveryDeclarationImported() throws {
    let targets = try Self.manifest()
    #expect(targets.count >= 10, "Package.swift parsed: \(targets.keys.sorted())")
    for target in targets.values {
      let folder = Self.root.appendingPathComponent(target.kind == "testTarget" ? "Tests" : "Sources")
        .appendingPathComponent(target.name)
      let imported = try Self.imports(in: folder)
      // A test target may depend on an executable only to have it built (it runs it, never imports it).
      let executables = Set(targets.values.filter { $0.kind == "executableTarget" }.map(\.name))
      let declared = target.dependencies.subtracting(target.kind == "testTarget" ? executables : [])
      #expect(
        imported.subtracting(declared).isEmpty,
        "\(target.name) imports \(imported.subtracting(declared).sorted()) without declaring them")
      #expect(
        declared.subtracting(imported).isEmpty,
        "\(target.name) declares \(declared.subtracting(imported).sorted()) and never imports them")
    }
  }

  @Test func theProductLibrariesNeverLinkTheSimulatorOrTheDevTools() throws {
    let targets = try Self.manifest()
    let dev: Set = ["FlySimulator", "FleetDevTools", "HranaServer"]
    func closure(_ name: String) -> Set<String> {
      var seen: Set<String> = []
      var queue = [name]
      while let next = queue.popLast() {
        for dependency in targets[next]?.dependencies ?? []
        where targets[dependency] != nil && !seen.contains(dependency) {
          seen.insert(dependency)
          queue.append(dependency)
        }
      }
      return seen
    }
    for product in ["FleetCore", "FlyMachines", "FleetStore", "FleetAlerts", "FleetRuntime"] {
      #expect(closure(product).isDisjoint(with: dev), "\(product) links \(closure(product).intersection(dev).sorted())")
    }
  }

  @Test func theArchitectureTableSaysWhatThePackageSays() throws {
    let targets = try Self.manifest()
    let doc = try String(contentsOf: Self.root.appendingPathComponent("docs/architecture.md"), encoding: .utf8)
    var rows: [String: Set<String>] = [:]
    for line in doc.split(separator: "\n") {
      guard let match = line.firstMatch(of: /^\|\s*`(\w+)`\s*\|[^|]*\|([^|]*)\|\s*$/) else { continue }
      let listed = match.output.2.split(separator: ",").map {
        $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "`"))
      }.filter { !$0.isEmpty && $0 != "nothing" }
      rows[String(match.output.1)] = Set(listed)
    }
    let sources = targets.values.filter { $0.kind != "testTarget" }
    #expect(Set(rows.keys) == Set(sources.map(\.name)), "rows: \(rows.keys.sorted())")
    for target in sources {
      #expect(rows[target.name] == target.dependencies, "docs/architecture.md's row for \(target.name)")
    }
  }
}
