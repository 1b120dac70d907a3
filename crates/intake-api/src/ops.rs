//! The operational endpoints: liveness, readiness, metrics and the troubleshooting guide.

use actix_web::http::{header, Method};
use actix_web::{web, HttpResponse};
use intake_domain::Readiness;
use serde_json::json;

use crate::problem::ApiError;
use crate::routes::resource;
use crate::startup::AppState;

/// The troubleshooting guide that every problem `type` points into.
const TROUBLESHOOTING: &str = include_str!("../../../docs/troubleshooting.md");

/// Mounts `/healthz`, `/readyz`, `/metrics` and `/docs/troubleshooting`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz", &[Method::GET]).route(web::get().to(healthz)))
        .service(resource("/readyz", &[Method::GET]).route(web::get().to(readyz)))
        .service(resource("/metrics", &[Method::GET]).route(web::get().to(metrics)))
        .service(
            resource("/docs/troubleshooting", &[Method::GET]).route(web::get().to(troubleshooting)),
        );
}

/// `GET /healthz`: the process is alive and serving; touches nothing else.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers and every migration is applied.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.health.readiness().await? {
        Readiness::Ready => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        Readiness::MigrationsPending { pending } => Err(ApiError::MigrationsPending(pending)),
    }
}

/// `GET /metrics`: the Prometheus text exposition.
async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = state
        .metrics
        .render(state.health.pool_stats())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("rendering metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .body(body))
}

async fn troubleshooting() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/markdown; charset=utf-8"))
        .body(TROUBLESHOOTING)
}
