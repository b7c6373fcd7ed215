-- Sources are client networks (issue 34). A version broken by reports with
-- no healthy earlier version to fall back to keeps being served, marked
-- `still_served`, until an operator acts; a rollout plan may set its own
-- gate floor (the least reporting networks that fail its gate).
ALTER TABLE versions ADD COLUMN still_served BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollout_plans ADD COLUMN gate_min_sources BIGINT;
