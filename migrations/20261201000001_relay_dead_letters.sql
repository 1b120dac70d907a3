-- Events `intake relay` can never publish into a stream (contract §12): larger than the NATS
-- server takes a message (`max_payload`), or refused by JetStream for a reason that will not
-- change (larger than the stream's own maximum). The relay parks such an event here, logs its
-- id, counts it (`intake_relay_parked_events_total`) and moves its tenant's position past it,
-- so that one event never stops a tenant's relay. The event itself stays where it is (read it
-- with `GET /v1/events/{id}`); this table only says that it was never published, and why.

CREATE TABLE relay_dead_letters (
    -- The JetStream stream the event was not published into.
    stream    text        NOT NULL,
    tenant_id text        NOT NULL,
    event_id  uuid        NOT NULL,
    -- Why it cannot be published (sizes and limits, or JetStream's own words); never the data.
    reason    text        NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),

    -- Parked once per stream: a relay that parks it again (after a restart) changes nothing.
    CONSTRAINT relay_dead_letters_pkey PRIMARY KEY (stream, tenant_id, event_id)
);
