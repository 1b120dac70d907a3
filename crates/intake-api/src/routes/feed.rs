//! The feed (contract §2): a tenant's events, oldest first, from a cursor on.

use actix_web::{web, HttpRequest, HttpResponse};
use intake_domain::{EventType, FeedPosition, FeedQuery};
use intake_service::EventBody;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, EventsRead};
use crate::cursor;
use crate::problem::{ApiError, FieldProblem, RequestCode};
use crate::state::AppState;
use crate::wire::as_written;

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
fn feed_query(query_string: &str, max_bytes: usize) -> Result<FeedQuery, ApiError> {
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
        FeedQuery { after: FeedPosition::START, limit: DEFAULT_LIMIT, event_type: None, max_bytes };
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
    let query = feed_query(req.query_string(), state.max_feed_page_bytes)?;
    let page = state.events.feed_page(caller.tenant(), &query).await?;
    let page = FeedBody {
        data: page.events.into_iter().map(EventBody::from).collect(),
        next_cursor: cursor::encode(page.next),
    };
    Ok(HttpResponse::Ok().content_type(mime::APPLICATION_JSON).body(as_written(&page)?))
}
