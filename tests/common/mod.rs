//! Shared test harness: a real vca-sip on loopback, over a real SQLite file or a real
//! PostgreSQL database of its own.
#![allow(dead_code)]
// The harness waits on real processes and sockets, so it reads the real clock.
#![allow(clippy::disallowed_methods)]

pub mod agent;
pub mod baresip;
pub mod calls;
pub mod heavy;
pub mod pki;
pub mod process;
pub mod sipp;
pub mod uac;

use std::path::PathBuf;

use reqwest::{Client, Method, Response};
use serde_json::Value;
use vca_sip::config::{Config, Settings};
use vca_sip::server::Server;
use vca_sip::store::{DatabaseUrl, Store};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for an `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )+
    };
}

/// A fresh, empty database for one test.
pub struct TestDb {
    pub url: DatabaseUrl,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = match backend {
            Backend::Sqlite => DatabaseUrl::Sqlite(dir.path().join("vca-sip.db")),
            Backend::Postgres => DatabaseUrl::Postgres(fresh_pg_database().await),
        };
        TestDb { url, dir }
    }
}

/// The PostgreSQL server the test command started. A test that needs it fails loudly when
/// it is absent rather than passing without it.
pub fn pg_admin_url() -> String {
    std::env::var("VCA_TEST_PG_URL").expect(
        "VCA_TEST_PG_URL is not set: these tests need a PostgreSQL server; \
         run ./scripts/test, which installs and starts one",
    )
}

/// Creates a uniquely named database and returns its URL.
pub async fn fresh_pg_database() -> String {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at VCA_TEST_PG_URL: {e}"));
    let name = format!("vca_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .expect("URL has a database");
    format!("{base}/{name}")
}

/// A running server and an HTTP client for it.
pub struct TestServer {
    pub server: Option<Server>,
    pub base: String,
    pub admin: String,
    pub client: Client,
    pub db: TestDb,
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The defaults, on free loopback ports, over `db`.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config::load(&Settings::default(), Some(ADMIN_TOKEN.to_owned()))
        .expect("default configuration");
    config.database = db.url.clone();
    config.http = "127.0.0.1:0".parse().unwrap();
    config.sip_udp = "127.0.0.1:0".parse().unwrap();
    config.sip_tcp = "127.0.0.1:0".parse().unwrap();
    // Tenants' targets in tests (agents, webhooks) listen on loopback.
    config.target_policy = vca_sip::targets::TargetPolicy::AllowPrivate;
    // Recordings beside the test's database, never in the working directory.
    config.recordings_dir = db.dir.path().join("recordings");
    config
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        let db = TestDb::new(backend).await;
        let config = test_config(&db);
        TestServer::start_with(config, db).await
    }

    pub async fn start_with(config: Config, db: TestDb) -> TestServer {
        let server = Server::start(&config).await.expect("server starts");
        let base = format!("http://{}", server.http_addr);
        TestServer {
            server: Some(server),
            base,
            admin: ADMIN_TOKEN.to_owned(),
            client: Client::new(),
            db,
        }
    }

    pub fn store(&self) -> &Store {
        &self.server.as_ref().expect("running").store
    }

    /// Sends a request with `token` as the bearer token and returns the response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("HTTP request")
    }

    /// The server's Prometheus text.
    pub async fn metrics(&self) -> String {
        self.send(Method::GET, "/metrics", None, None)
            .await
            .text()
            .await
            .expect("metrics")
    }

    /// Like [`send`], and returns the status and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let response = self.send(method, path, Some(token), body).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    pub async fn admin_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(method, path, &self.admin.clone(), body).await
    }

    /// Creates a tenant as the admin and returns its id.
    pub async fn tenant(&self, name: &str) -> String {
        let (status, body) = self
            .admin_call(
                Method::POST,
                "/api/tenants",
                Some(serde_json::json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }

    /// Creates an API key for `tenant` and returns it.
    pub async fn key(&self, tenant: &str) -> String {
        let (status, body) = self
            .admin_call(
                Method::POST,
                &format!("/api/tenants/{tenant}/api-keys"),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["key"].as_str().expect("key").to_owned()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.db.dir.path().to_path_buf()
    }
}
