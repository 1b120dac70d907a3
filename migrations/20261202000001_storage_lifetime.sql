-- Storage lifetime (contract §14): events in time partitions that are dropped whole once
-- expired, idempotency keys in a table of their own that is rotated in generations, erasure.
-- docs/architecture.md ("Storage lifetime") explains the design; this file turns an existing
-- installation's single events table into it without losing an event or a key.
--
-- Runs in one transaction (sqlx's default): an interrupted upgrade leaves the old layout whole.
-- Its cost is one copy of every event and one of every key (docs/operations.md has figures).

-- The instant a UUIDv7 was made, from its first 48 bits (milliseconds since the Unix epoch).
CREATE FUNCTION intake_uuid_time(id uuid) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN to_timestamp((('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint)
                        / 1000.0);

-- The smallest UUID of the millisecond `at` falls in: every UUIDv7 made at or after that
-- millisecond sorts at or after it (UUIDs compare byte by byte).
CREATE FUNCTION intake_time_uuid(at timestamptz) RETURNS uuid
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid;

-- The keys window --------------------------------------------------------------------------

-- Generations of idempotency keys: a key is written into the current generation (the highest
-- number); a generation is dropped whole once every key in it is older than retention.keys.
-- A rotation (a new current generation) is made under an exclusive advisory lock that every
-- ingest transaction holds shared, so no key is ever written into a generation that is no
-- longer current once the rotation has committed.
CREATE TABLE event_key_generations (
    generation integer     NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT event_key_generations_pkey PRIMARY KEY (generation),
    CONSTRAINT event_key_generations_positive CHECK (generation > 0)
);

-- The key of every event received within the keys window, with what deciding a retry needs:
-- it outlives its event (expired or erased), so that a replay still answers with its id.
CREATE TABLE event_keys (
    generation      integer     NOT NULL,
    tenant_id       text        NOT NULL,
    idempotency_key text        NOT NULL,
    event_id        uuid        NOT NULL,
    received_at     timestamptz NOT NULL,
    -- SHA-256 of the normalised payload, compared when the key is used again.
    fingerprint     bytea       NOT NULL,

    -- The deduplication itself: within a generation, concurrent inserts of one key yield one
    -- row. (A unique constraint of a partitioned table must hold its partition key.)
    CONSTRAINT event_keys_unique UNIQUE (tenant_id, idempotency_key, generation),
    CONSTRAINT event_keys_fingerprint_is_sha256 CHECK (octet_length(fingerprint) = 32)
) PARTITION BY LIST (generation);

INSERT INTO event_key_generations (generation) VALUES (1);
CREATE TABLE event_keys_g1 PARTITION OF event_keys FOR VALUES IN (1);

-- Every key stored so far: remembered for one more keys window from now.
INSERT INTO event_keys (generation, tenant_id, idempotency_key, event_id, received_at,
                        fingerprint)
SELECT 1, tenant_id, idempotency_key, event_id, received_at, fingerprint FROM events;

-- Events -----------------------------------------------------------------------------------

ALTER TABLE events RENAME TO events_unpartitioned;
ALTER TABLE events_unpartitioned RENAME CONSTRAINT events_pkey TO events_unpartitioned_pkey;
ALTER TABLE events_unpartitioned
    RENAME CONSTRAINT events_tenant_idempotency_key_unique TO events_unpartitioned_key_unique;
ALTER TABLE events_unpartitioned
    RENAME CONSTRAINT events_fingerprint_is_sha256 TO events_unpartitioned_fingerprint;
ALTER INDEX events_feed_idx RENAME TO events_unpartitioned_feed_idx;
ALTER INDEX events_feed_by_type_idx RENAME TO events_unpartitioned_feed_by_type_idx;

-- Insertion order, shared by every partition (a partitioned table of PostgreSQL 15 cannot have
-- an identity column); it goes on from the old table's.
CREATE SEQUENCE events_seq AS bigint;
SELECT setval('events_seq', coalesce((SELECT max(seq) FROM events_unpartitioned), 0) + 1, false);

-- Partitioned by the event id's range: the id is a UUIDv7 made when the server received the
-- event, so a range of ids is a range of receipt times, `GET /v1/events/{id}` reads exactly one
-- partition, and the primary key stays the id alone. Maintenance (`intake serve`, `intake
-- maintain`) prepares the ranges ahead and drops expired ones; an event whose range is not
-- prepared lands in `events_default`, and maintenance moves it when it prepares the range.
CREATE TABLE events (
    event_id             uuid        NOT NULL,
    tenant_id            text        NOT NULL,
    idempotency_key      text        NOT NULL,
    event_type           text        NOT NULL,
    occurred_at          timestamptz NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT now(),
    data                 json        NOT NULL,
    fingerprint          bytea       NOT NULL,
    seq                  bigint      NOT NULL DEFAULT nextval('events_seq'),
    tx_id                xid8        NOT NULL DEFAULT pg_current_xact_id(),
    schema_version       integer,
    cloudevent           json,
    occurred_at_reported timestamptz,
    sent_at              timestamptz,

    CONSTRAINT events_pkey PRIMARY KEY (event_id),
    CONSTRAINT events_fingerprint_is_sha256 CHECK (octet_length(fingerprint) = 32)
) PARTITION BY RANGE (event_id);
ALTER SEQUENCE events_seq OWNED BY events.seq;
CREATE INDEX events_feed_idx ON events (tenant_id, tx_id, seq);
CREATE INDEX events_feed_by_type_idx ON events (tenant_id, event_type, tx_id, seq);
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- One partition per UTC day that holds old events (maintenance gives newer ranges the width
-- the settings ask for), named as maintenance names them: events_<start, UTC>.
DO $$
DECLARE
    first_day timestamptz;
    last_day  timestamptz;
    day       timestamptz;
    name      text;
BEGIN
    SELECT date_trunc('day', min(intake_uuid_time(event_id)), 'UTC'),
           date_trunc('day', max(intake_uuid_time(event_id)), 'UTC')
      INTO first_day, last_day
      FROM events_unpartitioned;
    IF first_day IS NULL THEN
        RETURN;
    END IF;
    day := first_day;
    WHILE day <= last_day LOOP
        name := 'events_' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MISS');
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                       name, intake_time_uuid(day), intake_time_uuid(day + interval '1 day'));
        day := day + interval '1 day';
    END LOOP;
END
$$;

INSERT INTO events (event_id, tenant_id, idempotency_key, event_type, occurred_at, received_at,
                    data, fingerprint, seq, tx_id, schema_version, cloudevent,
                    occurred_at_reported, sent_at)
SELECT event_id, tenant_id, idempotency_key, event_type, occurred_at, received_at, data,
       fingerprint, seq, tx_id, schema_version, cloudevent, occurred_at_reported, sent_at
FROM events_unpartitioned;

DROP TABLE events_unpartitioned;

-- Erasure ----------------------------------------------------------------------------------

ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scopes_known;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scopes_known
    CHECK (scopes <@ ARRAY['events:write', 'events:read', 'events:erase', 'schemas:write',
                           'schemas:read']::text[]);

-- Events erased by `DELETE /v1/events/{id}` or an erasure by content: a second DELETE of one
-- answers 204 rather than 404. Only ids, never data; maintenance forgets an entry once the
-- event would have expired anyway.
CREATE TABLE erased_events (
    tenant_id text        NOT NULL,
    event_id  uuid        NOT NULL,
    erased_at timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT erased_events_pkey PRIMARY KEY (tenant_id, event_id)
);

-- Erasures by content (`POST /v1/erasures`): every event of the tenant whose data holds
-- `equals` at `pointer` (and of `event_type`, when given), stored before the erasure was made.
-- A worker erases in bounded steps along the tenant's feed, saving its place after each, so
-- that an erasure resumes where it was after a restart.
CREATE TABLE erasures (
    erasure_id  uuid        NOT NULL,
    tenant_id   text        NOT NULL,
    -- The JSON Pointer as sent, and its reference tokens (unescaped) for json_extract_path.
    pointer     text        NOT NULL,
    path        text[]      NOT NULL,
    -- The JSON scalar to match, as JSON text.
    equals      text        NOT NULL,
    event_type  text,
    status      text        NOT NULL DEFAULT 'pending',
    erased      bigint      NOT NULL DEFAULT 0,
    -- Every event of the tenant written by a transaction below this one was stored before the
    -- erasure was made; the walk ends there.
    until_tx    xid8        NOT NULL DEFAULT pg_snapshot_xmax(pg_current_snapshot()),
    -- How far the walk has gone, in feed order.
    after_tx    xid8        NOT NULL DEFAULT '0',
    after_seq   bigint      NOT NULL DEFAULT 0,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,

    CONSTRAINT erasures_pkey PRIMARY KEY (erasure_id),
    CONSTRAINT erasures_status_known
        CHECK (status IN ('pending', 'running', 'done', 'failed'))
);
CREATE INDEX erasures_unfinished_idx ON erasures (created_at) WHERE status IN ('pending', 'running');
-- How many a tenant has (each is capped).
CREATE INDEX erasures_tenant_idx ON erasures (tenant_id, status);

-- Notices of erased events a relay had already published (contract §14): the relay publishes
-- each on <prefix>.<tenant>.$erased once, then removes it.
CREATE TABLE relay_erased_notices (
    stream    text        NOT NULL,
    tenant_id text        NOT NULL,
    event_id  uuid        NOT NULL,
    erased_at timestamptz NOT NULL,

    CONSTRAINT relay_erased_notices_pkey PRIMARY KEY (stream, tenant_id, event_id)
);
