//! The event endpoints: ingest one, ingest a batch, read one, follow the feed.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use intake_domain::cloudevent::{self, Mode};
use intake_domain::event::json_type_name;
use intake_domain::{
    BatchOutcome, ErrorCode, EventId, EventType, FeedPosition, FeedQuery, FieldError, Ingested,
    NewEvent, TenantId,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::{Caller, EventsRead, EventsWrite};
use crate::body;
use crate::cursor;
use crate::debugger::{self, DebugHub};
use crate::metrics::{Metrics, Outcome};
use crate::problem::{field_problems, ApiError, FieldProblem, ProblemKind, RequestCode};
use crate::state::AppState;
use crate::wire::{
    binary_attributes, event_format, format_timestamp, key_beside_body, wants_cloudevent,
    EventFormat, CLOUDEVENTS_JSON, IDEMPOTENCY_KEY_HEADER,
};

/// An event to ingest (the request body of `POST /v1/events`, and each item of a batch).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Event)]
pub(crate) struct EventInput {
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
        nullable = false,
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

/// A CloudEvent 1.0 in structured mode (contract §11); besides the attributes below, extension
/// attributes (names of 1–20 lowercase letters and digits; string, number or boolean values).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CloudEvent)]
pub(crate) struct CloudEventInput {
    /// Always `1.0`.
    #[schema(pattern = "^1\\.0$", example = "1.0")]
    specversion: String,
    /// Unique within `source`; with it, the event's idempotency identity.
    #[schema(min_length = 1, example = "A234-1234")]
    id: String,
    /// Where the event comes from.
    #[schema(min_length = 1, example = "https://shop.example/orders")]
    source: String,
    /// The event type: 1–128 ASCII letters, digits and `. _ - :`, starting with a letter or
    /// digit.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        example = "com.example.order.placed"
    )]
    r#type: String,
    /// When it happened: RFC 3339; required here.
    #[schema(format = DateTime, example = "2025-12-22T10:30:00Z")]
    time: String,
    /// The subject within the source.
    #[schema(nullable = false, min_length = 1)]
    subject: Option<String>,
    /// The schema of `data`.
    #[schema(nullable = false, min_length = 1)]
    dataschema: Option<String>,
    /// The media type of `data` (JSON).
    #[schema(nullable = false, example = "application/json")]
    datacontenttype: Option<String>,
    /// The payload: a JSON object; absent is `{}`.
    #[schema(value_type = Object, nullable = false)]
    data: Option<Value>,
}

/// A stored event as a structured CloudEvent: its attributes as it came (or `source`
/// `/intake/<tenant>` and its event id, for a plain event), `recordedtime` when intake received
/// it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StoredCloudEvent)]
pub(crate) struct CloudEventBody {
    /// `1.0`.
    specversion: String,
    /// The CloudEvent's id.
    id: String,
    /// The CloudEvent's source.
    source: String,
    /// The event type.
    r#type: String,
    /// When it happened.
    #[schema(format = DateTime)]
    time: String,
    /// When intake received it.
    #[schema(format = DateTime)]
    recordedtime: String,
    /// `application/json` unless it came with another.
    datacontenttype: String,
    /// The payload.
    #[schema(value_type = Object)]
    data: Value,
}

/// An event of a batch: like a single event, but its key must be in the item (batches take no
/// `Idempotency-Key` header).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BatchEvent)]
pub(crate) struct BatchEventInput {
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
    /// 1–255 printable ASCII characters without spaces.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$",
        example = "0f3f6f9b-9f0b-4c8d-9f18-5b6a9d9d2d41"
    )]
    idempotency_key: String,
    /// The payload: any JSON object.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// A batch to ingest.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchInput {
    /// 1 to 1,000 events.
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<BatchEventInput>,
}

/// The answer to an accepted event.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// Always `ok`.
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
    /// The stored event's id (the original one on a retry).
    #[schema(example = "evt_01a21a278c5778fcb1b0b514bf29aa92")]
    event_id: String,
    /// When the event was first received (RFC 3339, UTC).
    #[schema(format = DateTime)]
    received_at: String,
    /// Whether an earlier request had already stored this event.
    deduplicated: bool,
}

