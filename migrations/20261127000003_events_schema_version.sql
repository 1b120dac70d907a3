-- The schema version an event's data was checked against (contract §9); NULL when its type had
-- no schema. Adding a nullable column without a default rewrites nothing.

ALTER TABLE events ADD COLUMN schema_version integer;
