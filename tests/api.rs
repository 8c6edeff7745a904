//! The tenant API over real HTTP, on a real SQLite file and a real PostgreSQL database.

mod common;

use common::{Backend, TestServer};
use reqwest::Method;
use serde_json::{Value, json};
use vca_sip::clock::WallClock;

on_both_backends!(
    tenants_are_created_read_listed_and_changed,
    tenant_patch_changes_only_what_it_may,
    phone_numbers_are_normalised_and_unique_across_tenants,
    phone_numbers_change_and_disappear,
    ai_profiles_keep_one_default,
    ai_profiles_take_stream_settings_with_their_defaults,
    ai_profile_stream_settings_are_validated_naming_the_field,
    ai_profile_stream_settings_change_and_reach_the_routes,
    deleting_a_profile_clears_it_from_numbers,
    tenant_keys_never_reach_another_tenant,
    tenant_keys_cannot_do_admin_work,
    credentials_are_required_and_revocation_is_immediate,
    bad_requests_get_problem_responses,
    lists_paginate_by_cursor,
    health_metrics_and_openapi,
    a_refused_call_shows_the_q850_cause_it_was_sent,
    a_tenants_sip_domain_is_the_admins_and_unique,
    agents_are_created_listed_changed_and_deleted_without_their_password,
);

