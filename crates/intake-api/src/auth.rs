//! Bearer-token authentication and scope checks, as the extractor [`Caller`].
//!
//! A handler that takes `Caller<EventsWrite>` runs only for a valid token with the
//! `events:write` scope: the extractor answers 401 or 403 before the handler's body runs, so no
//! handler can forget the check. The route table declares each route's access too (for
//! OpenAPI), and a test holds the two to agreement.
//!
//! Who the token speaks for is the application layer's `Authenticator` (dev tokens, storage,
//! a short cache); this module reads the `Authorization` header and checks the scope.

use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::HttpMessage;
use actix_web::{web, FromRequest, HttpRequest};
use anyhow::anyhow;
use futures_util::future::LocalBoxFuture;
use intake_domain::{Budget, Scope, TenantId};
pub use intake_service::auth::{issue_token, Authenticator, IssuedToken, Principal};
use intake_service::{Ingest, Permit, RateLimits, Refusal};

use crate::problem::ApiError;

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

/// Requires `events:erase`.
#[derive(Debug)]
pub struct EventsErase;

impl RequiredScope for EventsErase {
    const SCOPE: Scope = Scope::EventsErase;
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
    /// Refuses (429) a caller whose budget has no room for a single event, before its body is
    /// read; spends nothing. The budget goes with the request, for its answer's fields.
    pub async fn admit(&self, req: &HttpRequest, ingest: &Ingest) -> Result<(), ApiError> {
        let admitted = ingest.admit(&self.principal.account).await;
        note_budget(req, &admitted, |budget| *budget);
        admitted.map(|_| ()).map_err(ApiError::from)
    }

    /// Spends `cost` events of the caller's budget: the permit to ingest them, or 429 when they
    /// do not fit. The budget goes with the request, for its answer's fields.
    pub async fn permit(
        &self,
        req: &HttpRequest,
        ingest: &Ingest,
        cost: u32,
    ) -> Result<Permit, ApiError> {
        let spent = ingest.spend(&self.principal.account, cost).await;
        note_budget(req, &spent, Permit::budget);
        Ok(spent?)
    }
}

/// Puts the budget an answer of the application layer carries (a refusal for the rate limit
/// carries one too) with the request, for its answer's fields.
fn note_budget<T>(
    req: &HttpRequest,
    answer: &Result<T, Refusal>,
    budget_of: impl Fn(&T) -> Option<Budget>,
) {
    let budget = match answer {
        Ok(granted) => budget_of(granted),
        Err(Refusal::RateLimited { budget, .. }) => Some(*budget),
        Err(_) => None,
    };
    if let Some(budget) = budget {
        req.extensions_mut().insert(budget);
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
            let principal = authenticator
                .principal(bearer_token(&req)?)
                .await?
                .ok_or(ApiError::Unauthorized("the token is unknown or revoked"))?;
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

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive.
pub(crate) fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
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
