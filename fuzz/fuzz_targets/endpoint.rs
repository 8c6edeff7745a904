//! Fuzz target for the user-agent endpoint (RFC 3261 §8.2, §12.2.2, §17.1, §17.2.3):
//! datagrams, call commands, undelivered events, queue depth and clock steps, decoded from
//! the input bytes, over a small set of dialogs on both transports; and the client path:
//! calls vca-sip places (INVITE, CANCEL, BYE, the ACK of a 2xx), the far end's responses
//! and its requests inside those dialogs.
//!
//! Invariants checked:
//! - nothing panics, whatever arrives (well-formed messages built from templates, or raw
//!   bytes);
//! - after `handle_timeout(now)`, no deadline at or before `now` is left;
//! - every transmitted message parses as SIP;
//! - at the end, once every call has answered its INVITE, let go (`Gone`) and the clock has
//!   run on ten minutes, no call, no transaction and no timer is left.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run endpoint` from the repository root.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vca_sip::endpoint::{Endpoint, Event, Input, NewCall};
use vca_sip::gate::flood::FloodConfig;
use vca_sip::gate::{Gate, GateConfig, Shield};
use vca_sip::routing::trunks::TrunkBook;
use vca_sip::sip::auth::NonceKey;
use vca_sip::sip::message::{Message, Request, Response};
use vca_sip::sip::transaction::{self, TimerConfig, TransactionKey};
use vca_sip::sip::triage::Transport;
use vca_sip::ua::{CallEvent, CallKey, Command, Link, outbound_call_key};

#[derive(Clone, Debug)]
struct Peer {
    addr: SocketAddr,
    transport: Transport,
}

impl Link for Peer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn transport(&self) -> Transport {
        self.transport
    }
    fn client_cert(&self) -> Option<&rustls_pki_types::CertificateDer<'static>> {
        None
    }
}

const METHODS: [&str; 8] = [
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "REGISTER", "UPDATE",
];

fn message(method: &str, dialog: u8, branch: u8, cseq: u8, to_tag: Option<&str>) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:09876543210@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:a@127.0.0.1>;tag=f{dialog}\r\n\
         To: <sip:09876543210@127.0.0.1>{to_tag}\r\n\
         Call-ID: c{dialog}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A call vca-sip places: its key, its INVITE's transaction key and the INVITE.
struct Placed {
    key: CallKey,
    invite_key: TransactionKey,
    invite: Request,
    peer: Peer,
}

fn placed(n: u8, transport: Transport) -> Placed {
    let (call_id, tag, branch) = (format!("o{n}"), format!("t{n}"), format!("z9hG4bKo{n}.0"));
    let text = format!(
        "INVITE sip:+15551234567@127.0.0.1:5080 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:vca@127.0.0.1>;tag={tag}\r\n\
         To: <sip:+15551234567@127.0.0.1:5080>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let Ok(Message::Request(invite)) = Message::parse(Bytes::from(text)) else {
        panic!("the INVITE template parses");
    };
    Placed {
        key: outbound_call_key(&call_id, &tag),
        invite_key: TransactionKey::client(Bytes::from(branch), transaction::Method::Invite),
        invite,
        peer: Peer {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5080),
            transport,
        },
    }
}

