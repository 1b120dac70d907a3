-- The feed reads a tenant's events in (tx_id, seq) order, from a cursor onwards, optionally of
-- one event type. Both shapes are index range scans that stop after one page.
CREATE INDEX events_feed_idx ON events (tenant_id, tx_id, seq);
CREATE INDEX events_feed_by_type_idx ON events (tenant_id, event_type, tx_id, seq);
