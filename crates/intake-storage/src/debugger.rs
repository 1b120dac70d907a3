//! The live debugger's transport over PostgreSQL `NOTIFY`/`LISTEN`, and its codec: each
//! message is one notification `<server> <kind> <tenant> [<json>]` on [`DEBUGGER_CHANNEL`].

use async_trait::async_trait;
use intake_domain::debugger::ENTRY_KINDS;
use intake_domain::{DebugInbox, DebugMessage, DebugTransport, StoreError, TenantId};

use crate::notify::{Listener, Notified, MAX_PAYLOAD};
use crate::PgStore;

/// The channel the debugger's messages travel on.
pub const DEBUGGER_CHANNEL: &str = "intake_debugger";

/// The transport of one server: it names itself in what it sends and skips its own messages.
#[derive(Debug, Clone)]
pub struct PgDebugTransport {
    store: PgStore,
    server: String,
}

impl PgDebugTransport {
    /// A transport over `store`'s database, for a server with a random id.
    pub fn new(store: PgStore) -> Self {
        let mut bytes = [0u8; 8];
        // Without randomness two servers may share an id and skip each other's messages.
        let _ = getrandom::fill(&mut bytes);
        Self { store, server: format!("{:016x}", u64::from_le_bytes(bytes)) }
    }
}

#[async_trait]
impl DebugTransport for PgDebugTransport {
    async fn send(&self, messages: &[DebugMessage]) -> Result<(), StoreError> {
        let payloads: Vec<String> =
            messages.iter().filter_map(|m| encode(&self.server, m)).collect();
        self.store.notify_many(DEBUGGER_CHANNEL, &payloads).await
    }

    fn inbox(&self) -> Box<dyn DebugInbox> {
        Box::new(Inbox {
            listener: self.store.listen(DEBUGGER_CHANNEL),
            server: self.server.clone(),
        })
    }
}

struct Inbox {
    listener: Listener,
    server: String,
}

#[async_trait]
impl DebugInbox for Inbox {
    async fn next(&mut self) -> DebugMessage {
        loop {
            // A listener that reconnected missed messages: a debugger may skip some entries.
            let Notified::Payload(text) = self.listener.next().await else { continue };
            if let Some((from, message)) = decode(&text) {
                if from != self.server {
                    return message;
                }
            }
        }
    }
}

/// A message as a notification's payload; an entry's data is left out when it would not fit.
fn encode(server: &str, message: &DebugMessage) -> Option<String> {
    match message {
        DebugMessage::Watch(tenant) => Some(format!("{server} watch {tenant}")),
        DebugMessage::Entry { tenant, kind, json } => {
            let text = format!("{server} {kind} {tenant} {json}");
            if text.len() <= MAX_PAYLOAD {
                return Some(text);
            }
            let mut entry: serde_json::Value = serde_json::from_str(json).ok()?;
            entry["data"] = serde_json::Value::Null;
            entry["data_omitted"] = true.into();
            let text = format!("{server} {kind} {tenant} {entry}");
            (text.len() <= MAX_PAYLOAD).then_some(text)
        }
    }
}

/// The sender and the message of a payload; `None` for one that is not a message.
fn decode(text: &str) -> Option<(&str, DebugMessage)> {
    let mut parts = text.splitn(4, ' ');
    let (from, kind, tenant) = (parts.next()?, parts.next()?, parts.next()?);
    let tenant = TenantId::parse(tenant).ok()?;
    let message = match (kind, parts.next()) {
        ("watch", _) => DebugMessage::Watch(tenant),
        (kind, Some(json)) => DebugMessage::Entry {
            tenant,
            kind: ENTRY_KINDS.into_iter().find(|k| *k == kind)?,
            json: json.to_owned(),
        },
        _ => return None,
    };
    Some((from, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back_as_it_was_sent() {
        let tenant = TenantId::parse("acme").expect("tenant");
        let messages = [
            DebugMessage::Watch(tenant.clone()),
            DebugMessage::Entry { tenant, kind: "rejected", json: r#"{"status":400}"#.into() },
        ];
        for message in messages {
            let text = encode("s1", &message).expect("fits");
            assert_eq!(decode(&text), Some(("s1", message.clone())), "for {message:?}");
        }
    }

    #[test]
    fn an_entry_too_large_for_a_notification_travels_without_its_data() {
        let tenant = TenantId::parse("acme").expect("tenant");
        let json = serde_json::json!({"event_id": "evt_1", "data": {"blob": "x".repeat(10_000)}});
        let message = DebugMessage::Entry { tenant, kind: "accepted", json: json.to_string() };
        let text = encode("s1", &message).expect("fits without its data");
        assert!(text.len() <= MAX_PAYLOAD);
        let Some((_, DebugMessage::Entry { json, .. })) = decode(&text) else {
            panic!("not an entry: {text}")
        };
        let entry: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(
            (entry["data"].clone(), entry["data_omitted"].clone()),
            (serde_json::Value::Null, true.into())
        );
        assert_eq!(entry["event_id"], "evt_1");
    }

    #[test]
    fn payloads_that_are_not_messages_are_skipped() {
        for text in
            ["", "s1", "s1 watch", "s1 watch Not A Tenant", "s1 other acme {}", "s1 accepted acme"]
        {
            assert_eq!(decode(text), None, "for {text:?}");
        }
    }
}
