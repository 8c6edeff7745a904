//! The trunk API over real HTTP, on a real SQLite file and a real PostgreSQL database:
//! platform and tenant-owned trunks, who may reach them, validation, write-only passwords
//! stored as HA1 hashes, and trunks named by phone numbers.

mod common;

use common::{Backend, TestServer};
use md5::Md5;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vca_sip::store::model::DigestAlgorithm;

on_both_backends!(
    platform_trunks_are_created_read_listed_changed_and_deleted,
    tenant_trunks_are_managed_by_the_admin_and_the_tenant,
    platform_trunks_are_admin_only,
    tenant_keys_never_reach_another_tenants_trunks,
    passwords_are_write_only_and_stored_as_ha1,
    credential_changes_never_leave_stale_hashes,
    validation_errors_name_the_field,
    tenant_keys_may_not_allow_wide_networks,
    a_trunk_in_use_by_numbers_is_not_deleted,
    numbers_name_only_platform_or_own_trunks,
    trunk_lists_paginate_and_appear_in_openapi,
);

const PASSWORD: &str = "s3cret-Trunk-pass";

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Whether `key` is a key of any object in `value`, at any depth.
fn has_key(value: &Value, key: &str) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| k == key || has_key(v, key)),
        Value::Array(items) => items.iter().any(|v| has_key(v, key)),
        _ => false,
    }
}

fn digest_trunk(name: &str) -> Value {
    json!({
        "name": name,
        "auth": "digest",
        "realm": "trunk.example.com",
        "username": "carrier",
        "password": PASSWORD,
    })
}

fn id(v: &Value) -> &str {
    v["id"].as_str().expect("id")
}

