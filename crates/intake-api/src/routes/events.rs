//! The event endpoints: ingest one, ingest a batch, read one, follow the feed. Ingest handlers
//! read the request into [`Incoming`] values and hand them to the application layer
//! ([`Ingest`]), which owns everything from the rate budget to the observers.

use actix_web::{web, HttpRequest, HttpResponse};
use intake_domain::cloudevent::Mode;
use intake_domain::event::json_type_name;
use intake_domain::{ErrorCode, EventId, FieldError, Ingested, TenantId};
use intake_service::ingest::SENT_AT;
use intake_service::view::CloudEventBody;
use intake_service::{Accepted, EventBody, Incoming, Ingest, Refusal, MAX_BATCH_ITEMS};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::documents::{BatchInput, CloudEventInput, EventInput};
use crate::auth::{Caller, EventsRead, EventsWrite};
use crate::body::{self, BodyLimits};
use crate::problem::{refusal_problem, ApiError, FieldProblem};
use crate::state::AppState;
use crate::wire::{
    as_written, binary_attributes, event_format, key_beside_body, require_json_data,
    wants_cloudevent, EventFormat, CLOUDEVENTS_JSON, IDEMPOTENCY_KEY_HEADER, SENT_AT_HEADER,
};

/// `POST /v1/events`: validate, store once, answer after commit.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    summary = "Ingest one event",
    request_body(content(
        (EventInput = "application/json"),
        (CloudEventInput = "application/cloudevents+json"),
    ), description = "intake's JSON; a CloudEvent in structured mode; or, with ce-* headers, a CloudEvent's data in binary mode"),
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 257, pattern = "^[!-~]+$",
         description = "The idempotency key, instead of (or equal to) the body's: 1-255 printable ASCII characters without spaces, bare or as a quoted string (with \\\" and \\\\ escapes; the document allows 257 characters as sent, a bare key or a quoted one without escapes)"),
        ("Content-Encoding" = Option<body::Encoding>, Header, nullable = false, description = "How the body is compressed"),
    ),
    responses(
        (status = 200, description = "Stored (or already stored: see deduplicated)", body = Accepted,
         headers(("Idempotent-Replayed" = String, description = "true when the event was already stored"))),
    ),
)]
pub(crate) async fn ingest(
    caller: Caller<EventsWrite>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // The budget first: a limited request reads no body and stores nothing.
    let permit = caller.permit(&req, &state.ingest, 1).await?;
    let read = read_event(&req, payload, state.event_body).await;
    let (incoming, sent_at) = refuse_unread(&state.ingest, caller.tenant(), read)?;
    let stored = state.ingest.single(permit, incoming, sent_at).await?;
    let mut response = HttpResponse::Ok();
    if stored.outcome.deduplicated {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(Accepted::from(&stored)))
}

/// The `Intake-Sent-At` header (§15), where a body cannot say when it was sent: CloudEvents.
/// Given twice it is refused, naming `sent_at`, as a body's field given twice is: taking either
/// line would correct the events by a clock the sender may not have meant.
fn sent_at_header(req: &HttpRequest) -> Result<Option<Value>, FieldError> {
    let mut lines = req.headers().get_all(SENT_AT_HEADER);
    let Some(value) = lines.next() else { return Ok(None) };
    if lines.next().is_some() {
        return Err(FieldError::new(
            SENT_AT,
            ErrorCode::DuplicateField,
            "the Intake-Sent-At header is given more than once; send it once",
        ));
    }
    Ok(Some(Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned())))
}

/// Tells the observers of a request whose body could not be read as events.
fn refuse_unread<T>(
    ingest: &Ingest,
    tenant: &TenantId,
    read: Result<T, ApiError>,
) -> Result<T, ApiError> {
    read.inspect_err(|error| {
        let kind = error.kind();
        ingest.refuse(tenant, Refusal::Unread { status: kind.status, slug: kind.slug });
    })
}

