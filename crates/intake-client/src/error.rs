//! What can go wrong: building a client, queueing an event, sending one now, and an event the
//! background task could not deliver.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The base URL is not an absolute `http` or `https` URL.
    #[error("the base URL {0:?} is not an absolute http or https URL")]
    InvalidUrl(String),
    /// The token is empty or holds characters an HTTP header cannot carry (it is not shown).
    #[error("the token is empty or holds characters an HTTP header cannot carry")]
    InvalidToken,
    /// An option is out of its range.
    #[error("{0}")]
    InvalidOption(&'static str),
    /// The client starts a tokio task, so it must be built inside a tokio runtime.
    #[error("the client must be built inside a tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be built (its TLS configuration).
    #[error("the HTTP client could not be built")]
    Http(#[source] reqwest::Error),
}

/// Why [`crate::Client::send`] did not queue an event.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// The queue was full and the policy is [`crate::OnFull::Drop`]: the event was dropped
    /// (and counted in `dropped`).
    #[error("the queue is full; the event was dropped")]
    QueueFull,
    /// The queue stayed full for the whole [`crate::OnFull::Block`] timeout (counted in
    /// `dropped`).
    #[error("the queue stayed full for {0:?}; the event was not queued")]
    Timeout(Duration),
    /// The event alone is larger, as JSON, than the queue may hold in bytes.
    #[error("the event is {bytes} bytes as JSON, more than the queue holds ({limit} bytes)")]
    TooLarge {
        /// The event's size as JSON.
        bytes: usize,
        /// `max_queue_bytes`.
        limit: usize,
    },
    /// The event could not be written as JSON.
    #[error("the event cannot be written as JSON")]
    Json(#[source] serde_json::Error),
}

/// Why [`crate::Client::send_now`] has no answer to give.
#[derive(Debug, thiserror::Error)]
pub enum SendNowError {
    /// The server refused the event (or could not take it now: see
    /// [`SendNowError::is_retryable`]); the problem says why.
    #[error("the server refused the event: {0}")]
    Refused(Problem),
    /// No answer: the connection failed or timed out. The event may or may not be stored; the
    /// same key sent again is safe.
    #[error("no answer from the server ({})", transport_kind(.0))]
    Transport(#[source] reqwest::Error),
    /// A `200` whose body is not the answer the contract describes.
    #[error("the server's answer (status {status}) could not be read")]
    UnexpectedAnswer {
        /// The HTTP status.
        status: u16,
    },
    /// The event could not be prepared.
    #[error(transparent)]
    Send(#[from] SendError),
}

impl SendNowError {
    /// Whether sending the same event again (same key) may succeed: no answer, `408`, `429` or
    /// a `5xx`.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Refused(problem) => retryable_status(problem.status),
            Self::Transport(_) | Self::UnexpectedAnswer { .. } => true,
            Self::Send(_) => false,
        }
    }
}

/// The statuses worth a retry with the same keys.
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// What kind of transport failure, in words that carry no URL or body.
pub(crate) fn transport_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "the connection failed"
    }
}

/// An RFC 9457 problem, as the server answers a refused request (§5 of the contract).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Problem {
    /// The HTTP status.
    #[serde(default)]
    pub status: u16,
    /// The problem type's URI (`/docs/troubleshooting#validation-failed`).
    #[serde(rename = "type", default)]
    pub problem_type: String,
    /// A short summary of the kind of problem.
    #[serde(default)]
    pub title: String,
    /// What exactly went wrong with this request.
    #[serde(default)]
    pub detail: Option<String>,
    /// One entry per problem with a field.
    #[serde(default)]
    pub errors: Vec<FieldError>,
    /// The request's id, to quote to the server's operators.
    #[serde(default)]
    pub request_id: Option<String>,
    /// The event that holds the key, when the key was reused with another payload.
    #[serde(default)]
    pub event_id: Option<String>,
}

