//! The real server on a random port against a real PostgreSQL, spoken to over HTTP.

mod auth;
mod batch;
mod binary;
mod errors;
mod helpers;
mod ingest;
mod openapi;
mod ops;
mod outage;
mod read;
