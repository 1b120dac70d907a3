//! Event schemas (contract §9) over real HTTP and PostgreSQL: versioning, every endpoint's
//! statuses and bodies, scopes, tenant isolation, violations in single events and batches,
//! replays across a schema change, hostile schemas, and a change reaching a second server.

use std::time::{Duration, Instant};

use intake_domain::Scope;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{create_token, spawn_app, TestApp, DEV_TOKEN};
use crate::process::{database_url, ServeProcess};

#[path = "../fixtures/signup.rs"]
mod signup;
use signup::{signup_data, signup_schema};

fn good_data() -> Value {
    signup_data(12345)
}

fn event(key: &str, event_type: &str, data: Value) -> Value {
    json!({
        "event_type": event_type,
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": key,
        "data": data,
    })
}

async fn call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.header(CONTENT_TYPE, "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("json") })
}

async fn put(app: &TestApp, event_type: &str, schema: &Value) -> (u16, Value) {
    call(app, DEV_TOKEN, reqwest::Method::PUT, &format!("/v1/schemas/{event_type}"), Some(schema))
        .await
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    call(app, DEV_TOKEN, reqwest::Method::GET, path, None).await
}

async fn delete(app: &TestApp, event_type: &str) -> (u16, Value) {
    call(app, DEV_TOKEN, reqwest::Method::DELETE, &format!("/v1/schemas/{event_type}"), None).await
}