async fn platform_trunks_are_created_read_listed_changed_and_deleted(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, trunk) = s
        .admin_call(
            Method::POST,
            "/api/trunks",
            Some(json!({"name": "Tata", "allowed_cidrs": ["203.0.113.7", "2001:DB8::/32"]})),
        )
        .await;
    assert_eq!(status, 201, "{trunk}");
    let expected = json!({
        "id": trunk["id"], "tenant_id": null, "name": "Tata", "provider": "generic",
        "transport": "udp", "host": null, "port": null,
        "allowed_cidrs": ["203.0.113.7/32", "2001:db8::/32"], "auth": "ip", "realm": null,
        "username": null, "digest_algorithms": ["SHA-256", "MD5"], "max_concurrent_calls": null,
        "default_country_code": "91", "codecs": ["PCMA", "PCMU"], "enabled": true,
        "created_at": trunk["created_at"], "require_client_cert": false,
    });
    assert_eq!(trunk, expected);
    assert!(trunk["id"].is_string() && trunk["created_at"].is_string());
    let path = format!("/api/trunks/{}", id(&trunk));

    let (status, read) = s.admin_call(Method::GET, &path, None).await;
    assert_eq!((status, &read), (200, &trunk));
    let (status, list) = s.admin_call(Method::GET, "/api/trunks", None).await;
    assert_eq!(status, 200);
    assert_eq!(list, json!({"items": [trunk], "next_cursor": null}));

    let full = json!({
        "name": "Tata North", "provider": "tata", "transport": "tls", "host": "SIP.Tata.example",
        "port": 5061, "allowed_cidrs": ["198.51.100.0/24"], "auth": "ip+digest",
        "realm": "tata", "username": "acme", "password": PASSWORD,
        "digest_algorithms": ["MD5"], "max_concurrent_calls": 300,
        "default_country_code": "44", "codecs": ["PCMU"], "enabled": false,
        "require_client_cert": true,
    });
    let (status, changed) = s.admin_call(Method::PATCH, &path, Some(full)).await;
    assert_eq!(status, 200, "{changed}");
    for (field, value) in [
        ("name", json!("Tata North")),
        ("provider", json!("tata")),
        ("transport", json!("tls")),
        ("host", json!("sip.tata.example")),
        ("port", json!(5061)),
        ("allowed_cidrs", json!(["198.51.100.0/24"])),
        ("auth", json!("ip+digest")),
        ("realm", json!("tata")),
        ("username", json!("acme")),
        ("digest_algorithms", json!(["MD5"])),
        ("max_concurrent_calls", json!(300)),
        ("default_country_code", json!("44")),
        ("codecs", json!(["PCMU"])),
        ("enabled", json!(false)),
        ("require_client_cert", json!(true)),
        ("created_at", trunk["created_at"].clone()),
        ("tenant_id", Value::Null),
    ] {
        assert_eq!(changed[field], value, "{field} in {changed}");
    }

    // Null clears the nullable settings; absent fields stay.
    let (status, cleared) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"host": null, "port": null, "max_concurrent_calls": null})),
        )
        .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(
        (
            &cleared["host"],
            &cleared["port"],
            &cleared["max_concurrent_calls"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(cleared["name"], "Tata North");

    let (status, body) = s.admin_call(Method::DELETE, &path, None).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, problem) = s.admin_call(Method::GET, &path, None).await;
    assert_eq!((status, problem["status"].clone()), (404, json!(404)));
    let (status, _) = s.admin_call(Method::DELETE, &path, None).await;
    assert_eq!(status, 404);
}

async fn tenant_trunks_are_managed_by_the_admin_and_the_tenant(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let key = s.key(&a).await;
    let base = format!("/api/tenants/{a}/trunks");

    // The admin creates one, the tenant creates its own bring-your-own-carrier trunk.
    let (status, by_admin) = s
        .admin_call(
            Method::POST,
            &base,
            Some(json!({"name": "Admin-made", "allowed_cidrs": ["192.0.2.10"]})),
        )
        .await;
    assert_eq!(status, 201, "{by_admin}");
    assert_eq!(by_admin["tenant_id"], a.as_str());
    let (status, own) = s
        .call(
            Method::POST,
            &base,
            &key,
            Some(
                json!({"name": "BYOC", "transport": "tcp", "host": "203.0.113.50", "port": 5060,
                        "allowed_cidrs": ["203.0.113.0/24"], "auth": "ip+digest",
                        "realm": "byoc", "username": "acme", "password": PASSWORD}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{own}");
    assert_eq!(own["tenant_id"], a.as_str());
    assert_eq!(own["auth"], "ip+digest");

    let (status, list) = s.call(Method::GET, &base, &key, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([by_admin, own]));
    // Tenant trunks are not platform trunks.
    let (_, platform) = s.admin_call(Method::GET, "/api/trunks", None).await;
    assert_eq!(platform["items"], json!([]));

    let own_path = format!("{base}/{}", id(&own));
    let (status, read) = s.call(Method::GET, &own_path, &key, None).await;
    assert_eq!((status, &read), (200, &own));
    let (status, changed) = s
        .call(
            Method::PATCH,
            &own_path,
            &key,
            Some(json!({"enabled": false, "max_concurrent_calls": 0})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (&changed["enabled"], &changed["max_concurrent_calls"]),
        (&json!(false), &json!(0))
    );
    let (status, changed) = s
        .admin_call(Method::PATCH, &own_path, Some(json!({"name": "BYOC 2"})))
        .await;
    assert_eq!((status, &changed["name"]), (200, &json!("BYOC 2")));

    let (status, _) = s.call(Method::DELETE, &own_path, &key, None).await;
    assert_eq!(status, 204);
    let (status, _) = s.call(Method::GET, &own_path, &key, None).await;
    assert_eq!(status, 404);
    let admin_path = format!("{base}/{}", id(&by_admin));
    let (status, _) = s.admin_call(Method::DELETE, &admin_path, None).await;
    assert_eq!(status, 204);

    // A tenant that does not exist has no trunks to list or add.
    let missing = uuid::Uuid::now_v7();
    let missing_base = format!("/api/tenants/{missing}/trunks");
    let (status, _) = s.admin_call(Method::GET, &missing_base, None).await;
    assert_eq!(status, 404);
    let (status, _) = s
        .admin_call(
            Method::POST,
            &missing_base,
            Some(json!({"name": "x", "allowed_cidrs": ["192.0.2.1"]})),
        )
        .await;
    assert_eq!(status, 404);
}

async fn platform_trunks_are_admin_only(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let key = s.key(&a).await;
    let (_, trunk) = s
        .admin_call(
            Method::POST,
            "/api/trunks",
            Some(json!({"name": "Tata", "allowed_cidrs": ["203.0.113.0/24"]})),
        )
        .await;
    let path = format!("/api/trunks/{}", id(&trunk));
    let missing = format!("/api/trunks/{}", uuid::Uuid::now_v7());
    let body = json!({"name": "Mine", "allowed_cidrs": ["203.0.113.0/24"]});
    for (method, route, body) in [
        (Method::GET, "/api/trunks".to_owned(), None),
        (Method::POST, "/api/trunks".to_owned(), Some(body.clone())),
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"enabled": false}))),
        (Method::DELETE, path.clone(), None),
        (Method::GET, missing.clone(), None),
        (
            Method::PATCH,
            missing.clone(),
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, missing, None),
    ] {
        let (status, problem) = s.call(method.clone(), &route, &key, body).await;
        assert_eq!(status, 403, "{method} {route} -> {problem}");
        assert_eq!(problem["status"], 403);
    }
    // Nothing changed, and no credentials at all is 401.
    let (_, read) = s.admin_call(Method::GET, &path, None).await;
    assert_eq!(read, trunk);
    let response = s.send(Method::GET, "/api/trunks", None, None).await;
    assert_eq!(response.status().as_u16(), 401);
    let response = s
        .send(Method::GET, "/api/trunks", Some("not-a-key"), None)
        .await;
    assert_eq!(response.status().as_u16(), 401);
}

async fn tenant_keys_never_reach_another_tenants_trunks(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let b = s.tenant("B").await;
    let key_a = s.key(&a).await;
    let (_, trunk_b) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{b}/trunks"),
            Some(json!({"name": "B's", "allowed_cidrs": ["198.51.100.0/24"]})),
        )
        .await;
    let (_, platform) = s
        .admin_call(
            Method::POST,
            "/api/trunks",
            Some(json!({"name": "Tata", "allowed_cidrs": ["203.0.113.0/24"]})),
        )
        .await;
    let t = id(&trunk_b);
    let p = id(&platform);
    let missing = uuid::Uuid::now_v7();
    let create = json!({"name": "x", "allowed_cidrs": ["192.0.2.1"]});
    let patch = json!({"enabled": false});

    // What a missing trunk answers is exactly what another tenant's trunk answers.
    let (status, not_found) = s
        .call(
            Method::GET,
            &format!("/api/tenants/{a}/trunks/{missing}"),
            &key_a,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/tenants/{b}/trunks"), None),
        (
            Method::POST,
            format!("/api/tenants/{b}/trunks"),
            Some(create),
        ),
        (Method::GET, format!("/api/tenants/{b}/trunks/{t}"), None),
        (
            Method::PATCH,
            format!("/api/tenants/{b}/trunks/{t}"),
            Some(patch.clone()),
        ),
        (Method::DELETE, format!("/api/tenants/{b}/trunks/{t}"), None),
        // B's trunk through A's own path.
        (Method::GET, format!("/api/tenants/{a}/trunks/{t}"), None),
        (
            Method::PATCH,
            format!("/api/tenants/{a}/trunks/{t}"),
            Some(patch.clone()),
        ),
        (Method::DELETE, format!("/api/tenants/{a}/trunks/{t}"), None),
        // A platform trunk is not a tenant's either.
        (Method::GET, format!("/api/tenants/{a}/trunks/{p}"), None),
        (
            Method::PATCH,
            format!("/api/tenants/{a}/trunks/{p}"),
            Some(patch.clone()),
        ),
        (Method::DELETE, format!("/api/tenants/{a}/trunks/{p}"), None),
        (
            Method::GET,
            format!("/api/tenants/{a}/trunks/{missing}"),
            None,
        ),
    ];
    for (method, route, body) in routes {
        let (status, problem) = s.call(method.clone(), &route, &key_a, body).await;
        assert_eq!(status, 404, "{method} {route} -> {problem}");
        assert_eq!(problem, not_found, "{method} {route}");
    }
    // B's trunk is untouched and absent from A's list.
    let (_, read) = s
        .admin_call(Method::GET, &format!("/api/tenants/{b}/trunks/{t}"), None)
        .await;
    assert_eq!(read, trunk_b);
    let (_, list) = s
        .call(
            Method::GET,
            &format!("/api/tenants/{a}/trunks"),
            &key_a,
            None,
        )
        .await;
    assert_eq!(list["items"], json!([]));
    // The admin's platform routes do not reach a tenant's trunk, nor the reverse.
    let (status, _) = s
        .admin_call(Method::GET, &format!("/api/trunks/{t}"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .admin_call(Method::DELETE, &format!("/api/trunks/{t}"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .admin_call(Method::GET, &format!("/api/tenants/{b}/trunks/{p}"), None)
        .await;
    assert_eq!(status, 404);
}

async fn passwords_are_write_only_and_stored_as_ha1(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let key = s.key(&a).await;
    let md5 = md5_hex(&format!("carrier:trunk.example.com:{PASSWORD}"));
    let sha = sha256_hex(&format!("carrier:trunk.example.com:{PASSWORD}"));
    // The tenant's trunk has its own realm: a realm and username name one trunk.
    let own_md5 = md5_hex(&format!("carrier:own.example.com:{PASSWORD}"));
    let own_sha = sha256_hex(&format!("carrier:own.example.com:{PASSWORD}"));
    let secrets = [
        PASSWORD,
        md5.as_str(),
        sha.as_str(),
        own_md5.as_str(),
        own_sha.as_str(),
    ];
    let assert_clean = |what: &str, body: &Value| {
        let text = body.to_string();
        assert!(!has_key(body, "password"), "{what}: {text}");
        for secret in secrets {
            assert!(!text.contains(secret), "{what} carries a secret: {text}");
        }
    };

    let (status, platform) = s
        .admin_call(Method::POST, "/api/trunks", Some(digest_trunk("Digest")))
        .await;
    assert_eq!(status, 201, "{platform}");
    assert_clean("create", &platform);
    let (status, own) = s
        .call(
            Method::POST,
            &format!("/api/tenants/{a}/trunks"),
            &key,
            Some(json!({
                "name": "Own", "auth": "digest", "realm": "own.example.com",
                "username": "carrier", "password": PASSWORD,
            })),
        )
        .await;
    assert_eq!(status, 201, "{own}");
    assert_clean("tenant create", &own);
    let p = format!("/api/trunks/{}", id(&platform));
    let o = format!("/api/tenants/{a}/trunks/{}", id(&own));
    for (what, (status, body)) in [
        ("get", s.admin_call(Method::GET, &p, None).await),
        ("list", s.admin_call(Method::GET, "/api/trunks", None).await),
        ("tenant get", s.call(Method::GET, &o, &key, None).await),
        (
            "tenant list",
            s.call(Method::GET, &format!("/api/tenants/{a}/trunks"), &key, None)
                .await,
        ),
        (
            "patch",
            s.admin_call(Method::PATCH, &p, Some(json!({"password": PASSWORD})))
                .await,
        ),
        (
            "tenant patch",
            s.call(Method::PATCH, &o, &key, Some(json!({"password": PASSWORD})))
                .await,
        ),
    ] {
        assert_eq!(status, 200, "{what}: {body}");
        assert_clean(what, &body);
    }
    // A refusal does not echo the password either.
    let (status, problem) = s
        .admin_call(
            Method::PATCH,
            &p,
            Some(json!({"password": PASSWORD, "username": null})),
        )
        .await;
    assert_eq!(status, 400);
    assert_clean("problem", &problem);

    // What the SIP layer reads: HA1 = H(username:realm:password) per algorithm.
    let trunks = s.store().all_enabled_trunks().await.expect("trunks");
    assert_eq!(trunks.len(), 2);
    for t in &trunks {
        let (md5, sha) = if t.trunk.tenant_id.is_some() {
            (&own_md5, &own_sha)
        } else {
            (&md5, &sha)
        };
        assert_eq!(t.ha1.get(DigestAlgorithm::Md5), Some(md5.as_str()));
        assert_eq!(t.ha1.get(DigestAlgorithm::Sha256), Some(sha.as_str()));
        assert!(
            !format!("{t:?}").contains(md5.as_str()),
            "Debug shows a hash"
        );
    }
    // Known MD5 HA1 vector for the formula itself (RFC 2617 §3.5).
    assert_eq!(
        md5_hex("Mufasa:testrealm@host.com:Circle Of Life"),
        "939e7578ed9e3c518a452acee763bce9"
    );

    // Only the configured algorithms are hashed; disabled trunks are not loaded.
    let (status, _) = s
        .admin_call(
            Method::PATCH,
            &p,
            Some(json!({"digest_algorithms": ["MD5"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .call(Method::PATCH, &o, &key, Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, 200);
    let trunks = s.store().all_enabled_trunks().await.expect("trunks");
    assert_eq!(trunks.len(), 1);
    assert_eq!(trunks[0].trunk.id.to_string(), id(&platform));
    assert_eq!(trunks[0].ha1.get(DigestAlgorithm::Md5), Some(md5.as_str()));
    assert_eq!(trunks[0].ha1.get(DigestAlgorithm::Sha256), None);
}

async fn credential_changes_never_leave_stale_hashes(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, trunk) = s
        .admin_call(Method::POST, "/api/trunks", Some(digest_trunk("Digest")))
        .await;
    assert_eq!(status, 201, "{trunk}");
    let path = format!("/api/trunks/{}", id(&trunk));
    let stored_md5 = || async {
        let trunks = s.store().all_enabled_trunks().await.expect("trunks");
        trunks[0].ha1.get(DigestAlgorithm::Md5).map(str::to_owned)
    };

    // A new username or realm without the password is refused, and nothing changes.
    for body in [
        json!({"username": "other"}),
        json!({"realm": "other.example.com"}),
        json!({"digest_algorithms": ["MD5"], "realm": "x"}),
    ] {
        let (status, problem) = s.admin_call(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} -> {problem}");
        assert_eq!(problem["field"], "password", "{body} -> {problem}");
    }
    let (_, read) = s.admin_call(Method::GET, &path, None).await;
    assert_eq!(read, trunk);
    // Setting the same username again is no change.
    let (status, _) = s
        .admin_call(Method::PATCH, &path, Some(json!({"username": "carrier"})))
        .await;
    assert_eq!(status, 200);

    // With the password, the hashes follow the new username and realm.
    let (status, changed) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"username": "other", "realm": "r2", "password": "another-pass"})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(stored_md5().await, Some(md5_hex("other:r2:another-pass")));

    // Dropping an algorithm needs no password; adding one back does.
    let (status, _) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"digest_algorithms": ["MD5"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, problem) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"digest_algorithms": ["SHA-256", "MD5"]})),
        )
        .await;
    assert_eq!((status, &problem["field"]), (400, &json!("password")));
    let (status, changed) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"digest_algorithms": ["SHA-256", "MD5"], "password": "another-pass"})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["digest_algorithms"], json!(["SHA-256", "MD5"]));

    // A digest trunk cannot lose its username; an ip trunk can, and its hashes go with it.
    let (status, problem) = s
        .admin_call(Method::PATCH, &path, Some(json!({"username": null})))
        .await;
    assert_eq!((status, &problem["field"]), (400, &json!("username")));
    let (status, changed) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"auth": "ip", "allowed_cidrs": ["192.0.2.0/24"], "username": null})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(stored_md5().await, None);
    // Back to digest: the old hashes are gone, so the password is needed again.
    let (status, problem) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"auth": "digest", "username": "other"})),
        )
        .await;
    assert_eq!((status, &problem["field"]), (400, &json!("password")));
    let (status, _) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"auth": "digest", "username": "other", "password": "third-pass"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored_md5().await, Some(md5_hex("other:r2:third-pass")));
}

