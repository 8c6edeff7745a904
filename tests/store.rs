//! The store on a real SQLite file and a real PostgreSQL database: migrations, durability
//! settings, and the rules the database itself enforces whatever the API does.

mod common;

use common::{Backend, TestDb};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use vca_sip::clock::{SystemClock, WallClock};
use vca_sip::ids::{AiProfileId, CallEventId, CallId, NodeId, PhoneNumberId, TenantId};
use vca_sip::kinds::Transport;

use vca_sip::routing::e164::{CountryCode, Did};
use vca_sip::store::model::{
    Call, CallEvent, CallStatus, CallTransport, Direction, HangupCause, MediaTarget, Plan,
    RecordingStatus, Role, StreamProtocol, TenantStatus,
};
use vca_sip::store::{
    AGENT_DIGEST_ALGORITHMS, AgentPatch, Ha1Set, NewAgent, TenantPatch, default_sip_domain,
};
use vca_sip::store::{
    AiProfilePatch, CallMedia, CallWrite, CallWriter, NewAiProfile, NewPhoneNumber, NewTenant,
    ProfileStream, ResolvedRoute, Store, StoreError, StreamTarget, StreamToken,
};

on_both_backends!(
    migrations_apply_to_an_empty_database_and_reapply_as_a_no_op,
    durability_settings_are_in_force,
    database_refuses_invalid_enum_values,
    database_keeps_did_numbers_unique_and_in_e164,
    database_ties_rows_to_their_owning_tenant,
    calls_and_events_survive_the_index_migrations,
    call_writer_upserts_new_records_and_updates_committed_ones,
    calls_take_every_outcome_value_and_refuse_others,
    call_writer_names_its_node_on_new_rows_and_keeps_it,
    a_restarting_node_closes_only_its_own_live_calls,
    profiles_from_before_migration_6_answer_with_echo_and_the_defaults,
    a_route_takes_the_numbers_profile_then_the_default_then_echo,
    profile_stream_settings_are_written_patched_and_cleared,
    database_refuses_invalid_stream_settings,
    a_calls_recording_is_written_updated_and_deleted_once,
    tenants_from_before_migration_8_get_a_default_sip_domain,
    agents_keep_hashes_only_unique_usernames_and_their_tenant,
);

async fn store(backend: Backend) -> (Store, TestDb) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, db)
}

/// The wall clock's time at the precision the store keeps.
fn now() -> chrono::DateTime<chrono::Utc> {
    vca_sip::store::stamp(SystemClock.now())
}

async fn tenant(store: &Store) -> TenantId {
    store
        .create_tenant(
            NewTenant {
                name: "T".to_owned(),
                status: TenantStatus::Active,
                plan: Plan::Starter,
                default_country_code: "91".to_owned(),
                max_concurrent_calls: 5,
                sip_domain: None,
            },
            now(),
        )
        .await
        .expect("tenant")
        .id
}

/// Runs one statement with up to three bound ids/strings, on whichever backend.
macro_rules! exec {
    ($store:expr, $sql:expr $(, $bind:expr)*) => {
        match $store {
            Store::Sqlite(pool) => sqlx::query($sql)$(.bind($bind))*.execute(pool).await.map(|_| ()),
            Store::Postgres(pool) => sqlx::query($sql)$(.bind($bind))*.execute(pool).await.map(|_| ()),
        }
    };
}

/// A tenant written as the first migration defines it, for a database migrated only part
/// of the way.
async fn tenant_at_an_old_version(store: &Store) -> TenantId {
    let id = TenantId::new();
    exec!(
        store,
        "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ($1, 'Old', $2, $2)",
        id,
        now()
    )
    .expect("tenant at an old version");
    id
}

async fn migrations_apply_to_an_empty_database_and_reapply_as_a_no_op(backend: Backend) {
    let (store, db) = store(backend).await;
    let id = tenant(&store).await;
    store
        .migrate()
        .await
        .expect("re-applied migrations are a no-op");
    store.close().await;
    let again = Store::connect(&db.url).await.expect("reconnect");
    again
        .migrate()
        .await
        .expect("migrations on a migrated database");
    assert_eq!(again.tenant(id).await.expect("data survives").name, "T");
}

async fn durability_settings_are_in_force(backend: Backend) {
    let (store, _db) = store(backend).await;
    let durability = store.durability().await.expect("durability");
    let expected = match backend {
        // synchronous=2 is FULL.
        Backend::Sqlite => "journal_mode=wal synchronous=2",
        Backend::Postgres => "synchronous_commit=on",
    };
    assert_eq!(durability, expected);
}

async fn database_refuses_invalid_enum_values(backend: Backend) {
    let (store, _db) = store(backend).await;
    let id = tenant(&store).await;
    let now = now();
    let bad_status = exec!(
        &store,
        "INSERT INTO tenants (id, name, status, plan, default_country_code, max_concurrent_calls, created_at, updated_at) \
         VALUES ($1, 'x', 'closed', 'starter', '91', 1, $2, $2)",
        TenantId::new(),
        now
    );
    assert!(bad_status.is_err(), "status 'closed' was stored");
    let bad_plan = exec!(&store, "UPDATE tenants SET plan = 'gold' WHERE id = $1", id);
    assert!(bad_plan.is_err(), "plan 'gold' was stored");
    let bad_cc = exec!(
        &store,
        "UPDATE tenants SET default_country_code = '+91' WHERE id = $1",
        id
    );
    assert!(bad_cc.is_err(), "country code '+91' was stored");
    let bad_role = exec!(
        &store,
        "INSERT INTO ai_profiles (id, tenant_id, name, role, system_prompt, is_default, created_at) \
         VALUES ($1, $2, 'p', 'janitor', 'x', FALSE, $3)",
        AiProfileId::new(),
        id,
        now
    );
    assert!(bad_role.is_err(), "role 'janitor' was stored");
    let empty_prompt = exec!(
        &store,
        "INSERT INTO ai_profiles (id, tenant_id, name, role, system_prompt, is_default, created_at) \
         VALUES ($1, $2, 'p', 'sales', '  ', FALSE, $3)",
        AiProfileId::new(),
        id,
        now
    );
    assert!(empty_prompt.is_err(), "an empty system prompt was stored");
}

