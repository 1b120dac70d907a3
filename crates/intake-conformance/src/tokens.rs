//! What every [`TokenStore`] must do: find active tokens by the hash of their secret, keep
//! revoked ones listed but never found, list newest first.

use intake_domain::{NewToken, RateLimit, Scope, TenantId, TokenHash, TokenId, TokenStore};

fn new_token(secret: &str, tenant: &str, scopes: Vec<Scope>) -> NewToken {
    NewToken {
        id: TokenId::from_uuid(uuid::Uuid::new_v4()),
        hash: TokenHash::of(secret),
        tenant: TenantId::parse(tenant).expect("valid tenant"),
        name: "ci".into(),
        scopes,
        limit: None,
    }
}

/// A token is found by the hash of its secret, with its tenant and scopes; no other is.
pub async fn a_created_token_is_found_by_the_hash_of_its_secret(store: &dyn TokenStore) {
    let token = new_token("s3cret", "acme", vec![Scope::EventsRead]);
    let created = store.create(&token).await.expect("create");
    assert_eq!(created.id, token.id);
    assert!(created.revoked_at.is_none());
    let found = store.find_active(&TokenHash::of("s3cret")).await.expect("find").expect("present");
    assert_eq!(found.id, token.id);
    assert_eq!(found.tenant.as_str(), "acme");
    assert_eq!(found.scopes, vec![Scope::EventsRead]);
    assert!(store.find_active(&TokenHash::of("other")).await.expect("find").is_none());
}

/// A revoked token is never found again, but stays in the list marked revoked.
pub async fn a_revoked_token_is_no_longer_found_but_still_listed(store: &dyn TokenStore) {
    let token = new_token("s3cret", "acme", Scope::ALL.to_vec());
    store.create(&token).await.expect("create");
    assert!(store.revoke(token.id).await.expect("revoke"));
    assert!(!store.revoke(token.id).await.expect("second revoke"), "already revoked");
    assert!(store.find_active(&TokenHash::of("s3cret")).await.expect("find").is_none());
    let listed = store.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, token.id);
    assert!(listed[0].revoked_at.is_some());
}

/// Revoking a token that was never created changes nothing.
pub async fn an_unknown_token_cannot_be_revoked(store: &dyn TokenStore) {
    let kept = new_token("kept", "acme", Scope::ALL.to_vec());
    store.create(&kept).await.expect("create");
    assert!(!store.revoke(TokenId::from_uuid(uuid::Uuid::new_v4())).await.expect("revoke"));
    assert!(store.find_active(&TokenHash::of("kept")).await.expect("find").is_some());
}

/// The list shows the newest token first.
pub async fn tokens_are_listed_newest_first(store: &dyn TokenStore) {
    let older = new_token("one", "acme", Scope::ALL.to_vec());
    let newer = new_token("two", "globex", Scope::ALL.to_vec());
    store.create(&older).await.expect("create");
    store.create(&newer).await.expect("create");
    let listed: Vec<TokenId> = store.list().await.expect("list").iter().map(|t| t.id).collect();
    assert_eq!(listed, vec![newer.id, older.id]);
}

/// A token's own rate limit is kept, changed, and cleared; an unknown or revoked token's is not.
pub async fn a_token_keeps_its_own_rate_limit(store: &dyn TokenStore) {
    let mut token = new_token("limited", "acme", Scope::ALL.to_vec());
    token.limit = RateLimit::new(5, 10);
    let created = store.create(&token).await.expect("create");
    assert_eq!(created.limit, RateLimit::new(5, 10));
    assert!(store.set_limit(token.id, RateLimit::new(50, 100)).await.expect("update"));
    let found = store.find_active(&TokenHash::of("limited")).await.expect("find").expect("present");
    assert_eq!(found.limit, RateLimit::new(50, 100));
    assert!(store.set_limit(token.id, None).await.expect("clear"));
    let listed = store.list().await.expect("list");
    assert_eq!(listed[0].limit, None);
    assert!(!store
        .set_limit(TokenId::from_uuid(uuid::Uuid::new_v4()), None)
        .await
        .expect("unknown"));
    store.revoke(token.id).await.expect("revoke");
    assert!(!store.set_limit(token.id, RateLimit::new(1, 1)).await.expect("revoked"));
}
