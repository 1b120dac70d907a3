//! The live debugger (contract §13): a Server-Sent Events stream of the caller's tenant's
//! accepted and rejected requests, and the page that shows it.

use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use intake_domain::Scope;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::TryRecvError;

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

/// A stream takes what arrived for it this often, as one chunk: a reader never waits on the
/// tenant's channel, so storing an event wakes no reader, whatever the number of streams.
const FLUSH: Duration = Duration::from_millis(200);

/// The most entries a stream sends per flush (500 a second); the rest are counted as missed.
const MAX_PER_FLUSH: usize = 100;

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
    let mut flush = tokio::time::interval(FLUSH);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let token = Token { secret: bearer_token(&req)?.to_owned(), authenticator };
    let opening =
        stream::once(async { Ok::<_, actix_web::Error>(Bytes::from_static(b": connected\n\n")) });
    let entries = stream::unfold(
        (receiver, keep_alive, recheck, flush, closed, Some((token, slot))),
        |(mut receiver, mut keep_alive, mut recheck, mut flush, mut closed, open)| async move {
            // The stream holds its place until it ends.
            let (token, slot) = open?;
            if *closed.borrow() {
                return None;
            }
            let mut last = None;
            let chunk = loop {
                break tokio::select! {
                    _ = closed.changed() => return None,
                    _ = flush.tick() => match take_waiting(&mut receiver) {
                        Some(chunk) => chunk,
                        None => continue,
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
            Some((
                Ok::<_, actix_web::Error>(chunk),
                (receiver, keep_alive, recheck, flush, closed, open),
            ))
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::StreamExt::chain(opening, entries)))
}

/// What arrived for a stream since its last flush, as one chunk of frames (the frames every
/// reader shares, made once): at most [`MAX_PER_FLUSH`] entries, then a `gap` event counting
/// what it missed (it fell behind the channel, or more arrived than it sends); `None` when
/// nothing did. The channel being closed ends nothing here: the hub closes streams itself.
fn take_waiting(receiver: &mut broadcast::Receiver<Bytes>) -> Option<Bytes> {
    let mut chunk = Vec::new();
    let (mut sent, mut missed) = (0usize, 0u64);
    loop {
        match receiver.try_recv() {
            Ok(frame) if sent < MAX_PER_FLUSH => {
                chunk.extend_from_slice(&frame);
                sent += 1;
            }
            Ok(_) => missed += 1,
            Err(TryRecvError::Lagged(n)) => missed += n,
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    if missed > 0 {
        chunk
            .extend_from_slice(format!("event: gap\ndata: {{\"missed\":{missed}}}\n\n").as_bytes());
    }
    (!chunk.is_empty()).then(|| Bytes::from(chunk))
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
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             frame-ancestors 'none'",
        ))
        // The page takes a token: no other site may frame it (older browsers read this one).
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_sends_at_most_its_share_and_counts_the_rest_as_missed() {
        let (sender, mut receiver) = broadcast::channel(1024);
        assert_eq!(take_waiting(&mut receiver), None, "nothing waiting, nothing sent");
        for i in 0..MAX_PER_FLUSH + 7 {
            sender.send(Bytes::from(format!("data: {i}\n\n"))).expect("a receiver");
        }
        let chunk = take_waiting(&mut receiver).expect("a chunk");
        let text = std::str::from_utf8(&chunk).expect("utf-8");
        assert_eq!(text.matches("data: ").count(), MAX_PER_FLUSH + 1, "entries and the gap");
        assert!(text.ends_with("event: gap\ndata: {\"missed\":7}\n\n"), "{text}");
        assert_eq!(take_waiting(&mut receiver), None, "the rest was taken");
    }
}