async fn database_keeps_did_numbers_unique_and_in_e164(backend: Backend) {
    let (store, _db) = store(backend).await;
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let now = now();
    let insert = "INSERT INTO phone_numbers (id, tenant_id, did_number, provider_type, is_active, created_at) \
                  VALUES ($1, $2, $3, 'generic', TRUE, $4)";
    exec!(
        &store,
        insert,
        PhoneNumberId::new(),
        a,
        "+919876543210",
        now
    )
    .expect("first");
    let dup = exec!(
        &store,
        insert,
        PhoneNumberId::new(),
        b,
        "+919876543210",
        now
    );
    assert!(dup.is_err(), "the same DID was stored for two tenants");
    for bad in ["919876543210", "+91 98765 43210", "+0123456789"] {
        let r = exec!(&store, insert, PhoneNumberId::new(), a, bad, now);
        assert!(r.is_err(), "{bad:?} was stored as a DID");
    }
}

async fn database_ties_rows_to_their_owning_tenant(backend: Backend) {
    let (store, _db) = store(backend).await;
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let now = now();
    let profile_b = AiProfileId::new();
    exec!(
        &store,
        "INSERT INTO ai_profiles (id, tenant_id, name, role, system_prompt, is_default, created_at) \
         VALUES ($1, $2, 'p', 'sales', 'x', FALSE, $3)",
        profile_b,
        b,
        now
    )
    .expect("profile");
    let cross = exec!(
        &store,
        "INSERT INTO phone_numbers (id, tenant_id, did_number, provider_type, ai_profile_id, is_active, created_at) \
         VALUES ($1, $2, '+919000000000', 'generic', $3, TRUE, $4)",
        PhoneNumberId::new(),
        a,
        profile_b,
        now
    );
    assert!(
        cross.is_err(),
        "tenant A's number points at tenant B's profile"
    );
    let orphan = exec!(
        &store,
        "INSERT INTO ai_profiles (id, tenant_id, name, role, system_prompt, is_default, created_at) \
         VALUES ($1, $2, 'p', 'sales', 'x', FALSE, $3)",
        AiProfileId::new(),
        TenantId::new(),
        now
    );
    assert!(orphan.is_err(), "a profile without a tenant was stored");
}

/// The version of the newest migration of `backend`.
fn last_migration(backend: Backend) -> i64 {
    let migrator = match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    migrator
        .migrations
        .iter()
        .map(|m| m.version)
        .max()
        .expect("migrations")
}

/// Applies the migrations up to `version` only.
async fn migrate_up_to(store: &Store, backend: Backend, version: i64) {
    let mut migrator = match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    let wanted: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect();
    migrator.migrations = wanted.into();
    match store {
        Store::Sqlite(pool) => migrator.run(pool).await,
        Store::Postgres(pool) => migrator.run(pool).await,
    }
    .unwrap_or_else(|e| panic!("migrations up to {version}: {e}"));
}

/// Migration 3 rebuilds call_events around its (tenant, call, event) key: events recorded
/// before it are still there afterwards, in order.
async fn calls_and_events_survive_the_index_migrations(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.expect("connect");
    let mut before = match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    let up_to_2: Vec<_> = before
        .migrations
        .iter()
        .filter(|m| m.version <= 2)
        .cloned()
        .collect();
    assert_eq!(up_to_2.len(), 2);
    before.migrations = up_to_2.into();
    match &store {
        Store::Sqlite(pool) => before.run(pool).await,
        Store::Postgres(pool) => before.run(pool).await,
    }
    .expect("migrations 1 and 2");
    let tenant = tenant_at_an_old_version(&store).await;
    let call = CallId::new();
    let now = now();
    exec!(
        &store,
        "INSERT INTO calls (id, tenant_id, direction, caller, called, called_raw, sip_call_id, \
         transport, remote_addr, status, started_at) VALUES ($1, $2, 'inbound', '+919876543210', \
         '+914446001234', '04446001234', 'a@b', 'udp', '127.0.0.1:5060', 'ended', $3)",
        call,
        tenant,
        now
    )
    .expect("call at version 2");
    let kinds = ["initiated", "answered", "ended"];
    for (i, kind) in kinds.iter().enumerate() {
        exec!(
            &store,
            "INSERT INTO call_events (id, call_id, tenant_id, kind, at) VALUES ($1, $2, $3, $4, $5)",
            CallEventId::new(),
            call,
            tenant,
            *kind,
            now + chrono::Duration::milliseconds(i as i64)
        )
        .expect("event at version 2");
    }

    store
        .migrate()
        .await
        .expect("migrations 3 and 4 over recorded calls and events");
    let latest: i64 = match &store {
        Store::Sqlite(pool) => {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one(pool)
                .await
        }
        Store::Postgres(pool) => {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one(pool)
                .await
        }
    }
    .expect("applied migrations");
    assert_eq!(latest, last_migration(backend));
    let call_id_index: i64 = match &store {
        Store::Sqlite(pool) => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'calls_sip_call_id'",
            )
            .fetch_one(pool)
            .await
        }
        Store::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'calls_sip_call_id'",
            )
            .fetch_one(pool)
            .await
        }
    }
    .expect("index list");
    assert_eq!(call_id_index, 0, "migration 4 drops the Call-ID index");
    let recorded = store
        .call(tenant, call)
        .await
        .expect("call after migration 4");
    assert_eq!(recorded.sip_call_id, "a@b");
    let events = store.call_events(tenant, call).await.expect("events");
    let got: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(got, kinds);
    assert!(
        events
            .iter()
            .all(|e| e.call_id == call && e.tenant_id == tenant)
    );
    // Migration 5 rebuilds SQLite's calls table: the row keeps every column, gains the new
    // ones empty, and call_events still refers to it.
    assert_eq!(recorded.status, CallStatus::Ended);
    assert_eq!(recorded.q850_cause, None);
    assert_eq!(node_of(&store, call).await, None);
    let orphan = exec!(
        &store,
        "INSERT INTO call_events (id, call_id, tenant_id, kind, at) VALUES ($1, $2, $3, 'x', $4)",
        CallEventId::new(),
        CallId::new(),
        tenant,
        now
    );
    assert!(
        orphan.is_err(),
        "an event of no call was stored after migration 5"
    );
    exec!(
        &store,
        "INSERT INTO call_events (id, call_id, tenant_id, kind, at) VALUES ($1, $2, $3, 'x', $4)",
        CallEventId::new(),
        call,
        tenant,
        now
    )
    .expect("an event of the migrated call");
    if let Store::Sqlite(pool) = &store {
        let parents: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_list('call_events')")
                .fetch_all(pool)
                .await
                .unwrap();
        let mut parents: Vec<String> = parents.into_iter().map(|(t,)| t).collect();
        parents.sort();
        assert_eq!(parents, ["calls", "tenants"]);
        let broken: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(pool)
                .await
                .unwrap();
        assert!(broken.is_empty(), "{broken:?}");
    }
}

fn node(name: &str) -> NodeId {
    NodeId::parse(name).expect("node id")
}

