//! How long events and keys live, and erasure (contract §14): the values, and what one
//! maintenance run did.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::event::EventType;
use crate::validation::{ErrorCode, FieldError};

/// How long events and their keys are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events received longer ago than this are removed; `None` keeps them forever.
    pub events: Option<Duration>,
    /// A key is remembered at least this long after its event was received.
    pub keys: Duration,
}

/// What one maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Event partitions prepared ahead.
    pub partitions_created: u64,
    /// Expired event partitions dropped.
    pub partitions_dropped: u64,
    /// Events removed with them (and expired ones found outside any prepared range).
    pub events_dropped: u64,
    /// Key generations started.
    pub key_generations_started: u64,
    /// Key generations dropped whole, and the keys they held.
    pub key_generations_dropped: u64,
    /// Keys forgotten with them.
    pub keys_dropped: u64,
    /// When the next run has something to do (a range to prepare or drop, a rotation), at the
    /// latest; `None` when nothing is scheduled.
    pub next_due: Option<DateTime<Utc>>,
}

/// Storage's lifetime state, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifetimeStats {
    /// When the oldest stored event was received; `None` when there is none.
    pub oldest_event: Option<DateTime<Utc>>,
    /// Event partitions (the default one included).
    pub partitions: u64,
    /// Live key generations.
    pub key_generations: u64,
    /// Erasures by content waiting or running.
    pub erasures_pending: u64,
    /// Erasures by content finished.
    pub erasures_done: u64,
}

/// What `DELETE /v1/events/{id}` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EraseOutcome {
    /// The event was stored and is erased now.
    Erased,
    /// The event had been erased before.
    AlreadyErased,
    /// The tenant never had an event with this id (or it expired).
    NotFound,
}

crate::id::prefixed_id!(
    /// An erasure by content's id, written `era_` + 32 hex digits.
    ErasureId,
    InvalidErasureId,
    "era_",
    "an erasure id"
);

/// Where an erasure by content stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasureStatus {
    /// Made, not started.
    Pending,
    /// Erasing, step by step.
    Running,
    /// Every matching event is erased.
    Done,
    /// Stopped for good (`error` says why).
    Failed,
}

impl ErasureStatus {
    /// The status on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// The status a stored name stands for.
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Done, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// An erasure by content as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ErasureRecord {
    /// Its id.
    pub erasure_id: ErasureId,
    /// What it matches.
    pub request: ErasureRequest,
    /// Where it stands.
    pub status: ErasureStatus,
    /// Events erased so far.
    pub erased: u64,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it ended (done or failed).
    pub finished_at: Option<DateTime<Utc>>,
}

/// The longest JSON Pointer an erasure takes, in bytes.
pub const MAX_POINTER_BYTES: usize = 1024;
/// The longest string `equals` takes, in bytes.
pub const MAX_EQUALS_BYTES: usize = 4096;

/// What `POST /v1/erasures` asks for: every event whose data holds `equals` at `pointer` (and
/// of `event_type`, when given).
#[derive(Debug, Clone, PartialEq)]
pub struct ErasureRequest {
    pointer: String,
    path: Vec<String>,
    equals: Value,
    event_type: Option<EventType>,
}

impl ErasureRequest {
    /// Reads a request body; every problem is reported at once.
    pub fn parse(body: Value) -> Result<Self, Vec<FieldError>> {
        let Value::Object(mut map) = body else {
            return Err(vec![FieldError::new(
                "body",
                ErrorCode::InvalidType,
                "the body must be a JSON object with pointer and equals",
            )]);
        };
        let mut errors = Vec::new();
        let pointer = match map.remove("pointer") {
            None => {
                errors.push(missing("pointer"));
                None
            }
            Some(Value::String(pointer)) => match pointer_tokens(&pointer) {
                Ok(path) => Some((pointer, path)),
                Err(error) => {
                    errors.push(error);
                    None
                }
            },
            Some(_) => {
                errors.push(FieldError::new(
                    "pointer",
                    ErrorCode::InvalidType,
                    "pointer must be a string, a JSON Pointer into data such as \"/user_id\"",
                ));
                None
            }
        };
        let equals = match map.remove("equals") {
            None => {
                errors.push(missing("equals"));
                None
            }
            Some(value) => match scalar(value) {
                Ok(value) => Some(value),
                Err(error) => {
                    errors.push(error);
                    None
                }
            },
        };
        let event_type = match map.remove("event_type") {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => match EventType::parse(&raw) {
                Ok(event_type) => Some(event_type),
                Err(error) => {
                    errors.push(error);
                    None
                }
            },
            Some(_) => {
                errors.push(FieldError::new(
                    "event_type",
                    ErrorCode::InvalidType,
                    "event_type must be a string",
                ));
                None
            }
        };
        unknown_fields(&map, &mut errors);
        match (pointer, equals) {
            (Some((pointer, path)), Some(equals)) if errors.is_empty() => {
                Ok(Self { pointer, path, equals, event_type })
            }
            _ => Err(errors),
        }
    }

    /// Puts a stored request back together.
    pub fn from_parts(
        pointer: String,
        equals: Value,
        event_type: Option<EventType>,
    ) -> Result<Self, FieldError> {
        let path = pointer_tokens(&pointer)?;
        Ok(Self { pointer, path, equals, event_type })
    }

    /// The JSON Pointer as sent.
    pub fn pointer(&self) -> &str {
        &self.pointer
    }

    /// The pointer's reference tokens, unescaped.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// The scalar to match.
    pub fn equals(&self) -> &Value {
        &self.equals
    }

