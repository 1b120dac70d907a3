//! Turning a request body into a [`NewEvent`]: every field parsed into its value type, every
//! problem reported at once rather than only the first.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::clock::{Correction, SenderClock};
use crate::event::{json_type_name, EventData, EventType, IdempotencyKey, OccurredAt};
use crate::fingerprint::Fingerprint;
use crate::validation::{ErrorCode, FieldError, Limits};

/// The fields an event body may carry; anything else is rejected by name.
pub const KNOWN_FIELDS: [&str; 4] = ["event_type", "occurred_at", "idempotency_key", "data"];

/// An idempotency key that came with a body but outside it (the API's `Idempotency-Key` header,
/// say), already parsed by whoever read it, and how messages name the place it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyBesideBody {
    /// The key, or why it was refused; `None` when the request did not send one.
    pub key: Option<Result<IdempotencyKey, FieldError>>,
    /// Where it comes from, for messages (`"the Idempotency-Key header"`).
    pub source: &'static str,
}

/// A valid event ready to be stored, with the fingerprint of its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    event_type: EventType,
    occurred_at: OccurredAt,
    idempotency_key: IdempotencyKey,
    data: EventData,
    fingerprint: Fingerprint,
    schema_version: Option<u32>,
    context: Option<Value>,
    clock: Option<SenderClock>,
    correction: Option<Correction>,
}

impl NewEvent {
    /// Builds an event from its parts and computes its fingerprint.
    pub fn new(
        event_type: EventType,
        occurred_at: OccurredAt,
        idempotency_key: IdempotencyKey,
        data: EventData,
    ) -> Self {
        let fingerprint = Fingerprint::of(&event_type, &occurred_at, &data);
        Self {
            event_type,
            occurred_at,
            idempotency_key,
            data,
            fingerprint,
            schema_version: None,
            context: None,
            clock: None,
            correction: None,
        }
    }

    /// Turns a request body (already known to be a JSON object) into an event, reporting every
    /// problem at once. `beside` is where else the key may come from, when anywhere: the body's
    /// key, when both are given, must equal it.
    pub fn parse(
        body: Map<String, Value>,
        beside: Option<KeyBesideBody>,
        now: DateTime<Utc>,
        limits: &Limits,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut fields = body;

        let mut unknown: Vec<String> =
            fields.keys().filter(|k| !KNOWN_FIELDS.contains(&k.as_str())).cloned().collect();
        unknown.sort();
        for name in unknown {
            fields.remove(&name);
            errors.push(unknown_field(name));
        }

        let event_type = take_string(&mut fields, "event_type")
            .and_then(|raw| EventType::parse(&raw))
            .map_err(|e| errors.push(e))
            .ok();
        let occurred_at = take_string(&mut fields, "occurred_at")
            .and_then(|raw| OccurredAt::parse(&raw, now, limits))
            .map_err(|e| errors.push(e))
            .ok();
        let idempotency_key = resolve_key(&mut fields, beside).map_err(|e| errors.push(e)).ok();
        let data = match fields.remove("data") {
            Some(value) => EventData::parse(value, limits).map_err(|e| errors.push(e)).ok(),
            None => {
                errors.push(missing("data", "a JSON object"));
                None
            }
        };

        match (event_type, occurred_at, idempotency_key, data) {
            (Some(t), Some(o), Some(k), Some(d)) if errors.is_empty() => Ok(Self::new(t, o, k, d)),
            _ => Err(errors),
        }
    }