/// The node a call's row names (not part of the API's view of a call).
async fn node_of(store: &Store, call: CallId) -> Option<String> {
    const SQL: &str = "SELECT node_id FROM calls WHERE id = $1";
    match store {
        Store::Sqlite(pool) => sqlx::query_scalar(SQL).bind(call).fetch_one(pool).await,
        Store::Postgres(pool) => sqlx::query_scalar(SQL).bind(call).fetch_one(pool).await,
    }
    .expect("call row")
}

fn answered_call(tenant: TenantId, n: usize) -> Call {
    let at = now();
    Call {
        id: CallId::new(),
        tenant_id: tenant,
        phone_number_id: None,
        ai_profile_id: None,
        trunk_id: None,
        direction: Direction::Inbound,
        caller: format!("+9198765{n:05}"),
        called: "+914446001234".to_owned(),
        called_raw: "04446001234".to_owned(),
        sip_call_id: format!("{n}@writer.test"),
        transport: CallTransport::Sip(Transport::Udp),
        remote_addr: "127.0.0.1:5060".to_owned(),
        codec: None,
        status: CallStatus::Answered,
        sip_status: Some(200),
        q850_cause: None,
        hangup_cause: None,
        started_at: at,
        answered_at: Some(at),
        ended_at: None,
        duration_s: None,
        recording_status: None,
        recording_duration_ms: None,
        recording_bytes: None,
        recording_error: None,
    }
}

fn event(call: &Call, kind: &str) -> CallEvent {
    CallEvent {
        id: CallEventId::new(),
        call_id: call.id,
        tenant_id: call.tenant_id,
        kind: kind.to_owned(),
        at: now(),
        detail: sqlx::types::Json(
            serde_json::json!({"kind": kind, "cause": 16, "text": "a \"quoted\" ü"}),
        ),
    }
}

fn ended(mut call: Call) -> Call {
    call.codec = Some("PCMA".to_owned());
    call.status = CallStatus::Ended;
    call.hangup_cause = Some(HangupCause::CallerBye);
    call.ended_at = Some(now());
    call.duration_s = Some(3);
    call
}

/// The writer's two ways to write a call: a record not known to be committed is upserted
/// whole (also when its later change lands in the same batch); one after a committed
/// durable write is updated in place. 300 of each, so that the 256-row statements run.
async fn call_writer_upserts_new_records_and_updates_committed_ones(backend: Backend) {
    let (store, _db) = store(backend).await;
    let tenant = tenant(&store).await;
    let (writer, _task) = CallWriter::start(store.clone(), 4096, node("edge-a"));

    let calls: Vec<Call> = (0..300).map(|n| answered_call(tenant, n)).collect();
    for call in &calls {
        let events = vec![event(call, "initiated"), event(call, "answered")];
        let write = CallWrite {
            call: call.clone(),
            events,
            stored: false,
        };
        writer.record(write).expect("queued");
    }
    writer.flush().await.expect("answers committed");
    let mut written = Vec::new();
    for call in &calls {
        let write = CallWrite {
            call: ended(call.clone()),
            events: vec![event(call, "ended")],
            stored: true,
        };
        written.push((write.call.clone(), write.events.clone()));
        writer.record(write).expect("queued");
    }
    // One call whose answer and end are queued back to back, without a commit between.
    let quick = answered_call(tenant, 300);
    let first = CallWrite {
        call: quick.clone(),
        events: vec![event(&quick, "answered")],
        stored: false,
    };
    writer.record(first).expect("queued");
    let second = CallWrite {
        call: ended(quick.clone()),
        events: vec![event(&quick, "ended")],
        stored: true,
    };
    written.push((second.call.clone(), second.events.clone()));
    writer.record(second).expect("queued");
    writer.flush().await.expect("ends committed");

    // Every column and event reads back through the pool exactly as it was written.
    for (call, events) in &written {
        let got = store.call(tenant, call.id).await.expect("recorded call");
        assert_eq!(&got, call);
        let got = store.call_events(tenant, call.id).await.expect("events");
        let last = got.last().expect("an event");
        assert_eq!(last, &events[0]);
    }

    for (n, call) in calls.iter().chain([&quick]).enumerate() {
        let got = store.call(tenant, call.id).await.expect("recorded call");
        assert_eq!(got.status, CallStatus::Ended, "call {n}");
        assert_eq!(got.hangup_cause, Some(HangupCause::CallerBye), "call {n}");
        assert_eq!(got.codec.as_deref(), Some("PCMA"), "call {n}");
        assert_eq!(got.duration_s, Some(3), "call {n}");
        assert_eq!(got.caller, call.caller, "call {n}");
        assert_eq!(got.sip_call_id, call.sip_call_id, "call {n}");
        let kinds: Vec<String> = store
            .call_events(tenant, call.id)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.kind)
            .collect();
        let want: &[&str] = if n < 300 {
            &["initiated", "answered", "ended"]
        } else {
            &["answered", "ended"]
        };
        assert_eq!(kinds, want, "call {n}");
    }
}

