-- Nothing reads calls by SIP Call-ID, and the Call-ID is random: keeping it indexed put
-- one insert at a random place of a growing B-tree into every call, a fresh page for the
-- log in most of them (about a third of the call record's cost at 150,000 records).
DROP INDEX calls_sip_call_id;
