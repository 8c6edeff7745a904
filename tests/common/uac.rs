//! A SIP client on a raw UDP socket, for tests that play a carrier or an attacker from a
//! chosen loopback address, and the digest arithmetic such a client needs.

use std::net::SocketAddr;
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::net::UdpSocket;

/// The value of one Prometheus sample (`name{labels}`), 0 when absent.
pub fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A SIP client on a raw UDP socket bound to one loopback address.
pub struct Uac {
    socket: UdpSocket,
    server: SocketAddr,
    seq: u32,
}

impl Uac {
    pub async fn bind(ip: &str, server: SocketAddr) -> Uac {
        let socket = UdpSocket::bind(format!("{ip}:0")).await.expect("bind");
        Uac {
            socket,
            server,
            seq: 0,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// A request of `method` to `user`, with extra header lines.
    pub fn request(&mut self, method: &str, user: &str, call_id: &str, extra: &str) -> String {
        self.seq += 1;
        let local = self.local();
        let server = self.server;
        format!(
            "{method} sip:{user}@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-t{seq}-{call_id}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:carrier@{local}>;tag=f{call_id}\r\n\
             To: <sip:{user}@{server}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {seq} {method}\r\n\
             Contact: <sip:carrier@{local}>\r\n\
             {extra}Content-Length: 0\r\n\r\n",
            seq = self.seq
        )
    }

    pub async fn send(&self, message: &str) {
        self.socket
            .send_to(message.as_bytes(), self.server)
            .await
            .expect("send");
    }

    /// The next final response, or `None` when nothing final comes within `wait`.
    pub async fn final_response(&self, wait: Duration) -> Option<String> {
        let mut buf = vec![0u8; 65_535];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("SIP/2.0 1") {
                return Some(text);
            }
        }
    }

    /// The next final response whose text holds `needle` (others are skipped).
    pub async fn final_matching(&self, needle: &str, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let response = self.final_response(left).await?;
            if response.contains(needle) {
                return Some(response);
            }
        }
    }

    pub async fn ask(
        &mut self,
        method: &str,
        user: &str,
        call_id: &str,
        extra: &str,
    ) -> Option<String> {
        let request = self.request(method, user, call_id, extra);
        self.send(&request).await;
        self.final_response(Duration::from_secs(2)).await
    }
}

pub fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
    let start = challenge.find(&format!("{name}=")).expect(name) + name.len() + 1;
    let rest = &challenge[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"').unwrap()],
        None => rest.split([',', '\r']).next().unwrap().trim(),
    }
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// The `Authorization` line answering the MD5 challenge in `response` (qop=auth, nc 1).
pub fn authorization(
    response: &str,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
    nc: u32,
) -> String {
    authorization_in(response, "", method, uri, user, password, nc)
}

/// Like [`authorization`], answering the MD5 challenge for `realm` (any when empty).
pub fn authorization_in(
    response: &str,
    realm: &str,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
    nc: u32,
) -> String {
    let wanted = format!("realm=\"{realm}\"");
    let challenge = response
        .lines()
        .find(|l| {
            l.starts_with("WWW-Authenticate:")
                && l.contains("algorithm=MD5")
                && (realm.is_empty() || l.contains(&wanted))
        })
        .expect("an MD5 challenge for the realm");
    let realm = param(challenge, "realm");
    let nonce = param(challenge, "nonce");
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let cnonce = "0a4f113b";
    let answer = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{answer}\", algorithm=MD5, qop=auth, nc={nc}, \
         cnonce=\"{cnonce}\"\r\n"
    )
}
