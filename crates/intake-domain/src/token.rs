//! API tokens as the domain sees them: a hash, a tenant, a name and scopes.
//!
//! The secret itself never reaches storage; only its SHA-256 does. Tokens carry at least 128
//! bits of randomness, so a fast hash is enough (there is nothing to brute-force).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::event::TenantId;
use crate::rate::RateLimit;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Ingest events.
    EventsWrite,
    /// Read events and the feed.
    EventsRead,
    /// Erase events (contract §14).
    EventsErase,
    /// Register and delete event schemas.
    SchemasWrite,
    /// Read event schemas.
    SchemasRead,
}

impl Scope {
    /// Every scope, for tokens created without an explicit list.
    pub const ALL: [Scope; 5] = [
        Scope::EventsWrite,
        Scope::EventsRead,
        Scope::EventsErase,
        Scope::SchemasWrite,
        Scope::SchemasRead,
    ];

    /// Every scope's name, for messages.
    pub fn names() -> String {
        Self::ALL.map(Scope::as_str).join(", ")
    }

    /// The scope's name on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventsWrite => "events:write",
            Self::EventsRead => "events:read",
            Self::EventsErase => "events:erase",
            Self::SchemasWrite => "schemas:write",
            Self::SchemasRead => "schemas:read",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {name:?}; scopes are {all}", name = .0, all = Scope::names())]
pub struct UnknownScope(String);

/// A string that is not a token id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a token id (tok_ followed by 32 hex digits)")]
pub struct InvalidTokenId(String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.into()))
    }
}

/// The SHA-256 of a token's secret: what storage keeps and looks up.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes a presented secret.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A token's public id, written `tok_` + 32 hex digits; what `tokens revoke` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId(Uuid);

impl TokenId {
    const PREFIX: &'static str = "tok_";

    /// Wraps a UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID behind the id.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0.simple())
    }
}

impl FromStr for TokenId {
    type Err = InvalidTokenId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix(Self::PREFIX).unwrap_or(s);
        Uuid::try_parse(hex).map(Self).map_err(|_| InvalidTokenId(s.to_owned()))
    }
}

/// A token to be stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its public id.
    pub id: TokenId,
    /// The hash of its secret.
    pub hash: TokenHash,
    /// The tenant it acts for.
    pub tenant: TenantId,
    /// A label for people.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Its own rate limit; `None` follows the configured default.
    pub limit: Option<RateLimit>,
}

/// A stored token, without its secret.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// Its public id.
    pub id: TokenId,
    /// The tenant it acts for.
    pub tenant: TenantId,
    /// A label for people.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Its own rate limit; `None` follows the configured default.
    pub limit: Option<RateLimit>,
}
