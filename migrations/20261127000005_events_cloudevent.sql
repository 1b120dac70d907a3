-- The CloudEvents context an event came with (contract §11): id, source, subject, dataschema,
-- datacontenttype and extension attributes, read back when the event is asked for as a
-- CloudEvent. NULL for an event sent as plain JSON. Adding it rewrites nothing.

ALTER TABLE events ADD COLUMN cloudevent jsonb;
