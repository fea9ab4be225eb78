import FleetCore
import Testing

struct ValidationTests {
  @Test(arguments: [
    "nginx", "nginx:1.25", "registry.fly.io/agent:v3", "ghcr.io/org/app@sha256:" + String(repeating: "a", count: 64),
    "localhost:5000/x/y:tag", "docker.io/library/nginx:latest",
  ])
  func goodImages(image: String) throws {
    #expect(try FleetValidation.image(image) == image)
  }

  @Test(arguments: [
    "", "Nginx", "nginx:", "a b", "nginx;rm -rf /", "x@sha256:zz", "//x", "nginx:\u{7}", "image'--",
    String(repeating: "a", count: 256),
  ])
  func badImages(image: String) {
    #expect(throws: FieldError.self) { try FleetValidation.image(image) }
  }

  @Test func fieldErrorsQuoteAndEscape() {
    let error = FieldError(field: "user_id", value: "a\u{0}b\"c\n", reason: "bad", line: 3)
    #expect(error.description == #"line 3: user_id "a\u{0}b\"c\u{a}": bad"#)
  }

  @Test(arguments: [
    (256, 1, "shared", true), (2048, 1, "shared", true), (2304, 1, "shared", false), (300, 1, "shared", false),
    (8192, 1, "performance", true), (0, 1, "shared", false),
  ])
  func memory(value: Int, cpus: Int, kind: String, ok: Bool) {
    let accepted = (try? FleetValidation.memory(value, cpus: cpus, cpuKind: kind)) != nil
    #expect(accepted == ok)
  }
}
