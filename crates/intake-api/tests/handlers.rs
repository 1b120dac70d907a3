//! The handlers over in-memory repositories: fast checks of the HTTP mapping. The real
//! PostgreSQL path is covered by the `api` tests.

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::test::{call_service, init_service, read_body_json, TestRequest};
use intake_api::auth::issue_token;
use intake_api::routes::{self, Access, Endpoint};
use intake_api::settings::Settings;
use intake_api::startup::{app, AppData, Backend};
use intake_domain::memory::{MemoryEventStore, MemorySchemaStore, MemoryTokenStore};
use intake_domain::{
    NewToken, Scope, StoreError, TenantId, TokenHash, TokenId, TokenRecord, TokenStore,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

fn state(events: Arc<MemoryEventStore>) -> AppData {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let settings = Settings::load_profile(&dir, "local").expect("local profile");
    let backend = Backend::unpooled(
        events.clone(),
        Arc::new(MemoryTokenStore::default()),
        events.clone(),
        Arc::new(MemorySchemaStore::default()),
        events,
    );
    AppData::new(&settings, &backend).expect("app data")
}

fn event(plan: &str) -> Value {
    json!({
        "event_type": "user.created",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": "k-1",
        "data": {"plan": plan}
    })
}

fn post(body: &Value) -> TestRequest {
    TestRequest::post()
        .uri("/v1/events")
        .insert_header(("Authorization", "Bearer test_123"))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body.to_string())
}

