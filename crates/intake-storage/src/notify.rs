//! PostgreSQL notifications for the live debugger: many at once, and a listener that follows
//! a channel on a connection of its own.

use std::time::Duration;

use intake_domain::StoreError;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use crate::errors::classify;
use crate::PgStore;

/// Sends every payload on `channel` in one round trip.
const NOTIFY_MANY: &str = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload";

/// The largest payload PostgreSQL takes is just under 8000 bytes.
pub const MAX_PAYLOAD: usize = 7900;

impl PgStore {
    /// Notifies `channel` with each payload (each at most [`MAX_PAYLOAD`] bytes).
    pub async fn notify_many(&self, channel: &str, payloads: &[String]) -> Result<(), StoreError> {
        sqlx::query(NOTIFY_MANY)
            .bind(channel)
            .bind(payloads)
            .execute(&mut *self.acquire().await?)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Every payload notified on `channel`, for as long as the receiver is kept; the
    /// connection is made again after a loss (what was notified meanwhile is missed).
    pub fn listen(&self, channel: &'static str) -> mpsc::Receiver<String> {
        let (sender, receiver) = mpsc::channel(4096);
        let pool = self.pool().clone();
        tokio::spawn(async move {
            loop {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => match listener.listen(channel).await {
                        Ok(()) => listener,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    },
                    Err(_) => {
                        if sender.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                while let Ok(Some(notification)) = listener.try_recv().await {
                    if sender.send(notification.payload().to_owned()).await.is_err() {
                        return;
                    }
                }
            }
        });
        receiver
    }
}
