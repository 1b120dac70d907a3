//! The real server on a random port against a real PostgreSQL, spoken to over HTTP.

mod auth;
mod batch;
mod binary;
mod client;
mod clock;
mod cloudevents;
mod crash;
mod debugger;
mod errors;
mod helpers;
mod ingest;
mod interop;
mod lifetime;
mod load;
mod openapi;
mod ops;
mod outage;
mod process;
mod rate_limits;
mod read;
mod relay;
mod schema_driven;
mod schemas;
mod security;
