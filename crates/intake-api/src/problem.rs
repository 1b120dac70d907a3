//! Every error the API answers with, rendered as an RFC 9457 `application/problem+json`.
//!
//! Each kind has a stable `type` URI pointing at its section of the troubleshooting guide
//! (`docs/troubleshooting.md`, served at `/docs/troubleshooting`). A 500 says nothing about its
//! cause to the client; the cause chain goes to the log.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use intake_domain::{
    Budget, ErrorCode, EventId, FieldError, IngestError, SchemaViolation, Scope, StoreError,
};
use intake_service::Refusal;
use serde::Serialize;

use crate::request_context;

/// Why a query parameter or a batch item was refused: the API's own codes, beside the domain's
/// [`ErrorCode`]s for an event's fields. Stable, part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestCode {
    /// An item of a batch that is not a JSON object.
    NotAnObject,
    /// A `limit` query parameter that is not a whole number from 1 to 1000.
    InvalidLimit,
    /// A `cursor` that this API did not hand out, or that was altered.
    InvalidCursor,
    /// A query parameter the endpoint does not take.
    UnknownParameter,
    /// A query parameter given more than once.
    DuplicateParameter,
    /// An event's data that its type's schema rejects.
    SchemaViolation,
    /// An event's data whose check against its type's schema takes longer than the budget.
    SchemaCheckTooSlow,
}

impl RequestCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAnObject => "not_an_object",
            Self::InvalidLimit => "invalid_limit",
            Self::InvalidCursor => "invalid_cursor",
            Self::UnknownParameter => "unknown_parameter",
            Self::DuplicateParameter => "duplicate_parameter",
            Self::SchemaViolation => "schema_violation",
            Self::SchemaCheckTooSlow => "schema_check_too_slow",
        }
    }
}

/// One problem with one field, parameter or batch item, as the client reads it:
/// `{"field","code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = FieldError)]
pub struct FieldProblem {
    /// The field or parameter.
    #[schema(example = "occurred_at")]
    pub field: String,
    /// A stable code (see the troubleshooting guide).
    #[schema(example = "invalid_timestamp")]
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// Where in the event the schema was violated, as a JSON pointer (`schema_violation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/data/plan")]
    pub pointer: Option<String>,
    /// The schema keyword that failed, as a JSON pointer into the schema
    /// (`schema_violation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/properties/plan/enum")]
    pub schema_path: Option<String>,
}

impl FieldProblem {
    /// A problem with one of the request's own parts (a parameter, a batch item).
    pub fn new(field: impl Into<String>, code: RequestCode, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code: code.as_str(),
            message: message.into(),
            pointer: None,
            schema_path: None,
        }
    }

    /// One way an event's data violates its schema.
    pub fn schema_violation(violation: SchemaViolation) -> Self {
        Self {
            pointer: Some(violation.pointer),
            schema_path: Some(violation.schema_path),
            ..Self::new("data", RequestCode::SchemaViolation, violation.message)
        }
    }
}

impl From<FieldError> for FieldProblem {
    fn from(e: FieldError) -> Self {
        Self {
            field: e.field,
            code: ErrorCode::as_str(e.code),
            message: e.message,
            pointer: None,
            schema_path: None,
        }
    }
}

/// Each domain field error as the client reads it.
pub fn field_problems(errors: Vec<FieldError>) -> Vec<FieldProblem> {
    errors.into_iter().map(FieldProblem::from).collect()
}

/// Where the `type` URIs point: the troubleshooting guide as the server serves it.
pub const TYPE_BASE: &str = "/docs/troubleshooting#";

/// Seconds a client should wait before retrying when the database is unavailable.
const RETRY_AFTER_SECS: &str = "1";

