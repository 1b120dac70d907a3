//! The served OpenAPI document: valid by a real validator, covering every mounted route, and
//! equal to the committed docs/openapi.json.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::spawn_app;

async fn served(pool: PgPool) -> (String, Value) {
    let app = spawn_app(pool).await;
    let response = app.client.get(app.url("/openapi.json")).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.expect("body");
    let doc = serde_json::from_str(&text).expect("json");
    (text, doc)
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_served_document_passes_an_openapi_validator(pool: PgPool) {
    let (text, doc) = served(pool).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let validator = std::env::var("INTAKE_OPENAPI_VALIDATOR").unwrap_or_else(|_| {
        panic!("set INTAKE_OPENAPI_VALIDATOR to openapi-spec-validator (make test installs it)")
    });
    let file = std::env::temp_dir().join(format!("intake-openapi-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, &text).expect("write document");
    let output = Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {validator}: {e} (make tools installs it)"));
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "openapi-spec-validator rejects the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn every_mounted_route_is_documented_and_nothing_else(pool: PgPool) {
    let (_, doc) = served(pool).await;
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    let mounted: BTreeSet<(String, String)> = intake_api::routes::mounted()
        .into_iter()
        .map(|(path, method)| (path, method.as_str().to_lowercase()))
        .collect();
    assert_eq!(documented, mounted);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn every_authenticated_operation_documents_its_scope_and_its_problems(pool: PgPool) {
    let (_, doc) = served(pool).await;
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for (path, method, scope) in [
        ("/v1/events", "post", "events:write"),
        ("/v1/events/batch", "post", "events:write"),
        ("/v1/events", "get", "events:read"),
        ("/v1/events/{event_id}", "get", "events:read"),
    ] {
        let operation = &doc["paths"][path][method];
        assert_eq!(operation["security"][0]["bearer"][0], scope, "{method} {path}");
        for status in ["401", "403", "503"] {
            let problem = &operation["responses"][status]["content"]["application/problem+json"];
            assert_eq!(
                problem["schema"]["$ref"], "#/components/schemas/Problem",
                "{method} {path} {status}"
            );
        }
    }
}

#[test]
fn the_committed_document_is_current() {
    let committed = include_str!("../../../../docs/openapi.json");
    assert_eq!(
        committed.trim_end(),
        intake_api::openapi::document_json().trim_end(),
        "docs/openapi.json is stale: run `make openapi`"
    );
}

#[test]
fn the_document_states_the_limits_the_server_enforces() {
    let doc: Value = serde_json::from_str(&intake_api::openapi::document_json()).expect("json");
    let schemas = &doc["components"]["schemas"];
    let mut encodings: Vec<&str> = schemas["ContentEncoding"]["enum"]
        .as_array()
        .expect("Content-Encoding is an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    encodings.sort_unstable();
    assert_eq!(encodings, ["gzip", "identity"]);
    let batch_item_required = &schemas["BatchEvent"]["required"];
    assert!(
        batch_item_required.as_array().is_some_and(|r| r.contains(&"idempotency_key".into())),
        "a batch item needs its key: {batch_item_required}"
    );
    let parameter = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("{method} {path} documents {name}"))
            .clone()
    };
    for (path, method, name, max_length) in [
        ("/v1/events", "post", "Idempotency-Key", 257),
        ("/v1/events", "get", "cursor", 34),
        ("/v1/events", "get", "event_type", 128),
    ] {
        let schema = &parameter(path, method, name)["schema"];
        assert_eq!(schema["maxLength"], max_length, "{name}: {schema}");
        assert!(schema["pattern"].is_string(), "{name} has a pattern: {schema}");
    }
}