async fn tenants_are_created_read_listed_and_changed(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, tenant) = s
        .admin_call(
            Method::POST,
            "/api/tenants",
            Some(json!({"name": "Acme Clinics"})),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    assert_eq!(tenant["name"], "Acme Clinics");
    assert_eq!(tenant["status"], "active");
    assert_eq!(tenant["plan"], "starter");
    assert_eq!(tenant["default_country_code"], "91");
    assert_eq!(tenant["max_concurrent_calls"], 10);
    for field in ["id", "created_at", "updated_at"] {
        assert!(tenant[field].is_string(), "{field} in {tenant}");
    }
    let id = tenant["id"].as_str().unwrap();

    let (status, read) = s
        .admin_call(Method::GET, &format!("/api/tenants/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(read, tenant);

    let (status, list) = s.admin_call(Method::GET, "/api/tenants", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([tenant]));
    assert_eq!(list["next_cursor"], Value::Null);

    let (status, changed) = s
        .admin_call(
            Method::PATCH,
            &format!("/api/tenants/{id}"),
            Some(
                json!({"status": "suspended", "plan": "growth", "default_country_code": "1",
                        "max_concurrent_calls": 50}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["status"], "suspended");
    assert_eq!(changed["plan"], "growth");
    assert_eq!(changed["default_country_code"], "1");
    assert_eq!(changed["max_concurrent_calls"], 50);
    assert_eq!(changed["name"], "Acme Clinics");
    assert_eq!(changed["created_at"], tenant["created_at"]);

    let (status, custom) = s
        .admin_call(
            Method::POST,
            "/api/tenants",
            Some(json!({"name": "B", "plan": "custom", "status": "suspended",
                        "default_country_code": "44", "max_concurrent_calls": 0})),
        )
        .await;
    assert_eq!(status, 201, "{custom}");
    assert_eq!(
        (custom["plan"].as_str(), custom["status"].as_str()),
        (Some("custom"), Some("suspended"))
    );

    let missing = uuid::Uuid::now_v7();
    let (status, problem) = s
        .admin_call(Method::GET, &format!("/api/tenants/{missing}"), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(problem["status"], 404);
}

async fn tenant_patch_changes_only_what_it_may(backend: Backend) {
    let s = TestServer::start(backend).await;
    let id = s.tenant("Acme").await;
    let path = format!("/api/tenants/{id}");
    for (body, field) in [
        (json!({"name": "Renamed"}), "name"),
        (json!({"id": "x"}), "id"),
        (json!({"status": "closed"}), "status"),
        (json!({"plan": "enterprise"}), "plan"),
        (
            json!({"default_country_code": "+91"}),
            "default_country_code",
        ),
        (
            json!({"default_country_code": "9a"}),
            "default_country_code",
        ),
        (json!({"max_concurrent_calls": -1}), "max_concurrent_calls"),
        (
            json!({"max_concurrent_calls": "ten"}),
            "max_concurrent_calls",
        ),
    ] {
        let (status, problem) = s.admin_call(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} -> {problem}");
        assert_eq!(problem["field"], field, "{body} -> {problem}");
    }
    let (_, tenant) = s.admin_call(Method::GET, &path, None).await;
    assert_eq!(tenant["name"], "Acme");
    assert_eq!(tenant["status"], "active");
    let (status, _) = s
        .admin_call(Method::PATCH, &path, Some(json!({"status": "deleted"})))
        .await;
    assert_eq!(status, 200);
}

async fn phone_numbers_are_normalised_and_unique_across_tenants(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let b = s.tenant("B").await;
    let (status, number) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{a}/phone-numbers"),
            Some(json!({"did_number": "09876543210"})),
        )
        .await;
    assert_eq!(status, 201, "{number}");
    assert_eq!(number["did_number"], "+919876543210");
    assert_eq!(number["tenant_id"], a.as_str());
    assert_eq!(number["provider_type"], "generic");
    assert_eq!(number["is_active"], true);
    assert_eq!(number["trunk_id"], Value::Null);
    assert_eq!(number["ai_profile_id"], Value::Null);

    // Every form of the same number collides, in the same tenant or another one.
    for (tenant, form) in [
        (&a, "+919876543210"),
        (&b, "919876543210"),
        (&b, "9876543210"),
        (&b, "+91-98765-43210"),
    ] {
        let (status, problem) = s
            .admin_call(
                Method::POST,
                &format!("/api/tenants/{tenant}/phone-numbers"),
                Some(json!({"did_number": form})),
            )
            .await;
        assert_eq!(status, 409, "{form}: {problem}");
        assert_eq!(problem["field"], "did_number");
    }

    // The tenant's country code reads national forms.
    let (_, _) = s
        .admin_call(
            Method::PATCH,
            &format!("/api/tenants/{b}"),
            Some(json!({"default_country_code": "44"})),
        )
        .await;
    let (status, uk) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{b}/phone-numbers"),
            Some(json!({"did_number": "020 7183 8750", "provider_type": "tata"})),
        )
        .await;
    assert_eq!(status, 201, "{uk}");
    assert_eq!(uk["did_number"], "+442071838750");
    assert_eq!(uk["provider_type"], "tata");

    for bad in ["12ab", "", "+1234", "+12345678901234567"] {
        let (status, problem) = s
            .admin_call(
                Method::POST,
                &format!("/api/tenants/{a}/phone-numbers"),
                Some(json!({"did_number": bad})),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {problem}");
        assert_eq!(problem["field"], "did_number");
    }

    // A number cannot point at another tenant's AI profile or at an unknown trunk.
    let (_, profile_b) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{b}/ai-profiles"),
            Some(json!({"name": "B bot", "role": "sales", "system_prompt": "Sell."})),
        )
        .await;
    let (status, problem) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{a}/phone-numbers"),
            Some(json!({"did_number": "+919000000001", "ai_profile_id": profile_b["id"]})),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (400, Some("ai_profile_id")),
        "{problem}"
    );
    let (status, problem) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{a}/phone-numbers"),
            Some(json!({"did_number": "+919000000001", "trunk_id": uuid::Uuid::now_v7()})),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (400, Some("trunk_id")),
        "{problem}"
    );
}

async fn phone_numbers_change_and_disappear(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let key = s.key(&a).await;
    let (_, number) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{a}/phone-numbers"),
            Some(json!({"did_number": "9876543210"})),
        )
        .await;
    let path = format!(
        "/api/tenants/{a}/phone-numbers/{}",
        number["id"].as_str().unwrap()
    );
    let (_, profile) = s
        .call(
            Method::POST,
            &format!("/api/tenants/{a}/ai-profiles"),
            &key,
            Some(json!({"name": "Front desk", "role": "receptionist", "system_prompt": "Greet."})),
        )
        .await;

    let (status, off) = s
        .admin_call(Method::PATCH, &path, Some(json!({"is_active": false})))
        .await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["is_active"], false);

    // The tenant chooses the AI profile, and can clear it again.
    let (status, with) = s
        .call(
            Method::PATCH,
            &path,
            &key,
            Some(json!({"ai_profile_id": profile["id"]})),
        )
        .await;
    assert_eq!(status, 200, "{with}");
    assert_eq!(with["ai_profile_id"], profile["id"]);
    assert_eq!(with["is_active"], false);
    let (status, cleared) = s
        .call(
            Method::PATCH,
            &path,
            &key,
            Some(json!({"ai_profile_id": null})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(cleared["ai_profile_id"], Value::Null);

    let (status, listed) = s
        .call(
            Method::GET,
            &format!("/api/tenants/{a}/phone-numbers"),
            &key,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"], json!([cleared]));

    let (status, body) = s.admin_call(Method::DELETE, &path, None).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _) = s.admin_call(Method::GET, &path, None).await;
    assert_eq!(status, 404);
    let (status, _) = s.admin_call(Method::DELETE, &path, None).await;
    assert_eq!(status, 404);
}

async fn ai_profiles_keep_one_default(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let b = s.tenant("B").await;
    let profiles = format!("/api/tenants/{a}/ai-profiles");
    let make = |name: &str, default: bool| json!({"name": name, "role": "support", "system_prompt": "Help the caller.", "is_default": default});
    let (status, first) = s
        .admin_call(Method::POST, &profiles, Some(make("One", true)))
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["is_default"], true);
    assert_eq!(first["role"], "support");
    assert_eq!(first["system_prompt"], "Help the caller.");
    let (_, second) = s
        .admin_call(Method::POST, &profiles, Some(make("Two", true)))
        .await;
    assert_eq!(second["is_default"], true);
    let (_, list) = s.admin_call(Method::GET, &profiles, None).await;
    let defaults: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["is_default"] == true)
        .collect();
    assert_eq!(defaults, vec![&second]);

    // PATCH moves the default back.
    let (status, moved) = s
        .admin_call(
            Method::PATCH,
            &format!("{profiles}/{}", first["id"].as_str().unwrap()),
            Some(json!({"is_default": true})),
        )
        .await;
    assert_eq!((status, moved["is_default"].as_bool()), (200, Some(true)));
    let (_, second_now) = s
        .admin_call(
            Method::GET,
            &format!("{profiles}/{}", second["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(second_now["is_default"], false);

    // Another tenant's default is its own business.
    let (status, other) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{b}/ai-profiles"),
            Some(make("B", true)),
        )
        .await;
    assert_eq!((status, other["is_default"].as_bool()), (201, Some(true)));
    let (_, first_now) = s
        .admin_call(
            Method::GET,
            &format!("{profiles}/{}", first["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(first_now["is_default"], true);

    for (body, field) in [
        (
            json!({"name": "X", "role": "support", "system_prompt": "   "}),
            "system_prompt",
        ),
        (json!({"name": "X", "role": "support"}), "system_prompt"),
        (
            json!({"name": "X", "role": "janitor", "system_prompt": "p"}),
            "role",
        ),
        (
            json!({"name": "", "role": "sales", "system_prompt": "p"}),
            "name",
        ),
    ] {
        let (status, problem) = s
            .admin_call(Method::POST, &profiles, Some(body.clone()))
            .await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (400, Some(field)),
            "{body} -> {problem}"
        );
    }

    // The database itself refuses a second default, whatever the API does.
    let tenant: vca_sip::ids::TenantId = a.parse().unwrap();
    let err = raw_insert_default_profile(s.store(), tenant).await;
    assert!(err.is_err(), "a second default profile was stored");
}

/// The stream settings every profile has, at their defaults.
fn assert_echo_defaults(profile: &Value) {
    assert_eq!(profile["media_target"], "echo", "{profile}");
    assert_eq!(profile["stream_url"], Value::Null, "{profile}");
    assert_eq!(profile["stream_protocol"], "twilio", "{profile}");
    assert_eq!(profile["stream_auth_token_set"], false, "{profile}");
    assert_eq!(profile["stream_parameters"], json!({}), "{profile}");
    assert_eq!(profile["stream_ca_pem"], Value::Null, "{profile}");
    assert_eq!(profile["stream_connect_timeout_ms"], 3000, "{profile}");
    assert_eq!(profile["max_queued_audio_ms"], 30000, "{profile}");
    assert_eq!(profile["record"], false, "{profile}");
}

/// The token's text appears in no response, and no response has a field for it.
fn assert_no_token(body: &Value, token: &str) {
    let text = body.to_string();
    assert!(!text.contains(token), "the token was returned: {text}");
    assert!(
        !text.contains("\"stream_auth_token\""),
        "a token field was returned: {text}"
    );
}

async fn ai_profiles_take_stream_settings_with_their_defaults(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let key = s.key(&a).await;
    let profiles = format!("/api/tenants/{a}/ai-profiles");
    let (status, plain) = s
        .call(
            Method::POST,
            &profiles,
            &key,
            Some(json!({"name": "Plain", "role": "support", "system_prompt": "Help."})),
        )
        .await;
    assert_eq!(status, 201, "{plain}");
    assert_echo_defaults(&plain);

    let ca = common::pki::Ca::new("Agents CA").pem();
    let token = "tok-3f9c2a7d1b";
    let (status, streamed) = s
        .call(
            Method::POST,
            &profiles,
            &key,
            Some(json!({
                "name": "Agent", "role": "receptionist", "system_prompt": "Greet.",
                "media_target": "stream",
                "stream_url": "WSS://agent.example.com:8443/media?x=1",
                "stream_protocol": "exotel",
                "stream_auth_token": token,
                "stream_parameters": {"lang": "hi-IN", "campaign": "diwali"},
                "stream_ca_pem": ca,
                "stream_connect_timeout_ms": 100,
                "max_queued_audio_ms": 600000,
                "record": true,
            })),
        )
        .await;
    assert_eq!(status, 201, "{streamed}");
    assert_eq!(streamed["media_target"], "stream");
    assert_eq!(
        streamed["stream_url"],
        "wss://agent.example.com:8443/media?x=1"
    );
    assert_eq!(streamed["stream_protocol"], "exotel");
    assert_eq!(streamed["stream_auth_token_set"], true);
    assert_eq!(
        streamed["stream_parameters"],
        json!({"lang": "hi-IN", "campaign": "diwali"})
    );
    assert_eq!(streamed["stream_ca_pem"], ca.as_str());
    assert_eq!(streamed["stream_connect_timeout_ms"], 100);
    assert_eq!(streamed["max_queued_audio_ms"], 600000);
    assert_eq!(streamed["record"], true);
    assert_no_token(&streamed, token);

    // Each field alone, the others at their defaults.
    for (field, value) in [
        ("stream_protocol", json!("exotel")),
        ("stream_parameters", json!({"k": "v"})),
        ("stream_ca_pem", json!(ca)),
        ("stream_connect_timeout_ms", json!(30000)),
        ("max_queued_audio_ms", json!(1000)),
        ("record", json!(true)),
        ("stream_url", json!("ws://[::1]:9000")),
    ] {
        let mut body = json!({"name": field, "role": "custom", "system_prompt": "p"});
        body[field] = value.clone();
        let (status, created) = s.call(Method::POST, &profiles, &key, Some(body)).await;
        assert_eq!(status, 201, "{field}: {created}");
        assert_eq!(created[field], value, "{field}");
        assert_eq!(created["media_target"], "echo", "{field}");
    }
    let (status, with_token) = s
        .call(
            Method::POST,
            &profiles,
            &key,
            Some(json!({"name": "T", "role": "custom", "system_prompt": "p",
                        "stream_auth_token": token})),
        )
        .await;
    assert_eq!(status, 201, "{with_token}");
    assert_eq!(with_token["stream_auth_token_set"], true);

    // Read one, and the list: the token is in none of them.
    let path = format!("{profiles}/{}", streamed["id"].as_str().unwrap());
    let (status, read) = s.call(Method::GET, &path, &key, None).await;
    assert_eq!(status, 200);
    assert_eq!(read, streamed);
    let (status, list) = s.admin_call(Method::GET, &profiles, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 10);
    assert_no_token(&list, token);
    let (_, plain_read) = s
        .call(
            Method::GET,
            &format!("{profiles}/{}", plain["id"].as_str().unwrap()),
            &key,
            None,
        )
        .await;
    assert_echo_defaults(&plain_read);
}

async fn ai_profile_stream_settings_are_validated_naming_the_field(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let profiles = format!("/api/tenants/{a}/ai-profiles");
    let base = || json!({"name": "X", "role": "sales", "system_prompt": "p"});
    let stream = |url: Value| {
        let mut body = base();
        body["media_target"] = json!("stream");
        body["stream_url"] = url;
        body
    };
    let key_pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let mut cases: Vec<(Value, &str)> = vec![
        (stream(Value::Null), "stream_url"),
        (
            {
                let mut b = base();
                b["media_target"] = json!("stream");
                b
            },
            "stream_url",
        ),
        (stream(json!("https://agent.example")), "stream_url"),
        (stream(json!("agent.example")), "stream_url"),
        (stream(json!("wss://user:pw@agent.example")), "stream_url"),
        (stream(json!("wss://agent.example:99999")), "stream_url"),
        (stream(json!("wss://agent.example/#x")), "stream_url"),
        (stream(json!("wss://")), "stream_url"),
        (stream(json!(42)), "stream_url"),
    ];
    for (field, value) in [
        ("media_target", json!("agents")),
        ("media_target", json!("Stream")),
        ("media_target", json!(1)),
        ("stream_url", json!("ftp://agent.example")),
        ("stream_protocol", json!("plivo")),
        ("stream_auth_token", json!("")),
        ("stream_auth_token", json!("two words")),
        ("stream_auth_token", json!(7)),
        ("stream_parameters", json!({"n": 1})),
        ("stream_parameters", json!({"ok": "v", "flag": true})),
        ("stream_parameters", json!({"nested": {"a": "b"}})),
        ("stream_parameters", json!({"nothing": null})),
        ("stream_parameters", json!(["a"])),
        ("stream_parameters", json!("a=b")),
        ("stream_ca_pem", json!("not a certificate")),
        ("stream_ca_pem", json!(key_pem)),
        ("stream_ca_pem", json!("")),
        ("stream_connect_timeout_ms", json!(99)),
        ("stream_connect_timeout_ms", json!(30001)),
        ("stream_connect_timeout_ms", json!(-1)),
        ("stream_connect_timeout_ms", json!("3000")),
        ("stream_connect_timeout_ms", json!(1500.5)),
        ("max_queued_audio_ms", json!(999)),
        ("max_queued_audio_ms", json!(600001)),
        ("max_queued_audio_ms", json!(true)),
        ("record", json!("yes")),
        ("record", json!(1)),
    ] {
        let mut body = base();
        body[field] = value;
        cases.push((body, field));
    }
    for (body, field) in &cases {
        let (status, problem) = s
            .admin_call(Method::POST, &profiles, Some(body.clone()))
            .await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (400, Some(*field)),
            "{body} -> {problem}"
        );
        assert_eq!(problem["status"], 400);
    }
    // None of them was stored.
    let (_, list) = s.admin_call(Method::GET, &profiles, None).await;
    assert_eq!(list["items"], json!([]));

    // The same values are refused by PATCH, and change nothing.
    let (status, created) = s.admin_call(Method::POST, &profiles, Some(base())).await;
    assert_eq!(status, 201, "{created}");
    let path = format!("{profiles}/{}", created["id"].as_str().unwrap());
    let mut patches: Vec<(Value, &str)> = vec![
        (json!({"media_target": "stream"}), "stream_url"),
        (
            json!({"media_target": "stream", "stream_url": null}),
            "stream_url",
        ),
        (json!({"stream_url": "http://agent.example"}), "stream_url"),
        (json!({"stream_auth_token": ""}), "stream_auth_token"),
    ];
    for (body, field) in cases.iter().skip(9) {
        let mut patch = body.clone();
        for fixed in ["name", "role", "system_prompt"] {
            patch.as_object_mut().unwrap().remove(fixed);
        }
        patches.push((patch, field));
    }
    for (body, field) in &patches {
        let (status, problem) = s.admin_call(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (400, Some(*field)),
            "PATCH {body} -> {problem}"
        );
    }
    let (_, unchanged) = s.admin_call(Method::GET, &path, None).await;
    assert_eq!(unchanged, created);
    let (status, problem) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"stream_auth_token_set": true})),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (400, Some("stream_auth_token_set")),
        "{problem}"
    );
}