#[actix_web::test]
async fn a_replay_returns_the_stored_answer_with_the_replay_header() {
    let events = Arc::new(MemoryEventStore::default());
    let service = init_service(app(state(events.clone()))).await;
    let first = call_service(&service, post(&event("pro")).to_request()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = read_body_json(first).await;
    let again = call_service(&service, post(&event("pro")).to_request()).await;
    assert_eq!(
        again.headers().get("idempotent-replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let again: Value = read_body_json(again).await;
    assert_eq!(again["event_id"], first["event_id"]);
    assert_eq!(again["received_at"], first["received_at"]);
    assert_eq!(events.len(), 1);
}

#[actix_web::test]
async fn a_reused_key_maps_to_422_with_the_original_id() {
    let events = Arc::new(MemoryEventStore::default());
    let service = init_service(app(state(events.clone()))).await;
    let first: Value =
        read_body_json(call_service(&service, post(&event("pro")).to_request()).await).await;
    let reused = call_service(&service, post(&event("free")).to_request()).await;
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = read_body_json(reused).await;
    assert_eq!(problem["event_id"], first["event_id"]);
}

#[actix_web::test]
async fn an_unavailable_store_maps_to_503_with_retry_after() {
    let events = Arc::new(MemoryEventStore::default());
    events.set_unavailable(true);
    let service = init_service(app(state(events.clone()))).await;
    let response = call_service(&service, post(&event("pro")).to_request()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let request_id =
        response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let problem: Value = read_body_json(response).await;
    assert_eq!(problem["request_id"].as_str(), request_id.as_deref());
    assert_eq!(problem["type"], "/docs/troubleshooting#service-unavailable");
}

#[actix_web::test]
async fn an_unauthenticated_request_never_reaches_the_store() {
    let events = Arc::new(MemoryEventStore::default());
    let service = init_service(app(state(events.clone()))).await;
    let request = TestRequest::post()
        .uri("/v1/events")
        .insert_header(("Content-Type", "application/json"))
        .set_payload(event("pro").to_string())
        .to_request();
    let response = call_service(&service, request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(events.is_empty());
}

#[actix_web::test]
async fn the_troubleshooting_guide_is_served() {
    let service = init_service(app(state(Arc::new(MemoryEventStore::default())))).await;
    let response =
        call_service(&service, TestRequest::get().uri("/docs/troubleshooting").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").cloned();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("text/html; charset=utf-8")
    );
    let body = String::from_utf8_lossy(&actix_web::test::read_body(response).await).into_owned();
    assert!(body.contains("Event Intake API issues</h1>"), "{body}");
    // Every problem's `type` link (/docs/troubleshooting#<slug>) opens at its section.
    for kind in intake_api::problem::ProblemKind::ALL {
        let anchor = format!("<h2 id=\"{}\">", kind.slug);
        assert!(body.contains(&anchor), "no {anchor} in the guide");
    }
}

#[actix_web::test]
async fn health_ready_and_metrics_answer() {
    let events = Arc::new(MemoryEventStore::default());
    let service = init_service(app(state(events.clone()))).await;
    let health = call_service(&service, TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = call_service(&service, TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(ready.status(), StatusCode::OK);
    call_service(&service, post(&event("pro")).to_request()).await;
    let metrics = call_service(&service, TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = String::from_utf8_lossy(&actix_web::test::read_body(metrics).await).into_owned();
    assert!(text.contains(r#"intake_events_total{outcome="accepted"} 1"#), "{text}");
    assert!(text.contains(r#"route="/v1/events",status="200""#), "{text}");

    events.set_unavailable(true);
    let ready = call_service(&service, TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health = call_service(&service, TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(health.status(), StatusCode::OK, "liveness does not depend on the database");
}

/// A path of the table with each `{parameter}` filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| if segment.starts_with('{') { "x1" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

fn request(endpoint: &Endpoint, token: Option<&str>) -> TestRequest {
    let mut request = TestRequest::default()
        .method(endpoint.http_method())
        .uri(&concrete(&endpoint.path))
        .insert_header(("Content-Type", "application/json"))
        .set_payload("{}");
    if let Some(token) = token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    request
}

#[actix_web::test]
async fn every_endpoint_enforces_the_access_the_route_table_declares() {
    let tokens = Arc::new(MemoryTokenStore::default());
    let mut lacking = Vec::new();
    for scope in Scope::ALL {
        let others: Vec<Scope> = Scope::ALL.into_iter().filter(|s| *s != scope).collect();
        let issued = issue_token(TenantId::parse("acme").expect("tenant"), "t".into(), others)
            .expect("token");
        tokens.create(&issued.token).await.expect("stored");
        lacking.push((scope, issued.secret));
    }
    let events = Arc::new(MemoryEventStore::default());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let settings = Settings::load_profile(&dir, "local").expect("local profile");
    let backend = Backend::unpooled(
        events.clone(),
        tokens,
        events.clone(),
        Arc::new(MemorySchemaStore::default()),
        events.clone(),
    );
    let service = init_service(app(AppData::new(&settings, &backend).expect("data"))).await;

    let table = routes::table();
    assert!(table.iter().any(|e| e.access != Access::Public), "the table has scoped endpoints");
    for endpoint in &table {
        let anonymous = call_service(&service, request(endpoint, None).to_request()).await.status();
        match endpoint.access {
            Access::Public => {
                assert_ne!(anonymous, StatusCode::UNAUTHORIZED, "{endpoint:?} is public");
            }
            Access::Scope(scope) => {
                assert_eq!(anonymous, StatusCode::UNAUTHORIZED, "{endpoint:?} without a token");
                let (_, secret) =
                    lacking.iter().find(|(s, _)| *s == scope).expect("a token without the scope");
                let without =
                    call_service(&service, request(endpoint, Some(secret)).to_request()).await;
                assert_eq!(without.status(), StatusCode::FORBIDDEN, "{endpoint:?} lacking {scope}");
                let with =
                    call_service(&service, request(endpoint, Some("test_123")).to_request()).await;
                assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&with.status()),
                    "{endpoint:?} with every scope answered {}",
                    with.status()
                );
            }
        }
    }
    assert!(events.is_empty(), "no request without the scope stored anything");
}

#[test]
fn every_endpoint_is_documented_by_its_own_handler() {
    for endpoint in routes::table() {
        let operation = (endpoint.operation)();
        let name = endpoint.handler.rsplit("::").next().unwrap_or_default();
        assert_eq!(operation.operation_id.as_deref(), Some(name), "{endpoint:?}");
    }
}

/// A token store that counts its lookups.
#[derive(Debug, Default)]
struct CountingTokens {
    inner: MemoryTokenStore,
    lookups: AtomicUsize,
}

#[async_trait::async_trait]
impl TokenStore for CountingTokens {
    async fn find_active(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.find_active(hash).await
    }
    async fn create(&self, token: &NewToken) -> Result<TokenRecord, StoreError> {
        self.inner.create(token).await
    }
    async fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.list().await
    }
    async fn revoke(&self, id: TokenId) -> Result<bool, StoreError> {
        self.inner.revoke(id).await
    }
    async fn set_limit(
        &self,
        id: TokenId,
        limit: Option<intake_domain::RateLimit>,
    ) -> Result<bool, StoreError> {
        self.inner.set_limit(id, limit).await
    }
}

#[actix_web::test]
async fn a_flood_of_one_bad_token_costs_one_lookup() {
    let tokens = Arc::new(CountingTokens::default());
    let events = Arc::new(MemoryEventStore::default());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let settings = Settings::load_profile(&dir, "local").expect("local profile");
    assert!(settings.auth.cache_ttl_ms >= 100, "the local profile caches lookups");
    let backend = Backend::unpooled(
        events.clone(),
        tokens.clone(),
        events.clone(),
        Arc::new(MemorySchemaStore::default()),
        events.clone(),
    );
    let service = init_service(app(AppData::new(&settings, &backend).expect("data"))).await;
    for _ in 0..50 {
        let request = post(&event("pro"))
            .insert_header(("Authorization", "Bearer not-a-real-token"))
            .to_request();
        assert_eq!(call_service(&service, request).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(tokens.lookups.load(Ordering::SeqCst), 1, "unknown tokens are cached too");
    assert!(events.is_empty());
}
