use super::*;

const KEY: [u8; 16] = *b"the sample nonce";

fn limits() -> WsLimits {
    WsLimits {
        max_message_bytes: 1000,
        max_output_bytes: 4096,
    }
}

fn url() -> WsUrl {
    WsUrl::parse("ws://agent.example:8080/stream?tenant=7").unwrap()
}

fn client(bearer: Option<&str>) -> WsClient {
    WsClient::new(&url(), Upgrade { bearer, key: KEY }, limits()).unwrap()
}

fn accept_response(client_key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_of(client_key)
    )
}

/// A client past its handshake, its request taken from the output.
fn open() -> WsClient {
    let mut c = client(None);
    let n = c.output().len();
    c.consume(n);
    c.handle_read(accept_response(&STANDARD.encode(KEY)).as_bytes());
    assert_eq!(c.poll_event(), Some(WsEvent::Open));
    assert_eq!(c.poll_event(), None);
    c
}

/// A server frame: never masked.
fn sframe(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | op];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// The client's frames in its output, unmasked; every one must be masked and final.
fn client_frames(c: &mut WsClient) -> Vec<(u8, Vec<u8>)> {
    let out = c.output().to_vec();
    c.consume(out.len());
    let mut frames = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        assert_eq!(rest[0] & 0xf0, 0x80, "final, no reserved bits");
        assert_eq!(rest[1] & 0x80, 0x80, "client frames are masked");
        let (len, mut at) = match rest[1] & 0x7f {
            126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let mask = &rest[at..at + 4];
        at += 4;
        let payload: Vec<u8> = rest[at..at + len]
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect();
        frames.push((rest[0] & 0x0f, payload));
        rest = &rest[at + len..];
    }
    frames
}

#[test]
fn the_upgrade_request_names_the_resource_host_key_and_bearer_token() {
    let c = client(Some("s3cret-token"));
    let request = std::str::from_utf8(c.output()).unwrap();
    let key = STANDARD.encode(KEY);
    assert!(
        request.starts_with("GET /stream?tenant=7 HTTP/1.1\r\n"),
        "{request}"
    );
    for line in [
        "Host: agent.example:8080",
        "Upgrade: websocket",
        "Connection: Upgrade",
        &format!("Sec-WebSocket-Key: {key}"),
        "Sec-WebSocket-Version: 13",
        "Authorization: Bearer s3cret-token",
    ] {
        assert!(
            request.contains(&format!("\r\n{line}\r\n")),
            "{line} in {request}"
        );
    }
    assert!(request.ends_with("\r\n\r\n"));
    // A token that would split the header is refused.
    let bad = WsClient::new(
        &url(),
        Upgrade {
            bearer: Some("x\r\nEvil: 1"),
            key: KEY,
        },
        limits(),
    );
    assert_eq!(bad.err(), Some(BadToken));
}

