-- Call events are written four or five per call and read only per call, in order: the
-- primary key (tenant, call, event) serves that read, so the separate index goes and each
-- event maintains one index instead of two.
ALTER TABLE call_events DROP CONSTRAINT call_events_pkey;
ALTER TABLE call_events ADD PRIMARY KEY (tenant_id, call_id, id);
DROP INDEX call_events_call;
