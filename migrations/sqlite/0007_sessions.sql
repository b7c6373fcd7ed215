-- Console sessions after single sign-on. Only the session id's SHA-256 is
-- kept, so the table cannot be replayed as cookies; every node reads it, so
-- a sign-out holds everywhere. `grants` is the JSON list of grants the
-- person's groups gave at sign-in; times are unix ms.
CREATE TABLE sessions (
    id_hash     TEXT NOT NULL PRIMARY KEY,
    who         TEXT NOT NULL,
    grants      TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
