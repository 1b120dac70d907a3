-- A sender's clock (contract §15): when intake corrected an event's occurred_at for a client
-- whose clock was off by more than limits.skew_correction_min, the instant as reported and
-- the request's sent_at. Both NULL otherwise. Nullable columns without defaults: adding them
-- rewrites nothing and takes a brief lock only.
ALTER TABLE events
    ADD COLUMN occurred_at_reported timestamptz,
    ADD COLUMN sent_at timestamptz;