async fn validation_errors_name_the_field(backend: Backend) {
    let s = TestServer::start(backend).await;
    let ip = |extra: Value| {
        let mut body = json!({"name": "T", "allowed_cidrs": ["192.0.2.0/24"]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"allowed_cidrs": ["192.0.2.0/24"]}), "name"),
        (ip(json!({"name": "  "})), "name"),
        (ip(json!({"provider": ""})), "provider"),
        (ip(json!({"transport": "sctp"})), "transport"),
        (ip(json!({"host": "not a host"})), "host"),
        (ip(json!({"port": 0})), "port"),
        (ip(json!({"port": 65536})), "port"),
        (ip(json!({"port": "5060"})), "port"),
        (json!({"name": "T"}), "allowed_cidrs"),
        (
            json!({"name": "T", "auth": "ip+digest", "realm": "r", "username": "u",
                "password": PASSWORD}),
            "allowed_cidrs",
        ),
        (
            ip(json!({"allowed_cidrs": ["192.0.2.0/33"]})),
            "allowed_cidrs",
        ),
        (ip(json!({"allowed_cidrs": ["300.0.0.1"]})), "allowed_cidrs"),
        (
            ip(json!({"allowed_cidrs": ["example.com"]})),
            "allowed_cidrs",
        ),
        (
            ip(json!({"allowed_cidrs": ["2001:db8::/129"]})),
            "allowed_cidrs",
        ),
        (
            ip(json!({"allowed_cidrs": "192.0.2.0/24"})),
            "allowed_cidrs",
        ),
        (ip(json!({"auth": "tls"})), "auth"),
        (
            json!({"name": "T", "auth": "digest", "realm": "r", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"name": "T", "auth": "digest", "username": "u", "password": PASSWORD}),
            "realm",
        ),
        (
            json!({"name": "T", "auth": "digest", "realm": "r", "username": "u"}),
            "password",
        ),
        (ip(json!({"password": PASSWORD})), "username"),
        (
            ip(json!({"realm": "r", "username": "u", "password": "short"})),
            "password",
        ),
        (ip(json!({"username": "a\"b"})), "username"),
        (ip(json!({"realm": ""})), "realm"),
        (ip(json!({"digest_algorithms": []})), "digest_algorithms"),
        (
            ip(json!({"digest_algorithms": ["SHA-512"]})),
            "digest_algorithms",
        ),
        (
            ip(json!({"digest_algorithms": ["MD5", "MD5"]})),
            "digest_algorithms",
        ),
        (
            ip(json!({"digest_algorithms": ["md5"]})),
            "digest_algorithms",
        ),
        (
            ip(json!({"max_concurrent_calls": -1})),
            "max_concurrent_calls",
        ),
        (
            ip(json!({"default_country_code": "+91"})),
            "default_country_code",
        ),
        (
            ip(json!({"default_country_code": "9a"})),
            "default_country_code",
        ),
        (ip(json!({"codecs": ["G729"]})), "codecs"),
        (ip(json!({"codecs": []})), "codecs"),
        (ip(json!({"codecs": ["PCMA", "PCMA"]})), "codecs"),
        (ip(json!({"enabled": "yes"})), "enabled"),
        (ip(json!({"ha1": "x"})), "ha1"),
        (ip(json!({"tenant_id": null})), "tenant_id"),
    ];
    for (body, field) in &cases {
        let (status, problem) = s
            .admin_call(Method::POST, "/api/trunks", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body} -> {problem}");
        assert_eq!(problem["field"], *field, "{body} -> {problem}");
    }
    let (_, list) = s.admin_call(Method::GET, "/api/trunks", None).await;
    assert_eq!(list["items"], json!([]), "nothing was created");

    // The same rules on PATCH, and unknown fields are refused.
    let (status, trunk) = s
        .admin_call(Method::POST, "/api/trunks", Some(ip(json!({}))))
        .await;
    assert_eq!(status, 201, "{trunk}");
    let path = format!("/api/trunks/{}", id(&trunk));
    for (body, field) in [
        (json!({"id": "x"}), "id"),
        (json!({"created_at": "2026-01-01T00:00:00Z"}), "created_at"),
        (json!({"secret": 1}), "secret"),
        (json!({"port": 0}), "port"),
        (json!({"allowed_cidrs": []}), "allowed_cidrs"),
        (json!({"allowed_cidrs": ["10.0.0.1/40"]}), "allowed_cidrs"),
        (json!({"auth": "digest"}), "username"),
        (json!({"auth": "digest", "username": "u"}), "realm"),
        (
            json!({"auth": "digest", "username": "u", "realm": "r"}),
            "password",
        ),
        (json!({"codecs": ["opus"]}), "codecs"),
        (json!({"name": ""}), "name"),
        (json!({"max_concurrent_calls": -5}), "max_concurrent_calls"),
    ] {
        let (status, problem) = s.admin_call(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} -> {problem}");
        assert_eq!(problem["field"], field, "{body} -> {problem}");
    }
    let (_, read) = s.admin_call(Method::GET, &path, None).await;
    assert_eq!(read, trunk, "nothing was changed");

    // Paths that are not ids name the parameter.
    let (status, problem) = s.admin_call(Method::GET, "/api/trunks/nope", None).await;
    assert_eq!((status, &problem["field"]), (400, &json!("trunk_id")));
}

