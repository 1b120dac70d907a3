-- An event's data and CloudEvents context are kept as the JSON text intake wrote (keys sorted,
-- numbers as the client spelled them), no longer as jsonb: jsonb normalises numbers, so 7 bytes
-- of `1e1000` read back as 1,001 digits, and `1.0` or `1E+2` came back spelled otherwise. `json`
-- keeps the text, so what is read back is never larger than what was sent.
--
-- Rewrites the table (one pass; existing rows keep the spelling jsonb gave them). Nothing reads
-- these columns by path, so no index depends on jsonb.
ALTER TABLE events
    ALTER COLUMN data TYPE json USING data::json,
    ALTER COLUMN cloudevent TYPE json USING cloudevent::json;
