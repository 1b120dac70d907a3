//! The OpenAPI 3.1 document, generated from the handlers' annotations and the response types.
//! Served at `/openapi.json`; `make openapi` writes it to `docs/openapi.json`.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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
    /// RFC 3339 date-time with an offset; at most `limits.max_future_skew_secs` ahead.
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
    modifiers(&BearerAuth),
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
