//! A consumer of what `intake relay` publishes: a durable JetStream consumer that prints each
//! event of one tenant and acknowledges it.
//!
//! `cargo run --example relay_consumer -- nats://127.0.0.1:4222 INTAKE_EVENTS 'intake.acme.>'`

use futures_util::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let stream = args.next().unwrap_or_else(|| "INTAKE_EVENTS".into());
    let subjects = args.next().unwrap_or_else(|| "intake.>".into());

    let jetstream = async_nats::jetstream::new(async_nats::connect(url).await?);
    let consumer = jetstream
        .get_stream(stream)
        .await?
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("example".into()),
            filter_subject: subjects,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!(e))?;
        let event: serde_json::Value = serde_json::from_slice(&message.payload)?;
        println!("{} {} {}", message.subject, event["event_id"], event["data"]);
        message.ack().await.map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}