    /// Only events of this type, when given.
    pub fn event_type(&self) -> Option<&EventType> {
        self.event_type.as_ref()
    }

    /// Whether a value found at the pointer matches: the same JSON scalar (numbers as written,
    /// as everywhere in intake: `1.0` and `1` differ).
    pub fn matches(&self, found: &Value) -> bool {
        found == &self.equals
    }

    /// Whether an event's data matches.
    pub fn matches_data(&self, data: &Value) -> bool {
        let mut at = data;
        for token in &self.path {
            at = match at {
                Value::Object(map) => match map.get(token) {
                    Some(next) => next,
                    None => return false,
                },
                Value::Array(items) => match array_index(token).and_then(|i| items.get(i)) {
                    Some(next) => next,
                    None => return false,
                },
                _ => return false,
            };
        }
        self.matches(at)
    }
}

fn missing(field: &str) -> FieldError {
    FieldError::new(field, ErrorCode::MissingField, format!("{field} is required"))
}

fn unknown_fields(map: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    for name in map.keys() {
        errors.push(FieldError::new(
            name.chars().take(64).collect::<String>(),
            ErrorCode::UnknownField,
            "unknown field; an erasure takes pointer, equals and event_type",
        ));
    }
}

/// A JSON Pointer's reference tokens (RFC 6901), or why it is not one. The empty pointer (the
/// whole of data, always an object) is refused: it could never match a scalar.
fn pointer_tokens(pointer: &str) -> Result<Vec<String>, FieldError> {
    let invalid =
        |why: &str| FieldError::new("pointer", ErrorCode::InvalidPointer, format!("pointer {why}"));
    if pointer.len() > MAX_POINTER_BYTES {
        return Err(invalid(&format!("must be at most {MAX_POINTER_BYTES} bytes long")));
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(invalid(
            "must be a JSON Pointer into data starting with '/', like \"/user_id\"",
        ));
    };
    if pointer.chars().any(char::is_control) {
        return Err(invalid("must not hold control characters"));
    }
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                match c {
                    '~' => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(invalid("holds '~' not followed by 0 or 1")),
                    },
                    c => out.push(c),
                }
            }
            Ok(out)
        })
        .collect()
}

/// An array index token: `0` or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let digits = token.bytes().all(|b| b.is_ascii_digit());
    if !digits || token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

fn scalar(value: Value) -> Result<Value, FieldError> {
    match &value {
        Value::Object(_) | Value::Array(_) => Err(FieldError::new(
            "equals",
            ErrorCode::InvalidType,
            "equals must be a JSON scalar: a string, number, boolean or null",
        )),
        Value::String(s) if s.len() > MAX_EQUALS_BYTES => Err(FieldError::new(
            "equals",
            ErrorCode::InvalidLength,
            format!("equals must be at most {MAX_EQUALS_BYTES} bytes long"),
        )),
        Value::Number(n) if n.to_string().len() > MAX_EQUALS_BYTES => Err(FieldError::new(
            "equals",
            ErrorCode::InvalidLength,
            format!("equals must be at most {MAX_EQUALS_BYTES} characters long"),
        )),
        _ => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pointer_is_unescaped_into_its_tokens() {
        let request =
            ErasureRequest::parse(json!({"pointer": "/a~1b/~0c/0", "equals": 1})).expect("valid");
        assert_eq!(request.path(), ["a/b", "~c", "0"]);
        assert!(request.matches_data(&json!({"a/b": {"~c": [1]}})));
        assert!(!request.matches_data(&json!({"a/b": {"~c": [2]}})));
    }

    #[test]
    fn numbers_match_as_written_and_strings_by_value() {
        let request = ErasureRequest::parse(json!({"pointer": "/n", "equals": 1})).expect("valid");
        assert!(request.matches_data(&json!({"n": 1})));
        assert!(!request.matches_data(&json!({"n": "1"})));
        let request =
            ErasureRequest::parse(json!({"pointer": "/user_id", "equals": "u_1"})).expect("valid");
        assert!(request.matches_data(&json!({"user_id": "u_1"})));
        assert!(!request.matches_data(&json!({"user": {"user_id": "u_1"}})));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = ErasureRequest::parse(
            json!({"pointer": "user_id", "equals": {"a": 1}, "event_type": "", "extra": 1}),
        )
        .expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["pointer", "equals", "event_type", "extra"]);
        assert!(ErasureRequest::parse(json!({})).is_err());
        assert!(ErasureRequest::parse(json!({"pointer": "", "equals": 1})).is_err());
        assert!(ErasureRequest::parse(json!({"pointer": "/~2", "equals": 1})).is_err());
        let digits: Value =
            serde_json::from_str(&"9".repeat(MAX_EQUALS_BYTES + 1)).expect("number");
        assert!(ErasureRequest::parse(json!({"pointer": "/n", "equals": digits})).is_err());
        let digits: Value = serde_json::from_str(&"9".repeat(MAX_EQUALS_BYTES)).expect("number");
        assert!(ErasureRequest::parse(json!({"pointer": "/n", "equals": digits})).is_ok());
    }

    #[test]
    fn an_erasure_id_reads_back_as_written() {
        let id = ErasureId::generate(Utc::now());
        assert_eq!(id.to_string().parse::<ErasureId>(), Ok(id));
        assert!("evt_0193e4a27c1e7d3a9f005c2b8f1e4a10".parse::<ErasureId>().is_err());
    }
}
