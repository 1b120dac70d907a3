//! The schema endpoints (contract §9): register a version, list the tenant's schemas, read the
//! latest or one version, stop validating a type.

use actix_web::{web, HttpRequest, HttpResponse};
use intake_domain::{EventType, SchemaRecord};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::{Caller, SchemasRead, SchemasWrite};
use crate::body;
use crate::problem::{ApiError, FieldProblem};
use crate::state::AppState;
use crate::wire::{as_written, format_timestamp};

/// A version of a schema.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SchemaBody {
    /// The event type it checks.
    #[schema(example = "user.created")]
    event_type: String,
    /// 1, 2, … per event type.
    #[schema(example = 1)]
    version: u32,
    /// When this version was registered (RFC 3339, UTC).
    #[schema(format = DateTime)]
    created_at: String,
    /// The JSON Schema (draft 2020-12): an object, or true or false.
    #[schema(value_type = serde_json::Value)]
    schema: Value,
}

impl From<SchemaRecord> for SchemaBody {
    fn from(r: SchemaRecord) -> Self {
        Self {
            event_type: r.event_type.as_str().to_owned(),
            version: r.version,
            created_at: format_timestamp(r.created_at),
            schema: r.schema,
        }
    }
}

/// The latest version of a type, as listed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SchemaSummary {
    /// The event type.
    event_type: String,
    /// Its latest version.
    version: u32,
    /// When that version was registered (RFC 3339, UTC).
    #[schema(format = DateTime)]
    created_at: String,
}

/// The tenant's validated event types.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SchemaList {
    /// The latest version of each, by event type.
    data: Vec<SchemaSummary>,
}

/// The event type of a path; an invalid one can have no schema.
fn event_type(raw: &str) -> Result<EventType, ApiError> {
    EventType::parse(raw).map_err(|e| ApiError::Validation(vec![FieldProblem::from(e)]))
}

fn no_schema(event_type: &str) -> ApiError {
    ApiError::NotFound(format!("no schema for event type {event_type:?}"))
}

/// `PUT /v1/schemas/{event_type}`: registers the body as the type's next version.
#[utoipa::path(
    put,
    path = "/v1/schemas/{event_type}",
    tag = "schemas",
    summary = "Register a new version of an event type's schema",
    params(("event_type" = String, Path, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$", description = "The event type")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "A JSON Schema (draft 2020-12): an object, or true or false; references only within itself"),
    responses(
        (status = 201, description = "A new version", body = SchemaBody),
        (status = 200, description = "The latest version already is this schema", body = SchemaBody),
    ),
)]
pub(crate) async fn put_schema(
    caller: Caller<SchemasWrite>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let event_type = event_type(&path)?;
    // Any JSON document: one that is not a JSON Schema (neither an object nor a boolean) is the
    // schema's problem, not the body's.
    let document = body::json_document(&req, payload, state.schema_body).await?;
    let put = state
        .schemas
        .register(caller.tenant(), &event_type, document)
        .await?
        .map_err(|e| ApiError::InvalidSchema(e.0))?;
    let mut response = if put.created { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(response
        .content_type(mime::APPLICATION_JSON)
        .body(as_written(&SchemaBody::from(put.record))?))
}

/// `GET /v1/schemas`: the latest version of each validated type.
#[utoipa::path(
    get,
    path = "/v1/schemas",
    tag = "schemas",
    summary = "List the tenant's schemas",
    responses((status = 200, description = "The latest version of each validated type", body = SchemaList)),
)]
pub(crate) async fn list_schemas(
    caller: Caller<SchemasRead>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let data = state
        .schemas
        .store()
        .list(caller.tenant())
        .await?
        .into_iter()
        .map(|r| SchemaSummary {
            event_type: r.event_type.as_str().to_owned(),
            version: r.version,
            created_at: format_timestamp(r.created_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(SchemaList { data }))
}

/// `GET /v1/schemas/{event_type}`: the latest version of a validated type.
#[utoipa::path(
    get,
    path = "/v1/schemas/{event_type}",
    tag = "schemas",
    summary = "Read the latest version of an event type's schema",
    params(("event_type" = String, Path, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$", description = "The event type")),
    responses((status = 200, description = "The latest version", body = SchemaBody)),
)]
pub(crate) async fn get_schema(
    caller: Caller<SchemasRead>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let event_type = event_type(&raw).map_err(|_| no_schema(&raw))?;
    let record = state
        .schemas
        .store()
        .latest(caller.tenant(), &event_type)
        .await?
        .ok_or_else(|| no_schema(&raw))?;
    Ok(HttpResponse::Ok()
        .content_type(mime::APPLICATION_JSON)
        .body(as_written(&SchemaBody::from(record))?))
}

/// `GET /v1/schemas/{event_type}/versions/{n}`: one version, deleted types included.
#[utoipa::path(
    get,
    path = "/v1/schemas/{event_type}/versions/{version}",
    tag = "schemas",
    summary = "Read one version of an event type's schema",
    params(
        ("event_type" = String, Path, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$", description = "The event type"),
        ("version" = u32, Path, minimum = 1, description = "The version"),
    ),
    responses((status = 200, description = "That version", body = SchemaBody)),
)]
pub(crate) async fn get_schema_version(
    caller: Caller<SchemasRead>,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (raw, version) = path.into_inner();
    let missing =
        || ApiError::NotFound(format!("no version {version:?} of the schema for {raw:?}"));
    let event_type = event_type(&raw).map_err(|_| missing())?;
    let number: u32 = version.parse().map_err(|_| missing())?;
    let record = state
        .schemas
        .store()
        .version(caller.tenant(), &event_type, number)
        .await?
        .ok_or_else(missing)?;
    Ok(HttpResponse::Ok()
        .content_type(mime::APPLICATION_JSON)
        .body(as_written(&SchemaBody::from(record))?))
}

/// `DELETE /v1/schemas/{event_type}`: stops validating the type; its versions stay readable.
#[utoipa::path(
    delete,
    path = "/v1/schemas/{event_type}",
    tag = "schemas",
    summary = "Stop validating an event type",
    params(("event_type" = String, Path, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$", description = "The event type")),
    responses((status = 204, description = "Events of the type are no longer checked")),
)]
pub(crate) async fn delete_schema(
    caller: Caller<SchemasWrite>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let event_type = event_type(&raw).map_err(|_| no_schema(&raw))?;
    if !state.schemas.unregister(caller.tenant(), &event_type).await? {
        return Err(no_schema(&raw));
    }
    Ok(HttpResponse::NoContent().finish())
}
