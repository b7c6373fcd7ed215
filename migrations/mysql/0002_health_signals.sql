-- Health signals: what kind of error a report is, who sent it (a device id or
-- a client address), and whether it counted toward breaking its version.
ALTER TABLE error_reports ADD COLUMN kind VARCHAR(32) NOT NULL DEFAULT 'client';
ALTER TABLE error_reports ADD COLUMN source VARCHAR(512) NOT NULL DEFAULT '';
ALTER TABLE error_reports ADD COLUMN counted BIGINT NOT NULL DEFAULT 1;
CREATE INDEX error_reports_counted ON error_reports(code_id, counted, received_at);

-- Why an automatic change happened (the evidence of a break), as JSON.
ALTER TABLE release_events ADD COLUMN detail MEDIUMTEXT;

-- A rotated secret keeps working until `previous_secret_until` (unix ms).
ALTER TABLE configs ADD COLUMN previous_secret VARCHAR(1024);
ALTER TABLE configs ADD COLUMN previous_secret_until BIGINT NOT NULL DEFAULT 0;