impl From<&Ingested> for Accepted {
    fn from(i: &Ingested) -> Self {
        Self {
            status: "ok",
            event_id: i.event_id.to_string(),
            received_at: format_timestamp(i.received_at),
            deduplicated: i.deduplicated,
        }
    }
}

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
    metrics: web::Data<Metrics>,
    debugger: web::Data<DebugHub>,
) -> Result<HttpResponse, ApiError> {
    let stored = async {
        // The budget first: a limited request reads no body and stores nothing.
        caller.spend(&req, 1).await?;
        let now = Utc::now();
        let event = read_event(&req, payload, &state, now).await?;
        let event = match check_schema(&state, caller.tenant(), event).await? {
            Checked::Passed(event) => event,
            Checked::Violates { event, version, errors } => {
                return match replay_of(&state, caller.tenant(), &event).await? {
                    Some(ingested) => Ok((event, ingested)),
                    None => Err(ApiError::SchemaViolation { version, errors }),
                };
            }
        };
        let ingested = state.events.ingest(caller.tenant(), &event, EventId::generate(now)).await?;
        Ok::<_, ApiError>((event, ingested))
    }
    .await;
    match &stored {
        Ok((_, i)) if i.deduplicated => metrics.count_events(Outcome::Deduplicated, 1),
        Ok(_) => metrics.count_events(Outcome::Accepted, 1),
        // The event was not judged: the database failed, not the request.
        Err(ApiError::Unavailable(_) | ApiError::Overloaded | ApiError::Internal(_)) => {}
        Err(ApiError::RateLimited { .. }) => {}
        Err(_) => metrics.count_events(Outcome::Rejected, 1),
    }
    if debugger.watched(caller.tenant()) {
        match &stored {
            Ok((event, ingested)) => report_accepted(&debugger, caller.tenant(), event, ingested),
            Err(error) => {
                report_rejected(&debugger, caller.tenant(), error.kind(), error.field_errors())
            }
        }
    }
    let (_, ingested) = stored?;
    let mut response = HttpResponse::Ok();
    if ingested.deduplicated {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(Accepted::from(&ingested)))
}

/// Tells the live debugger an event was accepted (or replayed).
fn report_accepted(debugger: &DebugHub, tenant: &TenantId, event: &NewEvent, ingested: &Ingested) {
    let entry = debugger::AcceptedEntry {
        event_id: ingested.event_id.to_string(),
        event_type: event.event_type().as_str(),
        occurred_at: format_timestamp(event.occurred_at().as_utc()),
        received_at: format_timestamp(ingested.received_at),
        idempotency_key: event.idempotency_key().as_str(),
        deduplicated: ingested.deduplicated,
        data: event.data().as_value(),
    };
    if let Ok(json) = serde_json::to_string(&entry) {
        debugger.publish(tenant, "accepted", json);
    }
}

/// Tells the live debugger a request (or a batch item) was refused: what its problem said.
fn report_rejected(
    debugger: &DebugHub,
    tenant: &TenantId,
    kind: ProblemKind,
    errors: Option<&[FieldProblem]>,
) {
    let request_id = crate::request_context::current_request_id();
    let entry = debugger::RejectedEntry {
        status: kind.status,
        problem_type: kind.type_uri(),
        errors: errors
            .map_or(Value::Array(Vec::new()), |e| serde_json::to_value(e).unwrap_or_default()),
        request_id: &request_id,
        at: format_timestamp(chrono::SubsecRound::trunc_subsecs(Utc::now(), 6)),
    };
    if let Ok(json) = serde_json::to_string(&entry) {
        debugger.publish(tenant, "rejected", json);
    }
}

