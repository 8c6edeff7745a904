//! The store on a real SQLite file and a real PostgreSQL database: migrations, durability
//! settings, and the rules the database itself enforces whatever the API does.

mod common;

use common::{Backend, TestDb};
use vca_sip::ids::{AiProfileId, CallEventId, CallId, PhoneNumberId, TenantId};
use vca_sip::store::model::{
    Call, CallEvent, CallStatus, Direction, HangupCause, Plan, SipTransport, TenantStatus,
};
use vca_sip::store::{CallWrite, CallWriter, NewTenant, Store};

on_both_backends!(
    migrations_apply_to_an_empty_database_and_reapply_as_a_no_op,
    durability_settings_are_in_force,
    database_refuses_invalid_enum_values,
    database_keeps_did_numbers_unique_and_in_e164,
    database_ties_rows_to_their_owning_tenant,
    calls_and_events_survive_the_index_migrations,
    call_writer_upserts_new_records_and_updates_committed_ones,
);

async fn store(backend: Backend) -> (Store, TestDb) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, db)
}

async fn tenant(store: &Store) -> TenantId {
    store
        .create_tenant(NewTenant {
            name: "T".to_owned(),
            status: TenantStatus::Active,
            plan: Plan::Starter,
            default_country_code: "91".to_owned(),
            max_concurrent_calls: 5,
        })
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
    let now = chrono::Utc::now();
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
    let now = chrono::Utc::now();
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
    let now = chrono::Utc::now();
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
    let tenant = tenant(&store).await;
    let call = CallId::new();
    let now = chrono::Utc::now();
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
    assert_eq!(latest, 4);
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
}

fn answered_call(tenant: TenantId, n: usize) -> Call {
    let at = vca_sip::store::now();
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
        transport: SipTransport::Udp,
        remote_addr: "127.0.0.1:5060".to_owned(),
        codec: None,
        status: CallStatus::Answered,
        sip_status: Some(200),
        hangup_cause: None,
        started_at: at,
        answered_at: Some(at),
        ended_at: None,
        duration_s: None,
    }
}

fn event(call: &Call, kind: &str) -> CallEvent {
    CallEvent {
        id: CallEventId::new(),
        call_id: call.id,
        tenant_id: call.tenant_id,
        kind: kind.to_owned(),
        at: vca_sip::store::now(),
        detail: sqlx::types::Json(
            serde_json::json!({"kind": kind, "cause": 16, "text": "a \"quoted\" ü"}),
        ),
    }
}

fn ended(mut call: Call) -> Call {
    call.codec = Some("PCMA".to_owned());
    call.status = CallStatus::Ended;
    call.hangup_cause = Some(HangupCause::CallerBye);
    call.ended_at = Some(vca_sip::store::now());
    call.duration_s = Some(3);
    call
}

/// The writer's two ways to write a call: a record not known to be committed is upserted
/// whole (also when its later change lands in the same batch); one after a committed
/// durable write is updated in place. 300 of each, so that the 256-row statements run.
async fn call_writer_upserts_new_records_and_updates_committed_ones(backend: Backend) {
    let (store, _db) = store(backend).await;
    let tenant = tenant(&store).await;
    let (writer, _task) = CallWriter::start(store.clone(), 4096);

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
