-- Four eyes: a config may require approvals before a release, gray,
-- rollback, status change or plan start applies. A change request holds what
-- it would do (`proposal`, JSON), the config's revision when it was opened
-- (a request whose config moved since is stale and applies nothing), and
-- its approvals (JSON list of {"who","at"}).
ALTER TABLE configs ADD COLUMN approvals_required BIGINT NOT NULL DEFAULT 0;
CREATE TABLE change_requests (
    id            VARCHAR(255) NOT NULL PRIMARY KEY,
    config_id     VARCHAR(255) NOT NULL,
    proposal      TEXT NOT NULL,
    state         VARCHAR(255) NOT NULL,
    author        VARCHAR(255) NOT NULL,
    approvals     TEXT NOT NULL,
    required      BIGINT NOT NULL,
    base_revision BIGINT NOT NULL,
    reason        TEXT,
    decided_by    VARCHAR(255),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    FOREIGN KEY (config_id) REFERENCES configs(id),
    INDEX change_requests_by_config (config_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