/// An error answered to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is not UTF-8.
    #[error("the body is not valid UTF-8")]
    InvalidUtf8,
    /// The body is JSON but not of the expected shape.
    #[error("{0}")]
    InvalidBody(String),
    /// The body could not be read (a broken transfer encoding, a dropped stream).
    #[error("the body could not be read: {0}")]
    UnreadableBody(String),
    /// One or more fields are invalid.
    #[error("the event has {} invalid field(s)", .0.len())]
    Validation(Vec<FieldProblem>),
    /// A batch body that is not `{"events":[…]}` with 1–1000 items.
    #[error("{0}")]
    InvalidBatch(String),
    /// A document that is not a JSON Schema intake accepts.
    #[error("{0}")]
    InvalidSchema(String),
    /// The event's data violates its type's schema.
    #[error(
        "the event's data violates version {version} of the schema for its type ({} violation(s))",
        .errors.len()
    )]
    SchemaViolation {
        /// The schema version checked against.
        version: u32,
        /// Every violation.
        errors: Vec<FieldProblem>,
    },
    /// An erasure request with invalid fields.
    #[error("the erasure has {} invalid field(s)", .0.len())]
    InvalidErasure(Vec<FieldProblem>),
    /// The tenant has as many erasures waiting or running as it may.
    #[error("{0}; wait for one to finish (GET /v1/erasures/{{erasure_id}})")]
    TooManyErasures(String),
    /// Checking the event's data against its type's schema takes longer than the budget.
    #[error(
        "checking the event's data against version {version} of the schema for its type takes \
         longer than the {budget_ms} ms a check may take (schemas.max_check_time_ms)"
    )]
    SchemaCheckTooSlow {
        /// The schema version checked against.
        version: u32,
        /// The budget, in milliseconds.
        budget_ms: u128,
        /// The one error: `data`, `schema_check_too_slow`.
        errors: Vec<FieldProblem>,
    },
    /// Every slot for heavy schema checks stayed taken for the whole budget.
    #[error(
        "the server is running as many heavy schema checks as it may ({0}, \
         schemas.heavy_checks) and none ended in time; retry shortly"
    )]
    ChecksBusy(usize),
    /// One or more query parameters are invalid.
    #[error("{} query parameter(s) are invalid", .0.len())]
    InvalidQuery(Vec<FieldProblem>),
    /// No usable credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Credentials without the needed scope.
    #[error("this token lacks the {0} scope")]
    Forbidden(Scope),
    /// No such route, or no such event for this tenant.
    #[error("{0}")]
    NotFound(String),
    /// The route exists with other methods.
    #[error("{method} is not allowed here; allowed: {}", allowed_list(.allowed))]
    MethodNotAllowed {
        /// The request's method.
        method: Method,
        /// The methods the route takes.
        allowed: Vec<Method>,
    },
    /// The client took too long to send the body.
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    /// The body exceeds the limit.
    #[error("the body exceeds {limit} bytes (counted after decompression)")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A `Content-Type` other than JSON.
    #[error("{0}")]
    UnsupportedContentType(String),
    /// A `Content-Encoding` other than gzip or identity.
    #[error("Content-Encoding {0:?} is not supported; send gzip or identity")]
    UnsupportedContentEncoding(String),
    /// The idempotency key holds another payload.
    #[error(
        "idempotency key already used for event {original} with a different payload; use a new \
         key for a new event"
    )]
    KeyReused {
        /// The event that holds the key.
        original: EventId,
    },
    /// The database answers but lacks migrations.
    #[error("the database lacks {} migration(s): {}; run `intake migrate`", .0.len(), .0.join(", "))]
    MigrationsPending(Vec<String>),
    /// The database is unreachable.
    #[error("the database is unavailable; retry shortly")]
    Unavailable(#[source] anyhow::Error),
    /// More events are waiting to be stored than the server holds.
    #[error("the server has more events waiting to be stored than it holds; retry shortly")]
    Overloaded,
    /// The token's rate limit leaves too little for this request.
    #[error("{detail}")]
    RateLimited {
        /// Whole seconds until the request would fit (at least 1); `None` when it never can
        /// (more events than the token's burst).
        retry_after: Option<u64>,
        /// What the limit is and what was asked.
        detail: String,
    },
    /// The token holds as many debugger streams as it may.
    #[error("{0}; close one first")]
    TooManyStreams(String),
    /// The server holds as many debugger streams as it may.
    #[error("{0}; retry shortly, or on another server")]
    DebuggerFull(String),
    /// A defect; logged, not explained to the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

fn allowed_list(methods: &[Method]) -> String {
    methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
}

/// One kind of problem: its slug (the `type` URI's fragment and the guide's section), its
/// HTTP status and its title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemKind {
    /// The fragment of the `type` URI.
    pub slug: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// The `title`.
    pub title: &'static str,
}

macro_rules! kinds {
    ($($name:ident = $slug:literal, $status:literal, $title:literal;)*) => {
        impl ProblemKind {
            $(
                #[doc = $title]
                pub const $name: ProblemKind =
                    ProblemKind { slug: $slug, status: $status, title: $title };
            )*
            /// Every kind the server can emit.
            pub const ALL: &'static [ProblemKind] = &[$(ProblemKind::$name),*];
        }
    };
}

