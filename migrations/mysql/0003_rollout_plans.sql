-- Rollout plans: a version raised step by step from gray to stable, each
-- step baked under the health gate. `next_at` (unix ms) is when an active
-- plan moves next; at most one plan per config is open (active or paused).
-- MySQL has no partial indexes: `open_config_id` is the config while the
-- plan is open and NULL after, and a unique index allows many NULLs.
CREATE TABLE rollout_plans (
    id              VARCHAR(255) NOT NULL PRIMARY KEY,
    config_id       VARCHAR(255) NOT NULL,
    code_id         VARCHAR(255) NOT NULL,
    steps           MEDIUMTEXT NOT NULL,
    forced          BIGINT NOT NULL DEFAULT 0,
    state           VARCHAR(32) NOT NULL,
    applied         BIGINT NOT NULL DEFAULT 0,
    next_at         BIGINT,
    step_started_at BIGINT,
    remaining_ms    BIGINT,
    reason          TEXT,
    gate            MEDIUMTEXT,
    created_by      VARCHAR(255) NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    open_config_id  VARCHAR(255) AS (CASE WHEN state IN ('active', 'paused') THEN config_id END) STORED,
    FOREIGN KEY (config_id) REFERENCES configs(id),
    FOREIGN KEY (code_id) REFERENCES versions(code_id),
    UNIQUE INDEX rollout_plans_one_open (open_config_id),
    INDEX rollout_plans_due (state, next_at),
    INDEX rollout_plans_by_config (config_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