/// Migration 5's values: every status, hangup cause and transport of the outcome table,
/// and a Q.850 cause, are written and read back as they were; values outside them are
/// refused by the database itself.
async fn calls_take_every_outcome_value_and_refuse_others(backend: Backend) {
    let (store, _db) = store(backend).await;
    let tenant = tenant(&store).await;
    let (writer, _task) = CallWriter::start(store.clone(), 64, node("edge-a"));
    let statuses = [
        CallStatus::Queued,
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::Answered,
        CallStatus::Ended,
        CallStatus::Failed,
    ];
    let causes = [
        HangupCause::CallerBye,
        HangupCause::ServerBye,
        HangupCause::Cancel,
        HangupCause::Timeout,
        HangupCause::Error,
        HangupCause::Rejected,
        HangupCause::Busy,
        HangupCause::NoAnswer,
        HangupCause::AgentUnreachable,
        HangupCause::AgentHangup,
        HangupCause::AgentDisconnected,
        HangupCause::BrowserHangup,
        HangupCause::NodeRestart,
    ];
    let transports = [
        CallTransport::Sip(Transport::Udp),
        CallTransport::Sip(Transport::Tcp),
        CallTransport::Sip(Transport::Tls),
        CallTransport::Sip(Transport::Ws),
        CallTransport::Sip(Transport::Wss),
        CallTransport::Webrtc,
    ];
    let mut written = Vec::new();
    for (n, cause) in causes.into_iter().enumerate() {
        let mut call = answered_call(tenant, n);
        call.status = statuses[n % statuses.len()];
        call.transport = transports[n % transports.len()];
        call.hangup_cause = Some(cause);
        call.sip_status = Some(480);
        call.q850_cause = Some([34, 19, 0, 127][n % 4]);
        writer
            .record(CallWrite {
                call: call.clone(),
                events: Vec::new(),
                stored: false,
            })
            .expect("queued");
        written.push(call);
    }
    writer.flush().await.expect("committed");
    for call in &written {
        assert_eq!(&store.call(tenant, call.id).await.expect("call"), call);
    }
    // The text each value is stored as.
    let texts: Vec<&str> = causes.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        texts,
        [
            "caller_bye",
            "server_bye",
            "cancel",
            "timeout",
            "error",
            "rejected",
            "busy",
            "no_answer",
            "agent_unreachable",
            "agent_hangup",
            "agent_disconnected",
            "browser_hangup",
            "node_restart"
        ]
    );
    assert_eq!(CallStatus::Queued.as_str(), "queued");
    assert_eq!(
        transports.map(CallTransport::as_str),
        ["udp", "tcp", "tls", "ws", "wss", "webrtc"]
    );

    let id = written[0].id;
    for (sql, what) in [
        (
            "UPDATE calls SET status = 'parked' WHERE id = $1",
            "status 'parked'",
        ),
        (
            "UPDATE calls SET hangup_cause = 'unplugged' WHERE id = $1",
            "hangup_cause 'unplugged'",
        ),
        (
            "UPDATE calls SET transport = 'sctp' WHERE id = $1",
            "transport 'sctp'",
        ),
        (
            "UPDATE calls SET q850_cause = 128 WHERE id = $1",
            "q850_cause 128",
        ),
        (
            "UPDATE calls SET q850_cause = -1 WHERE id = $1",
            "q850_cause -1",
        ),
    ] {
        assert!(exec!(&store, sql, id).is_err(), "{what} was stored");
    }
    exec!(
        &store,
        "UPDATE calls SET q850_cause = NULL WHERE id = $1",
        id
    )
    .expect("no Q.850 cause");
}

/// A call's row names the node whose writer inserted it; the updates that follow leave
/// it as it was.
async fn call_writer_names_its_node_on_new_rows_and_keeps_it(backend: Backend) {
    let (store, _db) = store(backend).await;
    let tenant = tenant(&store).await;
    let (a, _task_a) = CallWriter::start(store.clone(), 64, node("edge-a"));
    let (b, _task_b) = CallWriter::start(store.clone(), 64, node("edge-b.example"));
    let of_a = answered_call(tenant, 1);
    let of_b = answered_call(tenant, 2);
    for (writer, call) in [(&a, &of_a), (&b, &of_b)] {
        writer
            .record_durably(CallWrite {
                call: call.clone(),
                events: Vec::new(),
                stored: false,
            })
            .await
            .expect("committed");
    }
    // An update of A's call through B's writer (which no node does) still leaves it A's.
    b.record_durably(CallWrite {
        call: ended(of_a.clone()),
        events: Vec::new(),
        stored: true,
    })
    .await
    .expect("committed");
    assert_eq!(node_of(&store, of_a.id).await.as_deref(), Some("edge-a"));
    assert_eq!(
        node_of(&store, of_b.id).await.as_deref(),
        Some("edge-b.example")
    );
    assert_eq!(
        store.call(tenant, of_a.id).await.unwrap().status,
        CallStatus::Ended
    );
}

/// A node's restart closes the calls it left live, each at its last recorded activity,
/// and leaves its final calls and every call of another node as they were.
async fn a_restarting_node_closes_only_its_own_live_calls(backend: Backend) {
    use chrono::Duration;
    let (store, _db) = store(backend).await;
    let tenant = tenant(&store).await;
    let (a, _task_a) = CallWriter::start(store.clone(), 64, node("edge-a"));
    let (b, _task_b) = CallWriter::start(store.clone(), 64, node("edge-b"));
    let t0 = now() - Duration::seconds(60);
    let at = |ms: i64| t0 + Duration::milliseconds(ms);
    let event_at = |call: &Call, kind: &str, ms: i64| CallEvent {
        at: at(ms),
        ..event(call, kind)
    };
    let with = |n: usize, status: CallStatus, answered: Option<i64>| Call {
        status,
        started_at: at(0),
        answered_at: answered.map(at),
        sip_status: answered.map(|_| 200),
        ..answered_call(tenant, n)
    };
    // Answered at 1 s; its last event (a re-INVITE, say) at 7.5 s.
    let answered = with(1, CallStatus::Answered, Some(1000));
    let answered_events = vec![
        event_at(&answered, "initiated", 0),
        event_at(&answered, "answered", 1000),
        event_at(&answered, "reinvite", 7500),
    ];
    // Answered at 2 s with no event after: it ends at its answer.
    let quiet = with(2, CallStatus::Answered, Some(2000));
    let ringing = with(3, CallStatus::Ringing, None);
    let ringing_events = vec![
        event_at(&ringing, "initiated", 0),
        event_at(&ringing, "ringing", 300),
    ];
    let initiated = with(4, CallStatus::Initiated, None);
    let queued = Call {
        direction: Direction::Outbound,
        ..with(5, CallStatus::Queued, None)
    };
    let done = ended(with(6, CallStatus::Answered, Some(1000)));
    let other_node = with(7, CallStatus::Answered, Some(1000));
    let other_ringing = with(8, CallStatus::Ringing, None);
    for (writer, call, events) in [
        (&a, &answered, answered_events),
        (&a, &quiet, Vec::new()),
        (&a, &ringing, ringing_events),
        (&a, &initiated, Vec::new()),
        (&a, &queued, Vec::new()),
        (&a, &done, Vec::new()),
        (&b, &other_node, Vec::new()),
        (&b, &other_ringing, Vec::new()),
    ] {
        writer
            .record_durably(CallWrite {
                call: call.clone(),
                events,
                stored: false,
            })
            .await
            .expect("committed");
    }
    let restart = now();
    let closed = store
        .close_calls_left_by(&node("edge-a"), restart)
        .await
        .expect("closed");
    assert_eq!(closed, 5);

    let expect = [
        (&answered, CallStatus::Ended, at(7500), Some(6)),
        (&quiet, CallStatus::Ended, at(2000), Some(0)),
        (&ringing, CallStatus::Failed, at(300), None),
        (&initiated, CallStatus::Failed, at(0), None),
        (&queued, CallStatus::Failed, at(0), None),
    ];
    for (call, status, ended_at, duration_s) in expect {
        let got = store.call(tenant, call.id).await.expect("call");
        let want = Call {
            status,
            hangup_cause: Some(HangupCause::NodeRestart),
            ended_at: Some(ended_at),
            duration_s,
            ..call.clone()
        };
        assert_eq!(got, want, "{}", call.caller);
        let events = store.call_events(tenant, call.id).await.expect("events");
        let last = events.last().expect("the closing event");
        let kind = if status == CallStatus::Ended {
            "ended"
        } else {
            "failed"
        };
        assert_eq!(last.kind, kind, "{}", call.caller);
        assert_eq!(last.at, ended_at, "{}", call.caller);
        assert_eq!(last.detail.0["hangup_cause"], "node_restart");
        assert_eq!(
            last.detail.0["closed_at"],
            serde_json::to_value(restart).unwrap()
        );
        if status == CallStatus::Ended {
            assert_eq!(last.detail.0["duration_s"], serde_json::json!(duration_s));
        }
    }
    // Its final call and the other node's live ones are as they were, with no new event.
    for call in [&done, &other_node, &other_ringing] {
        assert_eq!(&store.call(tenant, call.id).await.expect("call"), call);
        assert!(store.call_events(tenant, call.id).await.unwrap().is_empty());
    }
    // A second start finds nothing left to close.
    assert_eq!(
        store
            .close_calls_left_by(&node("edge-a"), now())
            .await
            .unwrap(),
        0
    );
}

