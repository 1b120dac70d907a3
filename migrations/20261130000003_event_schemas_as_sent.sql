-- A schema document is kept as the JSON text intake wrote, no longer as jsonb: jsonb spelled
-- `1e1000` with a thousand digits, so a document within `schemas.max_bytes` as sent could grow
-- past it once stored (and then no longer compile, leaving its type unchecked), and a PUT of the
-- very document stored read as a different one. Rewrites the (small) table.
ALTER TABLE event_schemas ALTER COLUMN schema TYPE json USING schema::json;
