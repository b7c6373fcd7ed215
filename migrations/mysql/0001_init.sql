-- Times are unix milliseconds; JSON is stored as text; flags are 0/1, as on
-- the other backends. Ids compare byte for byte (utf8mb4_bin): MySQL's
-- default collations would take `Banner` and `banner` for one config.
-- Ids are VARCHAR because MySQL indexes TEXT only by a prefix.
CREATE TABLE configs (
    id              VARCHAR(255) NOT NULL PRIMARY KEY,
    description     TEXT NOT NULL,
    status          VARCHAR(32) NOT NULL DEFAULT 'active',
    secret          VARCHAR(1024) NOT NULL,
    revision        BIGINT NOT NULL DEFAULT 1,
    release_code_id VARCHAR(255),
    gray_code_id    VARCHAR(255),
    gray_percentage BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE versions (
    code_id     VARCHAR(255) NOT NULL PRIMARY KEY,
    config_id   VARCHAR(255) NOT NULL,
    lang        VARCHAR(32) NOT NULL,
    source      MEDIUMTEXT NOT NULL,
    rules       MEDIUMTEXT NOT NULL,
    params      MEDIUMTEXT NOT NULL,
    error_count BIGINT NOT NULL DEFAULT 0,
    broken      BIGINT NOT NULL DEFAULT 0,
    created_by  VARCHAR(255) NOT NULL,
    created_at  BIGINT NOT NULL,
    FOREIGN KEY (config_id) REFERENCES configs(id),
    INDEX versions_by_config (config_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE release_events (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    config_id  VARCHAR(255) NOT NULL,
    revision   BIGINT NOT NULL,
    kind       VARCHAR(32) NOT NULL,
    actor      VARCHAR(255) NOT NULL,
    from_state MEDIUMTEXT NOT NULL,
    to_state   MEDIUMTEXT NOT NULL,
    forced     BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    FOREIGN KEY (config_id) REFERENCES configs(id),
    INDEX release_events_by_config (config_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- No foreign keys: see error_reports below.
CREATE TABLE test_cases (
    test_id    VARCHAR(255) NOT NULL PRIMARY KEY,
    config_id  VARCHAR(255) NOT NULL,
    code_id    VARCHAR(255) NOT NULL,
    name       TEXT NOT NULL,
    meta       MEDIUMTEXT NOT NULL,
    params     MEDIUMTEXT NOT NULL,
    expected   MEDIUMTEXT NOT NULL,
    created_at BIGINT NOT NULL,
    INDEX test_cases_by_version (code_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- No foreign keys on test cases and reports: InnoDB checks one by taking a
-- shared lock on the parent row, so a row stored without the config's lock
-- would hold the version's row while waiting for the config's, and deadlock
-- with a counted report that holds the config and updates the version (seen
-- under a storm of reports). Every insert selects its config and version
-- from `versions`, and neither is ever deleted.
CREATE TABLE error_reports (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    config_id   VARCHAR(255) NOT NULL,
    code_id     VARCHAR(255) NOT NULL,
    err_time    BIGINT NOT NULL,
    message     MEDIUMTEXT NOT NULL,
    received_at BIGINT NOT NULL,
    INDEX error_reports_by_version (code_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