fn did(text: &str) -> Did {
    Did::normalize(text, &CountryCode::default()).expect("a number")
}

async fn number(store: &Store, tenant: TenantId, text: &str, profile: Option<AiProfileId>) {
    store
        .create_phone_number(
            tenant,
            NewPhoneNumber {
                did: did(text),
                provider_type: vca_sip::store::model::ProviderType::Generic,
                trunk_id: None,
                ai_profile_id: profile,
                is_active: true,
            },
            now(),
        )
        .await
        .expect("number");
}

fn profile(name: &str, is_default: bool, stream: ProfileStream) -> NewAiProfile {
    NewAiProfile {
        name: name.to_owned(),
        role: Role::Support,
        system_prompt: "Help the caller.".to_owned(),
        is_default,
        stream,
    }
}

fn stream_to(url: &str) -> ProfileStream {
    ProfileStream {
        media_target: MediaTarget::Stream,
        stream_url: Some(url.to_owned()),
        ..ProfileStream::default()
    }
}

/// The route of one number, as the directory would load it.
async fn route_of(store: &Store, text: &str) -> ResolvedRoute {
    store
        .route(did(text).as_str())
        .await
        .expect("route")
        .expect("a known number")
}

fn stream_of(route: &ResolvedRoute) -> Arc<StreamTarget> {
    match &route.media {
        CallMedia::Stream(target) => Arc::clone(target),
        CallMedia::Echo => panic!("{route:?} is echoed"),
    }
}

/// Profiles and numbers written at version 5 keep everything they had, and read back with
/// the defaults of the new columns: echo, twilio, no token, no parameters, 3 s, 30 s, no
/// recording; their routes echo.
async fn profiles_from_before_migration_6_answer_with_echo_and_the_defaults(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.expect("connect");
    migrate_up_to(&store, backend, 5).await;
    let tenant = tenant_at_an_old_version(&store).await;
    let now = now();
    let (default, other) = (AiProfileId::new(), AiProfileId::new());
    for (id, name, is_default) in [(default, "Front desk", true), (other, "Sales", false)] {
        exec!(
            &store,
            "INSERT INTO ai_profiles (id, tenant_id, name, role, system_prompt, is_default, \
             created_at) VALUES ($1, $2, $3, 'receptionist', 'Greet the caller.', $4, $5)",
            id,
            tenant,
            name,
            is_default,
            now
        )
        .expect("profile at version 5");
    }
    exec!(
        &store,
        "INSERT INTO phone_numbers (id, tenant_id, did_number, provider_type, ai_profile_id, \
         is_active, created_at) VALUES ($1, $2, '+919876543210', 'generic', $3, TRUE, $4)",
        PhoneNumberId::new(),
        tenant,
        other,
        now
    )
    .expect("number at version 5");

    store
        .migrate()
        .await
        .expect("migration 6 over existing profiles");
    let read = store.ai_profile(tenant, default).await.expect("profile");
    assert_eq!(
        (
            read.name.as_str(),
            read.role,
            read.is_default,
            read.created_at
        ),
        ("Front desk", Role::Receptionist, true, now)
    );
    assert_eq!(read.system_prompt, "Greet the caller.");
    assert_eq!(read.media_target, MediaTarget::Echo);
    assert_eq!(read.stream_url, None);
    assert_eq!(read.stream_protocol, StreamProtocol::Twilio);
    assert!(!read.stream_auth_token_set);
    assert!(read.stream_parameters.0.is_empty());
    assert_eq!(read.stream_ca_pem, None);
    assert_eq!(read.stream_connect_timeout_ms, 3000);
    assert_eq!(read.max_queued_audio_ms, 30_000);
    assert!(!read.record);
    let listed = store
        .list_ai_profiles(tenant, None, 10)
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 2);
    assert!(
        listed
            .items
            .iter()
            .all(|p| p.media_target == MediaTarget::Echo)
    );

    let route = route_of(&store, "+919876543210").await;
    assert_eq!(route.route.ai_profile_id, Some(other));
    assert_eq!(route.media, CallMedia::Echo);
    // The old profiles take stream settings like new ones.
    let streamed = store
        .update_ai_profile(
            tenant,
            other,
            AiProfilePatch {
                media_target: Some(MediaTarget::Stream),
                stream_url: Some(Some("wss://agent.example/s".to_owned())),
                ..AiProfilePatch::default()
            },
        )
        .await
        .expect("an old profile streams");
    assert_eq!(streamed.name, "Sales");
    assert_eq!(
        stream_of(&route_of(&store, "+919876543210").await).url,
        "wss://agent.example/s"
    );
}

