//! Ingest, the one use case every way of sending events goes through (intake's JSON, CloudEvents
//! in every mode, single events and batches): spend the token's budget, parse, check the type's
//! schema, apply the replay policy, store, and tell the observers (metrics, the live debugger).
//!
//! The budget comes first and cannot be skipped: storing takes a [`Permit`], and only
//! [`Ingest::spend`] makes one.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use intake_domain::cloudevent::{self, Mode};
use intake_domain::{
    BatchOutcome, Budget, EventId, EventStore, FieldError, IngestError, Ingested, KeyBesideBody,
    Limits, NewEvent, SchemaViolation, SenderClock, StoreError, TenantId,
};
use serde_json::{Map, Value};

use crate::checks::{CheckBudget, SchemaChecks, Verdict};
use crate::limits::{Account, RateLimits};
use crate::schemas::SchemaCache;

/// The most events one batch may hold.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// How a request's `sent_at` is named in errors.
pub const SENT_AT: &str = "sent_at";

/// An event stored (or found stored), and how far the sender's clock is off when the request
/// said when it was sent (§15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<T> {
    /// What storing gave.
    pub outcome: T,
    /// Received minus `sent_at`, in milliseconds; `None` without `sent_at`.
    pub clock_skew_ms: Option<i64>,
}

/// An event as the edge read it, before intake judged it.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// intake's JSON: the body's object, and the key sent beside it (a single event's
    /// `Idempotency-Key` header), if the edge takes one.
    Plain {
        /// The event's fields.
        fields: Map<String, Value>,
        /// Where else the key may come from.
        beside: Option<KeyBesideBody>,
    },
    /// A CloudEvent's attributes (with `data`).
    CloudEvent {
        /// The attributes as the mode names them.
        attributes: Map<String, Value>,
        /// How they came.
        mode: Mode,
    },
    /// A batch item that is not a JSON object; its JSON type.
    NotAnObject(&'static str),
}

/// Leave to store events for a tenant: spent from its token's budget by [`Ingest::spend`].
#[derive(Debug)]
#[must_use = "a permit is spent budget; store what it was spent for"]
pub struct Permit {
    tenant: TenantId,
    events: u32,
    budget: Option<Budget>,
}

impl Permit {
    /// The tenant the events are stored for.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The budget left after spending, for the answer's fields; `None` when limits are off.
    pub fn budget(&self) -> Option<Budget> {
        self.budget
    }
}

/// Why intake did not store an event (or a batch).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The token's budget leaves too little; nothing was spent.
    #[error("the token's rate limit leaves {} of the {cost} events asked for", budget.remaining)]
    RateLimited {
        /// The budget as it stands.
        budget: Budget,
        /// What was asked for.
        cost: u32,
    },
    /// The request could not be read as events (the edge's problem, named by its slug).
    #[error("the request could not be read ({slug})")]
    Unread {
        /// The status the edge answers with.
        status: u16,
        /// The problem's slug.
        slug: &'static str,
    },
    /// Fields of the event are invalid.
    #[error("the event has {} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// A batch item that is not a JSON object.
    #[error("a batch item is {0}, not a JSON object")]
    NotAnObject(&'static str),
    /// The data violates its type's schema.
    #[error("the data violates version {version} of its type's schema")]
    SchemaViolation {
        /// The version checked against.
        version: u32,
        /// Every violation.
        violations: Vec<SchemaViolation>,
    },
    /// Checking the data against its type's schema took longer than the budget: the data may
    /// well satisfy it, but intake cannot tell within the time a check may take.
    #[error(
        "checking the data against version {version} of its type's schema takes longer than \
         the {} ms a check may take",
        budget.as_millis()
    )]
    CheckTooSlow {
        /// The version checked against.
        version: u32,
        /// The budget it went over.
        budget: std::time::Duration,
    },
    /// Every slot for heavy schema checks stayed taken for the whole budget: the request may be
    /// retried.
    #[error(
        "the server is running as many heavy schema checks as it may ({at_once}) and none \
         ended in time"
    )]
    ChecksBusy {
        /// Heavy checks a server runs at once.
        at_once: usize,
    },
    /// The key holds another payload.
    #[error("idempotency key already used for event {original} with a different payload")]
    KeyReused {
        /// The event that holds the key.
        original: EventId,
    },
    /// Storage failed: the event was not judged, and the request may be retried.
    #[error(transparent)]
    Failed(IngestError),
}

