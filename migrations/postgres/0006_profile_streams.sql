-- AI profiles say how a call reaches the tenant's agent: `media_target` is `echo` (the
-- caller hears themselves, what every call did before) or `stream` (a WebSocket stream to
-- `stream_url`, in the Twilio or Exotel message shapes). The auth token is written, never
-- returned by the API; `stream_parameters` is a JSON object of strings passed to the agent;
-- `stream_ca_pem` trusts a private CA for `wss://`. Existing profiles get the defaults:
-- echo, twilio, no parameters, 3 s to connect, 30 s of queued agent audio, no recording.
ALTER TABLE ai_profiles
    ADD COLUMN media_target TEXT NOT NULL DEFAULT 'echo'
        CHECK (media_target IN ('echo', 'stream')),
    ADD COLUMN stream_url TEXT
        CHECK (stream_url IS NULL OR (stream_url ~ '^wss?://.' AND length(stream_url) <= 2048)),
    ADD COLUMN stream_protocol TEXT NOT NULL DEFAULT 'twilio'
        CHECK (stream_protocol IN ('twilio', 'exotel')),
    ADD COLUMN stream_auth_token TEXT
        CHECK (stream_auth_token IS NULL OR length(stream_auth_token) BETWEEN 1 AND 4096),
    -- Every parameter value is a string.
    ADD COLUMN stream_parameters JSONB NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(stream_parameters) = 'object'
               AND NOT jsonb_path_exists(stream_parameters, '$.* ? (@.type() != "string")')),
    ADD COLUMN stream_ca_pem TEXT
        CHECK (stream_ca_pem IS NULL OR length(stream_ca_pem) BETWEEN 1 AND 65536),
    ADD COLUMN stream_connect_timeout_ms BIGINT NOT NULL DEFAULT 3000
        CHECK (stream_connect_timeout_ms BETWEEN 100 AND 30000),
    ADD COLUMN max_queued_audio_ms BIGINT NOT NULL DEFAULT 30000
        CHECK (max_queued_audio_ms BETWEEN 1000 AND 600000),
    ADD COLUMN record BOOLEAN NOT NULL DEFAULT FALSE,
    ADD CONSTRAINT ai_profiles_stream_url_required
        CHECK (media_target <> 'stream' OR stream_url IS NOT NULL);