kinds! {
    INVALID_JSON = "invalid-json", 400, "Malformed JSON";
    INVALID_UTF8 = "invalid-utf8", 400, "Body is not UTF-8";
    INVALID_BODY = "invalid-body", 400, "Body has the wrong shape";
    UNREADABLE_BODY = "unreadable-body", 400, "Body could not be read";
    VALIDATION_FAILED = "validation-failed", 400, "Invalid event";
    INVALID_QUERY = "invalid-query", 400, "Invalid query parameters";
    INVALID_BATCH = "invalid-batch", 400, "Invalid batch";
    INVALID_SCHEMA = "invalid-schema", 400, "Invalid JSON Schema";
    INVALID_ERASURE = "invalid-erasure", 400, "Invalid erasure";
    SCHEMA_VIOLATION = "schema-violation", 400, "Event violates its schema";
    SCHEMA_CHECK_TOO_SLOW = "schema-check-too-slow", 422, "Schema check over its time budget";
    MALFORMED_REQUEST = "malformed-request", 400, "Malformed HTTP request";
    UNAUTHORIZED = "unauthorized", 401, "Missing or invalid token";
    FORBIDDEN = "forbidden", 403, "Token lacks a scope";
    NOT_FOUND = "not-found", 404, "Not found";
    METHOD_NOT_ALLOWED = "method-not-allowed", 405, "Method not allowed";
    REQUEST_TIMEOUT = "request-timeout", 408, "Request too slow";
    PAYLOAD_TOO_LARGE = "payload-too-large", 413, "Body too large";
    HEADERS_TOO_LARGE = "headers-too-large", 431, "Request headers too large";
    UNSUPPORTED_CONTENT_TYPE = "unsupported-content-type", 415, "Unsupported Content-Type";
    UNSUPPORTED_CONTENT_ENCODING = "unsupported-content-encoding", 415, "Unsupported Content-Encoding";
    IDEMPOTENCY_KEY_REUSED = "idempotency-key-reused", 422, "Idempotency key reused";
    RATE_LIMITED = "rate-limited", 429, "Rate limit exceeded";
    TOO_MANY_STREAMS = "too-many-streams", 429, "Too many debugger streams";
    TOO_MANY_ERASURES = "too-many-erasures", 429, "Too many erasures";
    SERVICE_UNAVAILABLE = "service-unavailable", 503, "Database unavailable";
    OVERLOADED = "overloaded", 503, "Server overloaded";
    DEBUGGER_FULL = "debugger-full", 503, "Debugger streams full";
    MIGRATIONS_PENDING = "migrations-pending", 503, "Migrations pending";
    INTERNAL_ERROR = "internal-error", 500, "Internal error";
}

impl ProblemKind {
    /// The `type` URI.
    pub fn type_uri(&self) -> String {
        format!("{TYPE_BASE}{}", self.slug)
    }
}

impl ApiError {
    /// The errors a problem lists, if it lists any.
    pub fn field_errors(&self) -> Option<&[FieldProblem]> {
        match self {
            Self::Validation(errors)
            | Self::InvalidErasure(errors)
            | Self::InvalidQuery(errors)
            | Self::SchemaViolation { errors, .. }
            | Self::SchemaCheckTooSlow { errors, .. } => Some(errors),
            _ => None,
        }
    }

    /// The kind of problem this is.
    pub fn kind(&self) -> ProblemKind {
        match self {
            Self::InvalidJson(_) => ProblemKind::INVALID_JSON,
            Self::InvalidUtf8 => ProblemKind::INVALID_UTF8,
            Self::InvalidBody(_) => ProblemKind::INVALID_BODY,
            Self::UnreadableBody(_) => ProblemKind::UNREADABLE_BODY,
            Self::Validation(_) => ProblemKind::VALIDATION_FAILED,
            Self::InvalidQuery(_) => ProblemKind::INVALID_QUERY,
            Self::InvalidErasure(_) => ProblemKind::INVALID_ERASURE,
            Self::TooManyErasures(_) => ProblemKind::TOO_MANY_ERASURES,
            Self::InvalidBatch(_) => ProblemKind::INVALID_BATCH,
            Self::InvalidSchema(_) => ProblemKind::INVALID_SCHEMA,
            Self::SchemaViolation { .. } => ProblemKind::SCHEMA_VIOLATION,
            Self::SchemaCheckTooSlow { .. } => ProblemKind::SCHEMA_CHECK_TOO_SLOW,
            Self::Unauthorized(_) => ProblemKind::UNAUTHORIZED,
            Self::Forbidden(_) => ProblemKind::FORBIDDEN,
            Self::NotFound(_) => ProblemKind::NOT_FOUND,
            Self::MethodNotAllowed { .. } => ProblemKind::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => ProblemKind::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => ProblemKind::REQUEST_TIMEOUT,
            Self::UnsupportedContentType(_) => ProblemKind::UNSUPPORTED_CONTENT_TYPE,
            Self::UnsupportedContentEncoding(_) => ProblemKind::UNSUPPORTED_CONTENT_ENCODING,
            Self::KeyReused { .. } => ProblemKind::IDEMPOTENCY_KEY_REUSED,
            Self::Unavailable(_) => ProblemKind::SERVICE_UNAVAILABLE,
            Self::Overloaded | Self::ChecksBusy(_) => ProblemKind::OVERLOADED,
            Self::RateLimited { .. } => ProblemKind::RATE_LIMITED,
            Self::MigrationsPending(_) => ProblemKind::MIGRATIONS_PENDING,
            Self::TooManyStreams(_) => ProblemKind::TOO_MANY_STREAMS,
            Self::DebuggerFull(_) => ProblemKind::DEBUGGER_FULL,
            Self::Internal(_) => ProblemKind::INTERNAL_ERROR,
        }
    }
}

