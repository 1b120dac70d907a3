//! The background task: takes batches from the queue, posts them to `POST /v1/events/batch`,
//! retries what may succeed later with the same keys, splits a batch over the token's burst,
//! and records what became of every event.
//!
//! One request is in flight at a time, so events are settled in the order they were queued.
//! It logs counts, statuses and durations at debug level, never the token, a key or data.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use crate::error::{retryable_status, transport_kind, Failure, ItemError, Problem};
use crate::event::sent_at;
use crate::ledger::{Ledger, Outcome};
use crate::options::{OnError, Options};
use crate::queue::{Queue, Queued, Readiness};
use crate::wire::{self, BatchAnswer};

/// What the client's handles and its task share.
pub(crate) struct Shared {
    pub(crate) queue: Queue,
    pub(crate) ledger: Ledger,
    pub(crate) options: Options,
    pub(crate) http: reqwest::Client,
    pub(crate) events_url: Url,
    pub(crate) batch_url: Url,
    /// `Bearer <token>`, marked sensitive.
    pub(crate) authorization: HeaderValue,
    pub(crate) on_error: Option<OnError>,
    /// The batch size now: `max_batch`, or the token's burst when that is smaller.
    batch: AtomicUsize,
    pub(crate) dropped: AtomicU64,
    pub(crate) retried: AtomicU64,
}

/// An answer, read whole.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    /// The `q` of `RateLimit-Policy`: the token's burst.
    pub(crate) quota: Option<usize>,
    pub(crate) body: Vec<u8>,
}

impl Shared {
    pub(crate) fn new(
        options: Options,
        http: reqwest::Client,
        (events_url, batch_url): (Url, Url),
        authorization: HeaderValue,
        on_error: Option<OnError>,
    ) -> Self {
        Self {
            queue: Queue::new(options.max_queue, options.max_queue_bytes, options.max_batch),
            ledger: Ledger::new(),
            batch: AtomicUsize::new(options.max_batch),
            options,
            http,
            events_url,
            batch_url,
            authorization,
            on_error,
            dropped: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        }
    }

    /// Posts a JSON body (gzip-compressed when large) with the token; the answer read whole.
    pub(crate) async fn post(&self, url: &Url, body: Vec<u8>) -> Result<Reply, reqwest::Error> {
        let (body, gzipped) = wire::encode(body);
        let mut request = self
            .http
            .post(url.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json");
        if gzipped {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let response = request.body(body).send().await?;
        let status = response.status().as_u16();
        let retry_after = wire::retry_after(response.headers(), Utc::now());
        let quota = wire::events_quota(response.headers());
        let body = response.bytes().await?.to_vec();
        Ok(Reply { status, retry_after, quota, body })
    }

    /// Batches carry at most `quota` events from now on (and never more than `max_batch`).
    fn follow_quota(&self, quota: usize) {
        let batch = quota.clamp(1, self.options.max_batch);
        if self.batch.swap(batch, Ordering::Relaxed) != batch {
            debug!(batch, "batch size follows the token's burst");
            self.queue.set_batch(batch);
        }
    }

    /// Hands each failed event to `on_error`; a panicking callback does not stop the task.
    fn report(&self, errors: Vec<ItemError>) {
        let Some(on_error) = &self.on_error else {
            return;
        };
        for error in errors {
            if catch_unwind(AssertUnwindSafe(|| on_error(error))).is_err() {
                debug!("the on_error callback panicked");
            }
        }
    }

    /// Every event of `part` failed for one reason: reported, then recorded.
    fn fail(&self, part: Vec<Queued>, failure: &Failure) {
        let outcomes: Vec<_> = part.iter().map(|q| (q.seq, Outcome::Failed)).collect();
        let errors = part
            .into_iter()
            .map(|q| ItemError {
                idempotency_key: q.event.key,
                event_type: q.event.event_type,
                failure: failure.clone(),
            })
            .collect();
        // Reported before recorded: a flush that sees the events settled has reported them.
        self.report(errors);
        self.ledger.settle(&outcomes, None);
    }
}

/// The task was told to stop.
struct Stopped;

/// Sends batches until `stop` is cancelled.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    debug!("client task started");
    loop {
        let batch = shared.batch.load(Ordering::Relaxed);
        match shared.queue.readiness(batch, shared.options.flush_interval, Instant::now()) {
            Readiness::Now => {
                let events = shared.queue.take(batch);
                if deliver(&shared, events, &stop).await.is_err() {
                    break;
                }
            }
            Readiness::Empty => tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = shared.queue.woken() => {}
            },
            Readiness::At(due) => tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = shared.queue.woken() => {}
                () = tokio::time::sleep_until(due.into()) => {}
            },
        }
    }
    debug!(queued = shared.queue.len(), "client task stopped");
}

