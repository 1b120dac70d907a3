//! Starting the real application for a test.

use std::path::PathBuf;
use std::time::Duration;

use intake_api::auth::issue_token;
use intake_api::settings::Settings;
use intake_api::startup::{Application, Backend};
use intake_domain::{Scope, TenantId, TokenId, TokenStore};
use intake_storage::{PgStore, PoolSettings};
use reqwest::header::CONTENT_TYPE;
use reqwest::{RequestBuilder, Response};
use serde_json::{json, Value};
use sqlx::PgPool;

/// The dev token of the local profile.
pub const DEV_TOKEN: &str = "test_123";

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// The local profile, listening on a free port.
pub fn local_settings() -> Settings {
    let mut settings = Settings::load_profile(&config_dir(), "local").expect("local profile loads");
    settings.server.port = 0;
    settings.server.workers = 2;
    settings
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
}

/// Starts the server over the test's database with the local profile.
pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, local_settings()).await
}

pub async fn spawn_app_with(pool: PgPool, settings: Settings) -> TestApp {
    let backend = Backend::postgres(PgStore::new(pool.clone()), settings.group_commit.settings());
    let app = Application::build_with(&settings, backend).expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp { address, client: reqwest::Client::new(), pool }
}

/// Starts the server over a database that does not answer.
pub async fn spawn_app_without_database() -> TestApp {
    let settings = local_settings();
    let pool_settings =
        PoolSettings { max_connections: 2, acquire_timeout: Duration::from_millis(500) };
    let store = PgStore::connect_lazy("postgres://postgres@127.0.0.1:1/none", &pool_settings)
        .expect("valid url");
    let pool = store.pool().clone();
    let app = Application::build_with(
        &settings,
        Backend::postgres(store, settings.group_commit.settings()),
    )
    .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp { address, client: reqwest::Client::new(), pool }
}

/// The quick start's event.
pub fn quick_start_event() -> Value {
    json!({
        "event_type": "user.created",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": "0f3f6f9b-9f0b-4c8d-9f18-5b6a9d9d2d41",
        "data": {"user_id": "u_12345", "plan": "pro"}
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A POST to /v1/events with the dev token and a JSON content type, body not yet set.
    pub fn post_events(&self) -> RequestBuilder {
        self.client
            .post(self.url("/v1/events"))
            .bearer_auth(DEV_TOKEN)
            .header(CONTENT_TYPE, "application/json")
    }

    /// A POST to /v1/events/batch with the dev token and a JSON content type, body not yet set.
    pub fn post_batch(&self) -> RequestBuilder {
        self.client
            .post(self.url("/v1/events/batch"))
            .bearer_auth(DEV_TOKEN)
            .header(CONTENT_TYPE, "application/json")
    }

    /// Posts `body` as JSON with the dev token.
    pub async fn post_event(&self, body: &Value) -> Response {
        self.post_events().body(body.to_string()).send().await.expect("request sent")
    }

    /// `GET path` with the dev token, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .bearer_auth(DEV_TOKEN)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json")
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }
}

/// Reads a problem response, checking what every problem must carry.
#[track_caller]
pub fn assert_problem_shape(status: u16, headers: &reqwest::header::HeaderMap, body: &Value) {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(content_type, "application/problem+json", "body {body}");
    assert_eq!(body["status"], status, "body {body}");
    for member in ["type", "title", "detail", "request_id"] {
        assert!(body[member].is_string(), "problem lacks {member}: {body}");
    }
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    assert_eq!(body["request_id"].as_str(), request_id, "problem names the request id");
}

/// Sends the request and returns its status and problem body, checked for shape, expecting
/// the given status and problem type slug.
pub async fn expect_problem(
    request: RequestBuilder,
    status: u16,
    slug: &str,
) -> (reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("request sent");
    let got = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("status {got}: body is not JSON: {text:?}"));
    assert_eq!(got, status, "body {body}");
    assert_problem_shape(status, &headers, &body);
    assert_eq!(body["type"], format!("/docs/troubleshooting#{slug}"), "body {body}");
    (headers, body)
}

/// Creates a token for `tenant` with `scopes` in the test's database; returns its secret.
pub async fn create_token(pool: &PgPool, tenant: &str, scopes: Vec<Scope>) -> (String, TokenId) {
    let issued = issue_token(TenantId::parse(tenant).expect("tenant"), "test".into(), scopes)
        .expect("token");
    PgStore::new(pool.clone()).create(&issued.token).await.expect("stored");
    (issued.secret, issued.token.id)
}

/// Creates a token for `tenant` with every scope and a rate limit of its own.
pub async fn create_limited_token(
    pool: &PgPool,
    tenant: &str,
    per_second: u32,
    burst: u32,
) -> (String, TokenId) {
    let mut issued = issue_token(
        TenantId::parse(tenant).expect("tenant"),
        "limited".into(),
        Scope::ALL.to_vec(),
    )
    .expect("token");
    issued.token.limit = intake_domain::RateLimit::new(per_second, burst);
    PgStore::new(pool.clone()).create(&issued.token).await.expect("stored");
    (issued.secret, issued.token.id)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `bytes`, gzip-compressed.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("compress")
}

/// Sends raw bytes on a fresh connection and reads the answer until the server closes it.
pub async fn raw_exchange(address: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .expect("connect");
    // The server may answer and close before it has read everything (a header block over the
    // limit); a failed write is then expected, and the answer is still there to read.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await;
    assert!(read.is_ok(), "no answer within 5 s to {:?}", String::from_utf8_lossy(request));
    String::from_utf8_lossy(&answer).into_owned()
}
