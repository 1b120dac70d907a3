//! A load of unique events posted by concurrent clients that retry until each event is
//! acknowledged, as a careful producer does, recording everything they saw; and the check that
//! the database holds exactly what was acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::DEV_TOKEN;

/// What the clients saw.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// Key → event id of every acknowledged event.
    pub acknowledged: HashMap<String, String>,
    /// Answers other than 200, by status and problem type.
    pub refusals: BTreeMap<(u16, String), usize>,
    /// 503 answers without `Retry-After`.
    pub without_retry_after: usize,
    /// Requests that got no answer (connection refused or broken).
    pub unanswered: usize,
    /// Requests sent, retries included.
    pub sent: usize,
}

impl LoadOutcome {
    /// Refusals other than 503: each is a defect under load.
    pub fn unexpected_refusals(&self) -> Vec<&(u16, String)> {
        self.refusals.keys().filter(|(status, _)| *status != 503).collect()
    }
}

/// Posts `per_client` unique events from each of `clients` clients to `base`, with keys
/// `<prefix>-<client>-<n>`. A client retries an event after no answer or a 503 until it is
/// acknowledged, and gives up on it after another answer (recorded). Panics after `deadline`.
pub async fn post_with_retries(
    base: &str,
    clients: usize,
    per_client: usize,
    prefix: &str,
    deadline: Duration,
) -> LoadOutcome {
    let outcome = Arc::new(Mutex::new(LoadOutcome::default()));
    let until = Instant::now() + deadline;
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, outcome, base, prefix) =
                (client.clone(), outcome.clone(), base.to_owned(), prefix.to_owned());
            tokio::spawn(async move {
                for n in 0..per_client {
                    let key = format!("{prefix}-{c}-{n}");
                    let body = json!({
                        "event_type": "load.sent",
                        "occurred_at": "2026-01-01T00:00:00Z",
                        "idempotency_key": key,
                        "data": {"client": c, "n": n}
                    })
                    .to_string();
                    let mut last = String::new();
                    loop {
                        assert!(
                            Instant::now() < until,
                            "the load did not finish in {deadline:?}; {key}: {last}"
                        );
                        let sent = client
                            .post(format!("{base}/v1/events"))
                            .bearer_auth(DEV_TOKEN)
                            .header(CONTENT_TYPE, "application/json")
                            .body(body.clone())
                            .send()
                            .await;
                        outcome.lock().expect("outcome").sent += 1;
                        let response = match sent {
                            Ok(response) => response,
                            Err(error) => {
                                last = format!("{error:?}");
                                outcome.lock().expect("outcome").unanswered += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        };
                        let status = response.status().as_u16();
                        let retry_after = response.headers().contains_key(RETRY_AFTER);
                        last = format!("status {status}");
                        let Ok(answer) = response.json::<Value>().await else {
                            outcome.lock().expect("outcome").unanswered += 1;
                            continue;
                        };
                        let retry = {
                            let mut seen = outcome.lock().expect("outcome");
                            if status == 200 {
                                let id = answer["event_id"].as_str().expect("event_id");
                                seen.acknowledged.insert(key.clone(), id.to_owned());
                                false
                            } else {
                                let kind = answer["type"].as_str().unwrap_or("(no type)");
                                *seen.refusals.entry((status, kind.to_owned())).or_default() += 1;
                                if status == 503 && !retry_after {
                                    seen.without_retry_after += 1;
                                }
                                status == 503
                            }
                        };
                        if !retry {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    Arc::into_inner(outcome).expect("tasks done").into_inner().expect("outcome")
}

/// Checks that the dev tenant's events with keys starting `<prefix>-` are exactly the
/// acknowledged ones, each once and under the acknowledged id; returns the number of rows.
pub async fn assert_stored_exactly_once(
    pool: &PgPool,
    prefix: &str,
    outcome: &LoadOutcome,
) -> usize {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT idempotency_key, 'evt_' || replace(event_id::text, '-', '') FROM events \
         WHERE tenant_id = 'dev' AND starts_with(idempotency_key, $1)",
    )
    .bind(format!("{prefix}-"))
    .fetch_all(pool)
    .await
    .expect("stored events");
    let mut stored: HashMap<&str, Vec<&str>> = HashMap::new();
    for (key, id) in &rows {
        stored.entry(key).or_default().push(id);
    }
    let doubled: Vec<_> = stored.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(doubled.is_empty(), "keys stored more than once: {doubled:?}");
    for (key, id) in &outcome.acknowledged {
        let ids = stored.get(key.as_str());
        assert_eq!(ids, Some(&vec![id.as_str()]), "acknowledged {key} as {id}");
    }
    assert_eq!(rows.len(), outcome.acknowledged.len(), "rows beyond the acknowledged events");
    rows.len()
}
