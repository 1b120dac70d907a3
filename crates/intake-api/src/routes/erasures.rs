//! Erasure (contract §14): one event by id, or every event whose data holds a value, in the
//! background.

use actix_web::{web, HttpRequest, HttpResponse};
use intake_domain::{EraseOutcome, ErasureId, ErasureRecord, ErasureRequest, EventId};
use intake_service::ErasureRefusal;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::{Caller, EventsErase};
use crate::body;
use crate::problem::{field_problems, ApiError};
use crate::state::AppState;
use crate::wire::{as_written, format_timestamp};

/// An erasure by content, as `POST /v1/erasures` answers it and `GET /v1/erasures/{id}` reads
/// it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErasureBody {
    /// Its id.
    #[schema(example = "era_01a21a278c5778fcb1b0b514bf29aa92")]
    erasure_id: String,
    /// `pending`, `running`, `done` or `failed`.
    #[schema(example = "pending")]
    status: &'static str,
    /// Events erased so far.
    #[schema(example = 0)]
    erased: u64,
    /// The JSON Pointer into `data` it matches at.
    #[schema(example = "/user_id")]
    pointer: String,
    /// The JSON scalar it matches.
    #[schema(value_type = serde_json::Value, example = "u_12345")]
    equals: Value,
    /// Only events of this type; null for every type.
    event_type: Option<String>,
    /// When it was made (RFC 3339, UTC): it erases the events stored before.
    #[schema(format = DateTime)]
    created_at: String,
    /// When it ended; null until then.
    #[schema(format = DateTime)]
    finished_at: Option<String>,
}

impl From<ErasureRecord> for ErasureBody {
    fn from(r: ErasureRecord) -> Self {
        Self {
            erasure_id: r.erasure_id.to_string(),
            status: r.status.as_str(),
            erased: r.erased,
            pointer: r.request.pointer().to_owned(),
            equals: r.request.equals().clone(),
            event_type: r.request.event_type().map(|t| t.as_str().to_owned()),
            created_at: format_timestamp(r.created_at),
            finished_at: r.finished_at.map(format_timestamp),
        }
    }
}

/// `DELETE /v1/events/{event_id}`: erases one event of the caller's tenant.
#[utoipa::path(
    delete,
    path = "/v1/events/{event_id}",
    tag = "erasure",
    summary = "Erase one event",
    description = "The event reads as 404 afterwards and the feed omits it; its idempotency key still answers a replay (same event_id, deduplicated) within the keys window, without storing anything. A relay that had published it publishes a notice on <prefix>.<tenant>.$erased.",
    params(("event_id" = String, Path, pattern = "^evt_[0-9a-f]{32}$", description = "evt_ followed by 32 hex digits")),
    responses(
        (status = 204, description = "Erased now, or erased before"),
    ),
)]
pub(crate) async fn erase_event(
    caller: Caller<EventsErase>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let not_found = || ApiError::NotFound(format!("no event {raw:?}"));
    let id: EventId = raw.parse().map_err(|_| not_found())?;
    match state.lifetime.erase_event(caller.tenant(), id).await? {
        EraseOutcome::Erased | EraseOutcome::AlreadyErased => {
            Ok(HttpResponse::NoContent().finish())
        }
        EraseOutcome::NotFound => Err(not_found()),
    }
}

/// `POST /v1/erasures`: erases, in the background, every event of the caller's tenant stored
/// before now whose data holds `equals` at `pointer`.
#[utoipa::path(
    post,
    path = "/v1/erasures",
    tag = "erasure",
    summary = "Erase every event whose data holds a value",
    description = "Runs in bounded steps in the background (it never blocks ingest) and resumes after a restart; follow it with GET /v1/erasures/{erasure_id}. Numbers match as written (1 does not match 1.0).",
    request_body(content = serde_json::Value, content_type = "application/json", description = "{\"pointer\": \"/user_id\", \"equals\": \"u_12345\"}, optionally with \"event_type\""),
    responses(
        (status = 202, description = "Recorded; Location names it", body = ErasureBody),
    ),
)]
pub(crate) async fn create_erasure(
    caller: Caller<EventsErase>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let document = body::json_document(&req, payload, state.event_body).await?;
    let request = ErasureRequest::parse(document)
        .map_err(|errors| ApiError::InvalidErasure(field_problems(errors)))?;
    let record = match state.lifetime.create_erasure(caller.tenant(), &request).await {
        Ok(record) => record,
        Err(refusal @ (ErasureRefusal::TooMany | ErasureRefusal::TooManyKept)) => {
            return Err(ApiError::TooManyErasures(refusal.to_string()))
        }
        Err(ErasureRefusal::Store(error)) => return Err(error.into()),
    };
    let location = format!("/v1/erasures/{}", record.erasure_id);
    Ok(HttpResponse::Accepted()
        .insert_header((actix_web::http::header::LOCATION, location))
        .content_type(mime::APPLICATION_JSON)
        .body(as_written(&ErasureBody::from(record))?))
}

/// `GET /v1/erasures/{erasure_id}`: where an erasure of the caller's tenant stands.
#[utoipa::path(
    get,
    path = "/v1/erasures/{erasure_id}",
    tag = "erasure",
    summary = "Read an erasure",
    params(("erasure_id" = String, Path, pattern = "^era_[0-9a-f]{32}$", description = "era_ followed by 32 hex digits")),
    responses(
        (status = 200, description = "The erasure", body = ErasureBody),
    ),
)]
pub(crate) async fn get_erasure(
    caller: Caller<EventsErase>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let not_found = || ApiError::NotFound(format!("no erasure {raw:?}"));
    let id: ErasureId = raw.parse().map_err(|_| not_found())?;
    let record = state.lifetime.erasure(caller.tenant(), id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok()
        .content_type(mime::APPLICATION_JSON)
        .body(as_written(&ErasureBody::from(record))?))
}
