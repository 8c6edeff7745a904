-- AI profiles say how a call reaches the tenant's agent: `media_target` is `echo` (the
-- caller hears themselves, what every call did before) or `stream` (a WebSocket stream to
-- `stream_url`, in the Twilio or Exotel message shapes). The auth token is written, never
-- returned by the API; `stream_parameters` is a JSON object of strings passed to the agent;
-- `stream_ca_pem` trusts a private CA for `wss://`. Existing profiles get the defaults:
-- echo, twilio, no parameters, 3 s to connect, 30 s of queued agent audio, no recording.
--
-- Columns are added in place (SQLite tests an added column's CHECKs against the rows
-- already there), so that the phone numbers' reference to profiles stays as it is. A column
-- CHECK may read the other columns of its row: `stream_url`'s requires it for a stream.
ALTER TABLE ai_profiles ADD COLUMN media_target TEXT NOT NULL DEFAULT 'echo'
    CHECK (media_target IN ('echo', 'stream'));
ALTER TABLE ai_profiles ADD COLUMN stream_url TEXT
    CHECK (stream_url IS NULL OR ((stream_url GLOB 'ws://?*' OR stream_url GLOB 'wss://?*')
                                  AND length(stream_url) <= 2048))
    CHECK (media_target <> 'stream' OR stream_url IS NOT NULL);
ALTER TABLE ai_profiles ADD COLUMN stream_protocol TEXT NOT NULL DEFAULT 'twilio'
    CHECK (stream_protocol IN ('twilio', 'exotel'));
ALTER TABLE ai_profiles ADD COLUMN stream_auth_token TEXT
    CHECK (stream_auth_token IS NULL OR length(stream_auth_token) BETWEEN 1 AND 4096);
ALTER TABLE ai_profiles ADD COLUMN stream_parameters TEXT NOT NULL DEFAULT '{}'
    CHECK (json_valid(stream_parameters) AND json_type(stream_parameters) = 'object');
ALTER TABLE ai_profiles ADD COLUMN stream_ca_pem TEXT
    CHECK (stream_ca_pem IS NULL OR length(stream_ca_pem) BETWEEN 1 AND 65536);
ALTER TABLE ai_profiles ADD COLUMN stream_connect_timeout_ms INTEGER NOT NULL DEFAULT 3000
    CHECK (stream_connect_timeout_ms BETWEEN 100 AND 30000);
ALTER TABLE ai_profiles ADD COLUMN max_queued_audio_ms INTEGER NOT NULL DEFAULT 30000
    CHECK (max_queued_audio_ms BETWEEN 1000 AND 600000);
ALTER TABLE ai_profiles ADD COLUMN record BOOLEAN NOT NULL DEFAULT 0;

-- Every parameter value is a string. A CHECK cannot run a query, so triggers read the
-- object's members (a value that is not valid JSON is left to the CHECK above).
CREATE TRIGGER ai_profiles_stream_parameters_insert
    BEFORE INSERT ON ai_profiles
    WHEN json_valid(NEW.stream_parameters)
         AND EXISTS (SELECT 1 FROM json_each(NEW.stream_parameters) WHERE type <> 'text')
BEGIN
    SELECT RAISE(ABORT, 'stream_parameters values must be strings');
END;
CREATE TRIGGER ai_profiles_stream_parameters_update
    BEFORE UPDATE OF stream_parameters ON ai_profiles
    WHEN json_valid(NEW.stream_parameters)
         AND EXISTS (SELECT 1 FROM json_each(NEW.stream_parameters) WHERE type <> 'text')
BEGIN
    SELECT RAISE(ABORT, 'stream_parameters values must be strings');
END;