/// The event a single-event request carries: intake's JSON, or a CloudEvent in structured or
/// binary mode (contract §11); and when it says it was sent (§15: intake's JSON has a
/// `sent_at` field, CloudEvents the `Intake-Sent-At` header).
async fn read_event(
    req: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<(Incoming, Option<Value>), ApiError> {
    Ok(match event_format(req.headers()) {
        EventFormat::Plain | EventFormat::Batched => {
            let mut fields = body::json_object(req, payload, limits).await?;
            let sent_at = fields.remove(SENT_AT);
            let beside = Some(key_beside_body(req.headers().get(IDEMPOTENCY_KEY_HEADER)));
            (Incoming::Plain { fields, beside }, sent_at)
        }
        EventFormat::Structured => {
            let attributes = body::json_object(req, payload, limits).await?;
            let sent_at = sent_at_header(req).map_err(|e| ApiError::from(vec![e]))?;
            (Incoming::CloudEvent { attributes, mode: Mode::Structured }, sent_at)
        }
        EventFormat::Binary => {
            require_json_data(req.headers())?;
            // Every header's problem at once: the ce-* attributes' and Intake-Sent-At's.
            let (mut attributes, sent_at) =
                match (binary_attributes(req.headers()), sent_at_header(req)) {
                    (Ok(attributes), Ok(sent_at)) => (attributes, sent_at),
                    (attributes, sent_at) => {
                        let mut errors = attributes.err().unwrap_or_default();
                        errors.extend(sent_at.err());
                        return Err(ApiError::from(errors));
                    }
                };
            if let Some(data) = body::json_value(req, payload, limits).await? {
                attributes.insert("data".into(), data);
            }
            (Incoming::CloudEvent { attributes, mode: Mode::Binary }, sent_at)
        }
    })
}

/// One item's answer in a batch: accepted like a single event, or rejected with its errors.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum ItemResult {
    /// Stored, or found stored.
    Accepted(Accepted),
    /// Not stored.
    Rejected {
        /// Always `error`.
        #[schema(value_type = String, example = "error")]
        status: &'static str,
        /// Every problem with the item.
        errors: Vec<FieldProblem>,
        /// The event that holds the key, when the key was reused.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
}

impl From<Result<Ingested, Refusal>> for ItemResult {
    fn from(outcome: Result<Ingested, Refusal>) -> Self {
        match outcome {
            Ok(ingested) => Self::Accepted(Accepted::from(&ingested)),
            Err(refusal) => {
                let (_, errors, original) = refusal_problem(&refusal);
                Self::Rejected {
                    status: "error",
                    errors,
                    event_id: original.as_ref().map(EventId::to_string),
                }
            }
        }
    }
}

/// The answer to a batch.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchBody {
    /// When the batch gave `sent_at`: when it was received minus `sent_at`, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = 12)]
    clock_skew_ms: Option<i64>,
    /// One result per item, in request order.
    results: Vec<ItemResult>,
    /// Items stored by this request.
    accepted: usize,
    /// Items already stored (earlier, or by an earlier item of this batch).
    deduplicated: usize,
    /// Items with errors.
    rejected: usize,
}

impl BatchBody {
    fn new(results: Vec<ItemResult>, clock_skew_ms: Option<i64>) -> Self {
        let count = |f: fn(&ItemResult) -> bool| results.iter().filter(|r| f(r)).count();
        let accepted = count(|r| matches!(r, ItemResult::Accepted(a) if !a.deduplicated));
        let deduplicated = count(|r| matches!(r, ItemResult::Accepted(a) if a.deduplicated));
        let rejected = count(|r| matches!(r, ItemResult::Rejected { .. }));
        Self { clock_skew_ms, results, accepted, deduplicated, rejected }
    }
}

/// The items of a batch body, a JSON array of CloudEvents (batched mode) or intake's
/// `{"sent_at":…,"events":[…]}`, and when the batch says it was sent; or why the whole batch is
/// refused.
fn batch_items(
    body: Option<Value>,
    format: EventFormat,
) -> Result<(Vec<Incoming>, Option<Value>), ApiError> {
    let mut sent_at = None;
    let items = match (format, body) {
        (EventFormat::Batched, Some(Value::Array(items))) => items,
        (EventFormat::Batched, Some(other)) => {
            return Err(ApiError::InvalidBatch(format!(
                "a batch of CloudEvents is a JSON array, not {}",
                json_type_name(&other)
            )))
        }
        (_, None) => return Err(ApiError::InvalidBatch("the body is empty".into())),
        (_, Some(Value::Object(mut body))) => {
            sent_at = body.remove(SENT_AT);
            events_of(body)?
        }
        (_, Some(other)) => {
            return Err(ApiError::InvalidBody(format!(
                "the body must be a JSON object, not {}",
                json_type_name(&other)
            )))
        }
    };
    if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::InvalidBatch(format!(
            "the batch has {} events; send 1 to {MAX_BATCH_ITEMS}",
            items.len()
        )));
    }
    // A batch item's key comes from the item alone: the Idempotency-Key header is for single
    // events.
    let items = items
        .into_iter()
        .map(|item| match item {
            Value::Object(attributes) if format == EventFormat::Batched => {
                Incoming::CloudEvent { attributes, mode: Mode::Structured }
            }
            Value::Object(fields) => Incoming::Plain { fields, beside: None },
            other => Incoming::NotAnObject(json_type_name(&other)),
        })
        .collect();
    Ok((items, sent_at))
}

