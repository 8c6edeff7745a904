//! The RFC 4475 and RFC 5118 torture messages against a running server: each file is sent
//! as one UDP datagram and on a fresh TCP connection, what comes back is compared with the
//! outcome written next to it in sip-fixtures/torture/*/expected.tsv, and after every
//! file an OPTIONS still gets 200.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Backend, TestDb, TestServer, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long silence must last to count as "nothing was sent".
const QUIET: Duration = Duration::from_millis(300);

struct Case {
    file: PathBuf,
    udp: String,
    tcp: String,
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-fixtures/torture");
    let mut cases = Vec::new();
    for set in ["rfc4475", "rfc5118"] {
        let dir = root.join(set);
        let table = std::fs::read_to_string(dir.join("expected.tsv")).expect("expected.tsv");
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 3, "bad row {line:?}");
            cases.push(Case {
                file: dir.join(cols[0]),
                udp: cols[1].to_owned(),
                tcp: cols[2].to_owned(),
            });
        }
    }
    assert!(cases.len() >= 60, "only {} torture files", cases.len());
    cases
}

/// The status codes of the responses in `text` (SIP/2.0 NNN at the start of a message).
fn statuses(text: &str) -> Vec<String> {
    text.split("SIP/2.0 ")
        .skip(1)
        .filter_map(|rest| rest.get(..3))
        .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

/// What the expected outcome says must come back, in order, ignoring 100 Trying. An
/// `invite` reaches the call path; the torture numbers belong to no tenant, so its final
/// answer is 404.
fn expected_statuses(outcome: &str) -> (Vec<String>, bool) {
    let mut codes = Vec::new();
    let mut closes = false;
    for part in outcome.split(',') {
        for piece in part.split('+') {
            match piece {
                "drop" => {}
                "close" => closes = true,
                "invite" => codes.push("404".to_owned()),
                code => codes.push(code.to_owned()),
            }
        }
    }
    (codes, closes)
}

fn without_trying_and_repeats(mut codes: Vec<String>) -> Vec<String> {
    codes.retain(|c| c != "100");
    codes.dedup();
    codes
}

/// Once the expected responses are in, how long to wait for anything extra.
const LINGER: Duration = Duration::from_millis(100);

async fn over_udp(server: SocketAddr, bytes: &[u8], want: &[String]) -> Vec<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let wait = if !want.is_empty() && without_trying_and_repeats(got.clone()) == want {
            LINGER
        } else {
            QUIET
        };
        match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => got.extend(statuses(&String::from_utf8_lossy(&buf[..n]))),
            _ => break,
        }
    }
    without_trying_and_repeats(got)
}

/// Returns the statuses received and whether the server closed the connection.
async fn over_tcp(
    server: SocketAddr,
    bytes: &[u8],
    want: &[String],
    want_close: bool,
) -> (Vec<String>, bool) {
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut text = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let mut closed = false;
    loop {
        let got = without_trying_and_repeats(statuses(&String::from_utf8_lossy(&text)));
        // A close may come at the server's 1 s message deadline.
        let wait = if want_close {
            Duration::from_millis(1500)
        } else if !want.is_empty() && got == want {
            LINGER
        } else {
            QUIET
        };
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => text.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (
        without_trying_and_repeats(statuses(&String::from_utf8_lossy(&text))),
        closed,
    )
}

async fn options_still_answered(server: SocketAddr) -> bool {
    let options = format!(
        "OPTIONS sip:ping@{server} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{}\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:ping@{server}>\r\nCall-ID: {}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    over_udp(server, options.as_bytes(), &["200".to_owned()]).await == ["200"]
}

async fn server() -> TestServer {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = test_config(&db);
    // A message that never completes is cut off at this deadline ("close").
    config.tcp_limits.message_deadline = Duration::from_secs(1);
    TestServer::start_with(config, db).await
}

/// Sends every file, one after another (several files share a Call-ID and branch, so
/// that at once they would be one merged request), over one transport.
async fn run_pass(server: SocketAddr, tcp: bool, options_to: SocketAddr) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases() {
        let bytes = std::fs::read(&case.file).unwrap();
        let name = case
            .file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if tcp {
            let (want, want_close) = expected_statuses(&case.tcp);
            let (got, closed) = over_tcp(server, &bytes, &want, want_close).await;
            if got != want || closed != want_close {
                failures.push(format!(
                    "{name} over TCP: expected {} ({want:?}, close {want_close}), got {got:?}, closed {closed}",
                    case.tcp
                ));
            }
        } else {
            let (want, _) = expected_statuses(&case.udp);
            let got = over_udp(server, &bytes, &want).await;
            if got != want {
                failures.push(format!(
                    "{name} over UDP: expected {} ({want:?}), got {got:?}",
                    case.udp
                ));
            }
        }
        if !options_still_answered(options_to).await {
            failures.push(format!("after {name}, OPTIONS got no 200"));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_torture_message_gets_its_expected_outcome_on_udp_and_tcp() {
    // One server per transport: the same bytes over UDP and TCP name the same transaction.
    let (a, b) = (server().await, server().await);
    let udp = a.server.as_ref().unwrap().sip_udp_addr;
    let tcp = b.server.as_ref().unwrap().sip_tcp_addr;
    let tcp_server_udp = b.server.as_ref().unwrap().sip_udp_addr;
    let (udp_failures, tcp_failures) = tokio::join!(
        run_pass(udp, false, udp),
        run_pass(tcp, true, tcp_server_udp)
    );
    let failures: Vec<String> = udp_failures.into_iter().chain(tcp_failures).collect();
    assert!(
        failures.is_empty(),
        "{} torture outcomes differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