/// The order a route is resolved in, on the database itself: the number's own profile,
/// else the tenant's default, else echo; and the media are that profile's.
async fn a_route_takes_the_numbers_profile_then_the_default_then_echo(backend: Backend) {
    let (store, _db) = store(backend).await;
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let now = now();
    let own = store
        .create_ai_profile(
            a,
            profile(
                "Own",
                false,
                ProfileStream {
                    stream_protocol: StreamProtocol::Exotel,
                    stream_auth_token: Some(StreamToken("own-token".to_owned())),
                    stream_parameters: BTreeMap::from([("lang".to_owned(), "ta-IN".to_owned())]),
                    stream_ca_pem: Some("-----BEGIN CERTIFICATE-----".to_owned()),
                    stream_connect_timeout_ms: 500,
                    max_queued_audio_ms: 5000,
                    record: true,
                    ..stream_to("wss://own.example/agent")
                },
            ),
            now,
        )
        .await
        .expect("own profile");
    let default = store
        .create_ai_profile(
            a,
            profile("Default", true, stream_to("ws://default.example")),
            now,
        )
        .await
        .expect("default profile");
    let echo = store
        .create_ai_profile(a, profile("Echo", false, ProfileStream::default()), now)
        .await
        .expect("echo profile");
    number(&store, a, "+919000000001", Some(own.id)).await;
    number(&store, a, "+919000000002", None).await;
    number(&store, a, "+919000000003", Some(echo.id)).await;
    number(&store, a, "+919000000004", None).await;
    number(&store, b, "+919000000005", None).await;

    // The number's own profile, with every setting it has, the token included.
    let first = route_of(&store, "+919000000001").await;
    assert_eq!(first.route.ai_profile_id, Some(own.id));
    let target = stream_of(&first);
    assert_eq!(
        *target,
        StreamTarget {
            ai_profile_id: own.id,
            url: "wss://own.example/agent".to_owned(),
            protocol: StreamProtocol::Exotel,
            auth_token: Some(StreamToken("own-token".to_owned())),
            parameters: BTreeMap::from([("lang".to_owned(), "ta-IN".to_owned())]),
            ca_pem: Some("-----BEGIN CERTIFICATE-----".to_owned()),
            connect_timeout: Duration::from_millis(500),
            max_queued_audio: Duration::from_secs(5),
            record: true,
        }
    );
    // No profile of its own: the tenant's default, with its defaults.
    let second = route_of(&store, "+919000000002").await;
    assert_eq!(second.route.ai_profile_id, Some(default.id));
    let target = stream_of(&second);
    assert_eq!(target.url, "ws://default.example");
    assert_eq!(target.protocol, StreamProtocol::Twilio);
    assert_eq!(target.auth_token, None);
    assert_eq!(target.connect_timeout, Duration::from_millis(3000));
    assert_eq!(target.max_queued_audio, Duration::from_secs(30));
    assert!(!target.record);
    // Its own profile echoes, whatever the default does.
    let third = route_of(&store, "+919000000003").await;
    assert_eq!(
        (third.route.ai_profile_id, &third.media),
        (Some(echo.id), &CallMedia::Echo)
    );
    // No profile and no default: echo.
    let fifth = route_of(&store, "+919000000005").await;
    assert_eq!(
        (fifth.route.ai_profile_id, &fifth.media),
        (None, &CallMedia::Echo)
    );

    // The whole table agrees with the one-number reads, and the routes of one profile
    // share its settings.
    let all = store.routes().await.expect("routes");
    assert_eq!(all.len(), 5);
    for route in &all {
        assert_eq!(*route, route_of(&store, &route.route.did_number).await);
    }
    let on_default: Vec<Arc<StreamTarget>> = all
        .iter()
        .filter(|r| r.route.ai_profile_id == Some(default.id))
        .map(stream_of)
        .collect();
    assert_eq!(on_default.len(), 2);
    assert!(Arc::ptr_eq(&on_default[0], &on_default[1]));

    // Moving the default moves the numbers without a profile of their own.
    store
        .update_ai_profile(
            a,
            echo.id,
            AiProfilePatch {
                is_default: Some(true),
                ..AiProfilePatch::default()
            },
        )
        .await
        .expect("echo becomes the default");
    let second = route_of(&store, "+919000000002").await;
    assert_eq!(
        (second.route.ai_profile_id, &second.media),
        (Some(echo.id), &CallMedia::Echo)
    );
    assert_eq!(
        stream_of(&route_of(&store, "+919000000001").await).url,
        "wss://own.example/agent"
    );
    // A deleted profile's numbers fall back to the default.
    store.delete_ai_profile(a, own.id).await.expect("delete");
    let first = route_of(&store, "+919000000001").await;
    assert_eq!(
        (first.route.ai_profile_id, &first.media),
        (Some(echo.id), &CallMedia::Echo)
    );
    // Switching the default profile to a stream streams every number it answers.
    store
        .update_ai_profile(
            a,
            echo.id,
            AiProfilePatch {
                media_target: Some(MediaTarget::Stream),
                stream_url: Some(Some("wss://late.example".to_owned())),
                ..AiProfilePatch::default()
            },
        )
        .await
        .expect("the default streams");
    for text in [
        "+919000000001",
        "+919000000002",
        "+919000000003",
        "+919000000004",
    ] {
        assert_eq!(
            stream_of(&route_of(&store, text).await).url,
            "wss://late.example"
        );
    }
    assert_eq!(
        route_of(&store, "+919000000005").await.media,
        CallMedia::Echo
    );
}

