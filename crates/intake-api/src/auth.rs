//! Bearer-token authentication and scope checks.
//!
//! A presented token is hashed (SHA-256) and matched against the configured dev tokens (in
//! constant time, since those are compared in memory) and then against `api_tokens` by hash (a
//! lookup by a hash leaks nothing useful about the secret through timing). Lookups are cached
//! for `auth.cache_ttl_ms` so that a hot client does not cost a database round trip per request;
//! the short lifetime is what bounds how long a revoked token keeps working on any server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::HttpRequest;
use anyhow::Context;
use intake_domain::{NewToken, Scope, TenantId, TokenHash, TokenId, TokenRecord, TokenStore};
use subtle::ConstantTimeEq;

use crate::problem::ApiError;
use crate::settings::AuthSettings;

/// Who is calling: a tenant and what the token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant the token acts for.
    pub tenant: TenantId,
    /// The token's scopes.
    pub scopes: Vec<Scope>,
}

/// The most cached lookups kept; past it the cache starts over (it only saves round trips).
const CACHE_CAPACITY: usize = 10_000;

/// Checks bearer tokens.
pub struct Authenticator {
    dev_tokens: Vec<(TokenHash, Caller)>,
    store: Arc<dyn TokenStore>,
    ttl: Duration,
    cache: Mutex<HashMap<TokenHash, (Instant, Caller)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("dev_tokens", &self.dev_tokens.len())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator over `store` and the configured dev tokens.
    pub fn new(settings: &AuthSettings, store: Arc<dyn TokenStore>) -> anyhow::Result<Self> {
        let dev_tokens = settings
            .dev_tokens
            .iter()
            .map(|t| {
                let (tenant, scopes) =
                    t.principal().context("a configured dev token is invalid")?;
                Ok((TokenHash::of(&t.token), Caller { tenant, scopes }))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            dev_tokens,
            store,
            ttl: Duration::from_millis(settings.cache_ttl_ms),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The caller of `req`, provided its token is valid and has `scope`.
    pub async fn authorize(&self, req: &HttpRequest, scope: Scope) -> Result<Caller, ApiError> {
        let secret = bearer_token(req)?;
        let caller = self.caller(&TokenHash::of(secret)).await?;
        if caller.scopes.contains(&scope) {
            Ok(caller)
        } else {
            Err(ApiError::Forbidden(scope))
        }
    }

    async fn caller(&self, hash: &TokenHash) -> Result<Caller, ApiError> {
        let mut from_config = None;
        for (dev_hash, caller) in &self.dev_tokens {
            if bool::from(dev_hash.as_bytes().ct_eq(hash.as_bytes())) {
                from_config = Some(caller.clone());
            }
        }
        if let Some(caller) = from_config {
            return Ok(caller);
        }
        if let Some(caller) = self.cached(hash) {
            return Ok(caller);
        }
        let record = self
            .store
            .find_active(hash)
            .await?
            .ok_or(ApiError::Unauthorized("the token is unknown or revoked"))?;
        let caller = Caller { tenant: record.tenant, scopes: record.scopes };
        self.remember(*hash, caller.clone());
        Ok(caller)
    }

    fn cached(&self, hash: &TokenHash) -> Option<Caller> {
        let cache = self.cache.lock().ok()?;
        let (at, caller) = cache.get(hash)?;
        (at.elapsed() < self.ttl).then(|| caller.clone())
    }

    fn remember(&self, hash: TokenHash, caller: Caller) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(hash, (Instant::now(), caller));
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive.
fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("send Authorization: Bearer <token>"))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not ASCII"))?;
    let (scheme, token) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized("the Authorization scheme must be Bearer"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::Unauthorized("the bearer token is empty"));
    }
    Ok(token)
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
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let secret = format!("itk_{}", hex::encode(bytes));
    let token = NewToken {
        id: TokenId::from_uuid(uuid::Uuid::new_v4()),
        hash: TokenHash::of(&secret),
        tenant,
        name,
        scopes,
    };
    Ok(IssuedToken { secret, token })
}

/// A line describing a stored token, for `intake tokens list`.
pub fn describe(record: &TokenRecord) -> String {
    let scopes: Vec<&str> = record.scopes.iter().map(|s| s.as_str()).collect();
    let state = match record.revoked_at {
        Some(at) => format!("revoked {}", at.format("%Y-%m-%dT%H:%M:%SZ")),
        None => "active".to_owned(),
    };
    format!(
        "{}\t{}\t{}\t{}\tcreated {}\t{}",
        record.id,
        record.tenant,
        record.name,
        scopes.join(","),
        record.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
        state
    )
}
