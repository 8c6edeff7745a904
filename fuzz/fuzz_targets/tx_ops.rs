//! Fuzz target for the transaction table (RFC 3261 §17): a sequence of network inputs, TU
//! steps and clock advances, decoded from the input bytes, over a small set of keys and
//! both transports.
//!
//! Invariants checked after every step:
//! - nothing panics;
//! - every output names a live transaction, with the peer it was created with, and each
//!   transaction reports `Terminated` exactly once, after which it has left the table;
//! - `len()` and `contains()` agree with the transactions created and not yet terminated;
//! - a create succeeds exactly when the key fits the machine and is not live; a request,
//!   ACK or response matches exactly when a live transaction of that side has its key;
//! - after `handle_timeout(now)`, no deadline at or before `now` is left.
//!
//! At the end the TU sends a final response on every server transaction still waiting for
//! one (the machines wait for the TU without a timer, §17.2.1, §17.2.2), every INVITE
//! client transaction in Proceeding gets its final (it waits for the UAS without a timer
//! once a provisional arrived, §17.1.1.2), and the clock runs on ten minutes: every transaction must then have ended and no timer be left.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run tx_ops` from the repository root.

#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vca_sip::sip::message::{self, Message, Request, RequestBuilder, Response};
use vca_sip::sip::transaction::{
    AckMatch, Event, IctState, IstState, Method, RequestMatch, ResponseMatch, TimerConfig,
    TransactionError, TransactionKey, TransactionTable, Transport,
};

/// Which machine a key fits, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fits {
    Ist,
    Nist,
    Nict,
    Ict,
}

struct Key {
    key: TransactionKey,
    server: bool,
    fits: Fits,
}

const BRANCHES: usize = 3;
/// Keys built for each branch, in the order of [`keys`].
const KEYS_PER_BRANCH: usize = 11;

fn keys() -> Vec<Key> {
    let mut keys = Vec::new();
    for b in 0..BRANCHES {
        let branch = Bytes::from(format!("z9hG4bK-{b}"));
        let legacy = Bytes::from(format!("legacy-{b}"));
        let here = Bytes::from_static(b"192.0.2.1:5060");
        let there = Bytes::from_static(b"192.0.2.2:5060");
        let server = |sent_by: &Bytes, method| {
            TransactionKey::server(branch.clone(), sent_by.clone(), method).expect("cookie")
        };
        let info = Method::Info;
        let all = [
            (server(&here, Method::Invite), true, Fits::Ist),
            (server(&here, Method::Cancel), true, Fits::Nist),
            (server(&here, Method::Bye), true, Fits::Nist),
            (server(&there, Method::Invite), true, Fits::Ist),
            (server(&here, info), true, Fits::Nist),
            (
                TransactionKey::legacy(legacy.clone(), Method::Invite),
                true,
                Fits::Ist,
            ),
            (
                TransactionKey::legacy(legacy, Method::Bye),
                true,
                Fits::Nist,
            ),
            (
                TransactionKey::client(branch.clone(), Method::Bye),
                false,
                Fits::Nict,
            ),
            (
                TransactionKey::client(branch.clone(), Method::Options),
                false,
                Fits::Nict,
            ),
            (
                TransactionKey::client(branch.clone(), Method::Cancel),
                false,
                Fits::Nict,
            ),
            (
                TransactionKey::client(branch.clone(), Method::Invite),
                false,
                Fits::Ict,
            ),
        ];
        keys.extend(
            all.into_iter()
                .map(|(key, server, fits)| Key { key, server, fits }),
        );
    }
    assert_eq!(keys.len(), BRANCHES * KEYS_PER_BRANCH);
    keys
}

/// The INVITE a client transaction on branch `z9hG4bK-<b>` sends.
fn invite(b: usize) -> Request {
    let branch = format!("z9hG4bK-{b}");
    let bytes = RequestBuilder::new(
        message::Method::Invite,
        "sip:+15551234567@192.0.2.2",
        ("UDP", "192.0.2.1:5060", &branch),
        ("<sip:vca@192.0.2.1>", "f1"),
        ("<sip:+15551234567@192.0.2.2>", None),
        "fuzz@192.0.2.1",
        1,
    )
    .build();
    match Message::parse(bytes) {
        Ok(Message::Request(request)) => request,
        _ => panic!("the INVITE vca-sip builds does not parse"),
    }
}