/// An RFC 9457 problem document, as every error is answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// A stable URI per kind of problem, pointing into the troubleshooting guide.
    #[schema(example = "/docs/troubleshooting#validation-failed")]
    r#type: String,
    /// The kind's title.
    #[schema(value_type = String)]
    title: &'static str,
    /// The HTTP status.
    status: u16,
    /// What went wrong with this request.
    detail: String,
    /// The request's id, as in the X-Request-Id header.
    request_id: String,
    /// Every invalid field or parameter (validation-failed, invalid-query), every violation
    /// (schema-violation), or the data whose check took too long (schema-check-too-slow).
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldProblem]>,
    /// The event that holds a reused idempotency key (idempotency-key-reused).
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    /// The schema version the event was checked against (schema-violation,
    /// schema-check-too-slow).
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_version: Option<u32>,
}

impl Problem<'_> {
    fn new(kind: ProblemKind, detail: String, request_id: String) -> Self {
        Self {
            r#type: kind.type_uri(),
            title: kind.title,
            status: kind.status,
            detail,
            request_id,
            errors: None,
            event_id: None,
            schema_version: None,
        }
    }
}

/// The JSON of a problem answered outside the application (by the connection layer).
pub fn document(kind: ProblemKind, detail: String, request_id: String) -> Vec<u8> {
    serde_json::to_vec(&Problem::new(kind, detail, request_id)).unwrap_or_default()
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.kind().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            Self::Unavailable(cause) => tracing::warn!(error = %cause, "database unavailable"),
            _ => {}
        }
        let status = self.status_code();
        let problem = Problem {
            errors: self.field_errors(),
            schema_version: match self {
                Self::SchemaViolation { version, .. }
                | Self::SchemaCheckTooSlow { version, .. } => Some(*version),
                _ => None,
            },
            event_id: match self {
                Self::KeyReused { original } => Some(original.to_string()),
                _ => None,
            },
            ..Problem::new(self.kind(), self.to_string(), request_context::current_request_id())
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        match self {
            Self::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"intake\""));
            }
            Self::MethodNotAllowed { allowed, .. } => {
                if let Ok(value) = HeaderValue::from_str(&allowed_list(allowed)) {
                    response.insert_header((header::ALLOW, value));
                }
            }
            Self::Unavailable(_)
            | Self::Overloaded
            | Self::ChecksBusy(_)
            | Self::MigrationsPending(_)
            | Self::DebuggerFull(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
            }
            Self::TooManyErasures(_) => {
                response.insert_header((header::RETRY_AFTER, "10"));
            }
            Self::RateLimited { retry_after: Some(retry_after), .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            _ => {}
        }
        match serde_json::to_vec(&problem) {
            Ok(body) => response.body(body),
            Err(_) => response.finish(),
        }
    }
}

impl ApiError {
    /// A value the database refused: the client's to change; the cause (which may quote SQL)
    /// goes only to the log.
    fn refused(cause: anyhow::Error) -> Self {
        tracing::warn!(error = %cause, "database refused a value");
        Self::InvalidBody("the event holds a value that cannot be stored".into())
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::KeyReused { original } => Self::KeyReused { original },
            IngestError::Unavailable(cause) => Self::Unavailable(cause),
            IngestError::Overloaded => Self::Overloaded,
            IngestError::Refused(cause) => Self::refused(cause),
            IngestError::Unknown(cause) => Self::Internal(cause),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
            StoreError::Refused(cause) => Self::refused(cause),
            StoreError::Unknown(cause) => Self::Internal(cause),
        }
    }
}

