-- API tokens. Only the SHA-256 of a token's secret is stored; the secret is shown once.

CREATE TABLE api_tokens (
    -- The public id (shown as tok_<hex>), used to list and revoke.
    token_id   uuid        NOT NULL,
    token_hash bytea       NOT NULL,
    tenant_id  text        NOT NULL,
    name       text        NOT NULL,
    scopes     text[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,

    CONSTRAINT api_tokens_pkey PRIMARY KEY (token_id),
    -- Authentication looks tokens up by hash.
    CONSTRAINT api_tokens_token_hash_unique UNIQUE (token_hash),
    CONSTRAINT api_tokens_token_hash_is_sha256 CHECK (octet_length(token_hash) = 32),
    CONSTRAINT api_tokens_scopes_known
        CHECK (scopes <@ ARRAY['events:write', 'events:read']::text[])
);
