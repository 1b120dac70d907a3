//! The fingerprint of an event's payload, which tells a retry from a reused key.
//!
//! Two payloads have one fingerprint when they have the same `event_type`, the same
//! `occurred_at` instant (whatever offset notation it was written in) and the same `data` value
//! (whatever order its keys came in). Numbers are compared as written: `1.0` and `1` differ.

use sha2::{Digest, Sha256};

use crate::event::{EventData, EventType, OccurredAt};

/// SHA-256 over a canonical encoding of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a payload.
    pub fn of(event_type: &EventType, occurred_at: &OccurredAt, data: &EventData) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"intake.fingerprint.v1\0");
        hasher.update(event_type.as_str().as_bytes());
        hasher.update(b"\0");
        hasher.update(occurred_at.unix_micros().to_be_bytes());
        hasher.update(data.canonical_json().as_bytes());
        Self(hasher.finalize().into())
    }

    /// Wraps bytes read from storage; `None` when they are not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}
