//! Sends one event to intake, waits until the server has it, and prints the counts.
//!
//! With `make run` serving in another terminal:
//!
//! ```text
//! cargo run -p intake-client --example first_event
//! cargo run -p intake-client --example first_event -- https://intake.example.com "$INTAKE_TOKEN"
//! ```

use std::time::Duration;

use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base_url = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    // The local profile's dev token, unless one is given.
    let token = args
        .next()
        .or_else(|| std::env::var("INTAKE_TOKEN").ok())
        .unwrap_or_else(|| "test_123".to_owned());

    let client = intake_client::Client::builder(base_url, token)
        .on_error(|error| eprintln!("not stored: {error}"))
        .build()?;

    // Queued at once; the client's task sends it.
    let key = client.send("user.created", json!({"user_id": "u_12345", "plan": "pro"})).await?;
    println!("queued the event with idempotency key {key}");

    let counts = client.flush(Duration::from_secs(10)).await;
    println!(
        "flushed: {} delivered, {} failed, {} pending",
        counts.delivered, counts.failed, counts.pending
    );
    println!("{:#?}", client.stats());

    client.close(Duration::from_secs(5)).await;
    Ok(())
}