/// The event a single-event request carries: intake's JSON, or a CloudEvent in structured or
/// binary mode (contract §11).
async fn read_event(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    now: chrono::DateTime<Utc>,
) -> Result<NewEvent, ApiError> {
    match event_format(req.headers()) {
        EventFormat::Plain | EventFormat::Batched => {
            let object = body::json_object(req, payload, state.event_body).await?;
            let beside = key_beside_body(req.headers().get(IDEMPOTENCY_KEY_HEADER));
            Ok(NewEvent::parse(object, Some(beside), now, &state.validation)?)
        }
        EventFormat::Structured => {
            let object = body::json_object(req, payload, state.event_body).await?;
            Ok(cloudevent::parse(object, Mode::Structured, now, &state.validation)?)
        }
        EventFormat::Binary => {
            let mut attributes = binary_attributes(req.headers());
            if let Some(data) = body::json_value(req, payload, state.event_body).await? {
                attributes.insert("data".into(), data);
            }
            Ok(cloudevent::parse(attributes, Mode::Binary, now, &state.validation)?)
        }
    }
}

/// What checking an event against its type's schema found.
enum Checked {
    /// No schema, or the data satisfies it (the event then records the version).
    Passed(NewEvent),
    /// The data violates the schema.
    Violates {
        /// The event as parsed.
        event: NewEvent,
        /// The version checked against.
        version: u32,
        /// Every violation.
        errors: Vec<FieldProblem>,
    },
}

/// Checks an event's data against the latest schema of its type, if the type has one.
async fn check_schema(
    state: &AppState,
    tenant: &TenantId,
    event: NewEvent,
) -> Result<Checked, ApiError> {
    let Some(schema) = state.schemas.active(tenant, event.event_type()).await? else {
        return Ok(Checked::Passed(event));
    };
    Ok(match schema.compiled.check(event.data().as_value()) {
        Ok(()) => Checked::Passed(event.checked_against(schema.version)),
        Err(violations) => Checked::Violates {
            event,
            version: schema.version,
            errors: violations.into_iter().map(FieldProblem::schema_violation).collect(),
        },
    })
}

/// The stored event this one is a retry of, if any: a retry is answered as a replay even when
/// a schema registered since would reject it.
async fn replay_of(
    state: &AppState,
    tenant: &TenantId,
    event: &NewEvent,
) -> Result<Option<Ingested>, ApiError> {
    let holder = state.events.key_holder(tenant, event.idempotency_key()).await?;
    Ok(holder.and_then(|holder| match holder.outcome_for(event, false) {
        BatchOutcome::Stored(ingested) => Some(ingested),
        BatchOutcome::KeyReused { .. } => None,
    }))
}

/// The most events one batch may hold.
const MAX_BATCH_ITEMS: usize = 1000;

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

impl ItemResult {
    fn rejected(errors: Vec<FieldProblem>) -> Self {
        Self::Rejected { status: "error", errors, event_id: None }
    }
}

/// The answer to a batch.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchBody {
    /// One result per item, in request order.
    results: Vec<ItemResult>,
    /// Items stored by this request.
    accepted: usize,
    /// Items already stored (earlier, or by an earlier item of this batch).
    deduplicated: usize,
    /// Items with errors.
    rejected: usize,
}

/// The items of a batched-mode body (a JSON array of CloudEvents), or why the whole batch is
/// refused.
fn cloudevent_items(body: Option<Value>) -> Result<Vec<Value>, ApiError> {
    let items = match body {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ApiError::InvalidBatch(format!(
                "a batch of CloudEvents is a JSON array, not {}",
                json_type_name(&other)
            )))
        }
        None => return Err(ApiError::InvalidBatch("the body is empty".into())),
    };
    if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::InvalidBatch(format!(
            "the batch has {} events; send 1 to {MAX_BATCH_ITEMS}",
            items.len()
        )));
    }
    Ok(items)
}

