//! Bearer-token authentication and scope checks, as the extractor [`Caller`].
//!
//! A handler that takes `Caller<EventsWrite>` runs only for a valid token with the
//! `events:write` scope: the extractor answers 401 or 403 before the handler's body runs, so no
//! handler can forget the check. The route table declares each route's access too (for
//! OpenAPI), and a test holds the two to agreement.
//!
//! A presented token is hashed (SHA-256) and matched against the configured dev tokens (in
//! constant time, since those are compared in memory) and then against storage by hash (a
//! lookup by a hash leaks nothing useful about the secret through timing). Lookups, found or
//! not, are cached for `auth.cache_ttl_ms`: a hot client costs no round trip per request, a
//! flood of bad tokens costs one per distinct token, and the short lifetime bounds how long a
//! revoked token keeps working (or a new one stays unknown) on any server.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::HttpMessage;
use actix_web::{web, FromRequest, HttpRequest};
use anyhow::{anyhow, Context};
use futures_util::future::LocalBoxFuture;
use intake_domain::{NewToken, Scope, StoreError, TenantId, TokenHash, TokenId, TokenStore};
use intake_service::{Account, Ingest, Permit, RateLimits, Refusal};
use moka::future::Cache;
use subtle::ConstantTimeEq;

use crate::problem::ApiError;
use crate::settings::AuthSettings;

/// Who a valid token speaks for: the account it spends from (its tenant and budget) and what
/// it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant and the token's budget.
    pub account: Account,
    /// The token's scopes.
    pub scopes: Vec<Scope>,
}

/// A scope an endpoint requires, as a type, so that the requirement is part of the handler's
/// signature.
pub trait RequiredScope: 'static {
    /// The scope.
    const SCOPE: Scope;
    /// Whether the endpoint spends events of the token's budget itself (then it does so as
    /// soon as it knows how many); other endpoints read the budget, for the response's fields.
    const SPENDS: bool = false;
}

/// Requires `events:write`.
#[derive(Debug)]
pub struct EventsWrite;

impl RequiredScope for EventsWrite {
    const SCOPE: Scope = Scope::EventsWrite;
    const SPENDS: bool = true;
}

/// Requires `events:read`.
#[derive(Debug)]
pub struct EventsRead;

impl RequiredScope for EventsRead {
    const SCOPE: Scope = Scope::EventsRead;
}

/// Requires `schemas:write`.
#[derive(Debug)]
pub struct SchemasWrite;

impl RequiredScope for SchemasWrite {
    const SCOPE: Scope = Scope::SchemasWrite;
}

/// Requires `schemas:read`.
#[derive(Debug)]
pub struct SchemasRead;

impl RequiredScope for SchemasRead {
    const SCOPE: Scope = Scope::SchemasRead;
}

/// The authenticated caller of a request whose token carries the scope `S`.
#[derive(Debug)]
pub struct Caller<S> {
    /// Who is calling.
    pub principal: Principal,
    scope: PhantomData<S>,
}

impl<S> Caller<S> {
    /// The caller's tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.principal.account.tenant
    }

    /// Reads the caller's budget, for the answer's fields.
    pub(crate) async fn read_budget(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let limits = req
            .app_data::<web::Data<RateLimits>>()
            .ok_or_else(|| ApiError::Internal(anyhow!("no rate limits are registered")))?;
        if let Some(budget) = limits.spend(&self.principal.account, 0).await {
            req.extensions_mut().insert(budget);
        }
        Ok(())
    }
}

impl Caller<EventsWrite> {
    /// Spends `cost` events of the caller's budget: the permit to ingest them, or 429 when they
    /// do not fit. The budget goes with the request, for its answer's fields.
    pub async fn permit(
        &self,
        req: &HttpRequest,
        ingest: &Ingest,
        cost: u32,
    ) -> Result<Permit, ApiError> {
        let spent = ingest.spend(&self.principal.account, cost).await;
        let budget = match &spent {
            Ok(permit) => permit.budget(),
            Err(Refusal::RateLimited { budget, .. }) => Some(*budget),
            Err(_) => None,
        };
        if let Some(budget) = budget {
            req.extensions_mut().insert(budget);
        }
        Ok(spent?)
    }
}

impl<S: RequiredScope> FromRequest for Caller<S> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let authenticator = req
                .app_data::<web::Data<Authenticator>>()
                .ok_or_else(|| ApiError::Internal(anyhow!("no authenticator is registered")))?;
            let principal = authenticator.authenticate(&req).await?;
            let caller = Self { principal, scope: PhantomData };
            // Every answer to an authenticated request shows the token's budget, a 403 too.
            if !S::SPENDS || !caller.principal.scopes.contains(&S::SCOPE) {
                caller.read_budget(&req).await?;
            }
            if !caller.principal.scopes.contains(&S::SCOPE) {
                return Err(ApiError::Forbidden(S::SCOPE));
            }
            Ok(caller)
        })
    }
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
    /// An authenticator over `store` and the configured dev tokens.
    pub fn new(settings: &AuthSettings, store: Arc<dyn TokenStore>) -> anyhow::Result<Self> {
        let dev_tokens = settings
            .dev_tokens
            .iter()
            .map(|t| {
                let (tenant, scopes) =
                    t.principal().context("a configured dev token is invalid")?;
                let hash = TokenHash::of(&t.token);
                // A dev token's budget is keyed by a prefix of its hash, never by its secret.
                let budget_key = format!("dev:{}", &hex::encode(hash.as_bytes())[..16]);
                Ok((
                    hash,
                    Principal { account: Account { tenant, budget_key, limit: None }, scopes },
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let ttl = Duration::from_millis(settings.cache_ttl_ms);
        let cache = (!ttl.is_zero())
            .then(|| Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(ttl).build());
        Ok(Self { dev_tokens, store, cache })
    }

    /// The principal of `req`, provided its token is valid (its scopes are the caller's to
    /// check).
    pub async fn authenticate(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        let secret = bearer_token(req)?;
        self.principal(&TokenHash::of(secret))
            .await?
            .ok_or(ApiError::Unauthorized("the token is unknown or revoked"))
    }

    async fn principal(&self, hash: &TokenHash) -> Result<Option<Principal>, ApiError> {
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
            None => lookup.await.map_err(ApiError::from),
        }
    }
}

/// A storage failure that several waiting lookups share.
fn shared_error(error: Arc<StoreError>) -> ApiError {
    let cause = anyhow!("{error:#}");
    ApiError::from(match &*error {
        StoreError::Unavailable(_) => StoreError::Unavailable(cause),
        StoreError::Refused(_) => StoreError::Refused(cause),
        StoreError::Unknown(_) => StoreError::Unknown(cause),
    })
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
