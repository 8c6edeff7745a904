//! A running server with one tenant and its number 09876543210 (+919876543210), and the
//! means to call it with sipp and read back what was recorded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use vca_sip::config::Config;

use super::sipp::Sipp;
use super::{Backend, TestDb, TestServer, test_config};

pub struct CallEnv {
    pub s: TestServer,
    pub tenant: String,
    /// The id of the tenant's phone number.
    pub number: String,
}

impl CallEnv {
    /// Starts a server on `backend` with `tweak` applied to its configuration.
    pub async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> CallEnv {
        let db = TestDb::new(backend).await;
        let mut config = test_config(&db);
        tweak(&mut config);
        let s = TestServer::start_with(config, db).await;
        let tenant = s.tenant("Acme").await;
        let (status, number) = s
            .admin_call(
                Method::POST,
                &format!("/api/tenants/{tenant}/phone-numbers"),
                Some(json!({"did_number": "09876543210"})),
            )
            .await;
        assert_eq!(status, 201, "{number}");
        let number = number["id"].as_str().expect("id").to_owned();
        CallEnv { s, tenant, number }
    }

    pub fn udp(&self) -> SocketAddr {
        self.s.server.as_ref().expect("running").sip_udp_addr
    }

    pub fn tcp(&self) -> SocketAddr {
        self.s.server.as_ref().expect("running").sip_tcp_addr
    }

    /// A sipp run of `scenario` over `transport` ("udp" or "tcp"), one call per injection
    /// row, 10 calls/s, 200 ms hold.
    pub fn sipp<'a>(
        &'a self,
        scenario: PathBuf,
        transport: &'a str,
        rows: &[impl AsRef<str>],
    ) -> Sipp<'a> {
        Sipp {
            scenario,
            target: if transport == "tcp" {
                self.tcp()
            } else {
                self.udp()
            },
            transport,
            rows: rows.iter().map(|r| r.as_ref().to_owned()).collect(),
            calls: rows.len(),
            rate: 10,
            pause_ms: 200,
            dir: self.s.db.dir.path(),
            extra: Vec::new(),
            trace_messages: true,
        }
    }

    /// Creates a platform trunk and returns its id.
    pub async fn platform_trunk(&self, body: Value) -> String {
        let (status, trunk) = self
            .s
            .admin_call(Method::POST, "/api/trunks", Some(body))
            .await;
        assert_eq!(status, 201, "{trunk}");
        trunk["id"].as_str().expect("id").to_owned()
    }

    /// The tenant's call records, newest first.
    pub async fn calls(&self) -> Vec<Value> {
        let (status, list) = self
            .s
            .admin_call(
                Method::GET,
                &format!("/api/tenants/{}/calls?limit=500", self.tenant),
                None,
            )
            .await;
        assert_eq!(status, 200, "{list}");
        list["items"].as_array().expect("items").clone()
    }

    /// Waits until `n` calls are recorded with a final status (records are written in
    /// batches just after the call ends).
    pub async fn finished_calls(&self, n: usize) -> Vec<Value> {
        for _ in 0..100 {
            let calls = self.calls().await;
            let done = calls
                .iter()
                .filter(|c| c["status"] == "ended" || c["status"] == "failed")
                .count();
            if done >= n {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} finished calls: {:#?}", self.calls().await);
    }

    /// The server's Prometheus text.
    pub async fn metrics(&self) -> String {
        self.s.metrics().await
    }
}