async fn tenant_keys_may_not_allow_wide_networks(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let key = s.key(&a).await;
    let base = format!("/api/tenants/{a}/trunks");
    for wide in ["0.0.0.0/0", "10.0.0.0/8", "::/0", "2001:db8::/32"] {
        let (status, problem) = s
            .call(
                Method::POST,
                &base,
                &key,
                Some(json!({"name": "T", "allowed_cidrs": [wide]})),
            )
            .await;
        assert_eq!(status, 400, "{wide} -> {problem}");
        assert_eq!(problem["field"], "allowed_cidrs");
    }
    let (status, trunk) = s
        .call(
            Method::POST,
            &base,
            &key,
            Some(json!({"name": "T", "allowed_cidrs": ["10.1.0.0/16", "2001:db8:1::/48"]})),
        )
        .await;
    assert_eq!(status, 201, "{trunk}");
    let path = format!("{base}/{}", id(&trunk));
    let (status, _) = s
        .call(
            Method::PATCH,
            &path,
            &key,
            Some(json!({"allowed_cidrs": ["10.0.0.0/8"]})),
        )
        .await;
    assert_eq!(status, 400);
    // The platform admin may grant a wider network.
    let (status, changed) = s
        .admin_call(
            Method::PATCH,
            &path,
            Some(json!({"allowed_cidrs": ["10.0.0.0/8"]})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["allowed_cidrs"], json!(["10.0.0.0/8"]));
}

async fn a_trunk_in_use_by_numbers_is_not_deleted(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let key = s.key(&a).await;
    let (_, platform) = s
        .admin_call(
            Method::POST,
            "/api/trunks",
            Some(json!({"name": "Tata", "allowed_cidrs": ["203.0.113.0/24"]})),
        )
        .await;
    let (_, own) = s
        .call(
            Method::POST,
            &format!("/api/tenants/{a}/trunks"),
            &key,
            Some(json!({"name": "BYOC", "allowed_cidrs": ["198.51.100.0/24"]})),
        )
        .await;
    let mut numbers = Vec::new();
    for (did, trunk) in [("+919811111111", &platform), ("+919822222222", &own)] {
        let (status, number) = s
            .admin_call(
                Method::POST,
                &format!("/api/tenants/{a}/phone-numbers"),
                Some(json!({"did_number": did, "trunk_id": id(trunk)})),
            )
            .await;
        assert_eq!(status, 201, "{number}");
        assert_eq!(number["trunk_id"], trunk["id"]);
        numbers.push(number);
    }
    let p = format!("/api/trunks/{}", id(&platform));
    let o = format!("/api/tenants/{a}/trunks/{}", id(&own));
    let (status, problem) = s.admin_call(Method::DELETE, &p, None).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["field"], "trunk_id");
    let (status, problem) = s.call(Method::DELETE, &o, &key, None).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["field"], "trunk_id");
    // Both trunks and the numbers' references are intact.
    let (status, _) = s.admin_call(Method::GET, &p, None).await;
    assert_eq!(status, 200);
    let (status, _) = s.call(Method::GET, &o, &key, None).await;
    assert_eq!(status, 200);
    for number in &numbers {
        let (_, read) = s
            .admin_call(
                Method::GET,
                &format!("/api/tenants/{a}/phone-numbers/{}", id(number)),
                None,
            )
            .await;
        assert_eq!(&read, number);
        let (status, _) = s
            .admin_call(
                Method::DELETE,
                &format!("/api/tenants/{a}/phone-numbers/{}", id(number)),
                None,
            )
            .await;
        assert_eq!(status, 204);
    }
    // Once no number names them, they go.
    let (status, _) = s.admin_call(Method::DELETE, &p, None).await;
    assert_eq!(status, 204);
    let (status, _) = s.call(Method::DELETE, &o, &key, None).await;
    assert_eq!(status, 204);
}

