//! The OpenAPI 3.1 document, generated from the handlers' annotations and the response types.
//! Served at `/openapi.json`; `make openapi` writes it to `docs/openapi.json`.

use serde::Serialize;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::Ref;
use utoipa::{Modify, OpenApi, ToSchema};

use crate::problem::Problem;
use crate::routes::{events, ops};

/// An event to ingest (the request body of `POST /v1/events`, and each item of a batch).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Event)]
pub struct EventInput {
    /// 1–128 ASCII letters, digits and `. _ - :`, starting with a letter or digit.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        example = "user.created"
    )]
    event_type: String,
    /// RFC 3339 date-time with an offset; at most `limits.max_future_skew` ahead.
    #[schema(format = DateTime, example = "2025-12-22T10:30:00Z")]
    occurred_at: String,
    /// 1–255 printable ASCII characters without spaces; may come in the Idempotency-Key header
    /// instead.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$",
        example = "0f3f6f9b-9f0b-4c8d-9f18-5b6a9d9d2d41"
    )]
    idempotency_key: Option<String>,
    /// The payload: any JSON object.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// A batch to ingest.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    /// 1 to 1,000 events.
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<EventInput>,
}

/// One problem with one field or parameter.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorDoc {
    /// The field or parameter.
    #[schema(example = "occurred_at")]
    field: String,
    /// A stable code (see the troubleshooting guide).
    #[schema(example = "invalid_timestamp")]
    code: String,
    /// A sentence for people.
    message: String,
}

/// The problem answers of each operation, by status. Kept here, in one table, rather than
/// repeated in every handler's annotation.
const PROBLEM_RESPONSES: &[(&str, HttpMethod, &[u16])] = &[
    ("/v1/events", HttpMethod::Post, &[400, 401, 403, 408, 413, 415, 422, 503]),
    ("/v1/events/batch", HttpMethod::Post, &[400, 401, 403, 408, 413, 415, 503]),
    ("/v1/events", HttpMethod::Get, &[400, 401, 403, 503]),
    ("/v1/events/{event_id}", HttpMethod::Get, &[401, 403, 404, 503]),
    ("/readyz", HttpMethod::Get, &[503]),
];

fn problem_description(status: u16) -> &'static str {
    match status {
        400 => "Invalid request: see the problem's type and errors",
        401 => "Missing, malformed, unknown or revoked token",
        403 => "The token lacks the scope",
        404 => "No such event for this tenant",
        408 => "The body did not arrive in time",
        413 => "Body over the limit after decompression",
        415 => "Content-Type not JSON, or Content-Encoding not gzip/identity",
        422 => "Idempotency key reused with a different payload",
        503 => "The database is unavailable, or (readyz) migrations are pending; with Retry-After",
        _ => "A problem",
    }
}

struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, method, statuses) in PROBLEM_RESPONSES {
            let Some(item) = openapi.paths.paths.get_mut(*path) else { continue };
            let operation = match method {
                HttpMethod::Get => item.get.as_mut(),
                HttpMethod::Post => item.post.as_mut(),
                _ => None,
            };
            let Some(operation) = operation else { continue };
            for status in *statuses {
                let content =
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
                let response = ResponseBuilder::new()
                    .description(problem_description(*status))
                    .content("application/problem+json", content)
                    .build();
                operation.responses.responses.insert(status.to_string(), response.into());
            }
        }
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `intake tokens create`; scopes events:write and events:read",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "intake — Event Intake API",
        description = "Validates JSON events and stores each exactly once per tenant and idempotency key."
    ),
    paths(
        events::ingest,
        events::ingest_batch,
        events::get_event,
        events::feed,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi,
        ops::troubleshooting,
    ),
    components(schemas(EventInput, BatchInput, FieldErrorDoc, Problem)),
    modifiers(&BearerAuth, &ProblemResponses),
    tags(
        (name = "events", description = "Ingest and read events"),
        (name = "operations", description = "Health, readiness, metrics and documents"),
    )
)]
pub struct ApiDoc;

/// The document as pretty-printed JSON.
pub fn document_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