impl From<IngestError> for Refusal {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::KeyReused { original } => Self::KeyReused { original },
            other => Self::Failed(other),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Failed(e.into())
    }
}

/// What is told what ingest decided: metrics, the live debugger.
pub trait IngestObserver: std::fmt::Debug + Send + Sync {
    /// An event was stored, or found stored (`ingested.deduplicated`).
    fn accepted(&self, tenant: &TenantId, event: &NewEvent, ingested: &Ingested);
    /// A request or a batch item was refused (never [`Refusal::Failed`]: storage failing is not
    /// a judgement).
    fn refused(&self, tenant: &TenantId, refusal: &Refusal);
}

/// The ingest use case over the domain's ports.
#[derive(Debug)]
pub struct Ingest {
    events: Arc<dyn EventStore>,
    schemas: Arc<SchemaCache>,
    checks: SchemaChecks,
    limits: RateLimits,
    validation: Limits,
    observers: Vec<Arc<dyn IngestObserver>>,
}

impl Ingest {
    /// Ingest into `events`, checking `schemas`, spending from `limits`, with `validation`'s
    /// limits on each event.
    pub fn new(
        events: Arc<dyn EventStore>,
        schemas: Arc<SchemaCache>,
        limits: RateLimits,
        validation: Limits,
    ) -> Self {
        Self {
            events,
            schemas,
            checks: SchemaChecks::default(),
            limits,
            validation,
            observers: Vec::new(),
        }
    }

    /// Checks events against their schemas within `budget` (by default 250 ms, two heavy
    /// checks at a time).
    pub fn checking_within(mut self, budget: CheckBudget) -> Self {
        self.checks = SchemaChecks::new(budget);
        self
    }

