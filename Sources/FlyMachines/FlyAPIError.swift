/// Every failure of a Fly Machines API call, with a stable ``Code``.
///
/// The description carries the operation (method and path, never the token), the HTTP status, Fly's
/// error text and the `fly-request-id`, so an operator can quote it to Fly support. It never
/// carries a request body or header: those can hold the token or environment values.
///
/// Status codes follow <https://fly.io/docs/machines/api/working-with-machines-api/>.
public struct FlyAPIError: Error, Sendable, CustomStringConvertible {
  /// What went wrong, as a stable code that decisions (retry, adopt) are made on.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String {
      case unauthorized, notFound, badRequest, precondition, conflict, rateLimited, timeout
      case capacity, server, transport, invalidResponse
    }
    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// 401 or 403: the token is missing, wrong or lacks the permission.
    public static let unauthorized = Code(.unauthorized)
    /// 404: no such app, machine or volume.
    public static let notFound = Code(.notFound)
    /// 400 or 422: Fly refused the request's content (a wrong type, a bad image, a name taken).
    public static let badRequest = Code(.badRequest)
    /// 412: the resource's state refuses the action now (start while `created`, destroy while
    /// `started`, delete a volume still bound to a machine).
    public static let precondition = Code(.precondition)
    /// 409: a lease held by someone else, or a version mismatch.
    public static let conflict = Code(.conflict)
    /// 429: Fly's rate limit; ``FlyAPIError/retryAfter`` holds `Retry-After` when Fly sent one.
    public static let rateLimited = Code(.rateLimited)
    /// 408: Fly timed out (a wait that did not reach the state, or flaps timing out talking to the
    /// host; on a mutation the outcome is then unknown).
    public static let timeout = Code(.timeout)
    /// No capacity in the region (`insufficient_capacity`, `volume_placement_capacity`).
    public static let capacity = Code(.capacity)
    /// 5xx.
    public static let server = Code(.server)
    /// No HTTP answer: connect refused, connection reset, or our own deadline passed.
    public static let transport = Code(.transport)
    /// An answer that makes no sense: a body that does not decode, an HTML page, a wrong shape.
    public static let invalidResponse = Code(.invalidResponse)

    public var description: String { base.rawValue }

    /// Whether trying the same call again later may succeed.
    public var isRetryable: Bool {
      switch base {
      case .rateLimited, .timeout, .capacity, .server, .transport, .conflict, .precondition: true
      case .unauthorized, .notFound, .badRequest, .invalidResponse: false
      }
    }
  }

  /// Which part of a transport failure happened; only ``TransportKind/connect`` is sure that the
  /// request never reached Fly.
  public enum TransportKind: String, Sendable {
    /// The connection could not be made: the request was never sent.
    case connect
    /// The connection broke after the request was (maybe) sent.
    case reset
    /// Our deadline passed before an answer came.
    case deadline
  }

  public var code: Code
  /// The HTTP status, when an answer came.
  public var status: Int?
  /// Fly's error text (`error` or `message` in its body), or a short excerpt of an unexpected body.
  public var message: String
  /// Fly's machine-readable `status` field (`insufficient_capacity`, `name_taken`, …) when sent.
  public var flyStatus: String?
  /// The `fly-request-id` header, when the answer carried one.
  public var requestID: String?
  /// `Retry-After` on a 429, in seconds, when Fly sent one (at most ``maxRetryAfter``).
  public var retryAfter: Double?
  /// The longest wait a `Retry-After` can impose: 5 minutes.
  public static let maxRetryAfter: Double = 300
  /// For ``Code/transport``, which kind.
  public var transportKind: TransportKind?
  /// The call that failed: method and path, e.g. `POST /v1/apps/users/machines`.
  public var operation: String

  public init(
    code: Code, status: Int? = nil, message: String, flyStatus: String? = nil,
    requestID: String? = nil, retryAfter: Double? = nil, transportKind: TransportKind? = nil,
    operation: String
  ) {
    self.code = code
    self.status = status
    self.message = message
    self.flyStatus = flyStatus
    self.requestID = requestID
    self.retryAfter = retryAfter.flatMap(Self.boundedRetryAfter)
    self.transportKind = transportKind
    self.operation = operation
  }

  /// A `Retry-After` wait within 0…``maxRetryAfter``: nil for NaN, infinity or a negative wait,
  /// at most ``maxRetryAfter`` for a longer one, so that no answer can pause a writer for ever.
  static func boundedRetryAfter(_ seconds: Double) -> Double? {
    guard seconds.isFinite, seconds >= 0 else { return nil }
    return min(maxRetryAfter, seconds)
  }

  /// Whether trying again later may succeed.
  public var isRetryable: Bool { code.isRetryable }

  /// Whether a mutation that failed this way may nevertheless have taken effect on Fly: a 5xx, a
  /// 408, a broken connection or a passed deadline after the request was sent, or a 2xx whose body
  /// made no sense. A create that fails this way must be followed by a look-up, never a blind retry.
  public var outcomeUnknown: Bool {
    switch code {
    case .server, .timeout: return true
    case .transport: return transportKind != .connect
    case .invalidResponse: return (status ?? 0) / 100 == 2
    default: return false
    }
  }

  public var description: String {
    var text = "fly \(code): \(operation)"
    if let status { text += " → \(status)" }
    if let transportKind { text += " (\(transportKind.rawValue))" }
    if !message.isEmpty { text += ": \(message)" }
    if let flyStatus { text += " [\(flyStatus)]" }
    if let retryAfter { text += " retry-after=\(retryAfter)s" }
    if let requestID { text += " fly-request-id=\(requestID)" }
    return text
  }

  /// Maps an HTTP error answer to a code (Fly's body `status` wins for capacity).
  static func code(forStatus status: Int, flyStatus: String?) -> Code {
    if flyStatus == "insufficient_capacity" || flyStatus == "volume_placement_capacity" {
      return .capacity
    }
    switch status {
    case 401, 403: return .unauthorized
    case 404: return .notFound
    case 408: return .timeout
    case 409: return .conflict
    case 412: return .precondition
    case 429: return .rateLimited
    case 400, 422: return .badRequest
    case 500...599: return .server
    default: return status >= 400 && status < 500 ? .badRequest : .invalidResponse
    }
  }
}