/// Delivers a batch, in parts when it is over the token's burst or too large.
async fn deliver(
    shared: &Shared,
    events: Vec<Queued>,
    stop: &CancellationToken,
) -> Result<(), Stopped> {
    let mut parts = VecDeque::from([events]);
    while let Some(part) = parts.pop_front() {
        if let Some(pieces) = send_part(shared, part, stop).await? {
            for piece in pieces.into_iter().rev() {
                parts.push_front(piece);
            }
        }
    }
    Ok(())
}

/// What one request of a batch came to.
#[derive(Debug)]
enum Answer {
    /// `200`: one result per event.
    Answered { answer: BatchAnswer, quota: Option<usize> },
    /// `429` without `Retry-After`: more events than the token's burst, which is `quota`.
    OverBurst { quota: Option<usize> },
    /// `413`: the body is too large.
    TooLarge(Problem),
    /// No answer, `408`, `429` with `Retry-After`, `5xx`, or an unreadable `200`.
    Retry { retry_after: Option<Duration>, last: String },
    /// Any other status: no retry can change it.
    Refused(Problem),
}

fn classify(reply: Reply, events: usize) -> Answer {
    match reply.status {
        200 => match serde_json::from_slice::<BatchAnswer>(&reply.body) {
            Ok(answer) if answer.results.len() == events => {
                Answer::Answered { answer, quota: reply.quota }
            }
            _ => Answer::Retry { retry_after: None, last: "an unreadable 200 answer".into() },
        },
        429 if reply.retry_after.is_none() => Answer::OverBurst { quota: reply.quota },
        413 => Answer::TooLarge(Problem::from_answer(413, &reply.body)),
        status if retryable_status(status) => {
            Answer::Retry { retry_after: reply.retry_after, last: format!("status {status}") }
        }
        status => Answer::Refused(Problem::from_answer(status, &reply.body)),
    }
}

