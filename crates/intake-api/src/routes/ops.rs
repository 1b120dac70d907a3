//! The operational endpoints: liveness, readiness, metrics, the OpenAPI document and the
//! troubleshooting guide.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use intake_domain::Readiness;
use serde_json::json;

use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::state::AppState;

/// The OpenAPI document as served, built once at start-up from the route table.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub String);

/// The troubleshooting guide that every problem `type` points into.
const TROUBLESHOOTING: &str = include_str!("../../../../docs/troubleshooting.md");

/// `GET /healthz`: the process is alive and serving; touches nothing else.
#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Liveness",
    responses((status = 200, description = "The process is alive", body = Object, example = json!({"status": "ok"}))))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers and every migration is applied.
#[utoipa::path(get, path = "/readyz", tag = "operations", summary = "Readiness",
    responses((status = 200, description = "Ready to serve", body = Object, example = json!({"status": "ready"}))))]
pub(crate) async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.health.readiness().await? {
        Readiness::Ready => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        Readiness::MigrationsPending { pending } => Err(ApiError::MigrationsPending(pending)),
    }
}

/// `GET /metrics`: the Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(metrics: web::Data<Metrics>) -> Result<HttpResponse, ApiError> {
    let body = metrics
        .render()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("rendering metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .body(body))
}

/// `GET /docs/troubleshooting`: the guide that problem types point into.
#[utoipa::path(get, path = "/docs/troubleshooting", tag = "operations", summary = "Troubleshooting guide",
    responses((status = 200, description = "The guide, one section per problem type", body = String, content_type = "text/markdown")))]
pub(crate) async fn troubleshooting() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/markdown; charset=utf-8"))
        .body(TROUBLESHOOTING)
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", summary = "OpenAPI document",
    responses((status = 200, description = "OpenAPI 3.1", body = Object, content_type = "application/json")))]
pub(crate) async fn openapi(document: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document.0.clone())
}
