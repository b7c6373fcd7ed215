-- API tokens made at run time. Only a token's SHA-256 is kept: the value is
-- shown once. `configs` is a JSON list of config-id patterns; `expires_at`
-- is unix ms, NULL for never.
CREATE TABLE api_tokens (
    name        TEXT NOT NULL PRIMARY KEY,
    role        TEXT NOT NULL,
    configs     TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  BIGINT,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