/// A response with `status` for the client key `key`, or `None` for a status the parser
/// refuses (the table never sees those).
fn response(key: &TransactionKey, b: usize, status: u16) -> Option<Response> {
    let text = format!(
        "SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{b}\r\n\
         From: <sip:vca@192.0.2.1>;tag=f1\r\nTo: <sip:+15551234567@192.0.2.2>;tag=t\r\n\
         Call-ID: fuzz@192.0.2.1\r\nCSeq: 1 {}\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(key.method().as_bytes())
    );
    match Message::parse(Bytes::from(text)) {
        Ok(Message::Response(response)) => Some(response),
        _ => None,
    }
}

/// A byte reader that yields zeros once the input is used up.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn status(&mut self) -> u16 {
        const COMMON: [u16; 14] = [
            100, 180, 183, 199, 200, 202, 299, 300, 404, 486, 487, 503, 603, 699,
        ];
        let b = self.byte();
        match COMMON.get(usize::from(b)) {
            Some(&status) => status,
            None if b < 128 => 100 + u16::from(b) * 5,
            None => u16::from_be_bytes([self.byte(), self.byte()]),
        }
    }

    fn transport(&mut self) -> Transport {
        if self.byte() & 1 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        }
    }
}

struct Run {
    table: TransactionTable<u32>,
    keys: Vec<Key>,
    /// Live transactions: key index -> the peer they were created with.
    live: HashMap<usize, u32>,
    next_peer: u32,
    now: Instant,
}

impl Run {
    fn index_of(&self, key: &TransactionKey) -> usize {
        self.keys
            .iter()
            .position(|k| &k.key == key)
            .expect("an output for a key that was never used")
    }

    /// Drains the outputs and checks them against the model.
    fn drain(&mut self) {
        while let Some(out) = self.table.poll_output() {
            let index = self.index_of(&out.key);
            let peer = *self
                .live
                .get(&index)
                .expect("an output for a transaction that is not live");
            assert_eq!(out.peer, peer, "an output with another transaction's peer");
            if out.event == Event::Terminated {
                self.live.remove(&index);
                assert!(!self.table.contains(&out.key), "terminated but still live");
            }
        }
        assert_eq!(self.table.len(), self.live.len());
        for (index, key) in self.keys.iter().enumerate() {
            assert_eq!(
                self.table.contains(&key.key),
                self.live.contains_key(&index)
            );
        }
    }

    fn timeout(&mut self) {
        self.table.handle_timeout(self.now);
        self.drain();
        if let Some(at) = self.table.poll_timeout() {
            assert!(at > self.now, "a timer due at now survived handle_timeout");
        }
    }

