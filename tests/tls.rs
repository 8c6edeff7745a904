//! SIP over TLS end to end: the real binary with certificates made by rcgen at test time,
//! and a rustls client (tokio-rustls) that trusts only the test CA. OPTIONS and a whole call
//! over TLS with `sips:` URIs; old protocol versions, plain SIP and stalled handshakes on
//! the TLS port are refused without harm; SIGHUP swaps the certificate for new
//! connections while a call on an old one goes on; bad TLS settings stop the start with
//! one line naming them; client certificates are verified and recorded on the peer.

#![allow(clippy::disallowed_methods)] // deadlines on real TLS connections to the real binary

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::pki::{Ca, Leaf};
use common::process::{Served, command, serve};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use vca_sip::gate::Shield;
use vca_sip::gate::flood::FloodConfig;
use vca_sip::routing::trunks::TrunkBook;
use vca_sip::transport::tcp::TcpLimits;
use vca_sip::transport::tls::{self, TlsCerts, TlsFiles};
use vca_sip::transport::{Peer, Transport};

const TOKEN: &str = "tls-test-admin-token-0123456789";

/// A server certificate signed by the test CA, written where the server reads it.
struct Pki {
    ca: Ca,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            ca: Ca::new("vca-sip test CA"),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Issues a server certificate and writes it to server.crt / server.key.
    fn issue(&self, name: &str) -> Leaf {
        let leaf = self.ca.server(name);
        leaf.write(self.dir.path(), "server");
        leaf
    }
}

