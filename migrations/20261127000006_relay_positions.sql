-- How far `intake relay` has published each tenant's feed into each JetStream stream (contract
-- §12). A position is written only after JetStream acknowledged every event up to it, and only
-- ever moves forward.

CREATE TABLE relay_positions (
    -- The JetStream stream: a relay for a new stream starts from the beginning.
    stream     text        NOT NULL,
    tenant_id  text        NOT NULL,
    -- The feed position of the last event published (see the feed's ordering).
    tx_id      xid8        NOT NULL,
    seq        bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT relay_positions_pkey PRIMARY KEY (stream, tenant_id)
);