#[test]
fn the_accept_value_is_the_rfcs_example() {
    // RFC 6455 §1.3.
    assert_eq!(
        accept_of("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(STANDARD.encode(KEY), "dGhlIHNhbXBsZSBub25jZQ==");
}

#[test]
fn a_response_split_anywhere_opens_and_frames_behind_it_are_read() {
    let mut c = client(None);
    let mut data = accept_response(&STANDARD.encode(KEY)).into_bytes();
    data.extend(sframe(true, OP_TEXT, b"{\"event\":\"mark\"}"));
    for (i, b) in data.iter().enumerate() {
        c.handle_read(std::slice::from_ref(b));
        let event = c.poll_event();
        let head_end = data.len() - 18;
        if i + 1 == head_end {
            assert_eq!(event, Some(WsEvent::Open));
            assert_eq!(c.poll_event(), None);
        } else if i + 1 == data.len() {
            assert_eq!(event, Some(WsEvent::Text("{\"event\":\"mark\"}")));
        } else {
            assert_eq!(event, None, "at byte {i}");
        }
    }
    assert!(c.is_open());
}

#[test]
fn a_wrong_accept_value_fails_the_handshake() {
    let mut c = client(None);
    c.handle_read(accept_response("another key").as_bytes());
    assert_eq!(c.poll_event(), Some(WsEvent::Failed(WsError::BadAccept)));
    assert_eq!(c.poll_event(), None);
    assert!(c.is_done());
    assert_eq!(c.send_text("x"), Err(OutputFull));
}

#[test]
fn a_redirect_or_server_error_is_the_status() {
    let mut c = client(None);
    c.handle_read(b"HTTP/1.1 301 Moved Permanently\r\nLocation: wss://elsewhere/\r\nContent-Length: 0\r\n\r\n");
    let Some(WsEvent::Failed(e)) = c.poll_event() else {
        panic!("not failed")
    };
    assert_eq!(
        e,
        WsError::Status {
            status: 301,
            location: Some("wss://elsewhere/".into())
        }
    );
    assert_eq!(
        e.to_string(),
        "the upgrade was answered 301 (Location: wss://elsewhere/)"
    );
    let mut c = client(None);
    c.handle_read(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\nno");
    assert_eq!(
        c.poll_event(),
        Some(WsEvent::Failed(WsError::Status {
            status: 500,
            location: None
        }))
    );
    let mut c = client(None);
    c.handle_read(b"SSH-2.0-OpenSSH\r\n\r\n");
    assert_eq!(c.poll_event(), Some(WsEvent::Failed(WsError::BadResponse)));
}

#[test]
fn missing_upgrade_headers_offered_nothing_and_endless_heads_fail() {
    let key = STANDARD.encode(KEY);
    let accept = accept_of(&key);
    for (head, want) in [
        (
            format!(
                "HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ),
            WsError::MissingUpgrade("Upgrade: websocket"),
        ),
        (
            format!(
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ),
            WsError::MissingUpgrade("Connection: Upgrade"),
        ),
        (
            format!(
                "HTTP/1.1 101 OK\r\nUpgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            ),
            WsError::NotOffered("an extension"),
        ),
    ] {
        let mut c = client(None);
        c.handle_read(head.as_bytes());
        assert_eq!(c.poll_event(), Some(WsEvent::Failed(want)));
    }
    let mut c = client(None);
    c.handle_read(b"HTTP/1.1 101 OK\r\n");
    assert_eq!(c.poll_event(), None);
    c.handle_read(&vec![b'x'; MAX_RESPONSE_HEAD]);
    assert_eq!(
        c.poll_event(),
        Some(WsEvent::Failed(WsError::ResponseTooLong))
    );
    // The socket closing before the answer.
    let mut c = client(None);
    assert_eq!(c.handle_eof(), Some(WsError::Eof));
}

#[test]
fn sent_messages_are_masked_frames_of_every_length_class() {
    let mut c = open();
    let long = "y".repeat(300);
    let longer = "z".repeat(70_000);
    c.limits.max_output_bytes = 100_000;
    c.send_text("hello").unwrap();
    c.send_text(&long).unwrap();
    c.send_text(&longer).unwrap();
    let out = c.output().to_vec();
    // The payload never appears in clear.
    assert!(!out.windows(5).any(|w| w == b"hello"));
    assert_eq!(
        client_frames(&mut c),
        vec![
            (OP_TEXT, b"hello".to_vec()),
            (OP_TEXT, long.into_bytes()),
            (OP_TEXT, longer.into_bytes())
        ]
    );
    assert!(c.output().is_empty());
}

#[test]
fn the_output_is_bounded_and_drains_by_what_was_written() {
    let mut c = open();
    let text = "m".repeat(1000);
    let mut queued = 0;
    while c.send_text(&text).is_ok() {
        queued += 1;
    }
    assert_eq!(queued, 4);
    // Part of it written: room for another once enough went.
    c.consume(1500);
    c.send_text(&text).unwrap();
    assert!(c.output().len() <= 4096);
}

#[test]
fn fragments_are_reassembled_around_a_ping_which_is_answered() {
    let mut c = open();
    let mut data = sframe(false, OP_TEXT, b"{\"event\":");
    data.extend(sframe(true, OP_PING, b"are you there"));
    data.extend(sframe(false, OP_CONTINUATION, b"\"clear\""));
    data.extend(sframe(true, OP_CONTINUATION, b"}"));
    data.extend(sframe(true, OP_BINARY, &[1, 2, 3]));
    c.handle_read(&data);
    assert_eq!(c.poll_event(), Some(WsEvent::Text("{\"event\":\"clear\"}")));
    assert_eq!(c.poll_event(), Some(WsEvent::Binary(&[1, 2, 3])));
    assert_eq!(c.poll_event(), None);
    assert_eq!(
        client_frames(&mut c),
        vec![(OP_PONG, b"are you there".to_vec())]
    );
    // The next fragmented message starts afresh.
    c.handle_read(&sframe(false, OP_BINARY, b"ab"));
    assert_eq!(c.poll_event(), None);
    c.handle_read(&sframe(true, OP_CONTINUATION, b"c"));
    assert_eq!(c.poll_event(), Some(WsEvent::Binary(b"abc")));
}

#[test]
fn the_servers_close_is_echoed_and_ends_the_connection() {
    let mut c = open();
    let mut data = sframe(true, OP_CLOSE, &[0x03, 0xe8, b'b', b'y', b'e']);
    data.extend(sframe(true, OP_TEXT, b"after"));
    c.handle_read(&data);
    assert_eq!(c.poll_event(), Some(WsEvent::Closed { code: Some(1000) }));
    assert_eq!(c.poll_event(), None);
    assert!(c.is_done());
    assert_eq!(client_frames(&mut c), vec![(OP_CLOSE, vec![0x03, 0xe8])]);
    // A close without a code.
    let mut c = open();
    c.handle_read(&sframe(true, OP_CLOSE, &[]));
    assert_eq!(c.poll_event(), Some(WsEvent::Closed { code: None }));
}

#[test]
fn the_clients_close_waits_for_the_servers() {
    let mut c = open();
    c.close(1000);
    assert!(!c.is_open() && !c.is_done());
    assert_eq!(c.send_text("late"), Err(OutputFull));
    assert_eq!(client_frames(&mut c), vec![(OP_CLOSE, vec![0x03, 0xe8])]);
    // Messages still in flight from the server are read, then its close ends it.
    let mut data = sframe(true, OP_TEXT, b"in flight");
    data.extend(sframe(true, OP_CLOSE, &[0x03, 0xe8]));
    c.handle_read(&data);
    assert_eq!(c.poll_event(), Some(WsEvent::Text("in flight")));
    assert_eq!(c.poll_event(), Some(WsEvent::Closed { code: Some(1000) }));
    // Not echoed: the client had sent its own.
    assert!(c.output().is_empty());
    assert!(c.is_done());
}

#[test]
fn a_message_over_the_limit_closes_with_1009_before_it_is_buffered() {
    let mut c = open();
    // Only the header of a 1001-byte frame: refused at once.
    c.handle_read(&sframe(true, OP_TEXT, &[b'a'; 1001])[..4]);
    let Some(WsEvent::Failed(e)) = c.poll_event() else {
        panic!("not failed")
    };
    assert_eq!(e.close_code(), Some(CLOSE_TOO_BIG));
    assert_eq!(client_frames(&mut c), vec![(OP_CLOSE, vec![0x03, 0xf1])]);
    assert!(c.is_done());
    // Fragments adding up past the limit, too.
    let mut c = open();
    let mut data = sframe(false, OP_TEXT, &[b'a'; 600]);
    data.extend(sframe(true, OP_CONTINUATION, &[b'a'; 401]));
    c.handle_read(&data);
    assert_eq!(
        c.poll_event(),
        Some(WsEvent::Failed(WsError::TooBig {
            bytes: 1001,
            limit: 1000
        }))
    );
    // Exactly the limit is taken.
    let mut c = open();
    c.handle_read(&sframe(true, OP_TEXT, &[b'a'; 1000]));
    assert!(matches!(c.poll_event(), Some(WsEvent::Text(t)) if t.len() == 1000));
}

#[test]
fn framing_errors_close_with_1002_and_bad_text_with_1007() {
    let masked = {
        let mut f = sframe(true, OP_TEXT, b"");
        f[1] |= 0x80;
        f.extend_from_slice(&[0, 0, 0, 0]);
        f
    };
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (masked, CLOSE_PROTOCOL_ERROR),
        (vec![0xc1, 0x00], CLOSE_PROTOCOL_ERROR), // RSV1 without an extension
        (vec![0x83, 0x00], CLOSE_PROTOCOL_ERROR), // opcode 3
        (sframe(true, OP_CONTINUATION, b"x"), CLOSE_PROTOCOL_ERROR),
        (sframe(false, OP_PING, b"x"), CLOSE_PROTOCOL_ERROR),
        (sframe(true, OP_PING, &[0; 126]), CLOSE_PROTOCOL_ERROR),
        (sframe(true, OP_CLOSE, &[3]), CLOSE_PROTOCOL_ERROR),
        (sframe(true, OP_TEXT, &[0xff, 0xfe]), CLOSE_INVALID_DATA),
        (
            [sframe(false, OP_TEXT, b"a"), sframe(true, OP_TEXT, b"b")].concat(),
            CLOSE_PROTOCOL_ERROR,
        ),
    ];
    for (data, code) in cases {
        let mut c = open();
        c.handle_read(&data);
        assert!(
            matches!(c.poll_event(), Some(WsEvent::Failed(_))),
            "{data:?}"
        );
        assert_eq!(
            client_frames(&mut c),
            vec![(OP_CLOSE, code.to_be_bytes().to_vec())],
            "{data:?}"
        );
        assert!(c.is_done());
        c.handle_read(&sframe(true, OP_TEXT, b"more"));
        assert_eq!(c.poll_event(), None);
    }
}

#[test]
fn urls_split_into_host_port_and_resource() {
    let u = WsUrl::parse("wss://agents.example.com/media?x=1&y=2").unwrap();
    assert_eq!(
        (
            u.secure,
            u.host.as_str(),
            u.port,
            u.authority.as_str(),
            u.resource.as_str()
        ),
        (
            true,
            "agents.example.com",
            443,
            "agents.example.com",
            "/media?x=1&y=2"
        )
    );
    let u = WsUrl::parse("ws://[::1]:9000?q").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.resource.as_str()),
        ("::1", 9000, "/?q")
    );
    let u = WsUrl::parse("ws://127.0.0.1").unwrap();
    assert_eq!((u.port, u.resource.as_str()), (80, "/"));
    for bad in [
        "http://x/",
        "ws://",
        "ws://u:p@x/",
        "ws://x:99999/",
        "ws://x/a b",
        "ws://x/\r\n",
        "ws://[::1/",
    ] {
        assert!(WsUrl::parse(bad).is_err(), "{bad}");
    }
}
