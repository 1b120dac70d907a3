//! CloudEvents 1.0 over HTTP (contract §11): structured, binary and batched modes, the mapping
//! both ways, dedupe on `source`+`id` across modes, the attribute rules, and reading back as a
//! structured CloudEvent.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{expect_problem, gzip, spawn_app, TestApp, DEV_TOKEN};

fn structured(id: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "https://shop.example/orders",
        "type": "com.example.order.placed", "time": "2025-12-22T10:30:00Z",
        "subject": "order/17", "dataschema": "https://shop.example/order.json",
        "datacontenttype": "application/json", "traceparent": "00-4bf92f3577b34da6-01",
        "priority": 3, "data": data
    })
}

async fn post_structured(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/events"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/cloudevents+json")
        .body(body.to_string())
        .send()
        .await
        .expect("sent")
}

fn binary(app: &TestApp, id: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/v1/events"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "https://shop.example/orders")
        .header("ce-type", "com.example.order.placed")
        .header("ce-time", "2025-12-22T10:30:00Z")
}

async fn read_as_cloudevent(app: &TestApp, event_id: &str) -> Value {
    let response = app
        .client
        .get(app.url(&format!("/v1/events/{event_id}")))
        .bearer_auth(DEV_TOKEN)
        .header(ACCEPT, "application/cloudevents+json")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    assert_eq!(content_type, Some("application/cloudevents+json"));
    response.json().await.expect("json")
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_structured_cloudevent_is_stored_and_reads_back_with_every_attribute(pool: PgPool) {
    let app = spawn_app(pool).await;
    let sent = structured("A-1", json!({"order": 17, "total": 99.5}));
    let response = post_structured(&app, &sent).await;
    assert_eq!(response.status(), 200);
    let accepted: Value = response.json().await.expect("json");
    let id = accepted["event_id"].as_str().expect("id");

    let plain = app.get_json(&format!("/v1/events/{id}")).await;
    assert_eq!(plain["event_type"], "com.example.order.placed");
    assert_eq!(plain["occurred_at"], "2025-12-22T10:30:00Z");
    assert_eq!(plain["data"], json!({"order": 17, "total": 99.5}));
    assert!(plain["idempotency_key"].as_str().is_some_and(|k| k.starts_with("ce:")));

    let back = read_as_cloudevent(&app, id).await;
    for attribute in [
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "dataschema",
        "datacontenttype",
        "traceparent",
        "priority",
        "data",
    ] {
        assert_eq!(back[attribute], sent[attribute], "{attribute}: {back}");
    }
    assert_eq!(back["recordedtime"], plain["received_at"]);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn binary_mode_maps_headers_and_body_and_dedupes_with_structured(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = binary(&app, "B-1")
        .header("ce-subject", "order/18")
        .header("ce-tenantzone", "eu%2Dwest%201")
        .body(json!({"order": 18}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let first: Value = response.json().await.expect("json");
    let id = first["event_id"].as_str().expect("id");
    let back = read_as_cloudevent(&app, id).await;
    assert_eq!(back["subject"], "order/18");
    assert_eq!(back["tenantzone"], "eu-west 1", "percent-decoded: {back}");
    assert_eq!(back["data"], json!({"order": 18}));
    assert_eq!(back["datacontenttype"], "application/json");

    // The same source and id in structured mode, same payload: a replay.
    let mut same = structured("B-1", json!({"order": 18}));
    same.as_object_mut().expect("object").remove("subject");
    let replay = post_structured(&app, &same).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(
        replay.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(replay["event_id"], first["event_id"]);

    // The same pair with other data: the usual 422.
    let other = post_structured(&app, &structured("B-1", json!({"order": 99}))).await;
    assert_eq!(other.status(), 422);
    let problem: Value = other.json().await.expect("json");
    assert_eq!(problem["type"], "/docs/troubleshooting#idempotency-key-reused");
    assert_eq!(problem["event_id"], first["event_id"]);

    // Without a body, data is {}.
    let empty = binary(&app, "B-2").send().await.expect("sent");
    assert_eq!(empty.status(), 200);
    let empty: Value = empty.json().await.expect("json");
    let back = read_as_cloudevent(&app, empty["event_id"].as_str().expect("id")).await;
    assert_eq!(back["data"], json!({}));
    assert_eq!(app.event_count().await, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn every_attribute_rule_is_a_problem_naming_the_attribute(pool: PgPool) {
    let app = spawn_app(pool).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"specversion": "0.3"}), "specversion"),
        (json!({"id": ""}), "id"),
        (json!({"source": null}), "source"),
        (json!({"type": ""}), "type"),
        (json!({"time": null}), "time"),
        (json!({"time": "yesterday"}), "time"),
        (json!({"data": [1, 2]}), "data"),
        (json!({"data": "text"}), "data"),
        (json!({"Bad_Ext": "x"}), "Bad_Ext"),
        (json!({"waytoolongextensionname1": "x"}), "waytoolongextensionname1"),
        (json!({"nested": {"a": 1}}), "nested"),
        (json!({"data_base64": "AAAA"}), "data_base64"),
    ];
    for (change, attribute) in cases {
        let mut event = structured("R-1", json!({}));
        for (name, value) in change.as_object().expect("object") {
            if value.is_null() {
                event.as_object_mut().expect("object").remove(name);
            } else {
                event[name] = value.clone();
            }
        }
        let response = post_structured(&app, &event).await;
        assert_eq!(response.status(), 400, "{attribute}");
        let problem: Value = response.json().await.expect("json");
        assert_eq!(problem["type"], "/docs/troubleshooting#validation-failed", "{attribute}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&attribute), "{attribute}: {problem}");
    }
    // In binary mode the field is the header.
    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-source", "/s")
        .header("ce-type", "t")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.expect("json");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["ce-id", "ce-time"], "{problem}");
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn batched_mode_stores_good_items_and_reports_bad_ones(pool: PgPool) {
    let app = spawn_app(pool).await;
    let batch = json!([
        structured("C-1", json!({"n": 1})),
        {"specversion": "1.0", "id": "C-2", "source": "/s", "type": "t"},
        "not an event",
        structured("C-1", json!({"n": 1})),
        structured("C-3", json!({"n": 3})),
    ]);
    let response = app
        .client
        .post(app.url("/v1/events/batch"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/cloudevents-batch+json")
        .body(gzip(batch.to_string().as_bytes()))
        .header("Content-Encoding", "gzip")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        (body["accepted"].clone(), body["deduplicated"].clone(), body["rejected"].clone()),
        (json!(2), json!(1), json!(2)),
        "{body}"
    );
    assert_eq!(body["results"][1]["errors"][0]["field"], "time");
    assert_eq!(body["results"][3]["deduplicated"], true);
    assert_eq!(body["results"][3]["event_id"], body["results"][0]["event_id"]);
    let not_array = app
        .client
        .post(app.url("/v1/events/batch"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/cloudevents-batch+json")
        .body(structured("C-9", json!({})).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(not_array.status(), 400);
    assert_eq!(app.event_count().await, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_plain_event_reads_back_as_a_cloudevent_of_intake(pool: PgPool) {
    let app = spawn_app(pool).await;
    let stored: Value =
        app.post_event(&crate::helpers::quick_start_event()).await.json().await.expect("json");
    let id = stored["event_id"].as_str().expect("id");
    let back = read_as_cloudevent(&app, id).await;
    assert_eq!(back["specversion"], "1.0");
    assert_eq!(back["source"], "/intake/dev");
    assert_eq!(back["id"], id);
    assert_eq!(back["type"], "user.created");
    assert_eq!(back["data"], json!({"user_id": "u_12345", "plan": "pro"}));
    assert!(back["recordedtime"].is_string());
    // Auth and limits apply as for plain events.
    let anonymous = app
        .client
        .post(app.url("/v1/events"))
        .header(CONTENT_TYPE, "application/cloudevents+json")
        .body(structured("Z-1", json!({})).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);
    let huge = structured("Z-2", json!({"pad": "x".repeat(2 * 1024 * 1024)}));
    assert_eq!(post_structured(&app, &huge).await.status(), 413);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_cloudevent_is_checked_against_its_types_schema(pool: PgPool) {
    let app = spawn_app(pool).await;
    let schema = json!({"type": "object", "required": ["order"], "properties": {"order": {"type": "integer"}}});
    let registered = app
        .client
        .put(app.url("/v1/schemas/com.example.order.placed"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .body(schema.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(registered.status(), 201);
    let refused = post_structured(&app, &structured("S-1", json!({"order": "seventeen"}))).await;
    assert_eq!(refused.status(), 400);
    let problem: Value = refused.json().await.expect("json");
    assert_eq!(problem["type"], "/docs/troubleshooting#schema-violation");
    assert_eq!(problem["errors"][0]["pointer"], "/data/order");
    let accepted =
        binary(&app, "S-2").body(json!({"order": 17}).to_string()).send().await.expect("sent");
    assert_eq!(accepted.status(), 200);
    let accepted: Value = accepted.json().await.expect("json");
    let read =
        app.get_json(&format!("/v1/events/{}", accepted["event_id"].as_str().expect("id"))).await;
    assert_eq!(read["schema_version"], 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn binary_headers_are_stored_as_sent_or_refused_naming_the_attribute(pool: PgPool) {
    use reqwest::header::HeaderValue;
    let app = spawn_app(pool).await;
    // An escaped percent sign reads back as it was meant.
    let response = binary(&app, "ok-1")
        .header("ce-subject", "%25FF%25FE")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let id: Value = response.json().await.expect("json");
    let stored = read_as_cloudevent(&app, id["event_id"].as_str().expect("id")).await;
    assert_eq!(stored["subject"], "%FF%FE");

    let cases: Vec<(&str, reqwest::RequestBuilder, &str)> = vec![
        (
            "raw Latin-1",
            binary(&app, "b-1")
                .header("ce-subject", HeaderValue::from_bytes(b"caf\xe9").expect("obs-text")),
            "ce-subject",
        ),
        (
            "percent-encoded invalid UTF-8",
            binary(&app, "b-2").header("ce-subject", "%FF%FE"),
            "ce-subject",
        ),
        (
            "malformed percent-encoding",
            binary(&app, "b-3").header("ce-subject", "%G1%4%"),
            "ce-subject",
        ),
        ("two ce-id headers", binary(&app, "b-4").header("ce-id", "b-4-again"), "ce-id"),
        ("a ce-data header", binary(&app, "b-5").header("ce-data", "{}"), "ce-data"),
        (
            "an extension named recordedtime",
            binary(&app, "b-6").header("ce-recordedtime", "2025-12-22T10:30:00Z"),
            "ce-recordedtime",
        ),
        (
            "year 0000 with an offset",
            binary(&app, "b-7").header("ce-time", "0000-01-01T00:00:00+14:00"),
            "ce-time",
        ),
    ];
    for (what, request, field) in cases {
        let response = request.body("{}").send().await.expect("sent");
        let status = response.status().as_u16();
        let problem: Value = response.json().await.expect("json");
        assert_eq!(status, 400, "{what}: {problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(fields.contains(&field), "{what}: {field} not named in {problem}");
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn control_characters_and_numbers_outside_int32_are_refused_in_every_mode(pool: PgPool) {
    let app = spawn_app(pool).await;
    let field_codes = |problem: &Value| -> Vec<(String, String)> {
        problem["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        (
                            e["field"].as_str().unwrap_or("").into(),
                            e["code"].as_str().unwrap_or("").into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // Structured mode: every string attribute, and extensions.
    let cases: Vec<(&str, Value, &str)> = vec![
        ("id", json!("A\u{0}1"), "invalid_character"),
        ("source", json!("/shop\n"), "invalid_character"),
        ("subject", json!("order\r\n17"), "invalid_character"),
        ("dataschema", json!("https://x.example/\u{7f}"), "invalid_character"),
        ("datacontenttype", json!("application/json\t"), "invalid_character"),
        ("traceparent", json!("00-\u{9b}-01"), "invalid_character"),
        ("priority", json!(2_147_483_648_i64), "number_out_of_range"),
        ("priority", json!(1.5), "invalid_type"),
    ];
    for (attribute, value, code) in &cases {
        let mut event = structured("X-1", json!({}));
        event[*attribute] = value.clone();
        let response = post_structured(&app, &event).await;
        assert_eq!(response.status(), 400, "{attribute} = {value}");
        let problem: Value = response.json().await.expect("json");
        assert!(
            field_codes(&problem).contains(&((*attribute).into(), (*code).into())),
            "{attribute} = {value}: {problem}"
        );
    }
    // Binary mode: a percent-encoded control character, named by its header.
    let response = binary(&app, "X-2")
        .header("ce-subject", "order%0A17")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.expect("json");
    assert!(
        field_codes(&problem).contains(&("ce-subject".into(), "invalid_character".into())),
        "{problem}"
    );
    // Batched mode: each bad item gets its errors, the good one is stored.
    let mut bad_id = structured("X-3", json!({}));
    bad_id["id"] = json!("X-3\u{1b}[31m");
    let mut bad_number = structured("X-4", json!({}));
    bad_number["priority"] = json!(-2_147_483_649_i64);
    let batch = json!([bad_id, bad_number, structured("X-5", json!({}))]);
    let response = app
        .client
        .post(app.url("/v1/events/batch"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/cloudevents-batch+json")
        .body(batch.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        field_codes(&body["results"][0]),
        [("id".to_owned(), "invalid_character".to_owned())],
        "{body}"
    );
    assert_eq!(
        field_codes(&body["results"][1]),
        [("priority".to_owned(), "number_out_of_range".to_owned())],
        "{body}"
    );
    assert_eq!(body["results"][2]["status"], "ok", "{body}");
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn data_declared_as_anything_but_json_is_refused_never_stored_as_json(pool: PgPool) {
    let app = spawn_app(pool).await;
    let bare = |id: &str| {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(DEV_TOKEN)
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-source", "https://shop.example/orders")
            .header("ce-type", "com.example.order.placed")
            .header("ce-time", "2025-12-22T10:30:00Z")
    };
    // Binary mode: the data's media type is the body's, so anything but JSON is a 415.
    let unsupported = [
        ("ce-datacontenttype alone", bare("D-1").header("ce-datacontenttype", "text/plain")),
        (
            "ce-datacontenttype beside a JSON Content-Type",
            binary(&app, "D-2").header("ce-datacontenttype", "application/xml"),
        ),
        ("a Content-Type that is not JSON", bare("D-3").header(CONTENT_TYPE, "text/csv")),
    ];
    for (what, request) in unsupported {
        let (_, problem) =
            expect_problem(request.body("{}"), 415, "unsupported-content-type").await;
        assert!(
            problem["detail"].as_str().is_some_and(|d| d.to_lowercase().contains("json")),
            "{what}: {problem}"
        );
    }
    // Two JSON types that disagree: the attribute is given twice, differently.
    let twice = binary(&app, "D-4").header("ce-datacontenttype", "application/geo+json");
    let (_, problem) = expect_problem(twice.body("{}"), 400, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "ce-datacontenttype", "{problem}");
    assert_eq!(problem["errors"][0]["code"], "duplicate_field", "{problem}");
    // The same type twice is fine, and so is a JSON ce-datacontenttype alone.
    let same = binary(&app, "D-5").header("ce-datacontenttype", "Application/JSON");
    assert_eq!(same.body("{}").send().await.expect("sent").status(), 200);
    let alone = bare("D-6").header("ce-datacontenttype", "application/vnd.shop+json");
    let alone = alone.body(r#"{"order":1}"#).send().await.expect("sent");
    assert_eq!(alone.status(), 200);
    let stored: Value = alone.json().await.expect("json");
    let back = read_as_cloudevent(&app, stored["event_id"].as_str().expect("id")).await;
    assert_eq!(back["datacontenttype"], "application/vnd.shop+json");
    // Structured and batched modes: the attribute is refused, naming it.
    let mut text = structured("D-7", json!({}));
    text["datacontenttype"] = json!("text/plain");
    let (_, problem) = expect_problem(
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(DEV_TOKEN)
            .header(CONTENT_TYPE, "application/cloudevents+json")
            .body(text.to_string()),
        400,
        "validation-failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "datacontenttype", "{problem}");
    assert_eq!(problem["errors"][0]["code"], "unsupported_content_type", "{problem}");
    let batch = app
        .client
        .post(app.url("/v1/events/batch"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/cloudevents-batch+json")
        .body(json!([text]).to_string())
        .send()
        .await
        .expect("sent");
    let body: Value = batch.json().await.expect("json");
    assert_eq!(body["results"][0]["errors"][0]["field"], "datacontenttype", "{body}");
    assert_eq!(app.event_count().await, 2);
}