    /// What happened.
    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }

    /// When it happened.
    pub fn occurred_at(&self) -> OccurredAt {
        self.occurred_at
    }

    /// The client's key for this event.
    pub fn idempotency_key(&self) -> &IdempotencyKey {
        &self.idempotency_key
    }

    /// The payload.
    pub fn data(&self) -> &EventData {
        &self.data
    }

    /// The fingerprint of the payload, compared when a key is used again.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The version of its type's schema that its data was checked against, if any. Not part
    /// of the fingerprint: a retry is a retry whichever schema was current.
    pub fn schema_version(&self) -> Option<u32> {
        self.schema_version
    }

    /// The CloudEvents context it came with (`id`, `source`, `subject`, extensions …), if it
    /// came as a CloudEvent. Not part of the fingerprint.
    pub fn context(&self) -> Option<&Value> {
        self.context.as_ref()
    }

    /// Records the CloudEvents context the event came with.
    pub fn with_context(mut self, context: Value) -> Self {
        self.context = Some(context);
        self
    }

    /// Records what the request said of the sender's clock and, when `correction` is given,
    /// moves `occurred_at` by it, keeping the reported instant. The fingerprint stays that of
    /// the payload as sent: a retry with a later `sent_at` is still a retry. Fails only when the
    /// corrected instant is out of range.
    pub fn clocked(
        mut self,
        clock: SenderClock,
        correction: Option<chrono::Duration>,
    ) -> Result<Self, FieldError> {
        if let Some(by) = correction {
            let reported = self.occurred_at;
            self.occurred_at = reported
                .shifted(by)
                .filter(|corrected| crate::event::writable_year(corrected.as_utc()))
                .ok_or_else(|| {
                    FieldError::new(
                        "occurred_at",
                        ErrorCode::InvalidTimestamp,
                        "occurred_at corrected for the sender's clock (by received minus \
                         sent_at) falls outside the years 0001 to 9999",
                    )
                })?;
            self.correction = Some(Correction { reported, sent_at: clock.sent_at() });
        }
        self.clock = Some(clock);
        Ok(self)
    }

    /// What the request said of the sender's clock, if it said anything.
    pub fn clock(&self) -> Option<&SenderClock> {
        self.clock.as_ref()
    }

    /// The instant as reported, when `occurred_at` was corrected for the sender's clock.
    pub fn correction(&self) -> Option<&Correction> {
        self.correction.as_ref()
    }

    /// Records that the data passed version `version` of its type's schema.
    pub fn checked_against(mut self, version: u32) -> Self {
        self.schema_version = Some(version);
        self
    }
}

fn missing(field: &str, what: &str) -> FieldError {
    FieldError::new(field, ErrorCode::MissingField, format!("{field} is required ({what})"))
}

fn unknown_field(name: String) -> FieldError {
    let suggestion = KNOWN_FIELDS
        .iter()
        .map(|known| (known, strsim::damerau_levenshtein(&name, known)))
        .filter(|(_, distance)| *distance <= 2)
        .min_by_key(|(_, distance)| *distance);
    let message = match suggestion {
        Some((known, _)) => format!("unknown field {name:?}; did you mean {known:?}?"),
        None => format!(
            "unknown field {name:?}; an event has only event_type, occurred_at, idempotency_key \
             and data"
        ),
    };
    FieldError::new(name, ErrorCode::UnknownField, message)
}

fn take_string(fields: &mut Map<String, Value>, field: &str) -> Result<String, FieldError> {
    match fields.remove(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(FieldError::new(
            field,
            ErrorCode::InvalidType,
            format!("{field} must be a string, not {}", json_type_name(&other)),
        )),
        None => Err(missing(field, "a string")),
    }
}

/// The key comes from the body, from beside it, or both; when both, they must agree.
fn resolve_key(
    fields: &mut Map<String, Value>,
    beside: Option<KeyBesideBody>,
) -> Result<IdempotencyKey, FieldError> {
    let from_body = match fields.remove("idempotency_key") {
        None => None,
        Some(Value::String(s)) => Some(IdempotencyKey::parse(&s)?),
        Some(other) => {
            return Err(FieldError::new(
                "idempotency_key",
                ErrorCode::InvalidType,
                format!("idempotency_key must be a string, not {}", json_type_name(&other)),
            ))
        }
    };
    let source = beside.as_ref().map(|b| b.source);
    let from_beside = beside.and_then(|b| b.key).transpose()?;
    match (from_body, from_beside) {
        (Some(body), Some(other)) if body != other => Err(FieldError::new(
            "idempotency_key",
            ErrorCode::IdempotencyKeyMismatch,
            format!("{} and the body's idempotency_key differ", source.unwrap_or("the key")),
        )),
        (Some(key), _) | (None, Some(key)) => Ok(key),
        (None, None) => Err(match source {
            Some(source) => {
                missing("idempotency_key", &format!("a string in the body or {source}"))
            }
            None => missing("idempotency_key", "a string"),
        }),
    }
}
