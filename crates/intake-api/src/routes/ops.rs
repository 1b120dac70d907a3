//! The operational endpoints: liveness, readiness, metrics, the OpenAPI document and the
//! troubleshooting guide.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use intake_domain::Readiness;
use serde_json::json;

use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::state::AppState;

/// The OpenAPI document as served, built once at start-up from the route table.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub String);

/// The troubleshooting guide that every problem `type` points into.
const TROUBLESHOOTING: &str = include_str!("../../../../docs/troubleshooting.md");

/// The guide as an HTML page, rendered once: each section's heading carries its text as its
/// `id`, so that a problem's `type` (`/docs/troubleshooting#<slug>`) opens at its section.
static TROUBLESHOOTING_HTML: LazyLock<String> = LazyLock::new(|| {
    use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag, TagEnd};
    let mut events: Vec<Event<'_>> =
        Parser::new_ext(TROUBLESHOOTING, Options::ENABLE_TABLES).collect();
    // Each heading's text, found first, then given to it as its id.
    let anchors: Vec<(usize, String)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Start(Tag::Heading { id: None, .. })))
        .map(|(at, _)| {
            let text: String = events[at + 1..]
                .iter()
                .take_while(|e| !matches!(e, Event::End(TagEnd::Heading(_))))
                .filter_map(|e| match e {
                    Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
                    _ => None,
                })
                .collect();
            (at, anchor(&text))
        })
        .collect();
    for (at, anchor) in anchors {
        if let Event::Start(Tag::Heading { id, .. }) = &mut events[at] {
            *id = Some(CowStr::from(anchor));
        }
    }
    let mut body = String::new();
    html::push_html(&mut body, events.into_iter());
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Event Intake API issues</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;\
         padding:0 1rem;line-height:1.5}}code,pre{{background:#f4f4f4}}pre{{padding:.5rem;\
         overflow-x:auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;\
         padding:.2rem .4rem}}</style></head><body>\n{body}</body></html>\n"
    )
});

/// A heading's anchor: its text in lowercase, runs of anything but letters, digits, `-` and
/// `_` made one `-` (a problem's slug is its own anchor).
fn anchor(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() || c == '-' || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// `GET /healthz`: the process is alive and serving; touches nothing else.
#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Liveness",
    responses((status = 200, description = "The process is alive", body = Object, example = json!({"status": "ok"}))))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers and every migration is applied.
#[utoipa::path(get, path = "/readyz", tag = "operations", summary = "Readiness",
    responses((status = 200, description = "Ready to serve", body = Object, example = json!({"status": "ready"}))))]
pub(crate) async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.health.readiness().await? {
        Readiness::Ready => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        Readiness::MigrationsPending { pending } => Err(ApiError::MigrationsPending(pending)),
    }
}

/// `GET /metrics`: the Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(
    metrics: web::Data<Metrics>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Storage's lifetime state is read now, briefly: a scrape answers (without it) while the
    // database is down.
    let lifetime = &state.lifetime;
    let stats = tokio::time::timeout(std::time::Duration::from_secs(1), lifetime.stats())
        .await
        .ok()
        .and_then(Result::ok);
    metrics.set_lifetime(stats.as_ref(), &lifetime.last_run());
    let body = metrics
        .render()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("rendering metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .body(body))
}

/// `GET /docs/troubleshooting`: the guide that problem types point into.
#[utoipa::path(get, path = "/docs/troubleshooting", tag = "operations", summary = "Troubleshooting guide",
    responses((status = 200, description = "The guide as an HTML page, one section per problem type, anchored by the type's slug", body = String, content_type = "text/html")))]
pub(crate) async fn troubleshooting() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(TROUBLESHOOTING_HTML.as_str())
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", summary = "OpenAPI document",
    responses((status = 200, description = "OpenAPI 3.1", body = Object, content_type = "application/json")))]
pub(crate) async fn openapi(document: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document.0.clone())
}
