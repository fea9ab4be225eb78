/// What this build is: `fleetkeeper --version`, the `fleetkeeper_build_info` metric, the User-Agent.
public enum BuildInfo {
  /// The release, by the project's own count (bumped when a release is cut).
  public static let version = "0.3.0"
  /// The Swift compiler that built it.
  public static var swiftVersion: String {
    #if compiler(>=6.3)
      "6.3"
    #elseif compiler(>=6.2)
      "6.2"
    #else
      "6.x"
    #endif
  }
}
