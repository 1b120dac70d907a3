//! The per-request context: a request id (the client's `X-Request-Id` when it is sane, else a
//! new UUID), a tracing span carrying it, and the `X-Request-Id` response header.
//!
//! The id lives in a task-local for the duration of the request so that error responses, which
//! are rendered without access to the request, can name it.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use crate::metrics::Metrics;

/// The request id header, read and echoed.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, or `"-"` outside of one.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| "-".to_owned())
}

/// A client's id is kept when it is 1–128 characters of letters, digits and `-_.:`; anything
/// else could poison logs, so it is replaced.
fn sane_client_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| text.to_owned())
}

/// The middleware: assigns the id, opens the span, logs one line per request, sets the header.
pub async fn middleware<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(sane_client_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = method_label(req.method());
    // Handlers' errors become responses inside this scope (actix renders them in the route's
    // service), so their problem bodies can name the request id.
    let mut response =
        REQUEST_ID.scope(id.clone(), next.call(req)).instrument(span.clone()).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    if let Some(metrics) = metrics {
        // The route's pattern, not its path, so that ids do not make new series.
        let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".into());
        metrics.observe_request(method, &route, status, elapsed);
    }
    span.in_scope(|| {
        tracing::info!(status, latency_ms = elapsed * 1000.0, "request finished");
    });
    Ok(response)
}

/// A request's method as a metric label: one of HTTP's own, else `other`, so that a client
/// inventing methods cannot add series.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    const KNOWN: [(&Method, &str); 9] = [
        (&Method::GET, "GET"),
        (&Method::POST, "POST"),
        (&Method::PUT, "PUT"),
        (&Method::DELETE, "DELETE"),
        (&Method::HEAD, "HEAD"),
        (&Method::OPTIONS, "OPTIONS"),
        (&Method::PATCH, "PATCH"),
        (&Method::TRACE, "TRACE"),
        (&Method::CONNECT, "CONNECT"),
    ];
    KNOWN.iter().find(|(known, _)| *known == method).map_or("other", |(_, label)| label)
}
