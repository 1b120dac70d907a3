//! API tokens.

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use intake_domain::{
    NewToken, Scope, StoreError, TenantId, TokenHash, TokenId, TokenRecord, TokenStore,
};
use uuid::Uuid;

use crate::errors::classify;
use crate::PgStore;

/// A token as every statement here returns it (never its hash).
#[derive(Debug, sqlx::FromRow)]
struct TokenRow {
    token_id: Uuid,
    tenant_id: String,
    name: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
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
        })
    }
}

const FIND_ACTIVE: &str = "
SELECT token_id, tenant_id, name, scopes, created_at, revoked_at
FROM api_tokens
WHERE token_hash = $1 AND revoked_at IS NULL";

const CREATE: &str = "
INSERT INTO api_tokens (token_id, token_hash, tenant_id, name, scopes)
VALUES ($1, $2, $3, $4, $5)
RETURNING token_id, tenant_id, name, scopes, created_at, revoked_at";

const LIST: &str = "
SELECT token_id, tenant_id, name, scopes, created_at, revoked_at
FROM api_tokens
ORDER BY created_at DESC, token_id";

const REVOKE: &str = "
UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL";

#[async_trait]
impl TokenStore for PgStore {
    async fn find_active(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        let row: Option<TokenRow> = sqlx::query_as(FIND_ACTIVE)
            .bind(&hash.as_bytes()[..])
            .fetch_optional(&mut *self.acquire().await?)
            .await
            .map_err(classify)?;
        row.map(TokenRow::into_record).transpose()
    }

    async fn create(&self, token: &NewToken) -> Result<TokenRecord, StoreError> {
        let scopes: Vec<&str> = token.scopes.iter().map(|s| s.as_str()).collect();
        let row: TokenRow = sqlx::query_as(CREATE)
            .bind(token.id.as_uuid())
            .bind(&token.hash.as_bytes()[..])
            .bind(token.tenant.as_str())
            .bind(&token.name)
            .bind(&scopes)
            .fetch_one(&mut *self.acquire().await?)
            .await
            .map_err(classify)?;
        row.into_record()
    }

    async fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows: Vec<TokenRow> =
            sqlx::query_as(LIST).fetch_all(&mut *self.acquire().await?).await.map_err(classify)?;
        rows.into_iter().map(TokenRow::into_record).collect()
    }

    async fn revoke(&self, id: TokenId) -> Result<bool, StoreError> {
        let done = sqlx::query(REVOKE)
            .bind(id.as_uuid())
            .execute(&mut *self.acquire().await?)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }
}