async fn numbers_name_only_platform_or_own_trunks(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.tenant("A").await;
    let b = s.tenant("B").await;
    let (_, platform) = s
        .admin_call(
            Method::POST,
            "/api/trunks",
            Some(json!({"name": "Tata", "allowed_cidrs": ["203.0.113.0/24"]})),
        )
        .await;
    let (_, own_a) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{a}/trunks"),
            Some(json!({"name": "A's", "allowed_cidrs": ["198.51.100.0/24"]})),
        )
        .await;
    let (_, own_b) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{b}/trunks"),
            Some(json!({"name": "B's", "allowed_cidrs": ["192.0.2.0/24"]})),
        )
        .await;
    let numbers = format!("/api/tenants/{a}/phone-numbers");
    for (did, trunk) in [
        ("+919811111111", id(&platform)),
        ("+919822222222", id(&own_a)),
    ] {
        let (status, number) = s
            .admin_call(
                Method::POST,
                &numbers,
                Some(json!({"did_number": did, "trunk_id": trunk})),
            )
            .await;
        assert_eq!(status, 201, "{number}");
        assert_eq!(number["trunk_id"], trunk);
    }
    let missing = uuid::Uuid::now_v7().to_string();
    for trunk in [id(&own_b), missing.as_str()] {
        let (status, problem) = s
            .admin_call(
                Method::POST,
                &numbers,
                Some(json!({"did_number": "+919833333333", "trunk_id": trunk})),
            )
            .await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["field"], "trunk_id");
    }
    let (_, list) = s.admin_call(Method::GET, &numbers, None).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
}