/// The items of a `{"events":[…]}` body, or why the whole batch is refused.
fn batch_items(mut body: serde_json::Map<String, Value>) -> Result<Vec<Value>, ApiError> {
    let shape = || "the body must be {\"events\":[…]} with 1 to 1000 events".to_owned();
    if let Some(other) = body.keys().find(|k| *k != "events") {
        return Err(ApiError::InvalidBatch(format!("unknown field {other:?}; {}", shape())));
    }
    let items = match body.remove("events") {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ApiError::InvalidBatch(format!(
                "events must be an array, not {}",
                json_type_name(&other)
            )))
        }
        None => return Err(ApiError::InvalidBatch(format!("events is missing; {}", shape()))),
    };
    if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::InvalidBatch(format!(
            "the batch has {} events; send 1 to {MAX_BATCH_ITEMS}",
            items.len()
        )));
    }
    Ok(items)
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
    metrics: web::Data<Metrics>,
    debugger: web::Data<DebugHub>,
) -> Result<HttpResponse, ApiError> {
    // A batch costs its number of items, known once the body is read; a body that is not a
    // batch spends nothing (its answer still shows the budget).
    let format = event_format(req.headers());
    let read = match format {
        EventFormat::Batched => {
            body::json_value(&req, payload, state.batch_body).await.and_then(cloudevent_items)
        }
        _ => body::json_object(&req, payload, state.batch_body).await.and_then(batch_items),
    };
    let items = match read {
        Ok(items) => items,
        Err(error) => {
            caller.spend(&req, 0).await?;
            return Err(error);
        }
    };
    caller.spend(&req, u32::try_from(items.len()).unwrap_or(u32::MAX)).await?;
    let now = Utc::now();

    let mut results: Vec<Option<ItemResult>> = Vec::with_capacity(items.len());
    let mut valid = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    for (position, item) in items.into_iter().enumerate() {
        // A batch item's key comes from the item alone: the Idempotency-Key header is for
        // single events.
        let parsed = match item {
            Value::Object(fields) if format == EventFormat::Batched => {
                cloudevent::parse(fields, Mode::Structured, now, &state.validation)
                    .map_err(field_problems)
            }
            Value::Object(fields) => {
                NewEvent::parse(fields, None, now, &state.validation).map_err(field_problems)
            }
            other => Err(vec![FieldProblem::new(
                "event",
                RequestCode::NotAnObject,
                format!(
                    "each item of events must be a JSON object, not {}",
                    json_type_name(&other)
                ),
            )]),
        };
        let checked = match parsed {
            Ok(event) => check_schema(&state, caller.tenant(), event).await?,
            Err(errors) => {
                results.push(Some(ItemResult::rejected(errors)));
                continue;
            }
        };
        match checked {
            Checked::Passed(event) => {
                valid.push((event, EventId::generate(now)));
                positions.push(position);
                results.push(None);
            }
            Checked::Violates { event, errors, .. } => {
                results.push(Some(match replay_of(&state, caller.tenant(), &event).await? {
                    Some(ingested) => ItemResult::Accepted(Accepted::from(&ingested)),
                    None => ItemResult::rejected(errors),
                }));
            }
        }
    }

    let outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        state.events.ingest_batch(caller.tenant(), &valid).await?
    };
    if outcomes.len() != valid.len() {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "storage answered {} outcomes for {} events",
            outcomes.len(),
            valid.len()
        )));
    }
    let watched = debugger.watched(caller.tenant());
    for ((position, outcome), (event, _)) in positions.into_iter().zip(outcomes).zip(&valid) {
        if watched {
            if let BatchOutcome::Stored(ingested) = &outcome {
                report_accepted(&debugger, caller.tenant(), event, ingested);
            }
        }
        results[position] = Some(match outcome {
            BatchOutcome::Stored(ingested) => ItemResult::Accepted(Accepted::from(&ingested)),
            BatchOutcome::KeyReused { original } => ItemResult::Rejected {
                status: "error",
                errors: vec![FieldError::new(
                    "idempotency_key",
                    ErrorCode::IdempotencyKeyReused,
                    format!(
                        "idempotency key already used for event {original} with a different \
                         payload"
                    ),
                )
                .into()],
                event_id: Some(original.to_string()),
            },
        });
    }

    let results: Vec<ItemResult> = results.into_iter().flatten().collect();
    if watched {
        for result in &results {
            if let ItemResult::Rejected { errors, event_id, .. } = result {
                let kind = if event_id.is_some() {
                    ProblemKind::IDEMPOTENCY_KEY_REUSED
                } else if errors.iter().any(|e| e.code == RequestCode::SchemaViolation.as_str()) {
                    ProblemKind::SCHEMA_VIOLATION
                } else {
                    ProblemKind::VALIDATION_FAILED
                };
                report_rejected(&debugger, caller.tenant(), kind, Some(errors));
            }
        }
    }
    let count = |f: fn(&ItemResult) -> bool| results.iter().filter(|r| f(r)).count();
    let accepted = count(|r| matches!(r, ItemResult::Accepted(a) if !a.deduplicated));
    let deduplicated = count(|r| matches!(r, ItemResult::Accepted(a) if a.deduplicated));
    let rejected = count(|r| matches!(r, ItemResult::Rejected { .. }));
    metrics.count_events(Outcome::Accepted, accepted);
    metrics.count_events(Outcome::Deduplicated, deduplicated);
    metrics.count_events(Outcome::Rejected, rejected);
    Ok(HttpResponse::Ok().json(BatchBody { results, accepted, deduplicated, rejected }))
}

