//! The HTTP routes: handlers turn requests into domain calls and results into responses.

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use intake_domain::event::format_timestamp;
use intake_domain::{EventId, Ingested, NewEvent, Scope};
use serde::Serialize;

use crate::body;
use crate::problem::ApiError;
use crate::startup::AppState;

/// The troubleshooting guide that every problem `type` points into.
const TROUBLESHOOTING: &str = include_str!("../../../docs/troubleshooting.md");

/// Mounts every route, and problem answers for unknown routes and wrong methods.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/events", &[Method::POST]).route(web::post().to(ingest)))
        .service(
            resource("/docs/troubleshooting", &[Method::GET]).route(web::get().to(troubleshooting)),
        )
        .default_service(web::to(not_found));
}

/// A resource whose other methods get a 405 problem naming the allowed ones.
fn resource(path: &str, allowed: &[Method]) -> actix_web::Resource {
    let allowed = allowed.to_vec();
    web::resource(path).default_service(web::to(move |req: HttpRequest| {
        let allowed = allowed.clone();
        async move {
            Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                method: req.method().clone(),
                allowed,
            })
        }
    }))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound {
        method: req.method().clone(),
        path: req.path().to_owned(),
    })
}

/// The answer to an accepted event.
#[derive(Debug, Serialize)]
struct Accepted {
    status: &'static str,
    event_id: String,
    received_at: String,
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
async fn ingest(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = state.auth.authorize(&req, Scope::EventsWrite).await?;
    let object = body::json_object(&req, payload, state.limits.max_body_bytes).await?;
    let now = Utc::now();
    let header_key = req.headers().get("idempotency-key").map(|v| v.as_bytes());
    let event = NewEvent::parse(object, header_key, now, &state.validation)?;
    let ingested = state
        .events
        .ingest(&caller.tenant, &event, EventId::generate(now))
        .await?;
    let mut response = HttpResponse::Ok();
    if ingested.deduplicated {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(Accepted::from(&ingested)))
}

async fn troubleshooting() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/markdown; charset=utf-8"))
        .body(TROUBLESHOOTING)
}
