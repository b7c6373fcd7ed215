-- Health signals: what kind of error a report is, who sent it (a device id or
-- a client address), and whether it counted toward breaking its version.
ALTER TABLE error_reports ADD COLUMN kind TEXT NOT NULL DEFAULT 'client';
ALTER TABLE error_reports ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE error_reports ADD COLUMN counted BIGINT NOT NULL DEFAULT 1;
CREATE INDEX error_reports_counted ON error_reports(code_id, counted, received_at);

-- Why an automatic change happened (the evidence of a break), as JSON.
ALTER TABLE release_events ADD COLUMN detail TEXT;

-- A rotated secret keeps working until `previous_secret_until` (unix ms).
ALTER TABLE configs ADD COLUMN previous_secret TEXT;
ALTER TABLE configs ADD COLUMN previous_secret_until BIGINT NOT NULL DEFAULT 0;
