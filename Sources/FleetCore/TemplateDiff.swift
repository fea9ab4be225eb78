/// What changed between two templates, one line per field, for `rollout status`, `plan` and the
/// rollout's events. Env values and init arguments are never shown: a literal value may be a
/// secret someone typed, and `{{secret:…}}` expands to one.
public enum TemplateDiff {
  public static func lines(from a: MachineTemplate, to b: MachineTemplate) -> [String] {
    var lines: [String] = []
    func field(_ name: String, _ x: String, _ y: String) { if x != y { lines.append("\(name): \(x) → \(y)") } }
    field("image", a.image, b.image)
    field("cpu_kind", a.cpuKind, b.cpuKind)
    field("cpus", "\(a.cpus)", "\(b.cpus)")
    field("memory_mb", "\(a.memoryMB)", "\(b.memoryMB)")
    for name in Set(a.env.keys).union(b.env.keys).sorted() {
      switch (a.env[name], b.env[name]) {
      case (nil, _?): lines.append("env \(name): added")
      case (_?, nil): lines.append("env \(name): removed")
      case (let x?, let y?) where x != y: lines.append("env \(name): changed (value masked)")
      default: break
      }
    }
    if a.initCommand != b.initCommand { lines.append("init_cmd: changed (arguments masked)") }
    if a.servicesJSON != b.servicesJSON { lines.append("services: changed") }
    field("mount_path", a.mountPath, b.mountPath)
    field("volume_size_gb", "\(a.volumeSizeGB)", "\(b.volumeSizeGB)")
    field("restart_policy", a.restartPolicy, b.restartPolicy)
    return lines
  }
}
