-- Tokens may carry the scopes of event schemas (contract §9): schemas:write and schemas:read.

ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scopes_known;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scopes_known
    CHECK (scopes <@ ARRAY['events:write', 'events:read', 'schemas:write', 'schemas:read']::text[]);
