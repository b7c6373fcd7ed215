-- Times are unix milliseconds; JSON is stored as text; flags are 0/1 so both
-- backends read them the same way.
CREATE TABLE configs (
    id              TEXT PRIMARY KEY,
    description     TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT 'active',
    secret          TEXT NOT NULL,
    revision        BIGINT NOT NULL DEFAULT 1,
    release_code_id TEXT,
    gray_code_id    TEXT,
    gray_percentage BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE versions (
    code_id     TEXT PRIMARY KEY,
    config_id   TEXT NOT NULL REFERENCES configs(id),
    lang        TEXT NOT NULL,
    source      TEXT NOT NULL,
    rules       TEXT NOT NULL,
    params      TEXT NOT NULL,
    error_count BIGINT NOT NULL DEFAULT 0,
    broken      BIGINT NOT NULL DEFAULT 0,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX versions_by_config ON versions(config_id, created_at);

CREATE TABLE release_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    config_id  TEXT NOT NULL REFERENCES configs(id),
    revision   BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    forced     BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX release_events_by_config ON release_events(config_id, id);

CREATE TABLE test_cases (
    test_id    TEXT PRIMARY KEY,
    config_id  TEXT NOT NULL REFERENCES configs(id),
    code_id    TEXT NOT NULL REFERENCES versions(code_id),
    name       TEXT NOT NULL,
    meta       TEXT NOT NULL,
    params     TEXT NOT NULL,
    expected   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX test_cases_by_version ON test_cases(code_id);

CREATE TABLE error_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    config_id   TEXT NOT NULL REFERENCES configs(id),
    code_id     TEXT NOT NULL REFERENCES versions(code_id),
    err_time    BIGINT NOT NULL,
    message     TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX error_reports_by_version ON error_reports(code_id, id);
