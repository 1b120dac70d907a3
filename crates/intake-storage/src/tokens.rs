//! API tokens.

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use intake_domain::{
    NewToken, RateLimit, Scope, StoreError, TenantId, TokenHash, TokenId, TokenRecord, TokenStore,
};
use uuid::Uuid;

use crate::errors::classify;

/// A rate or burst as its column holds it (an `integer`: larger values are capped).
fn limit_column(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}
use crate::PgStore;

/// A token as every statement here returns it (never its hash).
#[derive(Debug)]
struct TokenRow {
    token_id: Uuid,
    tenant_id: String,
    name: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    rate_per_second: Option<i32>,
    rate_burst: Option<i32>,
}

impl TokenRow {
    fn into_record(self) -> Result<TokenRecord, StoreError> {
        let id = self.token_id;
        let corrupt = |what: String| StoreError::Unknown(anyhow!("api_tokens row {id}: {what}"));
        Ok(TokenRecord {
            id: TokenId::from_uuid(id),
            tenant: TenantId::parse(&self.tenant_id).map_err(|e| corrupt(e.to_string()))?,
            name: self.name,
            scopes: self
                .scopes
                .iter()
                .map(|s| s.parse::<Scope>())
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt(e.to_string()))?,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
            limit: match (self.rate_per_second, self.rate_burst) {
                (Some(rate), Some(burst)) => Some(
                    u32::try_from(rate)
                        .ok()
                        .zip(u32::try_from(burst).ok())
                        .and_then(|(rate, burst)| RateLimit::new(rate, burst))
                        .ok_or_else(|| corrupt(format!("rate limit {rate}/{burst}")))?,
                ),
                _ => None,
            },
        })
    }
}

#[async_trait]
impl TokenStore for PgStore {
    async fn find_active(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query_as!(
            TokenRow,
            "SELECT token_id, tenant_id, name, scopes, created_at, revoked_at, rate_per_second,
                    rate_burst
             FROM api_tokens
             WHERE token_hash = $1 AND revoked_at IS NULL",
            &hash.as_bytes()[..],
        )
        .fetch_optional(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        row.map(TokenRow::into_record).transpose()
    }

    async fn create(&self, token: &NewToken) -> Result<TokenRecord, StoreError> {
        let scopes: Vec<String> = token.scopes.iter().map(|s| s.as_str().to_owned()).collect();
        let row = sqlx::query_as!(
            TokenRow,
            "INSERT INTO api_tokens (token_id, token_hash, tenant_id, name, scopes, rate_per_second,
                                     rate_burst)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING token_id, tenant_id, name, scopes, created_at, revoked_at, rate_per_second,
                       rate_burst",
            token.id.as_uuid(),
            &token.hash.as_bytes()[..],
            token.tenant.as_str(),
            &token.name,
            &scopes,
            token.limit.map(|l| limit_column(l.per_second)),
            token.limit.map(|l| limit_column(l.burst)),
        )
        .fetch_one(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        row.into_record()
    }

    async fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query_as!(
            TokenRow,
            "SELECT token_id, tenant_id, name, scopes, created_at, revoked_at, rate_per_second,
                    rate_burst
             FROM api_tokens
             ORDER BY created_at DESC, token_id"
        )
        .fetch_all(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        rows.into_iter().map(TokenRow::into_record).collect()
    }

    async fn set_limit(&self, id: TokenId, limit: Option<RateLimit>) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE api_tokens SET rate_per_second = $2, rate_burst = $3
             WHERE token_id = $1 AND revoked_at IS NULL",
            id.as_uuid(),
            limit.map(|l| limit_column(l.per_second)),
            limit.map(|l| limit_column(l.burst)),
        )
        .execute(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke(&self, id: TokenId) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL",
            id.as_uuid(),
        )
        .execute(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }
}
