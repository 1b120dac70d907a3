//! What servers tell each other for the live debugger (contract §13), and the port it travels
//! through: each server streams the entries other servers made for the tenants it watches.

use async_trait::async_trait;

use crate::event::TenantId;
use crate::ports::StoreError;

/// A message between servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugMessage {
    /// The sender has readers for the tenant: entries for it are worth making.
    Watch(TenantId),
    /// An entry of the tenant's debugger stream.
    Entry {
        /// The tenant.
        tenant: TenantId,
        /// `accepted` or `rejected` (the stream's event name).
        kind: &'static str,
        /// The entry's JSON.
        json: String,
    },
}

/// The stream's event names an entry may carry.
pub const ENTRY_KINDS: [&str; 2] = ["accepted", "rejected"];

/// How the servers sharing a database reach each other. Best effort: a message may be lost
/// (the debugger then misses an entry); ingest never waits for it.
#[async_trait]
pub trait DebugTransport: std::fmt::Debug + Send + Sync + 'static {
    /// Sends messages to every other server.
    async fn send(&self, messages: &[DebugMessage]) -> Result<(), StoreError>;

    /// A reader of what the other servers send.
    fn inbox(&self) -> Box<dyn DebugInbox>;
}

/// What the other servers send, read while awaited.
#[async_trait]
pub trait DebugInbox: Send {
    /// The next message of another server; waits while the transport is down.
    async fn next(&mut self) -> DebugMessage;
}
