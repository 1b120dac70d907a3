//! Who a token speaks for: the configured dev tokens (compared in constant time, since they are
//! held in memory), else storage by the token's hash (a lookup by a hash leaks nothing useful
//! about the secret through timing); and issuing new tokens.
//!
//! Lookups, found or not, are cached for a short time: a hot client costs no round trip per
//! request, a flood of bad tokens costs one per distinct token, and the short lifetime bounds
//! how long a revoked token keeps working (or a new one stays unknown) on any server.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use intake_domain::{NewToken, Scope, StoreError, TenantId, TokenHash, TokenId, TokenStore};
use moka::future::Cache;
use subtle::ConstantTimeEq;

use crate::limits::Account;

/// Who a valid token speaks for: the account it spends from (its tenant and budget) and what
/// it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant and the token's budget.
    pub account: Account,
    /// The token's scopes.
    pub scopes: Vec<Scope>,
}

/// The most cached lookups kept.
const CACHE_CAPACITY: u64 = 100_000;

/// Checks bearer tokens.
pub struct Authenticator {
    dev_tokens: Vec<(TokenHash, Principal)>,
    store: Arc<dyn TokenStore>,
    /// Every lookup's answer, `None` for a token storage does not know.
    cache: Option<Cache<TokenHash, Option<Principal>>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("dev_tokens", &self.dev_tokens.len())
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator over `store` and the dev tokens (secret, tenant, scopes); lookups are
    /// cached for `cache_ttl` (zero: not cached).
    pub fn new(
        dev_tokens: Vec<(String, TenantId, Vec<Scope>)>,
        store: Arc<dyn TokenStore>,
        cache_ttl: Duration,
    ) -> Self {
        let dev_tokens = dev_tokens
            .into_iter()
            .map(|(secret, tenant, scopes)| {
                let hash = TokenHash::of(&secret);
                // A dev token's budget is keyed by a prefix of its hash, never by its secret.
                let budget_key = format!("dev:{}", &hex::encode(hash.as_bytes())[..16]);
                (hash, Principal { account: Account { tenant, budget_key, limit: None }, scopes })
            })
            .collect();
        let cache = (!cache_ttl.is_zero())
            .then(|| Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(cache_ttl).build());
        Self { dev_tokens, store, cache }
    }

    /// Who the token `secret` speaks for; `None` when it is unknown or revoked.
    pub async fn principal(&self, secret: &str) -> Result<Option<Principal>, StoreError> {
        let hash = &TokenHash::of(secret);
        let mut from_config = None;
        for (dev_hash, principal) in &self.dev_tokens {
            if bool::from(dev_hash.as_bytes().ct_eq(hash.as_bytes())) {
                from_config = Some(principal.clone());
            }
        }
        if from_config.is_some() {
            return Ok(from_config);
        }
        let lookup = async {
            let record = self.store.find_active(hash).await?;
            Ok::<_, StoreError>(record.map(|r| Principal {
                account: Account { tenant: r.tenant, budget_key: r.id.to_string(), limit: r.limit },
                scopes: r.scopes,
            }))
        };
        match &self.cache {
            // Concurrent lookups of one token share one query; failures are not cached.
            Some(cache) => cache.try_get_with(*hash, lookup).await.map_err(shared_error),
            None => lookup.await,
        }
    }
}

/// A storage failure that several waiting lookups share.
fn shared_error(error: Arc<StoreError>) -> StoreError {
    let cause = anyhow!("{error:#}");
    match &*error {
        StoreError::Unavailable(_) => StoreError::Unavailable(cause),
        StoreError::Refused(_) => StoreError::Refused(cause),
        StoreError::Unknown(_) => StoreError::Unknown(cause),
    }
}

/// A freshly made token: its secret (shown once) and what is stored.
#[derive(Debug)]
pub struct IssuedToken {
    /// The secret clients send; never stored.
    pub secret: String,
    /// The record to store.
    pub token: NewToken,
}

/// Makes a token with 256 random bits for `tenant`.
pub fn issue_token(
    tenant: TenantId,
    name: String,
    scopes: Vec<Scope>,
) -> anyhow::Result<IssuedToken> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness: {e}"))?;
    let secret = format!("itk_{}", hex::encode(bytes));
    let token = NewToken {
        id: TokenId::from_uuid(uuid::Uuid::new_v4()),
        hash: TokenHash::of(&secret),
        tenant,
        name,
        scopes,
        limit: None,
    };
    Ok(IssuedToken { secret, token })
}
