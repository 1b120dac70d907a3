-- Events, stored exactly once per tenant and idempotency key.
--
-- House rules for this folder: one change per file, never edit a file that has shipped, name
-- every constraint (the code matches on the names), comment why a column exists.

CREATE TABLE events (
    -- The public id (shown as evt_<hex>): a UUIDv7, so new rows land at the end of the index.
    event_id        uuid        NOT NULL,
    tenant_id       text        NOT NULL,
    idempotency_key text        NOT NULL,
    event_type      text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    -- The payload as sent; jsonb keeps numbers exact (numeric) and is queryable.
    data            jsonb       NOT NULL,
    -- SHA-256 of the normalised payload, compared when a key is used again.
    fingerprint     bytea       NOT NULL,
    -- Insertion order within the table, for a stable order among rows of one transaction.
    seq             bigint      GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction's id: a reader of the feed only hands out rows whose writer is
    -- older than every transaction still running, so no row can commit behind a cursor.
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),

    CONSTRAINT events_pkey PRIMARY KEY (event_id),
    -- The deduplication itself: concurrent inserts of one key yield one row.
    CONSTRAINT events_tenant_idempotency_key_unique UNIQUE (tenant_id, idempotency_key),
    CONSTRAINT events_fingerprint_is_sha256 CHECK (octet_length(fingerprint) = 32)
);
