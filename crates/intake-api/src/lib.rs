//! The intake HTTP service and its command line.
//!
//! This crate owns the edge: configuration, telemetry, authentication, request bodies, routes
//! and the RFC 9457 problems. Handlers reach storage only through the repository traits of
//! `intake-domain`; the PostgreSQL adapters are chosen once, in [`startup`]. No SQL lives here.

pub mod auth;
pub mod body;
pub mod cli;
pub mod connection;
pub mod cursor;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod rate_limit;
pub mod relay;
pub mod request_context;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod wire;

pub use intake_service::{debugger, schemas};
