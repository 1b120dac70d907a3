-- A token's own rate limit (contract §10): events per second and a burst. NULL in both means
-- the configured default applies.

ALTER TABLE api_tokens ADD COLUMN rate_per_second integer;
ALTER TABLE api_tokens ADD COLUMN rate_burst integer;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_rate_limit_valid
    CHECK ((rate_per_second IS NULL AND rate_burst IS NULL)
           OR (rate_per_second > 0 AND rate_burst > 0));
