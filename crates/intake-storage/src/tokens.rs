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

type TokenRow = (Uuid, String, String, Vec<String>, DateTime<Utc>, Option<DateTime<Utc>>);

const COLUMNS: &str = "token_id, tenant_id, name, scopes, created_at, revoked_at";

fn record(row: TokenRow) -> Result<TokenRecord, StoreError> {
    let (id, tenant, name, scopes, created_at, revoked_at) = row;
    let corrupt = |what: String| StoreError::Unknown(anyhow!("api_tokens row {id}: {what}"));
    Ok(TokenRecord {
        id: TokenId::from_uuid(id),
        tenant: TenantId::parse(&tenant).map_err(corrupt)?,
        name,
        scopes: scopes
            .iter()
            .map(|s| s.parse::<Scope>())
            .collect::<Result<_, _>>()
            .map_err(corrupt)?,
        created_at,
        revoked_at,
    })
}

#[async_trait]
impl TokenStore for PgStore {
    async fn find_active(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        );
        let row: Option<TokenRow> = sqlx::query_as(&sql)
            .bind(&hash.as_bytes()[..])
            .fetch_optional(&mut *self.acquire().await?)
            .await
            .map_err(classify)?;
        row.map(record).transpose()
    }

    async fn create(&self, token: &NewToken) -> Result<TokenRecord, StoreError> {
        let sql = format!(
            "INSERT INTO api_tokens (token_id, token_hash, tenant_id, name, scopes)
             VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
        );
        let scopes: Vec<&str> = token.scopes.iter().map(|s| s.as_str()).collect();
        let row: TokenRow = sqlx::query_as(&sql)
            .bind(token.id.as_uuid())
            .bind(&token.hash.as_bytes()[..])
            .bind(token.tenant.as_str())
            .bind(&token.name)
            .bind(&scopes)
            .fetch_one(&mut *self.acquire().await?)
            .await
            .map_err(classify)?;
        record(row)
    }

    async fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens ORDER BY created_at DESC, token_id");
        let rows: Vec<TokenRow> =
            sqlx::query_as(&sql).fetch_all(&mut *self.acquire().await?).await.map_err(classify)?;
        rows.into_iter().map(record).collect()
    }

    async fn revoke(&self, id: TokenId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL",
        )
        .bind(id.as_uuid())
        .execute(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }
}