/// The token is written and patched but never read back with the profile; a patch leaves
/// what it does not name, and null clears what may be empty.
async fn profile_stream_settings_are_written_patched_and_cleared(backend: Backend) {
    let (store, _db) = store(backend).await;
    let tenant = tenant(&store).await;
    let created = store
        .create_ai_profile(
            tenant,
            profile(
                "Agent",
                false,
                ProfileStream {
                    stream_auth_token: Some(StreamToken("first".to_owned())),
                    stream_parameters: BTreeMap::from([("a".to_owned(), "1".to_owned())]),
                    ..stream_to("wss://agent.example")
                },
            ),
            now(),
        )
        .await
        .expect("profile");
    assert!(created.stream_auth_token_set);
    assert_eq!(created.media_target, MediaTarget::Stream);
    assert_eq!(
        store.ai_profile(tenant, created.id).await.expect("read"),
        created
    );
    number(&store, tenant, "+919111111111", Some(created.id)).await;
    let token = |route: &ResolvedRoute| stream_of(route).auth_token.clone();

    let renamed = store
        .update_ai_profile(
            tenant,
            created.id,
            AiProfilePatch {
                name: Some("Renamed".to_owned()),
                ..AiProfilePatch::default()
            },
        )
        .await
        .expect("rename");
    assert_eq!(renamed.name, "Renamed");
    assert!(renamed.stream_auth_token_set);
    assert_eq!(renamed.stream_url.as_deref(), Some("wss://agent.example"));
    assert_eq!(renamed.stream_parameters, created.stream_parameters);
    assert_eq!(
        token(&route_of(&store, "+919111111111").await),
        Some(StreamToken("first".to_owned()))
    );

    let changed = store
        .update_ai_profile(
            tenant,
            created.id,
            AiProfilePatch {
                stream_auth_token: Some(Some(StreamToken("second".to_owned()))),
                stream_protocol: Some(StreamProtocol::Exotel),
                stream_parameters: Some(BTreeMap::new()),
                stream_ca_pem: Some(Some("PEM".to_owned())),
                stream_connect_timeout_ms: Some(100),
                max_queued_audio_ms: Some(600_000),
                record: Some(true),
                ..AiProfilePatch::default()
            },
        )
        .await
        .expect("change");
    assert_eq!(changed.stream_protocol, StreamProtocol::Exotel);
    assert!(changed.stream_parameters.0.is_empty());
    assert_eq!(changed.stream_ca_pem.as_deref(), Some("PEM"));
    assert_eq!(
        (
            changed.stream_connect_timeout_ms,
            changed.max_queued_audio_ms,
            changed.record
        ),
        (100, 600_000, true)
    );
    assert_eq!(
        token(&route_of(&store, "+919111111111").await),
        Some(StreamToken("second".to_owned()))
    );

    let cleared = store
        .update_ai_profile(
            tenant,
            created.id,
            AiProfilePatch {
                stream_auth_token: Some(None),
                stream_ca_pem: Some(None),
                ..AiProfilePatch::default()
            },
        )
        .await
        .expect("clear");
    assert!(!cleared.stream_auth_token_set);
    assert_eq!(cleared.stream_ca_pem, None);
    assert_eq!(token(&route_of(&store, "+919111111111").await), None);

    // A stream keeps its URL: clearing it is refused, naming it, and changes nothing.
    let refused = store
        .update_ai_profile(
            tenant,
            created.id,
            AiProfilePatch {
                stream_url: Some(None),
                name: Some("Lost".to_owned()),
                ..AiProfilePatch::default()
            },
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid("stream_url"))),
        "{refused:?}"
    );
    let now_read = store.ai_profile(tenant, created.id).await.expect("read");
    assert_eq!(now_read, cleared);
    // Once it echoes, the URL may go.
    let echoed = store
        .update_ai_profile(
            tenant,
            created.id,
            AiProfilePatch {
                media_target: Some(MediaTarget::Echo),
                stream_url: Some(None),
                ..AiProfilePatch::default()
            },
        )
        .await
        .expect("echo without a URL");
    assert_eq!(
        (echoed.media_target, echoed.stream_url),
        (MediaTarget::Echo, None)
    );
    assert_eq!(
        route_of(&store, "+919111111111").await.media,
        CallMedia::Echo
    );
    let missing = store
        .update_ai_profile(tenant, AiProfileId::new(), AiProfilePatch::default())
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn database_refuses_invalid_stream_settings(backend: Backend) {
    let (store, _db) = store(backend).await;
    let tenant = tenant(&store).await;
    let now = now();
    let insert = |columns: &str, values: &str| {
        format!(
            "INSERT INTO ai_profiles (id, tenant_id, name, role, system_prompt, is_default, \
             created_at{columns}) VALUES ($1, $2, 'p', 'sales', 'x', FALSE, $3{values})"
        )
    };
    let good = insert(
        ", media_target, stream_url, stream_parameters",
        ", 'stream', 'wss://agent.example', '{\"a\": \"b\"}'",
    );
    exec!(
        &store,
        sqlx::AssertSqlSafe(good),
        AiProfileId::new(),
        tenant,
        now
    )
    .expect("a valid stream profile");
    for (columns, values, what) in [
        (", media_target", ", 'agents'", "target 'agents'"),
        (", media_target", ", 'stream'", "a stream without a URL"),
        (", stream_url", ", 'https://agent.example'", "an https URL"),
        (
            ", stream_url",
            ", 'wss://'",
            "a URL with nothing after the scheme",
        ),
        (", stream_protocol", ", 'plivo'", "protocol 'plivo'"),
        (", stream_auth_token", ", ''", "an empty token"),
        (
            ", stream_parameters",
            ", '[]'",
            "parameters that are not an object",
        ),
        (
            ", stream_parameters",
            ", '{\"n\": 1}'",
            "a number parameter",
        ),
        (
            ", stream_parameters",
            ", '{\"a\": \"b\", \"c\": null}'",
            "a null parameter",
        ),
        (
            ", stream_parameters",
            ", '{\"o\": {}}'",
            "an object parameter",
        ),
        (
            ", stream_connect_timeout_ms",
            ", 99",
            "a 99 ms connect timeout",
        ),
        (
            ", stream_connect_timeout_ms",
            ", 30001",
            "a 30001 ms connect timeout",
        ),
        (", max_queued_audio_ms", ", 999", "999 ms of queued audio"),
        (
            ", max_queued_audio_ms",
            ", 600001",
            "600001 ms of queued audio",
        ),
    ] {
        let sql = insert(columns, values);
        let result = exec!(
            &store,
            sqlx::AssertSqlSafe(sql),
            AiProfileId::new(),
            tenant,
            now
        );
        assert!(result.is_err(), "{what} was stored");
    }
    let id = AiProfileId::new();
    exec!(&store, sqlx::AssertSqlSafe(insert("", "")), id, tenant, now).expect("an echo profile");
    for (set, what) in [
        ("stream_parameters = '{\"n\": true}'", "a boolean parameter"),
        ("media_target = 'stream'", "a stream without a URL"),
        ("stream_url = 'ws:/x'", "a malformed URL"),
    ] {
        let sql = format!("UPDATE ai_profiles SET {set} WHERE id = $1");
        let result = exec!(&store, sqlx::AssertSqlSafe(sql), id);
        assert!(result.is_err(), "{what} was stored by an update");
    }
}

/// The recording columns go through the writer's insert and update like the others, and
/// only a ready recording is marked deleted, once.
async fn a_calls_recording_is_written_updated_and_deleted_once(backend: Backend) {
    let (store, _db) = store(backend).await;
    let tenant = tenant(&store).await;
    let (writer, _task) = CallWriter::start(store.clone(), 64, node("edge-a"));
    let mut call = answered_call(tenant, 1);
    call.recording_status = Some(RecordingStatus::Recording);
    let write = |call: &Call, stored| CallWrite {
        call: call.clone(),
        events: Vec::new(),
        stored,
    };
    writer
        .record_durably(write(&call, false))
        .await
        .expect("inserted");
    assert_eq!(store.call(tenant, call.id).await.expect("call"), call);
    // Not ready yet: nothing to delete.
    assert!(
        !store
            .delete_recording(tenant, call.id)
            .await
            .expect("query")
    );

    let mut ready = ended(call.clone());
    ready.recording_status = Some(RecordingStatus::Ready);
    ready.recording_duration_ms = Some(4020);
    ready.recording_bytes = Some(128_684);
    writer
        .record_durably(write(&ready, true))
        .await
        .expect("updated");
    assert_eq!(store.call(tenant, call.id).await.expect("call"), ready);

    // Another tenant's id reaches nothing.
    let other = self::tenant(&store).await;
    assert!(!store.delete_recording(other, call.id).await.expect("query"));
    assert!(
        store
            .delete_recording(tenant, call.id)
            .await
            .expect("query")
    );
    assert!(
        !store
            .delete_recording(tenant, call.id)
            .await
            .expect("query")
    );
    let deleted = store.call(tenant, call.id).await.expect("call");
    assert_eq!(deleted.recording_status, Some(RecordingStatus::Deleted));
    assert_eq!(deleted.recording_duration_ms, Some(4020));
    assert_eq!(deleted.recording_bytes, None);

    let mut failed = answered_call(tenant, 2);
    failed.recording_status = Some(RecordingStatus::Failed);
    failed.recording_error = Some("unwritable: /srv/rec: Not a directory".to_owned());
    writer
        .record_durably(write(&failed, false))
        .await
        .expect("inserted");
    assert_eq!(store.call(tenant, failed.id).await.expect("call"), failed);
    assert!(
        !store
            .delete_recording(tenant, failed.id)
            .await
            .expect("query")
    );
}