impl Problem {
    /// The problem read from an answer's body, or one made of the status alone when the body is
    /// not a problem (a proxy's page).
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> Self {
        let mut problem = serde_json::from_slice::<Problem>(body).unwrap_or_default();
        problem.status = status;
        if problem.title.is_empty() {
            problem.title = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("unexpected status")
                .to_owned();
        }
        problem
    }

    /// The last part of the type URI (`validation-failed`), or the type itself.
    pub fn slug(&self) -> &str {
        self.problem_type.rsplit_once('#').map_or(self.problem_type.as_str(), |(_, slug)| slug)
    }
}

/// `400 validation-failed: every problem … (event_type: … (invalid_format))`.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if !self.slug().is_empty() {
            write!(f, " {}", self.slug())?;
        }
        write!(f, ": {}", self.detail.as_deref().unwrap_or(&self.title))?;
        if !self.errors.is_empty() {
            write!(f, " ({})", FieldErrors(&self.errors))?;
        }
        Ok(())
    }
}

/// One problem with one field, as a problem's or a batch item's `errors` list it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FieldError {
    /// The field (`event_type`, `occurred_at`, `data`, …), when the problem has one.
    #[serde(default)]
    pub field: Option<String>,
    /// A stable code (`invalid_timestamp`, `schema_violation`, …).
    #[serde(default)]
    pub code: String,
    /// What is wrong, for people.
    #[serde(default)]
    pub message: String,
    /// Where in the event a schema violation is (`/data/plan`).
    #[serde(default)]
    pub pointer: Option<String>,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.pointer.as_deref().or(self.field.as_deref());
        match at {
            Some(at) => write!(f, "{at}: {} ({})", self.message, self.code),
            None => write!(f, "{} ({})", self.message, self.code),
        }
    }
}

/// Field errors joined with `; `.
pub(crate) struct FieldErrors<'a>(pub(crate) &'a [FieldError]);

impl fmt::Display for FieldErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// An event the background task could not deliver, as the `on_error` callback receives it.
/// It is counted in `failed` and never sent again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("event {idempotency_key} ({event_type}) failed: {failure}")]
pub struct ItemError {
    /// The event's idempotency key, as `send` returned it.
    pub idempotency_key: String,
    /// The event's type.
    pub event_type: String,
    /// Why it failed.
    pub failure: Failure,
}

/// Why an event failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The server rejected this item of a batch (`"status":"error"`): invalid fields, a schema
    /// violation, or a key already used for another payload (`event_id` names its event).
    #[error("rejected: {}", FieldErrors(errors))]
    Rejected {
        /// Every problem with the item.
        errors: Vec<FieldError>,
        /// The event that holds the key, when the key was reused.
        event_id: Option<String>,
    },
    /// The server refused the whole request the event was in with a status no retry can change
    /// (`400`, `401`, `403`, `413`, …).
    #[error("its request was refused: {0}")]
    Refused(Problem),
    /// No acknowledgement before `max_retry_time` ran out.
    #[error("not acknowledged after {attempts} attempts in {elapsed:?} (last: {last})")]
    GaveUp {
        /// Requests made.
        attempts: u32,
        /// From the first attempt to giving up.
        elapsed: Duration,
        /// The last failure (a status or the kind of transport error).
        last: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_reads_its_body_and_shows_its_slug_detail_and_errors() {
        let body = br#"{"type":"/docs/troubleshooting#validation-failed","title":"Invalid event",
            "status":400,"detail":"1 field is invalid","request_id":"r-1",
            "errors":[{"field":"event_type","code":"invalid_format","message":"bad"}]}"#;
        let problem = Problem::from_answer(400, body);
        assert_eq!(problem.slug(), "validation-failed");
        assert_eq!(problem.request_id.as_deref(), Some("r-1"));
        assert_eq!(
            problem.to_string(),
            "400 validation-failed: 1 field is invalid (event_type: bad (invalid_format))"
        );
    }

    #[test]
    fn a_body_that_is_no_problem_still_gives_its_status() {
        let problem = Problem::from_answer(502, b"<html>Bad gateway</html>");
        assert_eq!(problem.status, 502);
        assert_eq!(problem.to_string(), "502: Bad Gateway");
    }
}