    /// Tells `observer` every outcome from now on.
    pub fn observed_by(mut self, observer: Arc<dyn IngestObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    /// The rate budgets (reads consult them too).
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Spends `cost` events of the account's budget: the permit to store them, or
    /// [`Refusal::RateLimited`] with nothing spent.
    pub async fn spend(&self, account: &Account, cost: u32) -> Result<Permit, Refusal> {
        let budget = self.limits.spend(account, cost).await;
        match budget {
            Some(budget) if !budget.allowed => {
                Err(self.refuse(&account.tenant, Refusal::RateLimited { budget, cost }))
            }
            _ => Ok(Permit { tenant: account.tenant.clone(), events: cost, budget }),
        }
    }

    /// Whether the account has room for at least one event, spending nothing: a request whose
    /// cost is known only once its body is read (a batch) is refused before it is read when
    /// the budget is empty. The budget as it stands, `None` when limits are off.
    pub async fn admit(&self, account: &Account) -> Result<Option<Budget>, Refusal> {
        match self.limits.spend(account, 0).await {
            Some(budget) if budget.remaining == 0 => {
                Err(self.refuse(&account.tenant, Refusal::RateLimited { budget, cost: 1 }))
            }
            budget => Ok(budget),
        }
    }

    /// Tells the observers of a refusal the edge made itself (a body it could not read), and
    /// hands it back. A refusal that judges nothing (storage failing, the server too busy to
    /// check) is not told.
    pub fn refuse(&self, tenant: &TenantId, refusal: Refusal) -> Refusal {
        if !matches!(refusal, Refusal::Failed(_) | Refusal::ChecksBusy { .. }) {
            for observer in &self.observers {
                observer.refused(tenant, &refusal);
            }
        }
        refusal
    }

    fn accept(&self, tenant: &TenantId, event: &NewEvent, ingested: &Ingested) {
        for observer in &self.observers {
            observer.accepted(tenant, event, ingested);
        }
    }

    /// Stores one event once: the stored event (the original on a retry), or why not.
    /// `sent_at` is when the request says it was sent, if it says (§15).
    pub async fn single(
        &self,
        permit: Permit,
        incoming: Incoming,
        sent_at: Option<Value>,
    ) -> Result<Stored<Ingested>, Refusal> {
        let tenant = &permit.tenant;
        let now = Utc::now();
        let clock = sent_at.map(|value| SenderClock::read(&value, now, SENT_AT));
        let clock_skew_ms = clock.as_ref().and_then(|c| c.as_ref().ok()).map(|c| c.skew_ms());
        let outcome = async {
            let event = match clock {
                None => self.parse(incoming, now, None)?,
                Some(Ok(clock)) => self.parse(incoming, now, Some(clock))?,
                // Every problem at once: the event's own, and sent_at's.
                Some(Err(invalid)) => {
                    let mut errors = match self.parse(incoming, now, None) {
                        Err(Refusal::Invalid(errors)) => errors,
                        Err(other) => return Err(other),
                        Ok(_) => Vec::new(),
                    };
                    errors.push(invalid);
                    return Err(Refusal::Invalid(errors));
                }
            };
            let event = match self.check(tenant, event).await? {
                Checked::Passed(event) => *event,
                Checked::Refused { event, refusal } => {
                    return match self.replay_of(tenant, &event).await? {
                        Some(ingested) => Ok((event, ingested)),
                        None => Err(refusal),
                    };
                }
            };
            let ingested = self.events.ingest(tenant, &event, EventId::generate(now)).await?;
            Ok((Arc::new(event), ingested))
        }
        .await;
        match outcome {
            Ok((event, ingested)) => {
                self.accept(tenant, &event, &ingested);
                Ok(Stored { outcome: ingested, clock_skew_ms })
            }
            Err(refusal) => Err(self.refuse(tenant, refusal)),
        }
    }

    /// Stores each item of a batch on its own, the valid ones in one call to storage: one
    /// outcome per item, in order. `sent_at`, once for the batch, is when the request says it
    /// was sent. Only storage failing, or an invalid `sent_at`, fails the whole batch.
    pub async fn batch(
        &self,
        permit: Permit,
        items: Vec<Incoming>,
        sent_at: Option<Value>,
    ) -> Result<Stored<Vec<Result<Ingested, Refusal>>>, Refusal> {
        let tenant = &permit.tenant;
        if items.len() > usize::try_from(permit.events).unwrap_or(usize::MAX) {
            return Err(Refusal::Failed(IngestError::Unknown(anyhow::anyhow!(
                "a permit for {} events cannot store {}",
                permit.events,
                items.len()
            ))));
        }
        let now = Utc::now();
        let clock = match sent_at.map(|value| SenderClock::read(&value, now, SENT_AT)) {
            Some(Err(invalid)) => return Err(self.refuse(tenant, Refusal::Invalid(vec![invalid]))),
            Some(Ok(clock)) => Some(clock),
            None => None,
        };
        let mut results: Vec<Option<Result<Ingested, Refusal>>> = Vec::with_capacity(items.len());
        let mut valid = Vec::with_capacity(items.len());
        let mut positions = Vec::with_capacity(items.len());
        for (position, item) in items.into_iter().enumerate() {
            let event = match self.parse(item, now, clock) {
                Ok(event) => event,
                Err(refusal) => {
                    results.push(Some(Err(self.refuse(tenant, refusal))));
                    continue;
                }
            };
            match self.check(tenant, event).await? {
                Checked::Passed(event) => {
                    valid.push((*event, EventId::generate(now)));
                    positions.push(position);
                    results.push(None);
                }
                Checked::Refused { event, refusal } => {
                    results.push(Some(match self.replay_of(tenant, &event).await? {
                        Some(ingested) => {
                            self.accept(tenant, &event, &ingested);
                            Ok(ingested)
                        }
                        None => Err(self.refuse(tenant, refusal)),
                    }));
                }
            }
        }
        let outcomes = if valid.is_empty() {
            Vec::new()
        } else {
            self.events.ingest_batch(tenant, &valid).await?
        };
        if outcomes.len() != valid.len() {
            return Err(Refusal::Failed(IngestError::Unknown(anyhow::anyhow!(
                "storage answered {} outcomes for {} events",
                outcomes.len(),
                valid.len()
            ))));
        }
        for ((position, outcome), (event, _)) in positions.into_iter().zip(outcomes).zip(&valid) {
            results[position] = Some(match outcome.into_result() {
                Ok(ingested) => {
                    self.accept(tenant, event, &ingested);
                    Ok(ingested)
                }
                Err(error) => Err(self.refuse(tenant, error.into())),
            });
        }
        Ok(Stored {
            outcome: results.into_iter().flatten().collect(),
            clock_skew_ms: clock.map(|c| c.skew_ms()),
        })
    }

    /// The event an incoming one describes, or every problem with it. When the sender's clock
    /// is off by more than `limits.skew_correction_min`, `occurred_at` is corrected by the skew
    /// (§15), and the limit on how far ahead it may be applies to the corrected instant.
    fn parse(
        &self,
        incoming: Incoming,
        now: DateTime<Utc>,
        clock: Option<SenderClock>,
    ) -> Result<NewEvent, Refusal> {
        let correction = clock.and_then(|c| c.correction(&self.validation));
        // corrected = reported + c must not be ahead of now + max: reported ≤ (now − c) + max.
        let horizon = now - correction.unwrap_or_default();
        let event = match incoming {
            Incoming::Plain { fields, beside } => {
                NewEvent::parse(fields, beside, horizon, &self.validation)
            }
            Incoming::CloudEvent { attributes, mode } => {
                cloudevent::parse(attributes, mode, horizon, &self.validation)
            }
            Incoming::NotAnObject(found) => return Err(Refusal::NotAnObject(found)),
        }
        .map_err(Refusal::Invalid)?;
        match clock {
            Some(clock) => event.clocked(clock, correction).map_err(|e| Refusal::Invalid(vec![e])),
            None => Ok(event),
        }
    }

    /// Checks an event's data against the latest schema of its type, if the type has one,
    /// within the check budget.
    async fn check(&self, tenant: &TenantId, event: NewEvent) -> Result<Checked, Refusal> {
        let Some(schema) = self.schemas.active(tenant, event.event_type()).await? else {
            return Ok(Checked::Passed(Box::new(event)));
        };
        let version = schema.version;
        let event = Arc::new(event);
        let refusal = match self.checks.check(tenant, &schema, &event).await {
            Verdict::Passed => {
                // The check's share is gone: this takes the event back without a copy.
                let event = Arc::unwrap_or_clone(event);
                return Ok(Checked::Passed(Box::new(event.checked_against(version))));
            }
            Verdict::Violates(violations) => Refusal::SchemaViolation { version, violations },
            Verdict::OverBudget => {
                Refusal::CheckTooSlow { version, budget: self.checks.budget().max_time }
            }
            Verdict::Busy => {
                return Err(Refusal::ChecksBusy { at_once: self.checks.budget().heavy_at_once })
            }
            Verdict::Failed(why) => {
                return Err(Refusal::Failed(IngestError::Unknown(anyhow::anyhow!(
                    "checking an event against its schema failed: {why}"
                ))))
            }
        };
        Ok(Checked::Refused { event, refusal })
    }

    /// The stored event this one is a retry of, if any: a retry is answered as a replay even
    /// when a schema registered since would reject it.
    async fn replay_of(
        &self,
        tenant: &TenantId,
        event: &NewEvent,
    ) -> Result<Option<Ingested>, Refusal> {
        let holder = self.events.key_holder(tenant, event.idempotency_key()).await?;
        Ok(holder.and_then(|holder| match holder.outcome_for(event, false) {
            BatchOutcome::Stored(ingested) => Some(ingested),
            BatchOutcome::KeyReused { .. } => None,
        }))
    }
}

/// What checking an event against its type's schema found.
enum Checked {
    /// No schema, or the data satisfies it (the event then records the version).
    Passed(Box<NewEvent>),
    /// The data violates the schema, or could not be checked within the budget.
    Refused {
        /// The event as parsed (shared with a check that is still running, if it went over
        /// its budget).
        event: Arc<NewEvent>,
        /// The refusal, unless the event turns out to be a retry.
        refusal: Refusal,
    },
}