/// Migration 8 gives every existing tenant `<tenant_id>.agents.invalid`; a new tenant gets
/// the same default or the domain it is created with, and two tenants never share one.
async fn tenants_from_before_migration_8_get_a_default_sip_domain(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.expect("connect");
    migrate_up_to(&store, backend, 7).await;
    let old = tenant_at_an_old_version(&store).await;
    store.migrate().await.expect("migration 8");
    let read = store.tenant(old).await.expect("tenant");
    assert_eq!(read.sip_domain, format!("{old}.agents.invalid"));
    assert_eq!(read.sip_domain, default_sip_domain(old));

    let fresh = tenant(&store).await;
    assert_eq!(
        store.tenant(fresh).await.expect("tenant").sip_domain,
        default_sip_domain(fresh)
    );
    let named = store
        .create_tenant(
            NewTenant {
                name: "Named".to_owned(),
                status: TenantStatus::Active,
                plan: Plan::Starter,
                default_country_code: "91".to_owned(),
                max_concurrent_calls: 5,
                sip_domain: Some("agents.acme.example".to_owned()),
            },
            now(),
        )
        .await
        .expect("tenant with a domain");
    assert_eq!(named.sip_domain, "agents.acme.example");
    let taken = store
        .update_tenant(
            fresh,
            TenantPatch {
                sip_domain: Some("agents.acme.example".to_owned()),
                ..TenantPatch::default()
            },
            now(),
        )
        .await;
    assert!(
        matches!(taken, Err(StoreError::Conflict("sip_domain"))),
        "{taken:?}"
    );
    let moved = store
        .update_tenant(
            fresh,
            TenantPatch {
                sip_domain: Some("agents.other.example".to_owned()),
                ..TenantPatch::default()
            },
            now(),
        )
        .await
        .expect("a free domain");
    assert_eq!(moved.sip_domain, "agents.other.example");
}

fn new_agent(username: &str, realm: &str, password: &str) -> NewAgent {
    NewAgent {
        username: username.to_owned(),
        display_name: Some(format!("Agent {username}")),
        ha1: Ha1Set::compute(&AGENT_DIGEST_ALGORITHMS, username, realm, password),
    }
}

async fn agents_keep_hashes_only_unique_usernames_and_their_tenant(backend: Backend) {
    let (store, _db) = store(backend).await;
    let acme = tenant(&store).await;
    let other = tenant(&store).await;
    let realm = store.tenant(acme).await.expect("tenant").sip_domain;
    let alice = store
        .create_agent(acme, new_agent("alice", &realm, "correct horse"), now())
        .await
        .expect("agent");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.display_name.as_deref(), Some("Agent alice"));
    assert_eq!(alice.tenant_id, acme);
    assert_eq!(store.agent(acme, alice.id).await.expect("read"), alice);
    assert!(matches!(
        store.agent(other, alice.id).await,
        Err(StoreError::NotFound)
    ));

    let again = store
        .create_agent(acme, new_agent("alice", &realm, "another one"), now())
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict("username"))),
        "{again:?}"
    );
    let other_realm = store.tenant(other).await.expect("tenant").sip_domain;
    store
        .create_agent(other, new_agent("alice", &other_realm, "third one"), now())
        .await
        .expect("the same username in another tenant");

    let creds = store
        .agent_credentials(&realm.to_ascii_uppercase(), "alice")
        .await
        .expect("query")
        .expect("alice of acme");
    assert_eq!((creds.tenant_id, creds.agent_id), (acme, alice.id));
    let md5 = vca_sip::kinds::DigestAlgorithm::Md5;
    let sha = vca_sip::kinds::DigestAlgorithm::Sha256;
    assert_eq!(
        creds.ha1.get(md5),
        Some(md5.ha1("alice", &realm, "correct horse").as_str())
    );
    assert_eq!(
        creds.ha1.get(sha),
        Some(sha.ha1("alice", &realm, "correct horse").as_str())
    );
    assert_eq!(
        store.agent_credentials(&realm, "bob").await.expect("query"),
        None
    );

    let bob = store
        .create_agent(acme, new_agent("bob", &realm, "bobs password"), now())
        .await
        .expect("agent");
    let page = store.list_agents(acme, None, 1).await.expect("list");
    assert_eq!(page.items, vec![alice.clone()]);
    assert_eq!(page.next_cursor, Some(alice.id));
    let rest = store
        .list_agents(acme, page.next_cursor, 10)
        .await
        .expect("list");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].id, bob.id);
    assert_eq!(store.count_agents(acme).await.expect("count"), 2);

    let renamed = store
        .update_agent(
            acme,
            alice.id,
            AgentPatch {
                display_name: Some(None),
                ha1: Some(Ha1Set::compute(
                    &AGENT_DIGEST_ALGORITHMS,
                    "alice",
                    &realm,
                    "new password",
                )),
            },
            now(),
        )
        .await
        .expect("update");
    assert_eq!(renamed.display_name, None);
    let creds = store
        .agent_credentials(&realm, "alice")
        .await
        .expect("query")
        .expect("alice");
    assert_eq!(
        creds.ha1.get(md5),
        Some(md5.ha1("alice", &realm, "new password").as_str())
    );
    let kept = store
        .update_agent(acme, bob.id, AgentPatch::default(), now())
        .await
        .expect("empty update");
    assert_eq!(kept.display_name.as_deref(), Some("Agent bob"));
    assert!(matches!(
        store
            .update_agent(other, bob.id, AgentPatch::default(), now())
            .await,
        Err(StoreError::NotFound)
    ));

    assert!(matches!(
        store.delete_agent(other, bob.id).await,
        Err(StoreError::NotFound)
    ));
    store.delete_agent(acme, bob.id).await.expect("delete");
    assert!(matches!(
        store.delete_agent(acme, bob.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.count_agents(acme).await.expect("count"), 1);
}
