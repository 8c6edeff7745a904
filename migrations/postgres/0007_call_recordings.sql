-- A call on an AI profile with `record` has a recording: its status (`recording` while the
-- call runs, then `ready` or `failed`, and `deleted` once its file was removed), its length
-- and size once complete, and why it failed. All null for a call that is not recorded.
ALTER TABLE calls
    ADD COLUMN recording_status TEXT
        CHECK (recording_status IN ('recording', 'ready', 'failed', 'deleted')),
    ADD COLUMN recording_duration_ms BIGINT CHECK (recording_duration_ms >= 0),
    ADD COLUMN recording_bytes BIGINT CHECK (recording_bytes >= 0),
    ADD COLUMN recording_error TEXT
        CHECK (recording_error IS NULL OR length(recording_error) <= 1024);