    fn create(&mut self, index: usize, fits: Fits, result: Result<(), TransactionError>) {
        let key = &self.keys[index];
        let live = self.live.contains_key(&index);
        if key.fits == fits && !live {
            assert_eq!(result, Ok(()));
            self.live.insert(index, self.next_peer);
        } else if key.fits == fits {
            assert_eq!(result, Err(TransactionError::Exists));
        } else {
            assert!(result.is_err());
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.byte();
        let index = usize::from(input.byte()) % self.keys.len();
        let key = self.keys[index].key.clone();
        let server = self.keys[index].server;
        let live = self.live.contains_key(&index);
        let now = self.now;
        self.next_peer = self.next_peer.wrapping_add(1);
        let peer = self.next_peer;
        match op % 15 {
            0 => {
                let matched = self.table.handle_request(now, &key);
                let expected = if server && live {
                    RequestMatch::Retransmission
                } else {
                    RequestMatch::New
                };
                assert_eq!(matched, expected);
            }
            1 => {
                let matched = self.table.handle_ack(now, &key);
                if !(server && live) {
                    assert_eq!(matched, AckMatch::NoMatch);
                }
            }
            2 => {
                let transport = input.transport();
                let trying = (input.byte() & 1 == 0).then(|| Bytes::from_static(b"100"));
                let result = self.table.create_ist(now, key, transport, peer, trying);
                self.create(index, Fits::Ist, result);
            }
            3 => {
                let transport = input.transport();
                let result = self.table.create_nist(key, transport, peer);
                self.create(index, Fits::Nist, result);
            }
            4 => {
                let transport = input.transport();
                let request = Bytes::from_static(b"request");
                let result = self.table.create_nict(now, key, transport, peer, request);
                self.create(index, Fits::Nict, result);
            }
            5 => {
                let status = input.status();
                let response = Bytes::from(status.to_string());
                let result = self.table.respond(now, &key, status, response);
                if !(server && live) {
                    assert_eq!(result, Err(TransactionError::NoMatch));
                } else if !(100..=699).contains(&status) {
                    assert_eq!(result, Err(TransactionError::BadStatus(status)));
                }
            }
            6 => {
                let status = input.status();
                if let Some(response) = response(&key, index / KEYS_PER_BRANCH, status) {
                    let matched = self.table.handle_response(now, &key, response);
                    if !(!server && live) {
                        assert_eq!(matched, ResponseMatch::NoMatch);
                    }
                }
            }
            7 => {
                let stopped = self.table.ack_2xx(now, &key);
                assert!(!stopped || (server && live));
            }
            8 => {
                let result = self.table.transport_error(now, &key);
                assert_eq!(result.is_ok(), live);
            }
            9 => {
                let b = u64::from(input.byte());
                self.now += Duration::from_millis(b * b);
            }
            10 => self.timeout(),
            11 => {
                // A run loop's wake-up: the sleep ends at the deadline (or later).
                if let Some(at) = self.table.poll_timeout() {
                    let late = u64::from(input.byte());
                    self.now = self.now.max(at) + Duration::from_millis(late);
                }
                self.timeout();
            }
            13 => {
                let transport = input.transport();
                let invite = invite(index / KEYS_PER_BRANCH);
                let result = self.table.create_ict(now, key, transport, peer, invite);
                self.create(index, Fits::Ict, result);
            }
            14 => {
                let proceeding = self.table.ict_state(&key) == Some(IctState::Proceeding);
                match self.table.cancel_ict(now, &key) {
                    Ok(cancel) => {
                        assert!(proceeding, "a CANCEL outside Proceeding");
                        let cancel_index = self.index_of(&cancel);
                        let invite_peer = *self.live.get(&index).expect("the ICT is live");
                        assert!(self.live.insert(cancel_index, invite_peer).is_none());
                    }
                    Err(_) => {
                        // Refused in Proceeding only when the CANCEL (the key before the
                        // INVITE's in `keys`) is already live.
                        assert!(!proceeding || self.live.contains_key(&(index - 1)));
                    }
                }
            }
            _ => self.table.shrink_to_fit(),
        }
        self.drain();
    }

    /// The TU answers everything still waiting for it, then time runs out.
    fn finish(&mut self) {
        let mut waiting: Vec<usize> = self.live.keys().copied().collect();
        waiting.sort_unstable();
        for index in waiting {
            let key = self.keys[index].key.clone();
            if self.table.ict_state(&key) == Some(IctState::Proceeding) {
                let final_response = response(&key, index / KEYS_PER_BRANCH, 487)
                    .expect("a 487 parses");
                assert_eq!(
                    self.table.handle_response(self.now, &key, final_response),
                    ResponseMatch::ToTu
                );
                self.drain();
                continue;
            }
            if !self.keys[index].server || !self.table.contains(&key) {
                continue;
            }
            let proceeding = self.table.ist_state(&key) == Some(IstState::Proceeding);
            let result = self
                .table
                .respond(self.now, &key, 500, Bytes::from_static(b"500"));
            // An INVITE transaction past Proceeding may refuse; one in Proceeding may not.
            assert!(result.is_ok() || !proceeding);
            self.drain();
        }
        self.drain();
        let end = self.now + Duration::from_secs(600);
        let mut wakeups = 0;
        while let Some(at) = self.table.poll_timeout() {
            assert!(at <= end, "a timer beyond ten minutes");
            self.now = self.now.max(at);
            self.timeout();
            wakeups += 1;
            assert!(wakeups < 100_000, "timers that never stop");
        }
        self.now = end;
        self.timeout();
        assert_eq!(self.table.len(), 0, "a transaction outlived its timers");
        assert!(self.live.is_empty());
        assert_eq!(self.table.poll_timeout(), None);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut run = Run {
        table: TransactionTable::new(TimerConfig::default()),
        keys: keys(),
        live: HashMap::new(),
        next_peer: 0,
        now: vca_sip::clock::origin(),
    };
    let mut steps = 0;
    while !input.0.is_empty() && steps < 4096 {
        run.step(&mut input);
        steps += 1;
    }
    run.finish();
});