async fn trunk_lists_paginate_and_appear_in_openapi(backend: Backend) {
    let s = TestServer::start(backend).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let (status, trunk) = s
            .admin_call(
                Method::POST,
                "/api/trunks",
                Some(json!({"name": format!("T{n}"), "allowed_cidrs": ["192.0.2.0/24"]})),
            )
            .await;
        assert_eq!(status, 201);
        ids.push(trunk["id"].clone());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/trunks?limit=2&cursor={c}"),
            None => "/api/trunks?limit=2".to_owned(),
        };
        let (status, page) = s.admin_call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["id"].clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let (status, problem) = s.admin_call(Method::GET, "/api/trunks?limit=0", None).await;
    assert_eq!((status, &problem["field"]), (400, &json!("limit")));

    let (status, doc) = s.admin_call(Method::GET, "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    for path in [
        "/api/trunks",
        "/api/trunks/{trunk_id}",
        "/api/tenants/{tenant_id}/trunks",
        "/api/tenants/{tenant_id}/trunks/{trunk_id}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
    let trunk = &doc["components"]["schemas"]["Trunk"]["properties"];
    assert!(trunk["allowed_cidrs"].is_object(), "{trunk}");
    assert!(trunk["password"].is_null(), "the row never has a password");
    let create = &doc["components"]["schemas"]["CreateTrunk"]["properties"]["password"];
    assert_eq!(create["writeOnly"], true, "{create}");
}