/// Sends one part until it is answered, refused, split or given up on. `Some` holds the
/// pieces to send instead.
async fn send_part(
    shared: &Shared,
    part: Vec<Queued>,
    stop: &CancellationToken,
) -> Result<Option<Vec<Vec<Queued>>>, Stopped> {
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        if attempts > 0 {
            shared.retried.fetch_add(part.len() as u64, Ordering::Relaxed);
        }
        attempts += 1;
        let answer = tokio::select! {
            biased;
            () = stop.cancelled() => return Err(Stopped),
            answer = post_batch(shared, &part) => answer,
        };
        let (retry_after, last) = match answer {
            Answer::Answered { answer, quota } => {
                if let Some(quota) = quota {
                    shared.follow_quota(quota);
                }
                settle(shared, part, answer, attempts);
                return Ok(None);
            }
            Answer::OverBurst { quota: Some(quota) } if quota >= 1 && quota < part.len() => {
                debug!(events = part.len(), quota, "batch over the token's burst, split");
                shared.follow_quota(quota);
                return Ok(Some(pieces(part, quota)));
            }
            Answer::OverBurst { .. } => (None, "status 429 without Retry-After".to_owned()),
            Answer::TooLarge(_) if part.len() > 1 => {
                debug!(events = part.len(), "batch too large, split in two");
                let half = part.len().div_ceil(2);
                return Ok(Some(pieces(part, half)));
            }
            Answer::TooLarge(problem) | Answer::Refused(problem) => {
                debug!(events = part.len(), status = problem.status, "batch refused");
                shared.fail(part, &Failure::Refused(problem));
                return Ok(None);
            }
            Answer::Retry { retry_after, last } => (retry_after, last),
        };
        let elapsed = started.elapsed();
        let limit = shared.options.max_retry_time;
        if elapsed >= limit {
            debug!(events = part.len(), attempts, last = %last, "batch given up");
            shared.fail(part, &Failure::GaveUp { attempts, elapsed, last });
            return Ok(None);
        }
        let delay = backoff(&shared.options, attempts, retry_after).min(limit - elapsed);
        debug!(
            events = part.len(),
            attempts,
            delay_ms = delay.as_millis() as u64,
            last = %last,
            "batch will be retried"
        );
        tokio::select! {
            biased;
            () = stop.cancelled() => return Err(Stopped),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One request: the events with `sent_at` now.
async fn post_batch(shared: &Shared, part: &[Queued]) -> Answer {
    let body = wire::batch_body(part.iter().map(|q| q.event.json.as_str()), &sent_at(Utc::now()));
    trace!(events = part.len(), bytes = body.len(), "posting a batch");
    match shared.post(&shared.batch_url, body).await {
        Ok(reply) => {
            trace!(events = part.len(), status = reply.status, "batch answer");
            classify(reply, part.len())
        }
        Err(error) => Answer::Retry { retry_after: None, last: transport_kind(&error).to_owned() },
    }
}

/// Records each event's result; rejected ones go to `on_error` first.
fn settle(shared: &Shared, part: Vec<Queued>, answer: BatchAnswer, attempts: u32) {
    let mut outcomes = Vec::with_capacity(part.len());
    let mut errors = Vec::new();
    let (mut accepted, mut deduplicated) = (0usize, 0usize);
    for (queued, result) in part.into_iter().zip(answer.results) {
        if result.is_ok() {
            accepted += usize::from(!result.deduplicated);
            deduplicated += usize::from(result.deduplicated);
            let outcome = Outcome::Delivered { deduplicated: result.deduplicated };
            outcomes.push((queued.seq, outcome));
        } else {
            outcomes.push((queued.seq, Outcome::Failed));
            errors.push(ItemError {
                idempotency_key: queued.event.key,
                event_type: queued.event.event_type,
                failure: Failure::Rejected { errors: result.errors, event_id: result.event_id },
            });
        }
    }
    debug!(
        events = outcomes.len(),
        accepted,
        deduplicated,
        rejected = errors.len(),
        attempts,
        clock_skew_ms = answer.clock_skew_ms,
        "batch answered"
    );
    shared.report(errors);
    shared.ledger.settle(&outcomes, answer.clock_skew_ms);
}

/// `part` in pieces of at most `size` events, in order.
fn pieces(part: Vec<Queued>, size: usize) -> Vec<Vec<Queued>> {
    let mut pieces = Vec::with_capacity(part.len().div_ceil(size));
    let mut rest = part.into_iter().peekable();
    while rest.peek().is_some() {
        pieces.push(rest.by_ref().take(size).collect());
    }
    pieces
}

/// The wait before the next attempt, after `attempts` failed ones: full jitter (a random time
/// up to `retry_initial × 2^(attempts-1)`, at most `retry_max`), never less than the server's
/// `Retry-After`.
fn backoff(options: &Options, attempts: u32, retry_after: Option<Duration>) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    let ceiling = options.retry_initial.saturating_mul(1 << doublings).min(options.retry_max);
    let jittered = ceiling.mul_f64(fastrand::f64());
    retry_after.map_or(jittered, |wait| wait.max(jittered))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Prepared;

    fn reply(status: u16, retry_after: Option<u64>, quota: Option<usize>, body: &str) -> Reply {
        Reply {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            quota,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn answers_are_classified_as_the_contract_says() {
        let ok = r#"{"results":[{"status":"ok","event_id":"evt_1","received_at":"2025-12-22T10:30:00Z","deduplicated":false}],"accepted":1,"deduplicated":0,"rejected":0}"#;
        assert!(matches!(classify(reply(200, None, Some(5), ok), 1), Answer::Answered { .. }));
        assert!(
            matches!(classify(reply(200, None, None, ok), 2), Answer::Retry { .. }),
            "a result missing"
        );
        assert!(matches!(
            classify(reply(429, None, Some(10), "{}"), 20),
            Answer::OverBurst { quota: Some(10) }
        ));
        for (status, retry_after) in [(429, Some(2)), (408, None), (500, None), (503, Some(1))] {
            match classify(reply(status, retry_after, None, "{}"), 1) {
                Answer::Retry { retry_after: wait, .. } => {
                    assert_eq!(wait, retry_after.map(Duration::from_secs), "{status}")
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        for status in [400, 401, 403, 404, 415, 422, 302] {
            match classify(reply(status, None, None, "{}"), 1) {
                Answer::Refused(problem) => assert_eq!(problem.status, status),
                other => panic!("{status}: {other:?}"),
            }
        }
        assert!(matches!(classify(reply(413, None, None, "{}"), 3), Answer::TooLarge(_)));
    }

    #[test]
    fn the_backoff_grows_with_full_jitter_up_to_its_cap_and_honours_retry_after() {
        let options = Options {
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            ..Options::default()
        };
        for attempts in 1..40 {
            let ceiling = (Duration::from_millis(100) * 2u32.pow(attempts.min(20) - 1))
                .min(Duration::from_secs(1));
            let wait = backoff(&options, attempts, None);
            assert!(wait <= ceiling, "attempt {attempts}: {wait:?} over {ceiling:?}");
            let told = Duration::from_secs(3);
            assert!(backoff(&options, attempts, Some(told)) >= told, "attempt {attempts}");
        }
    }

    #[test]
    fn pieces_keep_the_order_and_the_size() {
        let part: Vec<Queued> = (0..7)
            .map(|seq| Queued {
                seq,
                enqueued_at: Instant::now(),
                event: Prepared {
                    key: seq.to_string(),
                    event_type: "t".into(),
                    occurred_at: chrono::Utc::now().fixed_offset(),
                    json: "{}".into(),
                },
            })
            .collect();
        let sizes: Vec<Vec<u64>> =
            pieces(part, 3).iter().map(|p| p.iter().map(|q| q.seq).collect()).collect();
        assert_eq!(sizes, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    }
}
