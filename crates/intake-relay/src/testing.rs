//! What tests of the relay share (feature `test-support`): a stream of a test's own on the
//! shared NATS, and reading back what reached it.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use serde_json::Value;

/// The NATS the tests use (`INTAKE_TEST_NATS_URL`; `make test` finds or starts one with
/// scripts/nats). A test that needs NATS never skips: without it, it panics saying so.
pub fn nats_url() -> String {
    std::env::var("INTAKE_TEST_NATS_URL").unwrap_or_else(|_| {
        panic!(
            "set INTAKE_TEST_NATS_URL to a NATS with JetStream (`scripts/nats with cargo test`, \
             or `make test`, finds or starts one)"
        )
    })
}

/// A stream and subject prefix of a test's own, on the shared NATS.
#[derive(Debug, Clone)]
pub struct TestStream {
    /// The stream's name.
    pub name: String,
    /// The subject prefix its subjects start with.
    pub prefix: String,
}

impl Default for TestStream {
    fn default() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self { name: format!("INTAKE_TEST_{id}"), prefix: format!("t{id}") }
    }
}

impl TestStream {
    /// Every message in the stream, in stream order, once it holds `expected` (waiting up to
    /// `patience` for the relay to create the stream and fill it): (subject, Nats-Msg-Id, body).
    pub async fn messages(
        &self,
        expected: usize,
        patience: Duration,
    ) -> Vec<(String, String, Value)> {
        let client = async_nats::connect(nats_url()).await.expect("nats");
        let js = jetstream::new(client);
        let deadline = Instant::now() + patience;
        loop {
            if let Ok(mut stream) = js.get_stream(&self.name).await {
                let count = stream.info().await.expect("info").state.messages as usize;
                if count >= expected {
                    break;
                }
                assert!(Instant::now() < deadline, "only {count} of {expected} messages arrived");
            } else {
                assert!(Instant::now() < deadline, "the relay never created the stream");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stream = js.get_stream(&self.name).await.expect("stream");
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer
            .fetch()
            .max_messages(expected + 100)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .expect("fetch");
        let mut out = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.expect("message");
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.to_string())
                .expect("Nats-Msg-Id");
            out.push((
                message.subject.to_string(),
                id,
                serde_json::from_slice(&message.payload).expect("json"),
            ));
        }
        out
    }

    /// Deletes the stream, if it is there.
    pub async fn delete(&self) {
        if let Ok(client) = async_nats::connect(nats_url()).await {
            let _ = jetstream::new(client).delete_stream(&self.name).await;
        }
    }
}
