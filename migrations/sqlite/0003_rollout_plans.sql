-- Rollout plans: a version raised step by step from gray to stable, each
-- step baked under the health gate. `next_at` (unix ms) is when an active
-- plan moves next; at most one plan per config is open (active or paused).
CREATE TABLE rollout_plans (
    id              TEXT PRIMARY KEY,
    config_id       TEXT NOT NULL REFERENCES configs(id),
    code_id         TEXT NOT NULL REFERENCES versions(code_id),
    steps           TEXT NOT NULL,
    forced          BIGINT NOT NULL DEFAULT 0,
    state           TEXT NOT NULL,
    applied         BIGINT NOT NULL DEFAULT 0,
    next_at         BIGINT,
    step_started_at BIGINT,
    remaining_ms    BIGINT,
    reason          TEXT,
    gate            TEXT,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX rollout_plans_one_open ON rollout_plans(config_id) WHERE state IN ('active', 'paused');
CREATE INDEX rollout_plans_due ON rollout_plans(next_at) WHERE state = 'active';
