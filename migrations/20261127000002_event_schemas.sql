-- Event schemas: per tenant and event type, numbered versions of a JSON Schema (contract §9).
-- Versions are never changed or removed; a DELETE only ends validation, and the next PUT
-- continues the numbering.

CREATE TABLE event_schemas (
    tenant_id  text        NOT NULL,
    event_type text        NOT NULL,
    -- 1, 2, … per tenant and event type.
    version    integer     NOT NULL,
    -- The JSON Schema document as registered.
    schema     jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT event_schemas_pkey PRIMARY KEY (tenant_id, event_type, version),
    CONSTRAINT event_schemas_version_positive CHECK (version > 0)
);

-- One row per tenant and event type that ever had a schema: the latest version, and whether
-- events of the type are validated against it. A PUT locks this row, so concurrent PUTs of one
-- type number their versions one after the other.
CREATE TABLE event_schema_heads (
    tenant_id      text    NOT NULL,
    event_type     text    NOT NULL,
    latest_version integer NOT NULL,
    -- false after a DELETE: the type is no longer validated, its history stays readable.
    active         boolean NOT NULL,

    CONSTRAINT event_schema_heads_pkey PRIMARY KEY (tenant_id, event_type),
    CONSTRAINT event_schema_heads_latest_fkey FOREIGN KEY (tenant_id, event_type, latest_version)
        REFERENCES event_schemas (tenant_id, event_type, version)
);