/// `vca-sip serve` with TLS on a free loopback port, serving what `pki` last issued.
fn serve_tls(pki: &Pki, data: &Path, rust_log: &str, extra: &[&str]) -> Served {
    let mut cmd = command(data);
    cmd.env("VCA_ADMIN_TOKEN", TOKEN).env("RUST_LOG", rust_log);
    let cert = pki.path("server.crt");
    let key = pki.path("server.key");
    let mut args = vec![
        "--sip-tls",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    let served = serve(cmd, &args);
    assert!(
        served.sip_tls.is_some(),
        "no TLS address: {:?}",
        served.lines
    );
    served
}

fn stop(mut served: Served) {
    let _ = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status();
    let status = served.child.wait().expect("wait");
    assert!(status.success(), "vca-sip exited with {status}");
}

/// Waits until the server says a line containing `needle`.
async fn said(served: &Served, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        for line in served.later.try_iter() {
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
        }
        assert!(
            Instant::now() < deadline,
            "the server did not say {needle:?} within 10 s: {seen:#?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

fn client_config(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    client: Option<&Leaf>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("test CA");
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(leaf) => {
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("client key");
            builder
                .with_client_auth_cert(vec![leaf.der.clone()], key)
                .expect("client auth")
        }
    };
    Arc::new(config)
}

fn default_client(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    client_config(ca, rustls::DEFAULT_VERSIONS, None)
}

/// A SIP connection over TLS, reading one message at a time.
struct SipTls {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
    server: SocketAddr,
}

impl SipTls {
    async fn connect(server: SocketAddr, config: Arc<ClientConfig>) -> SipTls {
        let tcp = TcpStream::connect(server).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let stream = timeout(
            Duration::from_secs(5),
            TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .expect("handshake within 5 s")
        .expect("handshake");
        SipTls {
            stream,
            buf: Vec::new(),
            server,
        }
    }

    /// The end-entity certificate the server presented.
    fn server_cert(&self) -> CertificateDer<'static> {
        self.stream
            .get_ref()
            .1
            .peer_certificates()
            .expect("certificates")[0]
            .clone()
            .into_owned()
    }

    fn local(&self) -> SocketAddr {
        self.stream.get_ref().0.local_addr().expect("local address")
    }

    async fn send(&mut self, message: &str) {
        self.stream
            .write_all(message.as_bytes())
            .await
            .expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// The next whole message (header section and Content-Length body).
    async fn next(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(message) = self.take() {
                return message;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .expect("a message within 5 s")
                .expect("read");
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn take(&mut self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        let end = text.find("\r\n\r\n")? + 4;
        let length: usize = header(&text[..end], "Content-Length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if self.buf.len() < end + length {
            return None;
        }
        let message = String::from_utf8_lossy(&self.buf[..end + length]).into_owned();
        self.buf.drain(..end + length);
        Some(message)
    }

    /// Sends OPTIONS to a `sips:` Request-URI and returns the status of the answer.
    async fn options(&mut self) -> u16 {
        let request = format!(
            "OPTIONS sips:ping@{server} SIP/2.0\r\n\
             Via: SIP/2.0/TLS {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sips:tester@127.0.0.1>;tag={tag}\r\n\
             To: <sips:ping@{server}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            server = self.server,
            local = self.local(),
            branch = unique(),
            tag = unique(),
            call_id = unique(),
        );
        self.send(&request).await;
        status(&self.next().await)
    }
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn status(message: &str) -> u16 {
    message
        .strip_prefix("SIP/2.0 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {message}"))
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A call placed over one TLS connection: INVITE with SDP, then ACK and BYE.
struct Call {
    call_id: String,
    from_tag: String,
    to_tag: String,
    contact: String,
    cseq: u32,
    _rtp: UdpSocket,
}

impl Call {
    /// Dials 09876543210 with a `sips:` Request-URI; returns once the 200 is in and acked.
    async fn place(conn: &mut SipTls) -> Call {
        let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("RTP socket");
        let rtp_port = rtp.local_addr().expect("RTP address").port();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        );
        let call_id = unique();
        let from_tag = unique();
        let local = conn.local();
        let server = conn.server;
        let invite = format!(
            "INVITE sips:09876543210@{server} SIP/2.0\r\n\
             Via: SIP/2.0/TLS {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sips:+14155550100@127.0.0.1>;tag={from_tag}\r\n\
             To: <sips:09876543210@{server}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sips:caller@{local}>\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {length}\r\n\r\n{sdp}",
            branch = unique(),
            length = sdp.len(),
        );
        conn.send(&invite).await;
        let mut answer = conn.next().await;
        while status(&answer) < 200 {
            assert_eq!(status(&answer), 100, "{answer}");
            answer = conn.next().await;
        }
        assert_eq!(status(&answer), 200, "{answer}");
        let to = header(&answer, "To").expect("To");
        let to_tag = to
            .split(";tag=")
            .nth(1)
            .expect("To-tag")
            .split(';')
            .next()
            .expect("tag")
            .to_owned();
        let contact = header(&answer, "Contact").expect("Contact").to_owned();
        let call = Call {
            call_id,
            from_tag,
            to_tag,
            contact,
            cseq: 1,
            _rtp: rtp,
        };
        let ack = call.request(conn, "ACK", 1);
        conn.send(&ack).await;
        call
    }

    fn request(&self, conn: &SipTls, method: &str, cseq: u32) -> String {
        let target = self.contact.trim_start_matches('<').trim_end_matches('>');
        format!(
            "{method} {target} SIP/2.0\r\n\
             Via: SIP/2.0/TLS {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sips:+14155550100@127.0.0.1>;tag={from_tag}\r\n\
             To: <sips:09876543210@{server}>;tag={to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            local = conn.local(),
            server = conn.server,
            branch = unique(),
            from_tag = self.from_tag,
            to_tag = self.to_tag,
            call_id = self.call_id,
        )
    }

    /// Hangs up and returns the status of the answer to the BYE.
    async fn hang_up(mut self, conn: &mut SipTls) -> u16 {
        self.cseq += 1;
        let bye = self.request(conn, "BYE", self.cseq);
        conn.send(&bye).await;
        status(&conn.next().await)
    }
}

/// The HTTP API of a served binary.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(served: &Served) -> Api {
        Api {
            base: served.http.clone(),
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.try_post(path, body).await;
        assert_eq!(status, 201, "POST {path}: {body}");
        body
    }

    async fn try_post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// A tenant with the number 09876543210; returns the tenant's id.
    async fn tenant_with_number(&self) -> String {
        let tenant = self.post("/api/tenants", json!({"name": "Acme"})).await;
        let tenant = tenant["id"].as_str().expect("id").to_owned();
        self.post(
            &format!("/api/tenants/{tenant}/phone-numbers"),
            json!({"did_number": "09876543210"}),
        )
        .await;
        tenant
    }

    /// Waits for `n` finished call records of `tenant`.
    async fn finished_calls(&self, tenant: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let list = self
                .get(&format!("/api/tenants/{tenant}/calls?limit=50"))
                .await;
            let calls = list["items"].as_array().expect("items").clone();
            if calls.iter().filter(|c| c["status"] == "ended").count() >= n {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {n} ended calls within 5 s: {calls:#?}"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads until the server closes the connection; returns what it sent before.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the server kept the connection open for 10 s"),
        }
    }
}

/// A ClientHello that offers TLS 1.1 at most.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version: TLS 1.1
    body.extend([0x42; 32]); // random
    body.push(0); // no session id
    body.extend([0x00, 0x04, 0x00, 0x2f, 0x00, 0x35]); // AES128-SHA, AES256-SHA
    body.extend([0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, 0x00, body.len() as u8]; // ClientHello
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend(handshake);
    record
}

fn counter(metrics: &str, name: &str, reason: &str) -> u64 {
    let series = format!("{name}{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_over_tls_get_200_with_tls_1_3_and_1_2() {
    let pki = Pki::new();
    let leaf = pki.issue("vca-sip A");
    let data = tempfile::tempdir().unwrap();
    let served = serve_tls(&pki, data.path(), "warn", &[]);
    let addr = served.sip_tls.unwrap();
    for (versions, expected) in [
        (
            &[&rustls::version::TLS13][..],
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            &[&rustls::version::TLS12][..],
            rustls::ProtocolVersion::TLSv1_2,
        ),
    ] {
        let mut conn = SipTls::connect(addr, client_config(&pki.ca.der(), versions, None)).await;
        assert_eq!(conn.stream.get_ref().1.protocol_version(), Some(expected));
        assert_eq!(conn.server_cert(), leaf.der);
        assert_eq!(conn.options().await, 200);
        // The same connection carries the next request too.
        assert_eq!(conn.options().await, 200);
    }
    stop(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_tls_is_answered_and_recorded_as_tls() {
    let pki = Pki::new();
    pki.issue("vca-sip A");
    let data = tempfile::tempdir().unwrap();
    let served = serve_tls(&pki, data.path(), "warn", &[]);
    let addr = served.sip_tls.unwrap();
    let api = Api::new(&served);
    let tenant = api.tenant_with_number().await;

    let mut conn = SipTls::connect(addr, default_client(&pki.ca.der())).await;
    let call = Call::place(&mut conn).await;
    assert_eq!(
        call.contact,
        format!("<sips:vca@{addr}>"),
        "Contact names the TLS port with a sips: URI"
    );
    sleep(Duration::from_millis(300)).await;
    assert_eq!(call.hang_up(&mut conn).await, 200);

    let calls = api.finished_calls(&tenant, 1).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let record = &calls[0];
    assert_eq!(record["transport"], "tls", "{record}");
    assert_eq!(record["sip_status"], 200, "{record}");
    assert_eq!(record["hangup_cause"], "caller_bye", "{record}");
    assert_eq!(record["called"], "+919876543210", "{record}");
    assert!(
        record["remote_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{record}"
    );
    stop(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_protocols_and_plain_sip_on_the_tls_port_are_refused_without_harm() {
    let pki = Pki::new();
    pki.issue("vca-sip A");
    let data = tempfile::tempdir().unwrap();
    let served = serve_tls(&pki, data.path(), "warn", &[]);
    let addr = served.sip_tls.unwrap();

    // TLS 1.1: the server answers with an alert at most, then closes.
    let mut old = TcpStream::connect(addr).await.unwrap();
    old.write_all(&tls11_client_hello()).await.unwrap();
    let answer = until_closed(&mut old).await;
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "a TLS 1.1 hello got something other than an alert: {answer:02x?}"
    );

    // Plain SIP on the TLS port: no SIP answer, the connection closes.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(
            b"OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK1\r\n\
              From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: plain\r\n\
              CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut plain).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("SIP/2.0"),
        "plain SIP got a SIP answer on the TLS port"
    );

    // Bytes that are no protocol at all.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(&[0xff; 64]).await.unwrap();
    until_closed(&mut garbage).await;

    // The server still serves TLS.
    let mut conn = SipTls::connect(addr, default_client(&pki.ca.der())).await;
    assert_eq!(conn.options().await, 200);

    let metrics = Api::new(&served).metrics().await;
    let failures = "vca_sip_tls_handshake_failures_total";
    assert!(
        counter(&metrics, failures, "incompatible") >= 1,
        "TLS 1.1 not counted:\n{metrics}"
    );
    assert!(
        counter(&metrics, failures, "invalid_message") >= 2,
        "plain SIP and garbage not counted:\n{metrics}"
    );
    stop(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_completes_is_closed() {
    let pki = Pki::new();
    pki.issue("vca-sip A");
    let data = tempfile::tempdir().unwrap();
    let served = serve_tls(
        &pki,
        data.path(),
        "warn",
        &["--tls-handshake-timeout-ms", "300"],
    );
    let addr = served.sip_tls.unwrap();

    // Connects and says nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty());
    // Starts a ClientHello and never finishes it.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(&tls11_client_hello()[..8]).await.unwrap();
    assert!(until_closed(&mut partial).await.is_empty());

    let mut conn = SipTls::connect(addr, default_client(&pki.ca.der())).await;
    assert_eq!(conn.options().await, 200);
    let metrics = Api::new(&served).metrics().await;
    assert!(
        counter(&metrics, "vca_sip_tls_handshake_failures_total", "timeout") >= 2,
        "stalled handshakes not counted:\n{metrics}"
    );
    stop(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_for_new_connections_and_keeps_calls_up() {
    let pki = Pki::new();
    let a = pki.issue("vca-sip A");
    let data = tempfile::tempdir().unwrap();
    let served = serve_tls(&pki, data.path(), "info", &[]);
    let addr = served.sip_tls.unwrap();
    let pid = served.child.id().to_string();
    let hangup = || {
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success());
    };
    let api = Api::new(&served);
    let tenant = api.tenant_with_number().await;
    let ca = pki.ca.der();

    // Connection 1 on certificate A, with a call up on it.
    let mut first = SipTls::connect(addr, default_client(&ca)).await;
    assert_eq!(first.server_cert(), a.der);
    let call = Call::place(&mut first).await;

    // Certificate B replaces A on disk; SIGHUP.
    let b = pki.issue("vca-sip B");
    assert_ne!(a.der, b.der);
    hangup();
    said(&served, "TLS certificate reloaded").await;
    let mut second = SipTls::connect(addr, default_client(&ca)).await;
    assert_eq!(second.server_cert(), b.der, "a new connection gets B");
    assert_eq!(second.options().await, 200);
    assert_eq!(first.options().await, 200, "connection 1 still served");

    // A certificate file that is not PEM: the reload fails and B stays.
    std::fs::write(pki.path("server.crt"), "not a certificate\n").unwrap();
    hangup();
    let line = said(&served, "TLS certificate not reloaded").await;
    assert!(line.contains("ERROR"), "{line}");
    let mut third = SipTls::connect(addr, default_client(&ca)).await;
    assert_eq!(third.server_cert(), b.der, "B stays after a failed reload");
    assert_eq!(third.options().await, 200);

    // The call set up before both reloads ends normally on connection 1.
    assert_eq!(call.hang_up(&mut first).await, 200);
    let calls = api.finished_calls(&tenant, 1).await;
    assert_eq!(calls[0]["hangup_cause"], "caller_bye", "{calls:#?}");
    assert_eq!(calls[0]["transport"], "tls", "{calls:#?}");
    stop(served);
}

#[test]
fn bad_tls_settings_stop_the_start_with_one_line_naming_them() {
    let pki = Pki::new();
    pki.issue("vca-sip A");
    // A valid pair of its own, whose key does not belong to server.crt.
    let (_, other_key) = pki.ca.server("other").write(pki.dir.path(), "other");
    let cert = pki.path("server.crt");
    let key = pki.path("server.key");
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\n!!!!\n").unwrap();
    let empty = pki.path("empty.pem");
    std::fs::write(&empty, "no PEM here\n").unwrap();
    let missing = pki.path("missing.pem");
    let toml = pki.path("vca.toml");
    std::fs::write(
        &toml,
        format!(
            "sip_tls = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            other_key.display().to_string()
        ),
    )
    .unwrap();
    let p = |path: &Path| path.to_str().unwrap().to_owned();
    let tls = |cert: &Path, key: &Path| {
        vec![
            "--sip-tls".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--tls-cert".to_owned(),
            p(cert),
            "--tls-key".to_owned(),
            p(key),
        ]
    };
    let with = |mut args: Vec<String>, more: &[&str]| {
        args.extend(more.iter().map(|a| (*a).to_owned()));
        args
    };
    let data = tempfile::tempdir().unwrap();
    let refused = |args: Vec<String>, env: Option<(&str, &str)>, setting: &str| {
        let mut cmd = command(data.path());
        cmd.arg("serve").args(&args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(setting), "{args:?} {env:?}: {stderr}");
    };
    refused(
        with(vec![], &["--sip-tls", "127.0.0.1:0"]),
        None,
        "`tls_cert`",
    );
    refused(
        with(vec![], &["--tls-cert", &p(&cert)]),
        Some(("VCA_SIP_TLS", "127.0.0.1:0")),
        "`tls_key`",
    );
    refused(vec![], Some(("VCA_TLS_CERT", &p(&cert))), "`tls_cert`");
    refused(
        with(vec![], &["--sip-tls", "localhost:5061"]),
        None,
        "`sip_tls`",
    );
    refused(tls(&missing, &key), None, "`tls_cert`");
    refused(tls(&empty, &key), None, "`tls_cert`");
    refused(tls(&garbage, &key), None, "`tls_cert`");
    refused(tls(&cert, &missing), None, "`tls_key`");
    refused(tls(&cert, &cert), None, "`tls_key`");
    refused(tls(&cert, &other_key), None, "`tls_key`");
    refused(with(vec![], &["--config", &p(&toml)]), None, "`tls_key`");
    refused(
        with(tls(&cert, &key), &["--tls-client-ca", &p(&empty)]),
        None,
        "`tls_client_ca`",
    );
    refused(
        with(tls(&cert, &key), &["--tls-handshake-timeout-ms", "0"]),
        None,
        "`tls_handshake_timeout_ms`",
    );
}

/// The TLS listener alone, with a channel in place of the core: what it hands on shows
/// what the peer records about the client's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_verified_and_recorded_on_the_peer() {
    let pki = Pki::new();
    pki.issue("vca-sip A");
    let clients = Ca::new("trunk client CA");
    let strangers = Ca::new("unknown CA");
    let bundle = pki.path("clients.pem");
    std::fs::write(&bundle, clients.pem()).unwrap();
    let certs = TlsCerts::load(TlsFiles {
        cert: pki.path("server.crt"),
        key: pki.path("server.key"),
        client_ca: Some(bundle),
    })
    .expect("TLS files");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (core, mut inbound) = mpsc::channel(16);
    let shield = Shield::new(TrunkBook::default(), FloodConfig::default());
    let server = tokio::spawn(tls::run(
        listener,
        core,
        TcpLimits::default(),
        shield,
        Arc::new(certs),
    ));
    let ca = pki.ca.der();
    let carrier = clients.client("sbc.carrier.example");

    let mut recorded = Vec::new();
    for client in [Some(&carrier), None] {
        let config = client_config(&ca, rustls::DEFAULT_VERSIONS, client);
        let mut conn = SipTls::connect(addr, config).await;
        conn.send(
            "OPTIONS sips:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bK1\r\n\
             From: <sips:t@127.0.0.1>;tag=1\r\nTo: <sips:ping@127.0.0.1>\r\nCall-ID: c\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        let message = timeout(Duration::from_secs(5), inbound.recv())
            .await
            .expect("a message within 5 s")
            .expect("listener running");
        let Peer::Stream {
            transport,
            client_cert,
            ..
        } = message.peer
        else {
            panic!("not a stream peer");
        };
        assert_eq!(transport, Transport::Tls);
        recorded.push(client_cert.map(|c| (*c).clone()));
    }
    assert_eq!(recorded, [Some(carrier.der.clone()), None]);

    // A certificate from a CA not in the bundle ends the connection before any message.
    let stranger = strangers.client("mallory.example");
    let config = client_config(&ca, rustls::DEFAULT_VERSIONS, Some(&stranger));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    if let Ok(mut stream) = TlsConnector::from(config).connect(name, tcp).await {
        // TLS 1.3 finishes the client's side before the server has checked its certificate.
        let _ = stream.write_all(b"OPTIONS").await;
        let _ = stream.flush().await;
        let mut buf = [0u8; 64];
        let read = timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the server closes within 5 s");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert!(
        timeout(Duration::from_millis(200), inbound.recv())
            .await
            .is_err(),
        "a message arrived over a connection with an unknown client certificate"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_may_require_a_client_certificate_for_its_host() {
    let pki = Pki::new();
    pki.issue("vca-sip A");
    let clients = Ca::new("trunk client CA");
    let bundle = pki.path("clients.pem");
    std::fs::write(&bundle, clients.pem()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let served = serve_tls(
        &pki,
        data.path(),
        "warn",
        &[
            "--tls-client-ca",
            bundle.to_str().expect("path"),
            "--unadmitted",
            "403",
        ],
    );
    let addr = served.sip_tls.unwrap();
    let api = Api::new(&served);
    // Only a TLS trunk can require a certificate.
    let (status, refused) = api
        .try_post(
            "/api/trunks",
            json!({"name": "Plain", "auth": "ip", "allowed_cidrs": ["127.0.0.1/32"],
                   "require_client_cert": true}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["field"], "require_client_cert", "{refused}");
    let trunk = api
        .post(
            "/api/trunks",
            json!({"name": "Carrier", "transport": "tls", "host": "sbc.carrier.example",
                   "auth": "ip", "allowed_cidrs": ["127.0.0.1/32"],
                   "require_client_cert": true}),
        )
        .await;
    assert_eq!(trunk["require_client_cert"], true, "{trunk}");

    let ca = pki.ca.der();
    let carrier = clients.client("sbc.carrier.example");
    let impostor = clients.client("other.example");
    for (client, expected) in [(Some(&carrier), 200), (Some(&impostor), 403), (None, 403)] {
        let config = client_config(&ca, rustls::DEFAULT_VERSIONS, client);
        let mut conn = SipTls::connect(addr, config).await;
        assert_eq!(
            conn.options().await,
            expected,
            "client certificate {:?}",
            client.map(|c| c.der.len())
        );
    }
    stop(served);
}
