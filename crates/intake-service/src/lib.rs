//! intake's application layer: the use cases, on the domain's ports.
//!
//! [`ingest::Ingest`] owns what happens to events sent by any route (intake's JSON, CloudEvents,
//! single or batched): the rate budget, parsing, the schema check, the replay policy, storing,
//! and telling the observers (metrics, the live debugger). It knows nothing of HTTP (no actix)
//! or SQL (no sqlx): the HTTP edge reads requests into [`ingest::Incoming`] values and turns
//! outcomes into answers; storage sits behind the domain's traits.

pub mod auth;
pub mod background;
pub mod checks;
pub mod debugger;
pub mod ingest;
pub mod labels;
pub mod lifetime;
pub mod limits;
pub mod schemas;
pub mod view;

pub use background::Background;
pub use checks::{CheckBudget, SchemaChecks};
pub use debugger::DebugHub;
pub use ingest::{Incoming, Ingest, IngestObserver, Permit, Refusal, Stored, MAX_BATCH_ITEMS};
pub use lifetime::{ErasureRefusal, LastRun, Lifetime};
pub use limits::{Account, RateLimits};
pub use schemas::{ActiveSchema, SchemaCache};
pub use view::{format_timestamp, Accepted, EventBody};
