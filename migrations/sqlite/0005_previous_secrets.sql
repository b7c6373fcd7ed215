-- Every secret rotated away keeps its own grace (at most eight, newest
-- first): a JSON list of {"secret","until"}. `previous_secret` and
-- `previous_secret_until` keep the newest, as before. NULL: none.
ALTER TABLE configs ADD COLUMN previous_secrets TEXT;
UPDATE configs
SET previous_secrets = json_array(json_object('secret', previous_secret, 'until', previous_secret_until))
WHERE previous_secret IS NOT NULL;
