-- API tokens made at run time. Only a token's SHA-256 is kept: the value is
-- shown once. `configs` is a JSON list of config-id patterns; `expires_at`
-- is unix ms, NULL for never.
CREATE TABLE api_tokens (
    name        VARCHAR(255) NOT NULL PRIMARY KEY,
    role        VARCHAR(255) NOT NULL,
    configs     TEXT NOT NULL,
    token_hash  VARCHAR(64) NOT NULL UNIQUE,
    expires_at  BIGINT,
    created_by  VARCHAR(255) NOT NULL,
    created_at  BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