async fn post(app: &TestApp, body: &Value) -> (u16, Value) {
    call(app, DEV_TOKEN, reqwest::Method::POST, "/v1/events", Some(body)).await
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn versions_follow_the_contract(pool: PgPool) {
    let app = spawn_app(pool).await;
    let v1 = json!({"type": "object"});
    let v2 = signup_schema();

    let (status, created) = put(&app, "user.signup", &v1).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["event_type"], "user.signup");
    assert_eq!(created["schema"], v1);
    assert!(created["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{created}");
    let (status, same) = put(&app, "user.signup", &v1).await;
    assert_eq!((status, &same["version"]), (200, &json!(1)), "unchanged: {same}");
    assert_eq!(same["created_at"], created["created_at"]);
    let (status, second) = put(&app, "user.signup", &v2).await;
    assert_eq!((status, &second["version"]), (201, &json!(2)));

    let (status, latest) = get(&app, "/v1/schemas/user.signup").await;
    assert_eq!((status, &latest["version"], &latest["schema"]), (200, &json!(2), &v2));
    let (status, first) = get(&app, "/v1/schemas/user.signup/versions/1").await;
    assert_eq!((status, &first["schema"]), (200, &v1));
    let (status, list) = get(&app, "/v1/schemas").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().expect("data").len(), 1, "{list}");
    assert_eq!(list["data"][0]["event_type"], "user.signup");
    assert_eq!(list["data"][0]["version"], 2);
    assert!(list["data"][0]["created_at"].is_string());
    assert!(list["data"][0].get("schema").is_none(), "the list is a summary: {list}");

    let (status, body) = delete(&app, "user.signup").await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(get(&app, "/v1/schemas/user.signup").await.0, 404);
    assert_eq!(get(&app, "/v1/schemas").await.1["data"], json!([]));
    assert_eq!(get(&app, "/v1/schemas/user.signup/versions/2").await.0, 200, "history stays");
    assert_eq!(delete(&app, "user.signup").await.0, 404, "already deleted");
    let (status, again) = put(&app, "user.signup", &v2).await;
    assert_eq!((status, &again["version"]), (201, &json!(3)), "numbering continues: {again}");

    for path in [
        "/v1/schemas/never.had",
        "/v1/schemas/never.had/versions/1",
        "/v1/schemas/user.signup/versions/99",
        "/v1/schemas/user.signup/versions/0",
        "/v1/schemas/user.signup/versions/one",
    ] {
        let (status, problem) = get(&app, path).await;
        assert_eq!(status, 404, "{path}: {problem}");
        assert_eq!(problem["type"], "/docs/troubleshooting#not-found");
    }
    assert_eq!(delete(&app, "never.had").await.0, 404);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn schema_endpoints_need_their_scopes_and_tenants_stay_apart(pool: PgPool) {
    let (events_only, _) =
        create_token(&pool, "dev", vec![Scope::EventsWrite, Scope::EventsRead]).await;
    let (reader, _) = create_token(&pool, "dev", vec![Scope::SchemasRead]).await;
    let (globex, _) = create_token(&pool, "globex", Scope::ALL.to_vec()).await;
    let app = spawn_app(pool).await;
    let schema = json!({"type": "object", "required": ["plan"]});
    use reqwest::Method;
    let put_path = "/v1/schemas/user.signup";
    assert_eq!(call(&app, &events_only, Method::PUT, put_path, Some(&schema)).await.0, 403);
    assert_eq!(call(&app, &events_only, Method::GET, "/v1/schemas", None).await.0, 403);
    assert_eq!(call(&app, &reader, Method::PUT, put_path, Some(&schema)).await.0, 403);
    assert_eq!(call(&app, &reader, Method::DELETE, put_path, None).await.0, 403);
    assert_eq!(put(&app, "user.signup", &schema).await.0, 201);
    assert_eq!(call(&app, &reader, Method::GET, put_path, None).await.0, 200);
    assert_eq!(call(&app, "nope", Method::GET, "/v1/schemas", None).await.0, 401);

    // Another tenant sees nothing, cannot delete it, and its events are not checked by it.
    assert_eq!(call(&app, &globex, Method::GET, put_path, None).await.0, 404);
    let (_, list) = call(&app, &globex, Method::GET, "/v1/schemas", None).await;
    assert_eq!(list["data"], json!([]));
    assert_eq!(call(&app, &globex, Method::DELETE, put_path, None).await.0, 404);
    let unchecked = event("g-1", "user.signup", json!({}));
    let (status, stored) = call(&app, &globex, Method::POST, "/v1/events", Some(&unchecked)).await;
    assert_eq!(status, 200, "{stored}");
    let (status, problem) = post(&app, &event("d-1", "user.signup", json!({}))).await;
    assert_eq!((status, &problem["type"]), (400, &json!("/docs/troubleshooting#schema-violation")));
    assert_eq!(get(&app, "/v1/schemas/user.signup").await.1["version"], 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_violating_event_is_told_every_violation_and_a_valid_one_records_the_version(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    assert_eq!(put(&app, "user.signup", &signup_schema()).await.0, 201);
    let bad = json!({"user_id": "x", "plan": "gold", "email": "a@example.com", "seats": 0,
                     "address": {"city": "Berlin"}});
    let (status, problem) = post(&app, &event("bad-1", "user.signup", bad)).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["type"], "/docs/troubleshooting#schema-violation");
    assert_eq!(problem["schema_version"], 1);
    let mut found: Vec<(String, String)> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            assert_eq!(e["field"], "data", "{e}");
            assert_eq!(e["code"], "schema_violation", "{e}");
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            (
                e["pointer"].as_str().expect("pointer").into(),
                e["schema_path"].as_str().expect("path").into(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("/data/address".to_owned(), "/properties/address/required".to_owned()),
            ("/data/plan".to_owned(), "/properties/plan/enum".to_owned()),
            ("/data/seats".to_owned(), "/properties/seats/minimum".to_owned()),
            ("/data/user_id".to_owned(), "/properties/user_id/pattern".to_owned()),
        ]
    );
    assert_eq!(app.event_count().await, 0, "nothing stored");

    let (status, accepted) = post(&app, &event("good-1", "user.signup", good_data())).await;
    assert_eq!(status, 200, "{accepted}");
    let id = accepted["event_id"].as_str().expect("id");
    let (_, read) = get(&app, &format!("/v1/events/{id}")).await;
    assert_eq!(read["schema_version"], 1);
    let (_, other) = post(&app, &event("other-1", "page.viewed", json!({"any": "thing"}))).await;
    let (_, read) =
        get(&app, &format!("/v1/events/{}", other["event_id"].as_str().expect("id"))).await;
    assert_eq!(read["schema_version"], Value::Null);
    // The feed hands out an event once every older transaction of the server has ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    let versions = loop {
        let (_, feed) = get(&app, "/v1/events").await;
        let versions: Vec<Value> = feed["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|e| e["schema_version"].clone())
            .collect();
        if versions.len() == 2 || Instant::now() > deadline {
            break versions;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(versions, [json!(1), Value::Null]);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn batch_items_are_checked_each_on_its_own(pool: PgPool) {
    let app = spawn_app(pool).await;
    assert_eq!(put(&app, "user.signup", &signup_schema()).await.0, 201);
    let batch = json!({"events": [
        event("b-1", "user.signup", good_data()),
        event("b-2", "user.signup", json!({"plan": "gold"})),
        event("b-3", "page.viewed", json!({})),
    ]});
    let (status, body) =
        call(&app, DEV_TOKEN, reqwest::Method::POST, "/v1/events/batch", Some(&batch)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["accepted"].clone(), body["rejected"].clone()),
        (json!(2), json!(1)),
        "{body}"
    );
    assert_eq!(body["results"][0]["status"], "ok");
    assert_eq!(body["results"][2]["status"], "ok");
    let errors = body["results"][1]["errors"].as_array().expect("errors");
    let mut paths: Vec<&str> = errors.iter().filter_map(|e| e["schema_path"].as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/properties/plan/enum", "/required", "/required"], "{errors:?}");
    assert!(errors.iter().all(|e| e["code"] == "schema_violation" && e["pointer"].is_string()));
    assert_eq!(app.event_count().await, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_retry_is_a_replay_even_when_a_newer_schema_rejects_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let original = event("early-1", "user.signup", json!({"plan": "legacy"}));
    let (status, first) = post(&app, &original).await;
    assert_eq!(status, 200);
    assert_eq!(put(&app, "user.signup", &signup_schema()).await.0, 201);

    let response = app.post_events().body(original.to_string()).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let replay: Value = response.json().await.expect("json");
    assert_eq!(replay["event_id"], first["event_id"]);
    assert_eq!(replay["deduplicated"], true);
    let batch = json!({"events": [original]});
    let (_, body) =
        call(&app, DEV_TOKEN, reqwest::Method::POST, "/v1/events/batch", Some(&batch)).await;
    assert_eq!(body["results"][0]["deduplicated"], true, "{body}");
    assert_eq!(body["results"][0]["event_id"], first["event_id"]);

    // The same data under a new key is a new event, and the schema applies to it.
    let (status, _) = post(&app, &event("early-2", "user.signup", json!({"plan": "legacy"}))).await;
    assert_eq!(status, 400);
    // The same key with other data is no retry either.
    let (status, _) = post(&app, &event("early-1", "user.signup", json!({"plan": "other"}))).await;
    assert_eq!(status, 400);
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn hostile_and_invalid_schemas_are_refused_without_harm(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut deep = json!({"type": "string"});
    for _ in 0..40 {
        deep = json!({"items": deep});
    }
    let huge = json!({"enum": (0..8_000).map(|i| format!("value-{i}")).collect::<Vec<_>>()});
    for (what, schema, says) in [
        ("an unknown type", json!({"type": "text"}), "text"),
        ("a keyword of the wrong kind", json!({"minLength": "two"}), "two"),
        ("a remote $ref", json!({"$ref": "http://127.0.0.1:9/schema.json"}), "outside the schema"),
        ("another draft", json!({"$schema": "http://json-schema.org/draft-07/schema#"}), "2020-12"),
        ("a look-around pattern", json!({"properties": {"a": {"pattern": "(?=a)a"}}}), "pattern"),
        ("a deep schema", deep, "nests deeper"),
        ("a huge schema", huge, "bytes"),
    ] {
        let (status, problem) = put(&app, "hostile", &schema).await;
        assert_eq!(status, 400, "{what}: {problem}");
        assert_eq!(problem["type"], "/docs/troubleshooting#invalid-schema", "{what}");
        assert!(problem["detail"].as_str().is_some_and(|d| d.contains(says)), "{what}: {problem}");
    }
    // A body far over the limit is not even read.
    let enormous = json!({"enum": (0..40_000).map(|i| format!("value-{i}")).collect::<Vec<_>>()});
    assert_eq!(put(&app, "hostile", &enormous).await.0, 413);
    // A document that is not a JSON Schema at all is the schema's problem (§9).
    let (status, problem) = put(&app, "hostile", &json!([1, 2])).await;
    assert_eq!((status, &problem["type"]), (400, &json!("/docs/troubleshooting#invalid-schema")));
    assert_eq!(get(&app, "/v1/schemas").await.1["data"], json!([]), "nothing registered");

    // A pattern that backtracks catastrophically elsewhere is checked in linear time here.
    let evil = json!({"properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}});
    assert_eq!(put(&app, "hostile", &evil).await.0, 201);
    let subject = format!("{}!", "a".repeat(100_000));
    let started = Instant::now();
    let (status, _) = post(&app, &event("evil-1", "hostile", json!({"s": subject}))).await;
    assert_eq!(status, 400);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let (status, _) = post(&app, &event("evil-2", "hostile", json!({"s": "aaaa"}))).await;
    assert_eq!(status, 200, "the server still serves");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_change_reaches_a_second_server_within_a_second(pool: PgPool) {
    let url = database_url(&pool).await;
    let (a, b) = (ServeProcess::start(&url, None).await, ServeProcess::start(&url, None).await);
    let client = reqwest::Client::new();
    let send = |base: String, body: Value| {
        let client = client.clone();
        async move {
            client
                .post(format!("{base}/v1/events"))
                .bearer_auth(DEV_TOKEN)
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("sent")
                .status()
                .as_u16()
        }
    };
    // B has loaded its (empty) cache before the change.
    assert_eq!(send(b.base.clone(), event("warm", "user.signup", json!({}))).await, 200);

    let mut n = 0;
    let mut until_b_agrees = |expected: u16| {
        let (base, send) = (b.base.clone(), &send);
        n += 1;
        let round = n;
        async move {
            let started = Instant::now();
            let mut i = 0;
            loop {
                i += 1;
                let status = send(
                    base.clone(),
                    event(&format!("probe-{round}-{i}"), "user.signup", json!({})),
                )
                .await;
                if status == expected {
                    return started.elapsed();
                }
                assert!(started.elapsed() < Duration::from_secs(1), "B still answers {status}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let put = client
        .put(format!("{}/v1/schemas/user.signup", a.base))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .body(json!({"type": "object", "required": ["plan"]}).to_string())
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
    let registered = until_b_agrees(400).await;
    let deleted = client
        .delete(format!("{}/v1/schemas/user.signup", a.base))
        .bearer_auth(DEV_TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    let removed = until_b_agrees(200).await;
    println!(
        "schema change seen by a second server after {registered:?}; deletion after {removed:?}"
    );
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_document_that_is_no_schema_is_an_invalid_schema_and_true_and_false_are_schemas(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    for document in [json!([]), json!(1), json!("s"), Value::Null] {
        let (status, body) = put(&app, "flag.set", &document).await;
        assert_eq!(
            (status, body["type"].as_str()),
            (400, Some("/docs/troubleshooting#invalid-schema")),
            "for {document}: {body}"
        );
    }
    let (status, body) = put(&app, "flag.set", &json!(true)).await;
    assert_eq!(status, 201, "{body}");
    let accepted = app.post_event(&event("f-1", "flag.set", json!({"any": 1}))).await;
    assert_eq!(accepted.status(), 200, "true accepts every event");
    let (status, body) = put(&app, "flag.set", &json!(false)).await;
    assert_eq!((status, body["version"].as_u64()), (201, Some(2)), "{body}");
    let refused: Value =
        app.post_event(&event("f-2", "flag.set", json!({}))).await.json().await.expect("json");
    assert_eq!(refused["type"], "/docs/troubleshooting#schema-violation", "{refused}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_schema_is_kept_as_sent_so_it_stays_enforced_and_an_equal_put_is_no_new_version(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    // 557 bytes as sent; spelled out by jsonb, 70 kB: over the schema limit once stored.
    let numbers = vec!["1e1000"; 70].join(",");
    let text = format!(
        r#"{{"type":"object","required":["must"],"properties":{{"x":{{"enum":[{numbers}]}}}}}}"#
    );
    let put = |body: String| {
        app.client
            .put(app.url("/v1/schemas/big.numbers"))
            .bearer_auth(DEV_TOKEN)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };
    let first = put(text.clone()).await.expect("sent");
    assert_eq!(first.status(), 201);
    let body = first.text().await.expect("text");
    assert!(body.len() < 2 * text.len(), "the schema read back as {} bytes", body.len());
    let again = put(text).await.expect("sent");
    assert_eq!(again.status(), 200, "the same document is no new version");
    let violating = app.post_event(&event("b-1", "big.numbers", json!({"nope": 1}))).await;
    assert_eq!(violating.status(), 400, "the schema is enforced");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_schema_whose_check_would_be_exponential_is_refused_at_put(pool: PgPool) {
    let app = spawn_app(pool).await;
    for combinator in ["allOf", "anyOf", "oneOf"] {
        let schema = json!({"type": "object",
                            "properties": {"a": {combinator: [{"$ref": "#"}, {"$ref": "#"}]}}});
        let (status, problem) = put(&app, "deep.attack", &schema).await;
        assert_eq!(status, 400, "{combinator}: {problem}");
        assert_eq!(problem["type"], "/docs/troubleshooting#invalid-schema");
        assert!(problem["detail"].as_str().is_some_and(|d| d.contains("exponential")), "{problem}");
    }
    // A recursive tree is fine, and checks deep data at once.
    let tree = json!({"type": "object", "properties": {"a": {"$ref": "#"}}});
    assert_eq!(put(&app, "deep.tree", &tree).await.0, 201);
    let mut data = json!({});
    for _ in 0..30 {
        data = json!({"a": data});
    }
    let accepted = app.post_event(&event("t-1", "deep.tree", data)).await;
    assert_eq!(accepted.status(), 200);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_number_beyond_what_a_check_compares_is_refused_naming_it_never_misjudged(pool: PgPool) {
    let app = spawn_app(pool).await;
    let schema = json!({"type": "object", "properties": {"n": {"maximum": 10}}});
    assert_eq!(put(&app, "num.check", &schema).await.0, 201);
    // As text: json! would turn these numbers into f64s first.
    let body = |key: &str, n: &str| {
        format!(
            r#"{{"event_type":"num.check","occurred_at":"2025-12-22T10:30:00Z","idempotency_key":"{key}","data":{{"n":{n}}}}}"#
        )
    };
    // 1e-400 is more than 0 and less than 10: as an f64 it is 0, and 1e400 is infinite.
    for (key, n) in [("n-1", "1e-400"), ("n-2", "1e400"), ("n-3", "-1e400")] {
        let response = app.post_events().body(body(key, n)).send().await.expect("sent");
        let status = response.status().as_u16();
        let problem: Value = response.json().await.expect("json");
        assert_eq!(status, 400, "{n}: {problem}");
        assert_eq!(problem["type"], "/docs/troubleshooting#schema-violation", "{n}: {problem}");
        assert_eq!(problem["errors"][0]["pointer"], "/data/n", "{n}: {problem}");
        let message = problem["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("64-bit float"), "{n}: {problem}");
    }
    // Within range, the check goes on as before.
    assert_eq!(
        app.post_events().body(body("n-4", "9.5")).send().await.expect("sent").status(),
        200
    );
    assert_eq!(
        app.post_events().body(body("n-5", "1e300")).send().await.expect("sent").status(),
        400
    );
    // A type without a schema stores such numbers as they were written.
    let unchecked = body("n-6", "1e-400").replace("num.check", "num.free");
    assert_eq!(app.post_events().body(unchecked).send().await.expect("sent").status(), 200);
    // A schema comparing with such a number is refused at PUT, naming it.
    let (status, problem) =
        put(&app, "num.tiny", &serde_json::from_str(r#"{"minimum":1e-400}"#).expect("json")).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("/minimum")), "{problem}");
    assert_eq!(app.event_count().await, 2);
}

/// A legal schema whose check is heavy: every property of the data is matched against 1,500
/// patterns.
fn many_patterns() -> Value {
    let patterns: serde_json::Map<String, Value> =
        (0..1500).map(|i| (format!("^p{i}x$"), json!({"type": "string"}))).collect();
    json!({"type": "object", "patternProperties": patterns})
}

/// An event of `heavy.check` whose data has 30,000 properties (about 400 KB).
fn many_properties(key: &str) -> String {
    let data: serde_json::Map<String, Value> =
        (0..30_000).map(|i| (format!("k{i}"), json!(i))).collect();
    event(key, "heavy.check", Value::Object(data)).to_string()
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_heavy_schema_check_stalls_no_other_request_and_ends_within_its_budget(pool: PgPool) {
    // One worker: a check on its thread would hold up every other request. Four heavy checks
    // at once, two of them one tenant's: the batch's heavy item below finds a slot while the
    // first check, over its budget, still runs to its end.
    let mut settings = crate::helpers::local_settings();
    settings.server.workers = 1;
    settings.schemas.heavy_checks = 4;
    let app = crate::helpers::spawn_app_with(pool, settings).await;
    assert_eq!(put(&app, "heavy.check", &many_patterns()).await.0, 201);
    let started = Instant::now();
    let heavy = tokio::spawn(app.post_events().body(many_properties("h-1")).send());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let asked = Instant::now();
    let health = app.client.get(app.url("/healthz")).send().await.expect("sent");
    let waited = asked.elapsed();
    assert_eq!(health.status(), 200);
    assert!(waited < Duration::from_millis(500), "/healthz waited {waited:?} for the check");
    let answer = heavy.await.expect("joined").expect("sent");
    let took = started.elapsed();
    assert_eq!(answer.status(), 422);
    let problem: Value = answer.json().await.expect("json");
    assert_eq!(problem["type"], "/docs/troubleshooting#schema-check-too-slow", "{problem}");
    assert_eq!(problem["schema_version"], 1, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "data", "{problem}");
    assert_eq!(problem["errors"][0]["code"], "schema_check_too_slow", "{problem}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}, the budget is 250 ms");
    println!("/healthz answered in {waited:?} during the check; the event in {took:?}");
    // An ordinary event of the type is checked and stored as ever.
    let light = event("h-2", "heavy.check", json!({"p7x": "a string"}));
    assert_eq!(app.post_event(&light).await.status(), 200);
    // In a batch, the heavy item gets the error and the others are stored.
    let heavy: Value = serde_json::from_str(&many_properties("h-3")).expect("json");
    let light = event("h-4", "heavy.check", json!({}));
    let batch = json!({"events": [heavy, light]}).to_string();
    let response = app.post_batch().body(batch).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["results"][0]["errors"][0]["code"], "schema_check_too_slow", "{answer}");
    assert_eq!(answer["results"][1]["status"], "ok", "{answer}");
    assert_eq!(app.event_count().await, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn heavy_checks_beyond_the_configured_number_get_503_with_retry_after(pool: PgPool) {
    let mut settings = crate::helpers::local_settings();
    settings.schemas.heavy_checks = 1;
    let app = crate::helpers::spawn_app_with(pool, settings).await;
    assert_eq!(put(&app, "heavy.check", &many_patterns()).await.0, 201);
    let sends: Vec<_> = (0..3)
        .map(|i| tokio::spawn(app.post_events().body(many_properties(&format!("b-{i}"))).send()))
        .collect();
    let mut answers = Vec::new();
    for send in sends {
        let response = send.await.expect("joined").expect("sent");
        let retry_after = response.headers().get("retry-after").cloned();
        let status = response.status().as_u16();
        let problem: Value = response.json().await.expect("json");
        answers.push((status, problem["type"].clone(), retry_after));
    }
    answers.sort_by_key(|(status, _, _)| *status);
    let statuses: Vec<u16> = answers.iter().map(|(status, _, _)| *status).collect();
    // One check holds the only slot past its budget; the others wait for it no longer than
    // theirs.
    assert_eq!(statuses, [422, 503, 503], "{answers:?}");
    for (_, kind, retry_after) in &answers[1..] {
        assert_eq!(kind, "/docs/troubleshooting#overloaded", "{answers:?}");
        assert!(retry_after.is_some(), "{answers:?}");
    }
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn one_tenants_heavy_checks_never_take_anothers(pool: PgPool) {
    use intake_domain::Scope;

    let mut settings = crate::helpers::local_settings();
    settings.schemas.heavy_checks = 2;
    let app = crate::helpers::spawn_app_with(pool.clone(), settings).await;
    let (victim, _) = crate::helpers::create_token(&pool, "victim", Scope::ALL.to_vec()).await;
    assert_eq!(put(&app, "heavy.check", &many_patterns()).await.0, 201);
    let small = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let registered = app
        .client
        .put(app.url("/v1/schemas/order.placed"))
        .bearer_auth(&victim)
        .header("Content-Type", "application/json")
        .body(small.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(registered.status(), 201);
    // The dev tenant sends four heavy checks at once, each over its budget: two would take
    // every slot and two more wait for one.
    let mut heavy = Vec::new();
    for i in 0..4 {
        heavy.push(tokio::spawn(app.post_events().body(many_properties(&format!("h-{i}"))).send()));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Another tenant's event, 40 KB against a small schema: a heavy check too, a quick one.
    let padding: serde_json::Map<String, Value> =
        (0..2_000).map(|i| (format!("f{i}"), json!("0123456789"))).collect();
    let body = event("v-1", "order.placed", Value::Object(padding)).to_string();
    let answer = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&victim)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = answer.status().as_u16();
    let text = answer.text().await.expect("body");
    assert_eq!(status, 200, "another tenant's heavy checks took every slot: {text}");
    for task in heavy {
        let status = task.await.expect("joined").expect("sent").status().as_u16();
        assert!([422, 503].contains(&status), "{status}");
    }
}