/// The items of a `{"events":[…]}` body.
fn events_of(mut body: Map<String, Value>) -> Result<Vec<Value>, ApiError> {
    let shape =
        || "the body must be {\"events\":[…]} with 1 to 1000 events (and sent_at)".to_owned();
    if let Some(other) = body.keys().find(|k| *k != "events") {
        return Err(ApiError::InvalidBatch(format!("unknown field {other:?}; {}", shape())));
    }
    match body.remove("events") {
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(ApiError::InvalidBatch(format!(
            "events must be an array, not {}",
            json_type_name(&other)
        ))),
        None => Err(ApiError::InvalidBatch(format!("events is missing; {}", shape()))),
    }
}

/// `POST /v1/events/batch`: each item validated and stored on its own, in one round trip to
/// storage for all the valid ones; answers in request order after commit.
#[utoipa::path(
    post,
    path = "/v1/events/batch",
    tag = "events",
    summary = "Ingest up to 1,000 events, each on its own",
    request_body(content(
        (BatchInput = "application/json"),
        (Vec<CloudEventInput> = "application/cloudevents-batch+json"),
    )),
    params(("Content-Encoding" = Option<body::Encoding>, Header, nullable = false, description = "How the body is compressed")),
    responses(
        (status = 200, description = "One result per item, in request order", body = BatchBody),
    ),
)]
pub(crate) async fn ingest_batch(
    caller: Caller<EventsWrite>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // A batch costs its number of items, known once the body is read; a body that is not a
    // batch spends nothing (its answer still shows the budget). A budget with no room for even
    // one event is refused before the body is read, inflated and parsed.
    caller.admit(&req, &state.ingest).await?;
    let format = event_format(req.headers());
    let read = match format {
        EventFormat::Batched => body::json_value(&req, payload, state.batch_body).await,
        _ => body::json_object(&req, payload, state.batch_body).await.map(|o| Some(o.into())),
    };
    let read = read.and_then(|body| batch_items(body, format)).and_then(|(items, sent_at)| {
        let sent_at = match sent_at {
            Some(in_body) => Some(in_body),
            None => sent_at_header(&req).map_err(|e| ApiError::from(vec![e]))?,
        };
        Ok((items, sent_at))
    });
    let (items, sent_at) = match read {
        Ok(read) => read,
        Err(error) => {
            caller.read_budget(&req).await?;
            return refuse_unread(&state.ingest, caller.tenant(), Err(error));
        }
    };
    let cost = u32::try_from(items.len()).unwrap_or(u32::MAX);
    let permit = caller.permit(&req, &state.ingest, cost).await?;
    let stored = state.ingest.batch(permit, items, sent_at).await?;
    let results = stored.outcome.into_iter().map(ItemResult::from).collect();
    Ok(HttpResponse::Ok().json(BatchBody::new(results, stored.clock_skew_ms)))
}

/// `GET /v1/events/{event_id}`: one event of the caller's tenant. Another tenant's event, an
/// unknown id and a malformed one are all the same 404.
#[utoipa::path(
    get,
    path = "/v1/events/{event_id}",
    tag = "events",
    summary = "Read one event",
    params(("event_id" = String, Path, pattern = "^evt_[0-9a-f]{32}$", description = "evt_ followed by 32 hex digits")),
    responses(
        (status = 200, description = "The event (a structured CloudEvent with Accept: application/cloudevents+json)", content(
            (EventBody = "application/json"),
            (CloudEventBody = "application/cloudevents+json"),
        )),
    ),
)]
pub(crate) async fn get_event(
    caller: Caller<EventsRead>,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let not_found = || ApiError::NotFound(format!("no event {raw:?}"));
    let id: EventId = raw.parse().map_err(|_| not_found())?;
    let event = state.events.get(caller.tenant(), id).await?.ok_or_else(not_found)?;
    if wants_cloudevent(req.headers()) {
        let structured = CloudEventBody::of(event, caller.tenant());
        return Ok(HttpResponse::Ok()
            .content_type(CLOUDEVENTS_JSON)
            .body(as_written(&structured)?));
    }
    Ok(HttpResponse::Ok()
        .content_type(mime::APPLICATION_JSON)
        .body(as_written(&EventBody::from(event))?))
}