/// The far end's BYE (or INFO) inside the dialog of call `n`.
fn far_request(method: &str, n: u8, branch: u8) -> String {
    format!(
        "{method} sip:vca@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKfar{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15551234567@127.0.0.1:5080>;tag=far\r\n\
         To: <sip:vca@127.0.0.1>;tag=t{n}\r\n\
         Call-ID: o{n}\r\n\
         CSeq: {branch} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn check_transmits(endpoint: &mut Endpoint<Peer>) {
    while let Some(t) = endpoint.poll_transmit() {
        assert!(
            Message::parse(t.data).is_ok(),
            "the endpoint sent something that does not parse"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let shield = Shield::new(TrunkBook::default(), FloodConfig::default());
    let key = NonceKey::new(&[9; 32]).expect("a 32-byte key");
    let gate = Gate::new(shield, key, GateConfig::default());
    let mut endpoint: Endpoint<Peer> = Endpoint::new(gate, TimerConfig::default(), 64);
    let mut now = vca_sip::clock::origin();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut calls: Vec<NewCall<Peer>> = Vec::new();
    let mut held: Vec<(CallKey, CallEvent<Peer>)> = Vec::new();
    let mut out: Vec<Placed> = Vec::new();
    let mut branches: u32 = 0;

    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        let arg2 = bytes.next().unwrap_or(0);
        match op % 10 {
            0 | 1 => {
                let method = METHODS[usize::from(arg % 8)];
                let dialog = arg2 % 3;
                let tag = calls
                    .iter()
                    .find(|c| c.request.headers().call_id().ok() == Some(&format!("c{dialog}")))
                    .map(|c| c.local_tag.to_string());
                let to_tag = if arg & 0x80 != 0 {
                    tag.as_deref()
                } else {
                    None
                };
                let text = message(method, dialog, arg2 / 3 % 4, arg2 % 5, to_tag);
                let transport = if op % 8 == 0 {
                    Transport::Udp
                } else {
                    Transport::Tcp
                };
                let peer = Peer {
                    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060),
                    transport,
                };
                let data = Bytes::from(text);
                endpoint.handle(now, wall, Input::Datagram { data, peer });
            }
            2 => {
                let len = usize::from(arg).min(bytes.len());
                let raw: Vec<u8> = bytes.by_ref().take(len).collect();
                let peer = Peer {
                    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060),
                    transport: Transport::Udp,
                };
                let data = Bytes::from(raw);
                endpoint.handle(now, wall, Input::Datagram { data, peer });
            }
            3 => {
                if let Some(call) = calls.get(usize::from(arg) % calls.len().max(1)) {
                    let status = [100, 180, 200, 486, 487, 503][usize::from(arg2 % 6)];
                    let response = Response::to_request(&call.request, status, "Fuzz")
                        .to_tag(&call.local_tag)
                        .build();
                    let key = call.invite_key.clone();
                    let command = Command::Respond {
                        key,
                        status,
                        response,
                    };
                    endpoint.handle(now, wall, Input::Command(command));
                }
            }
            4 if arg2 & 1 == 1 && !out.is_empty() => {
                let call = out.remove(usize::from(arg) % out.len());
                let command = Command::Gone { call: call.key };
                endpoint.handle(now, wall, Input::Command(command));
            }
            4 => {
                if !calls.is_empty() {
                    let call = calls.remove(usize::from(arg) % calls.len());
                    let command = Command::Gone { call: call.key };
                    endpoint.handle(now, wall, Input::Command(command));
                }
            }
            5 => {
                now += Duration::from_millis(u64::from(arg) * 50 + u64::from(arg2));
                endpoint.handle_timeout(now);
                if let Some(next) = endpoint.poll_timeout() {
                    assert!(next > now, "a deadline was left behind");
                }
            }
            6 => {
                if let Some((call, event)) = held.pop() {
                    let event = Box::new(event);
                    endpoint.handle(now, wall, Input::Undelivered { call, event });
                }
            }
            7 => {
                endpoint.set_backlog(if arg & 1 == 0 { 0 } else { 1 << 20 });
                endpoint.set_draining(arg2 & 0x10 != 0);
            }
            8 => {
                let n = arg2 % 3;
                let transport = if arg & 1 == 0 {
                    Transport::Udp
                } else {
                    Transport::Tcp
                };
                if !out
                    .iter()
                    .any(|p| p.invite.headers().call_id().ok() == Some(&format!("o{n}")))
                {
                    let call = placed(n, transport);
                    let command = Command::Invite {
                        call: call.key.clone(),
                        key: call.invite_key.clone(),
                        peer: call.peer.clone(),
                        invite: Box::new(call.invite.clone()),
                    };
                    endpoint.handle(now, wall, Input::Command(command));
                    out.push(call);
                }
            }
            _ => {
                let Some(call) = out.get(usize::from(arg) % out.len().max(1)) else {
                    continue;
                };
                let n = call.key.as_bytes().get(1).map_or(0, |b| b - b'0');
                let peer = call.peer.clone();
                match arg2 % 8 {
                    action @ 0..=4 => {
                        let status = [100, 180, 200, 486, 487][usize::from(action)];
                        let data = Response::to_request(&call.invite, status, "Far")
                            .to_tag("far")
                            .build();
                        endpoint.handle(now, wall, Input::Datagram { data, peer });
                    }
                    5 => {
                        let key = call.invite_key.clone();
                        endpoint.handle(now, wall, Input::Command(Command::Cancel { key }));
                    }
                    6 => {
                        branches += 1;
                        let branch = format!("z9hG4bKbye{branches}");
                        let request = Bytes::from(format!(
                            "BYE sip:far@127.0.0.1:5080 SIP/2.0\r\n\
                             Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
                             From: <sip:vca@127.0.0.1>;tag=t{n}\r\n\
                             To: <sip:+15551234567@127.0.0.1:5080>;tag=far\r\n\
                             Call-ID: o{n}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
                        ));
                        let key =
                            TransactionKey::client(Bytes::from(branch), transaction::Method::Bye);
                        let command = Command::Request {
                            call: call.key.clone(),
                            key,
                            peer: peer.clone(),
                            request: request.clone(),
                        };
                        endpoint.handle(now, wall, Input::Command(command));
                        let ack = Command::Ack { peer, request };
                        endpoint.handle(now, wall, Input::Command(ack));
                    }
                    _ => {
                        let method = if arg & 0x40 == 0 { "BYE" } else { "INFO" };
                        let data = Bytes::from(far_request(method, n, arg2 / 8 % 4));
                        endpoint.handle(now, wall, Input::Datagram { data, peer });
                    }
                }
            }
        }
        check_transmits(&mut endpoint);
        while let Some(event) = endpoint.poll_event() {
            match event {
                Event::NewCall(new) => calls.push(new),
                Event::Deliver { call, event } => {
                    if held.len() < 8 {
                        held.push((call, event));
                    }
                }
            }
        }
    }

    // Every call answers its INVITE and lets go; then every timer runs out.
    for call in calls.drain(..) {
        let response = Response::to_request(&call.request, 486, "Busy Here")
            .to_tag(&call.local_tag)
            .build();
        let key = call.invite_key.clone();
        let respond = Command::Respond {
            key,
            status: 486,
            response,
        };
        endpoint.handle(now, wall, Input::Command(respond));
        endpoint.handle(now, wall, Input::Command(Command::Gone { call: call.key }));
    }
    for call in out.drain(..) {
        endpoint.handle(now, wall, Input::Command(Command::Gone { call: call.key }));
    }
    check_transmits(&mut endpoint);
    for _ in 0..1200 {
        now += Duration::from_millis(500);
        endpoint.handle_timeout(now);
        check_transmits(&mut endpoint);
        while endpoint.poll_event().is_some() {}
    }
    assert_eq!(endpoint.calls(), 0, "a call was left behind");
    assert_eq!(endpoint.transactions(), 0, "a transaction was left behind");
    assert_eq!(endpoint.poll_timeout(), None, "a timer was left behind");
});
