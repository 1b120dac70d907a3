//! The live debugger (contract §13): a Server-Sent Events stream of the caller's tenant's
//! accepted and rejected requests, and the page that shows it.

use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use intake_domain::Scope;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{bearer_token, Authenticator, Caller, EventsRead};
use crate::problem::ApiError;
use intake_service::debugger::StreamRefused;
use intake_service::DebugHub;

/// A comment this often keeps idle streams (and the proxies between) open, and finds readers
/// that left: a stream learns its reader is gone only when a write fails (the second after the
/// reader closed), and until then holds its place among `debugger.max_streams`.
const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// How often a stream checks that its token may still read: no longer than the authenticator
/// caches a lookup (`auth.cache_ttl_ms`, 500 ms by default), so that a revoked token's stream
/// ends within a second.
const RECHECK: Duration = Duration::from_millis(250);

/// The token a stream was opened with, checked again while it lasts.
struct Token {
    secret: String,
    authenticator: web::Data<Authenticator>,
}

impl Token {
    /// Whether the token is still valid with `events:read`; a storage failure is not taken for a
    /// revocation.
    async fn still_reads(&self) -> bool {
        match self.authenticator.principal(&self.secret).await {
            Ok(Some(principal)) => principal.scopes.contains(&Scope::EventsRead),
            Ok(None) => false,
            Err(_) => true,
        }
    }
}

/// The page, embedded in the binary.
const PAGE: &str = include_str!("../../assets/debugger.html");

/// `GET /v1/debugger/stream`: `event: accepted` and `event: rejected` entries of the caller's
/// tenant as they happen, on this server and every other; `event: gap` when the reader fell
/// behind and missed some; a comment every 15 s when idle.
#[utoipa::path(
    get,
    path = "/v1/debugger/stream",
    tag = "debugger",
    summary = "Follow the tenant's accepted and rejected requests live (Server-Sent Events)",
    responses((status = 200, description = "A text/event-stream that stays open", content_type = "text/event-stream", body = String)),
)]
pub(crate) async fn debugger_stream(
    caller: Caller<EventsRead>,
    req: HttpRequest,
    hub: web::Data<DebugHub>,
    authenticator: web::Data<Authenticator>,
) -> Result<HttpResponse, ApiError> {
    let slot =
        hub.open_stream(&caller.principal.account.budget_key).map_err(|refused| match refused {
            StreamRefused::TooManyForToken(_) => ApiError::TooManyStreams(refused.to_string()),
            StreamRefused::ServerFull(_) => ApiError::DebuggerFull(refused.to_string()),
        })?;
    let receiver = hub.subscribe(caller.tenant());
    let closed = hub.closed();
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.reset();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.reset();
    let token = Token { secret: bearer_token(&req)?.to_owned(), authenticator };
    let opening =
        stream::once(async { Ok::<_, actix_web::Error>(Bytes::from_static(b": connected\n\n")) });
    let entries = stream::unfold(
        (receiver, keep_alive, recheck, closed, Some((token, slot))),
        |(mut receiver, mut keep_alive, mut recheck, mut closed, open)| async move {
            // The stream holds its place until it ends.
            let (token, slot) = open?;
            if *closed.borrow() {
                return None;
            }
            let mut last = None;
            let chunk = loop {
                break tokio::select! {
                    _ = closed.changed() => return None,
                    entry = receiver.recv() => match entry {
                        // The frame every reader shares, made once.
                        Ok(frame) => frame,
                        Err(RecvError::Lagged(missed)) => Bytes::from(format!("event: gap\ndata: {{\"missed\":{missed}}}\n\n")),
                        Err(RecvError::Closed) => return None,
                    },
                    _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
                    _ = recheck.tick() => {
                        if token.still_reads().await {
                            continue;
                        }
                        last = Some(());
                        Bytes::from_static(b"event: closed\ndata: {\"reason\":\"the token was revoked or lost events:read\"}\n\n")
                    }
                };
            };
            // The last chunk goes out, then the stream ends.
            let open = if last.is_some() { None } else { Some((token, slot)) };
            Some((Ok::<_, actix_web::Error>(chunk), (receiver, keep_alive, recheck, closed, open)))
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::StreamExt::chain(opening, entries)))
}

/// `GET /debugger`: the page. It holds no data: it asks for a token and reads the stream with
/// it, sending the token in the Authorization header only.
#[utoipa::path(
    get,
    path = "/debugger",
    tag = "debugger",
    summary = "The live debugger page",
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String)),
)]
pub(crate) async fn debugger_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        ))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(PAGE)
}