async fn ai_profile_stream_settings_change_and_reach_the_routes(backend: Backend) {
    use vca_sip::routing::e164::{CountryCode, Did};
    use vca_sip::store::CallMedia;

    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let key = s.key(&a).await;
    let profiles = format!("/api/tenants/{a}/ai-profiles");
    let (_, profile) = s
        .call(
            Method::POST,
            &profiles,
            &key,
            Some(json!({"name": "P", "role": "support", "system_prompt": "p",
                        "is_default": true})),
        )
        .await;
    let path = format!("{profiles}/{}", profile["id"].as_str().unwrap());
    let (status, _) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{a}/phone-numbers"),
            Some(json!({"did_number": "09876543210"})),
        )
        .await;
    assert_eq!(status, 201);
    let directory = &s.server.as_ref().expect("running").directory;
    let did = Did::normalize("+919876543210", &CountryCode::default()).unwrap();
    let media = || directory.resolve(&did).expect("a route").media;
    assert_eq!(media(), CallMedia::Echo);

    let token = "first-secret-token";
    let (status, streamed) = s
        .call(
            Method::PATCH,
            &path,
            &key,
            Some(
                json!({"media_target": "stream", "stream_url": "wss://agent.example/a",
                        "stream_auth_token": token, "stream_parameters": {"a": "1"},
                        "max_queued_audio_ms": 2000}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{streamed}");
    assert_eq!(streamed["media_target"], "stream");
    assert_eq!(streamed["stream_auth_token_set"], true);
    assert_eq!(streamed["max_queued_audio_ms"], 2000);
    assert_eq!(streamed["name"], "P");
    assert_no_token(&streamed, token);
    // The routing table has the change, token included, for the call path.
    match media() {
        CallMedia::Stream(target) => {
            assert_eq!(target.url, "wss://agent.example/a");
            assert_eq!(
                target.auth_token.as_ref().map(|t| t.0.as_str()),
                Some(token)
            );
            assert_eq!(target.max_queued_audio, std::time::Duration::from_secs(2));
        }
        CallMedia::Echo => panic!("the route still echoes"),
    }

    // A PATCH that names other fields leaves the token and parameters as they are.
    let (status, renamed) = s
        .call(
            Method::PATCH,
            &path,
            &key,
            Some(json!({"name": "Q", "stream_protocol": "exotel"})),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["stream_auth_token_set"], true);
    assert_eq!(renamed["stream_parameters"], json!({"a": "1"}));
    assert_eq!(renamed["stream_protocol"], "exotel");
    // Clearing the URL of a stream is refused; null clears the token.
    let (status, problem) = s
        .call(
            Method::PATCH,
            &path,
            &key,
            Some(json!({"stream_url": null})),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (400, Some("stream_url"))
    );
    let (status, cleared) = s
        .call(
            Method::PATCH,
            &path,
            &key,
            Some(json!({"stream_auth_token": null, "stream_parameters": {}})),
        )
        .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["stream_auth_token_set"], false);
    assert_eq!(cleared["stream_parameters"], json!({}));
    assert_eq!(cleared["stream_url"], "wss://agent.example/a");
    match media() {
        CallMedia::Stream(target) => assert_eq!(target.auth_token, None),
        CallMedia::Echo => panic!("the route echoes"),
    }
    // Back to echo, dropping the URL in the same change.
    let (status, echoed) = s
        .call(
            Method::PATCH,
            &path,
            &key,
            Some(json!({"media_target": "echo", "stream_url": null})),
        )
        .await;
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(echoed["stream_url"], Value::Null);
    assert_eq!(media(), CallMedia::Echo);
    let (_, read) = s.call(Method::GET, &path, &key, None).await;
    assert_eq!(read, echoed);
}

async fn raw_insert_default_profile(
    store: &vca_sip::store::Store,
    tenant: vca_sip::ids::TenantId,
) -> Result<(), sqlx::Error> {
    use vca_sip::store::Store;
    const SQL: &str = "INSERT INTO ai_profiles (id, tenant_id, name, role, system_prompt, is_default, created_at) \
                       VALUES ($1, $2, 'raw', 'custom', 'p', TRUE, $3)";
    let id = vca_sip::ids::AiProfileId::new();
    let at = vca_sip::store::stamp(vca_sip::clock::SystemClock.now());
    match store {
        Store::Sqlite(pool) => sqlx::query(SQL)
            .bind(id)
            .bind(tenant)
            .bind(at)
            .execute(pool)
            .await
            .map(|_| ()),
        Store::Postgres(pool) => sqlx::query(SQL)
            .bind(id)
            .bind(tenant)
            .bind(at)
            .execute(pool)
            .await
            .map(|_| ()),
    }
}

async fn deleting_a_profile_clears_it_from_numbers(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let (_, profile) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{a}/ai-profiles"),
            Some(json!({"name": "P", "role": "dispatcher", "system_prompt": "Dispatch."})),
        )
        .await;
    let (status, number) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{a}/phone-numbers"),
            Some(json!({"did_number": "+919111111111", "ai_profile_id": profile["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{number}");
    assert_eq!(number["ai_profile_id"], profile["id"]);
    let path = format!(
        "/api/tenants/{a}/ai-profiles/{}",
        profile["id"].as_str().unwrap()
    );
    let (status, _) = s.admin_call(Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (_, number) = s
        .admin_call(
            Method::GET,
            &format!(
                "/api/tenants/{a}/phone-numbers/{}",
                number["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(number["ai_profile_id"], Value::Null);
    let (status, _) = s.admin_call(Method::DELETE, &path, None).await;
    assert_eq!(status, 404);
}

async fn tenant_keys_never_reach_another_tenant(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let b = s.tenant("B").await;
    let key_a = s.key(&a).await;
    let (_, number_b) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{b}/phone-numbers"),
            Some(json!({"did_number": "+919222222222"})),
        )
        .await;
    let (_, profile_b) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{b}/ai-profiles"),
            Some(json!({"name": "B", "role": "sales", "system_prompt": "Sell."})),
        )
        .await;
    let (_, key_b) = s
        .admin_call(Method::POST, &format!("/api/tenants/{b}/api-keys"), None)
        .await;
    let n = number_b["id"].as_str().unwrap();
    let p = profile_b["id"].as_str().unwrap();
    let k = key_b["id"].as_str().unwrap();
    let profile_body = json!({"name": "x", "role": "sales", "system_prompt": "x"});
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/tenants/{b}"), None),
        (
            Method::PATCH,
            format!("/api/tenants/{b}"),
            Some(json!({"plan": "growth"})),
        ),
        (Method::GET, format!("/api/tenants/{b}/phone-numbers"), None),
        (
            Method::POST,
            format!("/api/tenants/{b}/phone-numbers"),
            Some(json!({"did_number": "+919333333333"})),
        ),
        (
            Method::GET,
            format!("/api/tenants/{b}/phone-numbers/{n}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/tenants/{b}/phone-numbers/{n}"),
            Some(json!({"ai_profile_id": null})),
        ),
        (
            Method::DELETE,
            format!("/api/tenants/{b}/phone-numbers/{n}"),
            None,
        ),
        (Method::GET, format!("/api/tenants/{b}/ai-profiles"), None),
        (
            Method::POST,
            format!("/api/tenants/{b}/ai-profiles"),
            Some(profile_body),
        ),
        (
            Method::GET,
            format!("/api/tenants/{b}/ai-profiles/{p}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/tenants/{b}/ai-profiles/{p}"),
            Some(json!({"name": "mine"})),
        ),
        (
            Method::DELETE,
            format!("/api/tenants/{b}/ai-profiles/{p}"),
            None,
        ),
        (Method::POST, format!("/api/tenants/{b}/api-keys"), None),
        (
            Method::DELETE,
            format!("/api/tenants/{b}/api-keys/{k}"),
            None,
        ),
        // B's row ids under A's own path are just as unknown.
        (
            Method::GET,
            format!("/api/tenants/{a}/phone-numbers/{n}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/tenants/{a}/ai-profiles/{p}"),
            Some(json!({"name": "mine"})),
        ),
        (
            Method::DELETE,
            format!("/api/tenants/{a}/ai-profiles/{p}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/tenants/{a}/api-keys/{k}"),
            None,
        ),
    ];
    let missing = uuid::Uuid::now_v7();
    for (method, path, body) in routes {
        let (status, problem) = s.call(method.clone(), &path, &key_a, body.clone()).await;
        assert_eq!(status, 404, "{method} {path} -> {problem}");
        // Exactly what a resource that does not exist answers.
        let unknown = path.replace(&b, &missing.to_string());
        let (_, expected) = s.call(method.clone(), &unknown, &key_a, body).await;
        assert_eq!(problem, expected, "{method} {path}");
    }
    // Nothing of B's changed.
    let (_, still) = s
        .admin_call(
            Method::GET,
            &format!("/api/tenants/{b}/ai-profiles/{p}"),
            None,
        )
        .await;
    assert_eq!(still, profile_b);
    let (_, numbers) = s
        .admin_call(
            Method::GET,
            &format!("/api/tenants/{b}/phone-numbers"),
            None,
        )
        .await;
    assert_eq!(numbers["items"], json!([number_b]));
    let (status, _) = s
        .call(
            Method::GET,
            &format!("/api/tenants/{b}"),
            key_b["key"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(status, 200, "B's key was revoked by A");
    // A's own list shows only A's rows.
    let (status, own) = s
        .call(
            Method::GET,
            &format!("/api/tenants/{a}/phone-numbers"),
            &key_a,
            None,
        )
        .await;
    assert_eq!((status, own["items"].clone()), (200, json!([])));
}

async fn tenant_keys_cannot_do_admin_work(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let key = s.key(&a).await;
    let (_, number) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{a}/phone-numbers"),
            Some(json!({"did_number": "+919444444444"})),
        )
        .await;
    let number_path = format!(
        "/api/tenants/{a}/phone-numbers/{}",
        number["id"].as_str().unwrap()
    );
    for (method, path, body) in [
        (
            Method::POST,
            "/api/tenants".to_owned(),
            Some(json!({"name": "Mine"})),
        ),
        (Method::GET, "/api/tenants".to_owned(), None),
        (
            Method::PATCH,
            format!("/api/tenants/{a}"),
            Some(json!({"max_concurrent_calls": 1000})),
        ),
        (
            Method::PATCH,
            format!("/api/tenants/{a}"),
            Some(json!({"status": "active"})),
        ),
        (
            Method::POST,
            format!("/api/tenants/{a}/phone-numbers"),
            Some(json!({"did_number": "+919555555555"})),
        ),
        (
            Method::PATCH,
            number_path.clone(),
            Some(json!({"is_active": false})),
        ),
        (Method::DELETE, number_path.clone(), None),
    ] {
        let (status, problem) = s.call(method.clone(), &path, &key, body).await;
        assert_eq!(status, 403, "{method} {path} -> {problem}");
        assert_eq!(problem["status"], 403);
    }
    // What a tenant may do on its own paths.
    let (status, _) = s
        .call(Method::GET, &format!("/api/tenants/{a}"), &key, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = s.call(Method::GET, &number_path, &key, None).await;
    assert_eq!(status, 200);
    let (status, created) = s
        .call(
            Method::POST,
            &format!("/api/tenants/{a}/api-keys"),
            &key,
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");
}

async fn credentials_are_required_and_revocation_is_immediate(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let path = format!("/api/tenants/{a}");
    let response = s.send(Method::GET, &path, None, None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    for token in ["wrong", "vca_0000", ADMIN_PREFIX] {
        let (status, _) = s.call(Method::GET, &path, token, None).await;
        assert_eq!(status, 401, "{token}");
    }
    let response = s
        .client
        .get(format!("{}{}", s.base, path))
        .header("Authorization", format!("Basic {}", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let (status, created) = s
        .admin_call(Method::POST, &format!("/api/tenants/{a}/api-keys"), None)
        .await;
    assert_eq!(status, 201);
    let key = created["key"].as_str().unwrap();
    assert!(key.len() >= 32);
    let (status, _) = s.call(Method::GET, &path, key, None).await;
    assert_eq!(status, 200);
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!(
                "/api/tenants/{a}/api-keys/{}",
                created["id"].as_str().unwrap()
            ),
            key,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = s.call(Method::GET, &path, key, None).await;
    assert_eq!(status, 401);

    // A deleted tenant's keys stop working.
    let key = s.key(&a).await;
    let (status, _) = s
        .admin_call(Method::PATCH, &path, Some(json!({"status": "deleted"})))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s.call(Method::GET, &path, &key, None).await;
    assert_eq!(status, 401);
}

/// A prefix of the admin token is not the admin token.
const ADMIN_PREFIX: &str = "test-admin-token";

async fn bad_requests_get_problem_responses(backend: Backend) {
    let s = TestServer::start(backend).await;
    let url = format!("{}/api/tenants", s.base);
    let send_raw = |body: Vec<u8>, content_type: &'static str| {
        s.client
            .post(&url)
            .bearer_auth(&s.admin)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let check = |response: reqwest::Response, status: u16| async move {
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        for field in ["type", "title", "status", "detail", "field"] {
            assert!(problem.get(field).is_some(), "{field} missing in {problem}");
        }
        assert_eq!(problem["status"], status);
        problem
    };
    let problem = check(
        send_raw(b"{\"name\": ".to_vec(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(problem["field"], Value::Null);
    let problem = check(
        send_raw(b"[\"x\"]".to_vec(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(problem["detail"], "the body must be a JSON object");
    let problem = check(
        send_raw(br#"{"name": 5}"#.to_vec(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(problem["field"], "name");
    let problem = check(
        send_raw(
            br#"{"name": "x", "colour": "red"}"#.to_vec(),
            "application/json",
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    assert_eq!(problem["field"], "colour");
    let problem = check(
        send_raw(br#"{}"#.to_vec(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(problem["field"], "name");
    check(
        send_raw(br#"{"name": "x"}"#.to_vec(), "text/plain")
            .await
            .unwrap(),
        415,
    )
    .await;
    let mut big = br#"{"name": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 100 * 1024));
    big.extend(br#""}"#);
    check(send_raw(big, "application/json").await.unwrap(), 413).await;
    let response = s
        .send(Method::GET, "/api/tenants/not-a-uuid", Some(&s.admin), None)
        .await;
    let problem = check(response, 400).await;
    assert_eq!(problem["field"], "tenant_id");
    let response = s
        .send(Method::GET, "/api/tenants?limit=0", Some(&s.admin), None)
        .await;
    assert_eq!(check(response, 400).await["field"], "limit");
    let response = s
        .send(Method::GET, "/api/tenants?limit=many", Some(&s.admin), None)
        .await;
    assert_eq!(check(response, 400).await["field"], "limit");
    let response = s
        .send(Method::GET, "/api/no-such-route", Some(&s.admin), None)
        .await;
    check(response, 404).await;
    // Nothing was created by any of that.
    let (_, list) = s.admin_call(Method::GET, "/api/tenants", None).await;
    assert_eq!(list["items"], json!([]));
}

async fn lists_paginate_by_cursor(backend: Backend) {
    let s = TestServer::start(backend).await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(s.tenant(&format!("T{i}")).await);
    }
    let mut seen = Vec::new();
    let mut path = "/api/tenants?limit=2".to_owned();
    loop {
        let (status, page) = s.admin_call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/tenants?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, created, "every tenant once, in creation order");
}

async fn health_metrics_and_openapi(backend: Backend) {
    let s = TestServer::start(backend).await;
    let response = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    let (_, _) = s.admin_call(Method::GET, "/api/tenants", None).await;
    let metrics = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("vca_http_requests_total"), "{metrics}");
    let (status, doc) = s.admin_call(Method::GET, "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/tenants",
        "/api/tenants/{tenant_id}",
        "/api/tenants/{tenant_id}/phone-numbers",
        "/api/tenants/{tenant_id}/phone-numbers/{phone_number_id}",
        "/api/tenants/{tenant_id}/ai-profiles",
        "/api/tenants/{tenant_id}/ai-profiles/{ai_profile_id}",
        "/api/tenants/{tenant_id}/api-keys",
        "/api/tenants/{tenant_id}/api-keys/{api_key_id}",
        "/healthz",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("Tenant").is_some());
    // Enum values are named as the JSON spells them, not as the Rust variants are.
    assert_eq!(
        doc["components"]["schemas"]["TenantStatus"]["enum"],
        json!(["active", "suspended", "deleted"])
    );
    assert_eq!(
        doc["components"]["schemas"]["TrunkAuth"]["enum"],
        json!(["ip", "digest", "ip+digest"])
    );
    assert_eq!(
        doc,
        serde_json::to_value(vca_sip::api::openapi_document()).unwrap(),
        "the served document is the one the snapshot test checks"
    );

    // With the database gone, health says so.
    s.store().close().await;
    let response = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["database"], "unreachable");
}

/// A refused INVITE's record carries the Q.850 cause of the Reason header sent with the
/// refusal (RFC 6432), in the call and in its `failed` event: 21 for an inactive number,
/// 17 for a tenant at its call limit.
async fn a_refused_call_shows_the_q850_cause_it_was_sent(backend: Backend) {
    use common::uac::{Uac, status};
    let s = TestServer::start(backend).await;
    let sip = s.server.as_ref().expect("running").sip_udp_addr;
    let tenant = s.tenant("Acme").await;
    let numbers = format!("/api/tenants/{tenant}/phone-numbers");
    let (created, _) = s
        .admin_call(
            Method::POST,
            &numbers,
            Some(json!({"did_number": "09876543210", "is_active": false})),
        )
        .await;
    assert_eq!(created, 201);
    let mut uac = Uac::bind("127.0.0.1", sip).await;
    let response = uac
        .ask("INVITE", "09876543210", "inactive-q850", "")
        .await
        .expect("a final response");
    assert_eq!(status(&response), 403, "{response}");
    assert!(response.contains("Reason: Q.850;cause=21;"), "{response}");

    let (changed, _) = s
        .admin_call(
            Method::PATCH,
            &format!("/api/tenants/{tenant}"),
            Some(json!({"max_concurrent_calls": 0})),
        )
        .await;
    assert_eq!(changed, 200);
    let (created, _) = s
        .admin_call(
            Method::POST,
            &numbers,
            Some(json!({"did_number": "09876543211"})),
        )
        .await;
    assert_eq!(created, 201);
    let response = uac
        .ask("INVITE", "09876543211", "busy-q850", "")
        .await
        .expect("a final response");
    assert_eq!(status(&response), 486, "{response}");
    assert!(response.contains("Reason: Q.850;cause=17;"), "{response}");

    // Refusals are recorded without waiting for the commit.
    let mut calls = Vec::new();
    for _ in 0..100 {
        let (_, list) = s
            .admin_call(Method::GET, &format!("/api/tenants/{tenant}/calls"), None)
            .await;
        calls = list["items"].as_array().expect("items").clone();
        if calls.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut seen: Vec<(String, i64, i64)> = calls
        .iter()
        .map(|c| {
            assert_eq!(c["status"], "failed", "{c}");
            assert_eq!(c["hangup_cause"], "rejected", "{c}");
            (
                c["sip_call_id"].as_str().unwrap().to_owned(),
                c["sip_status"].as_i64().unwrap(),
                c["q850_cause"].as_i64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("busy-q850".to_owned(), 486, 17),
            ("inactive-q850".to_owned(), 403, 21)
        ]
    );
    let call = calls[0]["id"].as_str().unwrap();
    let (_, record) = s
        .admin_call(
            Method::GET,
            &format!("/api/tenants/{tenant}/calls/{call}"),
            None,
        )
        .await;
    let last = record["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "failed");
    assert_eq!(last["detail"]["q850_cause"], record["q850_cause"]);
}

/// The committed OpenAPI document: the API's JSON names are a contract, so a change that
/// alters the generated document must change this file too, in the same commit.
async fn a_tenants_sip_domain_is_the_admins_and_unique(backend: Backend) {
    let s = TestServer::start(backend).await;
    let id = s.tenant("Acme").await;
    let path = format!("/api/tenants/{id}");
    let (_, tenant) = s.admin_call(Method::GET, &path, None).await;
    assert_eq!(tenant["sip_domain"], format!("{id}.agents.invalid"));

    let (status, named) = s
        .admin_call(
            Method::POST,
            "/api/tenants",
            Some(json!({"name": "B", "sip_domain": "Agents.B.Example."})),
        )
        .await;
    assert_eq!(status, 201, "{named}");
    assert_eq!(named["sip_domain"], "agents.b.example");
    let (status, problem) = s
        .admin_call(
            Method::POST,
            "/api/tenants",
            Some(json!({"name": "C", "sip_domain": "agents.b.example"})),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["field"], "sip_domain");
    let (status, problem) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"sip_domain": "agents.b.example"})),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["field"], "sip_domain");
    for bad in [
        "",
        "-a.example",
        "a..example",
        "10.0.0.1",
        "a b.example",
        "x@y.example",
    ] {
        let (status, problem) = s
            .admin_call(Method::PATCH, &path, Some(json!({"sip_domain": bad})))
            .await;
        assert_eq!(status, 400, "{bad} -> {problem}");
        assert_eq!(problem["field"], "sip_domain", "{bad} -> {problem}");
    }

    let key = s.key(&id).await;
    let (status, problem) = s
        .call(
            Method::PATCH,
            &path,
            &key,
            Some(json!({"sip_domain": "agents.acme.example"})),
        )
        .await;
    assert_eq!(status, 403, "{problem}");
    let (status, changed) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"sip_domain": "agents.acme.example"})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["sip_domain"], "agents.acme.example");

    let (status, _) = s
        .admin_call(
            Method::POST,
            &format!("{path}/agents"),
            Some(json!({"username": "alice", "password": "correct horse"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, problem) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"sip_domain": "agents2.acme.example"})),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["field"], "sip_domain");
    let (status, same) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"sip_domain": "agents.acme.example", "plan": "growth"})),
        )
        .await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["plan"], "growth");
}

async fn agents_are_created_listed_changed_and_deleted_without_their_password(backend: Backend) {
    let s = TestServer::start(backend).await;
    let id = s.tenant("Acme").await;
    let other = s.tenant("Other").await;
    let key = s.key(&id).await;
    let agents = format!("/api/tenants/{id}/agents");
    let (status, alice) = s
        .call(
            Method::POST,
            &agents,
            &key,
            Some(json!({"username": "alice", "password": "correct horse",
                        "display_name": "Alice A."})),
        )
        .await;
    assert_eq!(status, 201, "{alice}");
    assert_eq!(alice["username"], "alice");
    assert_eq!(alice["display_name"], "Alice A.");
    assert_eq!(alice["tenant_id"], id.as_str());
    let fields: Vec<&String> = alice.as_object().expect("object").keys().collect();
    assert_eq!(
        fields,
        [
            "created_at",
            "display_name",
            "id",
            "tenant_id",
            "updated_at",
            "username"
        ],
        "{alice}"
    );
    assert_no_token(&alice, "correct horse");
    let alice_path = format!("{agents}/{}", alice["id"].as_str().unwrap());

    let (status, read) = s.call(Method::GET, &alice_path, &key, None).await;
    assert_eq!(status, 200);
    assert_eq!(read, alice);
    let (status, bob) = s
        .admin_call(
            Method::POST,
            &agents,
            Some(json!({"username": "bob.b-2_~", "password": "bobs password"})),
        )
        .await;
    assert_eq!(status, 201, "{bob}");
    assert_eq!(bob["display_name"], Value::Null);
    let (status, list) = s.call(Method::GET, &agents, &key, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([alice, bob]));

    let (status, problem) = s
        .call(
            Method::POST,
            &agents,
            &key,
            Some(json!({"username": "alice", "password": "another one"})),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["field"], "username");
    for (body, field) in [
        (
            json!({"username": "al ice", "password": "correct horse"}),
            "username",
        ),
        (
            json!({"username": "al@ce", "password": "correct horse"}),
            "username",
        ),
        (
            json!({"username": "", "password": "correct horse"}),
            "username",
        ),
        (
            json!({"username": "a".repeat(65), "password": "correct horse"}),
            "username",
        ),
        (
            json!({"username": "carol", "password": "short"}),
            "password",
        ),
        (
            json!({"username": "carol", "password": "a\nnewline!"}),
            "password",
        ),
        (json!({"username": "carol"}), "password"),
        (json!({"password": "correct horse"}), "username"),
        (
            json!({"username": "carol", "password": "correct horse", "display_name": "say \"hi\""}),
            "display_name",
        ),
        (
            json!({"username": "carol", "password": "correct horse", "ha1": "x"}),
            "ha1",
        ),
    ] {
        let (status, problem) = s
            .call(Method::POST, &agents, &key, Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body} -> {problem}");
        assert_eq!(problem["field"], field, "{body} -> {problem}");
    }

    let (status, changed) = s
        .call(
            Method::PATCH,
            &alice_path,
            &key,
            Some(json!({"password": "a new password", "display_name": null})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["display_name"], Value::Null);
    assert_eq!(changed["username"], "alice");
    assert_eq!(changed["created_at"], alice["created_at"]);
    assert_no_token(&changed, "a new password");
    for (body, field) in [
        (json!({"username": "alice2"}), "username"),
        (json!({"password": "short"}), "password"),
    ] {
        let (status, problem) = s
            .call(Method::PATCH, &alice_path, &key, Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body} -> {problem}");
        assert_eq!(problem["field"], field, "{body} -> {problem}");
    }

    let other_key = s.key(&other).await;
    let (status, _) = s.call(Method::GET, &alice_path, &other_key, None).await;
    assert_eq!(status, 404);
    let foreign = format!(
        "/api/tenants/{other}/agents/{}",
        alice["id"].as_str().unwrap()
    );
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = s.admin_call(method, &foreign, None).await;
        assert_eq!(status, 404);
    }

    let (status, _) = s.call(Method::DELETE, &alice_path, &key, None).await;
    assert_eq!(status, 204);
    let (status, _) = s.call(Method::GET, &alice_path, &key, None).await;
    assert_eq!(status, 404);
    let (status, _) = s.call(Method::DELETE, &alice_path, &key, None).await;
    assert_eq!(status, 404);
    let (_, list) = s.call(Method::GET, &agents, &key, None).await;
    assert_eq!(list["items"], json!([bob]));
}

const OPENAPI_SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openapi.json");

/// The generated OpenAPI document, byte for byte as committed in tests/fixtures. After an
/// intended change of the API, `VCA_UPDATE_OPENAPI=1 cargo test --test api openapi`
/// rewrites the snapshot; review its diff before committing it.
#[test]
fn openapi_document_matches_the_committed_snapshot() {
    let mut generated =
        serde_json::to_string_pretty(&vca_sip::api::openapi_document()).expect("serialises");
    generated.push('\n');
    if std::env::var_os("VCA_UPDATE_OPENAPI").is_some() {
        std::fs::write(OPENAPI_SNAPSHOT, &generated).expect("snapshot written");
        return;
    }
    let committed = std::fs::read_to_string(OPENAPI_SNAPSHOT).expect("snapshot readable");
    if generated == committed {
        return;
    }
    let fresh = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi.json");
    std::fs::write(&fresh, &generated).expect("generated document written");
    let first = generated
        .lines()
        .zip(committed.lines())
        .position(|(g, c)| g != c)
        .unwrap_or_else(|| generated.lines().count().min(committed.lines().count()));
    let around = |text: &str| -> String {
        text.lines()
            .enumerate()
            .skip(first.saturating_sub(3))
            .take(7)
            .map(|(n, line)| format!("{:>6} {line}\n", n + 1))
            .collect()
    };
    panic!(
        "the generated OpenAPI document differs from {OPENAPI_SNAPSHOT} from line {}:\n\
         committed:\n{}generated:\n{}\
         the whole generated document is in {}; compare with\n  diff -u {OPENAPI_SNAPSHOT} {}\n\
         and, if the change is intended, run VCA_UPDATE_OPENAPI=1 cargo test --test api openapi",
        first + 1,
        around(&committed),
        around(&generated),
        fresh.display(),
        fresh.display(),
    );
}
