//! PostgreSQL notifications for the live debugger: many at once, and a listener that follows
//! a channel on a connection of its own.

use std::time::Duration;

use intake_domain::StoreError;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use crate::errors::classify;
use crate::PgStore;

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notified {
    /// A notification's payload.
    Payload(String),
    /// The connection was lost and is back: notifications may have been missed meanwhile.
    Reconnected,
}

/// The largest payload PostgreSQL takes is just under 8000 bytes.
pub const MAX_PAYLOAD: usize = 7900;

impl PgStore {
    /// Notifies `channel` with each payload (each at most [`MAX_PAYLOAD`] bytes).
    pub async fn notify_many(&self, channel: &str, payloads: &[String]) -> Result<(), StoreError> {
        // Every payload in one round trip. (The listener below has no statement of its own to
        // check: `PgListener` sends `LISTEN`, whose channel is an identifier, not a parameter.)
        sqlx::query!(
            "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
            channel,
            payloads,
        )
        .execute(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        Ok(())
    }

    /// Every payload notified on `channel`, for as long as the receiver is kept. The
    /// connection is its own, and made again after a loss; [`Notified::Reconnected`] then says
    /// that what was notified meanwhile was missed. Until the first connection succeeds
    /// nothing is sent.
    pub fn listen(&self, channel: &'static str) -> mpsc::Receiver<Notified> {
        let (sender, receiver) = mpsc::channel(4096);
        let pool = self.pool().clone();
        tokio::spawn(async move {
            let mut connected_before = false;
            loop {
                let listener = match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => match listener.listen(channel).await {
                        Ok(()) => Some(listener),
                        Err(error) => {
                            tracing::warn!(%error, channel, "cannot listen for notifications");
                            None
                        }
                    },
                    Err(error) => {
                        tracing::debug!(%error, channel, "cannot connect to listen");
                        None
                    }
                };
                let Some(mut listener) = listener else {
                    if sender.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                if connected_before && sender.send(Notified::Reconnected).await.is_err() {
                    return;
                }
                connected_before = true;
                // `try_recv` gives `None` when the connection was lost, rather than reconnecting
                // silently and hiding that notifications may have been missed.
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            let payload = Notified::Payload(notification.payload().to_owned());
                            if sender.send(payload).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            tracing::warn!(%error, channel, "lost a notification listener");
                            break;
                        }
                    }
                }
            }
        });
        receiver
    }
}