pub(crate) use intake_service::EventBody;

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
        let structured = cloudevent::to_structured(&event, caller.tenant(), format_timestamp);
        return Ok(HttpResponse::Ok().content_type(CLOUDEVENTS_JSON).json(structured));
    }
    Ok(HttpResponse::Ok().json(EventBody::from(event)))
}

/// The most events one feed page holds, and how many when `limit` is not given.
const MAX_LIMIT: u16 = 1000;
const DEFAULT_LIMIT: u16 = 100;

/// A page of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FeedBody {
    /// Events, oldest first.
    data: Vec<EventBody>,
    /// Pass back as `cursor` to continue; always present.
    next_cursor: String,
}

/// Reads `limit`, `cursor` and `event_type`, reporting every bad parameter at once.
fn feed_query(query_string: &str) -> Result<FeedQuery, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query_string)
        .map_err(|e| {
            ApiError::InvalidQuery(vec![FieldProblem::new(
                "query",
                RequestCode::UnknownParameter,
                format!("the query string cannot be read: {e}"),
            )])
        })?
        .into_inner();
    let mut errors = Vec::new();
    let mut query =
        FeedQuery { after: FeedPosition::START, limit: DEFAULT_LIMIT, event_type: None };
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &pairs {
        if seen.contains(&name.as_str()) {
            errors.push(FieldProblem::new(
                name.as_str(),
                RequestCode::DuplicateParameter,
                format!("{name} is given more than once"),
            ));
            continue;
        }
        seen.push(name);
        match name.as_str() {
            "limit" => match value.parse::<u16>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => query.limit = n,
                _ => errors.push(FieldProblem::new(
                    "limit",
                    RequestCode::InvalidLimit,
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}, not {value:?}"),
                )),
            },
            "cursor" => match cursor::decode(value) {
                Some(position) => query.after = position,
                None => errors.push(FieldProblem::new(
                    "cursor",
                    RequestCode::InvalidCursor,
                    "cursor must be a next_cursor value returned by this API, unchanged",
                )),
            },
            "event_type" => match EventType::parse(value) {
                Ok(event_type) => query.event_type = Some(event_type),
                Err(e) => errors.push(e.into()),
            },
            other => errors.push(FieldProblem::new(
                other,
                RequestCode::UnknownParameter,
                format!(
                    "unknown query parameter {other:?}; the feed takes limit, cursor, event_type"
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(ApiError::InvalidQuery(errors))
    }
}

/// `GET /v1/events`: the caller's feed, oldest first, from the cursor on.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    summary = "Follow the tenant's feed",
    params(
        ("limit" = Option<u16>, Query, minimum = 1, maximum = 1000, description = "Events per page (default 100)"),
        ("cursor" = Option<String>, Query, min_length = 34, max_length = 34, pattern = "^[A-Za-z0-9_-]+$",
         description = "A next_cursor from an earlier page, unchanged"),
        ("event_type" = Option<String>, Query, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$",
         description = "Only events of this type"),
    ),
    responses(
        (status = 200, description = "A page of the feed", body = FeedBody),
    ),
)]
pub(crate) async fn feed(
    caller: Caller<EventsRead>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = feed_query(req.query_string())?;
    let page = state.events.feed_page(caller.tenant(), &query).await?;
    Ok(HttpResponse::Ok().json(FeedBody {
        data: page.events.into_iter().map(EventBody::from).collect(),
        next_cursor: cursor::encode(page.next),
    }))
}
