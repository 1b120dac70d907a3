//! PostgreSQL notifications: many at once, and a listener that follows a channel on a
//! connection of its own (schema changes, the live debugger).

use std::time::Duration;

use intake_domain::StoreError;
use sqlx::postgres::PgListener;

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

    /// Follows `channel` on a connection of its own, made on the first [`Listener::next`] and
    /// again after a loss. Nothing runs in the background: notifications are read while a
    /// caller awaits `next`, and PostgreSQL queues them on the connection meanwhile.
    pub fn listen(&self, channel: &'static str) -> Listener {
        Listener { pool: self.pool().clone(), channel, listener: None, connected_before: false }
    }
}

/// A follower of one notification channel.
#[derive(Debug)]
pub struct Listener {
    pool: sqlx::PgPool,
    channel: &'static str,
    listener: Option<PgListener>,
    connected_before: bool,
}

impl Listener {
    /// The next notification; [`Notified::Reconnected`] after the connection was lost and made
    /// again (what was notified meanwhile was missed). Waits, retrying every second, while the
    /// database is unreachable. Cancel-safe: dropping the future loses nothing received.
    pub async fn next(&mut self) -> Notified {
        loop {
            let listener = match self.listener.as_mut() {
                Some(listener) => listener,
                None => match self.connect().await {
                    Some(listener) => {
                        let listener = self.listener.insert(listener);
                        if std::mem::replace(&mut self.connected_before, true) {
                            return Notified::Reconnected;
                        }
                        listener
                    }
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            // `try_recv` gives `None` when the connection was lost, rather than reconnecting
            // silently and hiding that notifications may have been missed.
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    return Notified::Payload(notification.payload().to_owned())
                }
                Ok(None) => self.listener = None,
                Err(error) => {
                    tracing::warn!(%error, channel = self.channel, "lost a notification listener");
                    self.listener = None;
                }
            }
        }
    }

    async fn connect(&self) -> Option<PgListener> {
        let channel = self.channel;
        match PgListener::connect_with(&self.pool).await {
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
        }
    }
}