impl From<Vec<FieldError>> for ApiError {
    fn from(errors: Vec<FieldError>) -> Self {
        Self::Validation(field_problems(errors))
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::RateLimited { budget, cost } => rate_limited(&budget, cost),
            Refusal::Invalid(errors) => Self::from(errors),
            Refusal::SchemaViolation { version, violations } => Self::SchemaViolation {
                version,
                errors: violations.into_iter().map(FieldProblem::schema_violation).collect(),
            },
            refusal @ Refusal::CheckTooSlow { version, budget } => Self::SchemaCheckTooSlow {
                version,
                budget_ms: budget.as_millis(),
                errors: vec![too_slow(&refusal)],
            },
            Refusal::ChecksBusy { at_once } => Self::ChecksBusy(at_once),
            Refusal::KeyReused { original } => Self::KeyReused { original },
            Refusal::Failed(error) => Self::from(error),
            refusal @ (Refusal::Unread { .. } | Refusal::NotAnObject(_)) => {
                Self::InvalidBody(refusal.to_string())
            }
        }
    }
}

/// The 429 for `cost` events against `budget`: when to retry, or that the request can never
/// fit (more events than the burst), with no `Retry-After` then.
fn rate_limited(budget: &Budget, cost: u32) -> ApiError {
    let limit = budget.limit;
    if cost > limit.burst {
        return ApiError::RateLimited {
            retry_after: None,
            detail: format!(
                "{cost} events exceed this token's burst of {}, so this request can never be \
                 accepted; send at most {} at once",
                limit.burst, limit.burst
            ),
        };
    }
    let retry_after = Budget::secs(budget.retry_after).max(1);
    ApiError::RateLimited {
        retry_after: Some(retry_after),
        detail: format!(
            "this token may send {} events per second, {} at once; {} can be sent now and {cost} \
             were asked for; retry after {retry_after} s",
            limit.per_second, limit.burst, budget.remaining
        ),
    }
}

/// The error of an event whose check went over its budget.
fn too_slow(refusal: &Refusal) -> FieldProblem {
    FieldProblem::new(
        "data",
        RequestCode::SchemaCheckTooSlow,
        format!("{refusal}; send less data in one event, or simplify the schema"),
    )
}

/// How a refused event (a request, or a batch item) reads as a problem: its kind, the errors it
/// lists, and the event holding a reused key.
pub fn refusal_problem(refusal: &Refusal) -> (ProblemKind, Vec<FieldProblem>, Option<EventId>) {
    match refusal {
        Refusal::Invalid(errors) => {
            (ProblemKind::VALIDATION_FAILED, field_problems(errors.clone()), None)
        }
        Refusal::NotAnObject(found) => (
            ProblemKind::VALIDATION_FAILED,
            vec![FieldProblem::new(
                "event",
                RequestCode::NotAnObject,
                format!("each item of events must be a JSON object, not {found}"),
            )],
            None,
        ),
        Refusal::SchemaViolation { violations, .. } => (
            ProblemKind::SCHEMA_VIOLATION,
            violations.iter().cloned().map(FieldProblem::schema_violation).collect(),
            None,
        ),
        Refusal::KeyReused { original } => (
            ProblemKind::IDEMPOTENCY_KEY_REUSED,
            vec![FieldError::new(
                "idempotency_key",
                ErrorCode::IdempotencyKeyReused,
                format!(
                    "idempotency key already used for event {original} with a different payload"
                ),
            )
            .into()],
            Some(*original),
        ),
        Refusal::CheckTooSlow { .. } => {
            (ProblemKind::SCHEMA_CHECK_TOO_SLOW, vec![too_slow(refusal)], None)
        }
        Refusal::ChecksBusy { .. } => (ProblemKind::OVERLOADED, Vec::new(), None),
        Refusal::RateLimited { .. } => (ProblemKind::RATE_LIMITED, Vec::new(), None),
        Refusal::Unread { slug, .. } => (
            ProblemKind::ALL
                .iter()
                .find(|k| k.slug == *slug)
                .copied()
                .unwrap_or(ProblemKind::INVALID_BODY),
            Vec::new(),
            None,
        ),
        Refusal::Failed(_) => (ProblemKind::SERVICE_UNAVAILABLE, Vec::new(), None),
    }
}
