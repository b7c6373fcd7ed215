-- Four eyes: a config may require approvals before a release, gray,
-- rollback, status change or plan start applies. A change request holds what
-- it would do (`proposal`, JSON), the config's revision when it was opened
-- (a request whose config moved since is stale and applies nothing), and
-- its approvals (JSON list of {"who","at"}).
ALTER TABLE configs ADD COLUMN approvals_required BIGINT NOT NULL DEFAULT 0;
CREATE TABLE change_requests (
    id            TEXT NOT NULL PRIMARY KEY,
    config_id     TEXT NOT NULL REFERENCES configs(id),
    proposal      TEXT NOT NULL,
    state         TEXT NOT NULL,
    author        TEXT NOT NULL,
    approvals     TEXT NOT NULL,
    required      BIGINT NOT NULL,
    base_revision BIGINT NOT NULL,
    reason        TEXT,
    decided_by    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX change_requests_by_config ON change_requests (config_id, created_at);
