// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
  .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
  name: "fleetkeeper",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "fleetkeeper", targets: ["fleetkeeper"]),
    .library(name: "FleetCore", targets: ["FleetCore"]),
    .library(name: "FlyMachines", targets: ["FlyMachines"]),
    .library(name: "FlySimulator", targets: ["FlySimulator"]),
    .library(name: "FleetStore", targets: ["FleetStore"]),
    .library(name: "FleetAlerts", targets: ["FleetAlerts"]),
    .library(name: "FleetRuntime", targets: ["FleetRuntime"]),
    .library(name: "FleetDevTools", targets: ["FleetDevTools"]),
    .library(name: "HranaServer", targets: ["HranaServer"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
    .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
    .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1", traits: []),
    .package(url: "https://github.com/swift-server/async-http-client", exact: "1.37.0"),
    .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
    .package(url: "https://github.com/apple/swift-http-types", exact: "1.8.0"),
    .package(url: "https://github.com/apple/swift-crypto", exact: "4.5.2"),
    .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
  ],
  targets: [
    // The domain and the reconcile decision: pure values, no I/O.
    .target(
      name: "FleetCore", dependencies: [.product(name: "Crypto", package: "swift-crypto")], swiftSettings: strict),
    // The Fly Machines REST API client.
    .target(
      name: "FlyMachines",
      dependencies: [
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOFoundationCompat", package: "swift-nio"),
      ],
      swiftSettings: strict
    ),
    // An independent model of Fly's Machines API, served over HTTP. Shares no code with the client.
    .target(
      name: "FlySimulator",
      dependencies: [
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HTTPTypes", package: "swift-http-types"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOFoundationCompat", package: "swift-nio"),
      ],
      resources: [.copy("Resources/machines-api.openapi3.json")],
      swiftSettings: strict
    ),
    // The desired-state store, audit log and machines rows over SQLite.
    .target(
      name: "FleetStore",
      dependencies: [
        "FleetCore",
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOFoundationCompat", package: "swift-nio"),
      ],
      swiftSettings: strict
    ),
    // A libSQL remote-protocol (Hrana over HTTP) server on an SQLite file: Turso on loopback, for
    // tests and rehearsals. Shares no code with the store's client.
    .target(
      name: "HranaServer",
      dependencies: [
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "GRDBSQLite", package: "GRDB.swift"),
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HTTPTypes", package: "swift-http-types"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOFoundationCompat", package: "swift-nio"),
      ],
      swiftSettings: strict
    ),
    // Alerts: lifecycle, receivers, delivery queue.
    .target(
      name: "FleetAlerts",
      dependencies: [
        "FleetCore", "FleetStore",
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOFoundationCompat", package: "swift-nio"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strict
    ),
    // glibc's malloc.h (mallopt, malloc_trim), which the Glibc module leaves out.
    .systemLibrary(name: "CMalloc"),
    // The loop: observe, plan, act, record; the ops server.
    .target(
      name: "FleetRuntime",
      dependencies: [
        "FleetCore", "FlyMachines", "FleetStore", "CMalloc",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HTTPTypes", package: "swift-http-types"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strict
    ),
    // What runs the product against a simulated Fly: demo, benchmarks, the in-process Fly
    // transport and the virtual clock the tests share. Not linked by the product's libraries.
    .target(
      name: "FleetDevTools",
      dependencies: [
        "FleetCore", "FlyMachines", "FlySimulator", "FleetStore", "FleetRuntime",
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
      ],
      swiftSettings: strict
    ),
    .executableTarget(
      name: "fleetkeeper",
      dependencies: [
        "FleetCore", "FlyMachines", "FlySimulator", "FleetStore", "FleetRuntime", "FleetAlerts", "FleetDevTools",
        "HranaServer",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strict
    ),
    .testTarget(name: "FleetCoreTests", dependencies: ["FleetCore"], swiftSettings: strict),
    .testTarget(
      name: "FlyMachinesTests",
      dependencies: [
        "FlyMachines", "FlySimulator",
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HTTPTypes", package: "swift-http-types"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: strict
    ),
    .testTarget(
      name: "CLITests",
      dependencies: [
        "fleetkeeper",
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
      ],
      swiftSettings: strict
    ),
    .testTarget(name: "FlySimulatorTests", dependencies: ["FlySimulator"], swiftSettings: strict),
    .testTarget(
      name: "FleetAlertsTests",
      dependencies: [
        "FleetAlerts", "FleetCore", "FleetStore",
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HTTPTypes", package: "swift-http-types"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: strict
    ),
    .testTarget(
      name: "FleetStoreTests",
      dependencies: ["FleetStore", "FleetCore", "HranaServer", .product(name: "GRDB", package: "GRDB.swift")],
      swiftSettings: strict),
    .testTarget(
      name: "FleetRuntimeTests",
      dependencies: [
        "HranaServer", "FleetAlerts",
        "FleetRuntime", "FleetDevTools", "FleetStore", "FlyMachines", "FlySimulator", "FleetCore",
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: strict
    ),
  ]
)
