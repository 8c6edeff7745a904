//! Resource limits of SIP over TCP against a running server: connections per source and in
//! all are capped (the excess is refused while live connections go on), and a peer that
//! trickles a message one byte at a time is cut off at the message deadline.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::uac::sample;
use common::{Backend, TestDb, TestServer, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn server(tweak: impl FnOnce(&mut vca_sip::config::Config)) -> TestServer {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = test_config(&db);
    tweak(&mut config);
    TestServer::start_with(config, db).await
}

/// A TCP connection to `server` from the loopback address `ip`.
async fn connect_from(ip: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{ip}:0").parse().unwrap())
        .expect("bind");
    socket.connect(server).await.expect("connect")
}

/// Sends OPTIONS on `conn` and returns the status of the answer, or `None` when the
/// connection is closed (or silent for 3 s) instead.
async fn options(conn: &mut TcpStream, n: u32) -> Option<u16> {
    let local = conn.local_addr().ok()?;
    let request = format!(
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bK-limits-{n}-{port}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:t@127.0.0.1>;tag={n}\r\n\
         To: <sip:ping@127.0.0.1>\r\n\
         Call-ID: limits-{n}-{port}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        port = local.port()
    );
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    if n == 0 {
        return None;
    }
    String::from_utf8_lossy(&buf[..n])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_source_and_in_all() {
    let s = server(|c| {
        c.tcp_limits.max_per_source = 3;
        c.tcp_limits.max_connections = 5;
    })
    .await;
    let tcp = s.server.as_ref().unwrap().sip_tcp_addr;
    let before = s.metrics().await;

    // Three from one source are served; the fourth is refused.
    let mut live = Vec::new();
    for i in 0..3 {
        let mut conn = connect_from("127.0.0.2", tcp).await;
        assert_eq!(options(&mut conn, i).await, Some(200), "connection {i}");
        live.push(conn);
    }
    let mut excess = connect_from("127.0.0.2", tcp).await;
    assert_eq!(
        options(&mut excess, 10).await,
        None,
        "a 4th connection from one source"
    );

    // Another source gets the two places left in all, then nothing more.
    for i in 0..2 {
        let mut conn = connect_from("127.0.0.3", tcp).await;
        assert_eq!(
            options(&mut conn, 20 + i).await,
            Some(200),
            "other source {i}"
        );
        live.push(conn);
    }
    let mut over = connect_from("127.0.0.4", tcp).await;
    assert_eq!(
        options(&mut over, 30).await,
        None,
        "a 6th connection in all"
    );

    // The connections that were admitted are untouched.
    for (i, conn) in live.iter_mut().enumerate() {
        assert_eq!(options(conn, 40 + i as u32).await, Some(200), "live {i}");
    }
    // A place freed is a place another connection may take.
    drop(live.pop());
    let mut again = None;
    for attempt in 0..20 {
        let mut conn = connect_from("127.0.0.4", tcp).await;
        if options(&mut conn, 50 + attempt).await == Some(200) {
            again = Some(conn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a freed place was never given again");

    let after = s.metrics().await;
    for reason in ["source_cap", "global_cap"] {
        let key = format!("vca_sip_tcp_refused_total{{reason=\"{reason}\"}}");
        assert!(
            sample(&after, &key) > sample(&before, &key),
            "{reason}: {after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_trickled_one_byte_at_a_time_is_cut_off() {
    let s = server(|c| c.tcp_limits.message_deadline = Duration::from_secs(2)).await;
    let tcp = s.server.as_ref().unwrap().sip_tcp_addr;
    let mut conn = connect_from("127.0.0.5", tcp).await;
    let request = b"OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.5:9;branch=z9hG4bK-slow\r\n";
    let mut closed = false;
    for byte in request {
        if conn.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        // Half a second between bytes: the message would take ~45 s to arrive.
        match tokio::time::timeout(Duration::from_millis(500), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    assert!(closed, "the server waited for the whole trickled message");
    // Others are served as ever.
    let mut other = connect_from("127.0.0.6", tcp).await;
    assert_eq!(options(&mut other, 1).await, Some(200));
    let metrics = s.metrics().await;
    assert!(
        sample(&metrics, "vca_sip_tcp_closed_total{reason=\"deadline\"}") >= 1.0,
        "{metrics}"
    );
}
