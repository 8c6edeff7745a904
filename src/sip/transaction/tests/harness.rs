//! Virtual-time harness: runs a scenario fixture against one machine or the table.
//!
//! A fixture is a text file:
//!
//! ```text
//! # comment
//! machine ist            # ist | nist | nict | ict | uas2xx | table
//! transport udp          # udp | tcp
//! trying yes             # ist and table: hand the machine a 100 Trying to send itself
//! at 0 respond 486       # an input at a millisecond offset
//! expect 0 transmit 486  # an output, and the millisecond it must appear at
//! ```
//!
//! The runner jumps the fake clock to whichever comes first, the next input or the
//! machine's `poll_timeout()` (timers due at an input's millisecond fire before it), and
//! records every output with its millisecond. The recorded list must equal the `expect`
//! lines exactly, in order. A serialised message is represented by its label: a response
//! with status N is the bytes `N`, the request a client transaction sends is `request`,
//! and the ACK and CANCEL the INVITE client transaction builds are `ack` and `cancel`. A
//! response a client transaction hands to the TU is `tu N`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::sip::message::{self, Message, Request, RequestBuilder, Response};
use crate::sip::transaction::{
    AckMatch, Event, Ict, IctInput, IctOutput, Ist, IstInput, IstOutput, Method, Nict, NictInput,
    NictOutput, Nist, NistInput, NistOutput, RequestMatch, ResponseMatch, TimerConfig,
    TransactionKey, TransactionTable, Transport, Uas2xx, Uas2xxInput, Uas2xxOutput,
};

/// Virtual time beyond which a scenario counts as runaway.
const HORIZON: Duration = Duration::from_secs(600);

/// A fake clock: a fixed base and an offset moved only by the test.
pub struct Clock {
    base: Instant,
    now: Instant,
}

impl Clock {
    pub fn new() -> Self {
        let base = crate::clock::origin();
        Self { base, now: base }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn at_ms(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    pub fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    pub fn set(&mut self, at: Instant) {
        assert!(at >= self.now, "the fake clock never goes back");
        self.now = at;
    }
}

/// What the runner needs from a machine under test.
pub trait Driven {
    /// Applies one input line; returns what the input itself reports (a match result).
    fn input(&mut self, now: Instant, words: &[&str]) -> Vec<String>;
    fn timeout(&mut self, now: Instant);
    fn next_timeout(&mut self) -> Option<Instant>;
    /// Drains the outputs, as labels.
    fn drain(&mut self) -> Vec<String>;
}

/// The label of a serialised message: the requests the INVITE client transaction sends
/// by their method, anything else as its text.
pub fn label(bytes: &Bytes) -> String {
    for (start, name) in [
        (&b"INVITE "[..], "request"),
        (b"ACK ", "ack"),
        (b"CANCEL ", "cancel"),
    ] {
        if bytes.starts_with(start) {
            return name.into();
        }
    }
    String::from_utf8_lossy(bytes).into_owned()
}

/// The INVITE a client transaction named `name` sends: branch `z9hG4bK<name>`, one Route.
pub fn invite(name: &str) -> Request {
    let branch = format!("z9hG4bK{name}");
    let bytes = RequestBuilder::new(
        message::Method::Invite,
        "sip:+15551234567@192.0.2.1",
        ("UDP", "192.0.2.9:5060", &branch),
        ("<sip:vca@192.0.2.9>", "f1"),
        ("<sip:+15551234567@192.0.2.1>", None),
        "c1@192.0.2.9",
        1,
    )
    .route("<sip:proxy.example;lr>")
    .build();
    match Message::parse(bytes) {
        Ok(Message::Request(request)) => request,
        other => panic!("the test INVITE does not parse: {other:?}"),
    }
}

/// A response with `status` to the client transaction `name` for `method`, To-tag `t1`
/// (none on a 100).
pub fn response_to(name: &str, method: &str, status: u16) -> Response {
    let tag = if status == 100 { "" } else { ";tag=t1" };
    let text = format!(
        "SIP/2.0 {status} Reason\r\n\
         Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK{name}\r\n\
         From: <sip:vca@192.0.2.9>;tag=f1\r\n\
         To: <sip:+15551234567@192.0.2.1>{tag}\r\n\
         Call-ID: c1@192.0.2.9\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    match Message::parse(Bytes::from(text)) {
        Ok(Message::Response(response)) => response,
        other => panic!("the test response does not parse: {other:?}"),
    }
}

fn status(words: &[&str], at: usize) -> u16 {
    words
        .get(at)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("missing status in {words:?}"))
}

fn count(words: &[&str], at: usize) -> usize {
    words
        .get(at)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("missing count in {words:?}"))
}

fn response(status: u16) -> Bytes {
    Bytes::from(status.to_string())
}

fn err<T, E: std::fmt::Debug>(result: Result<T, E>) -> Vec<String> {
    match result {
        Ok(_) => Vec::new(),
        Err(e) => vec![format!("error {e:?}")],
    }
}

struct IstDriver(Ist);

impl Driven for IstDriver {
    fn input(&mut self, now: Instant, words: &[&str]) -> Vec<String> {
        let input = match words.first().copied() {
            Some("request") => IstInput::Request,
            Some("ack") => IstInput::Ack,
            Some("respond") => {
                let status = status(words, 1);
                IstInput::Respond {
                    status,
                    response: response(status),
                }
            }
            Some("transport-error") => IstInput::TransportError,
            _ => panic!("unknown ist input {words:?}"),
        };
        err(self.0.handle(now, input))
    }
    fn timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }
    fn next_timeout(&mut self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.0.poll_output())
            .map(|o| match o {
                IstOutput::Transmit(b) => format!("transmit {}", label(&b)),
                IstOutput::AckToTu => "ack-to-tu".into(),
                IstOutput::NoAck => "no-ack".into(),
                IstOutput::Terminated => "terminated".into(),
            })
            .collect()
    }
}

struct NistDriver(Nist);

impl Driven for NistDriver {
    fn input(&mut self, now: Instant, words: &[&str]) -> Vec<String> {
        let input = match words.first().copied() {
            Some("request") => NistInput::Request,
            Some("respond") => {
                let status = status(words, 1);
                NistInput::Respond {
                    status,
                    response: response(status),
                }
            }
            Some("transport-error") => NistInput::TransportError,
            _ => panic!("unknown nist input {words:?}"),
        };
        err(self.0.handle(now, input))
    }
    fn timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }
    fn next_timeout(&mut self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.0.poll_output())
            .map(|o| match o {
                NistOutput::Transmit(b) => format!("transmit {}", label(&b)),
                NistOutput::Terminated => "terminated".into(),
            })
            .collect()
    }
}

struct NictDriver(Nict);

impl Driven for NictDriver {
    fn input(&mut self, now: Instant, words: &[&str]) -> Vec<String> {
        let input = match words.first().copied() {
            Some("response") => NictInput::Response(status(words, 1)),
            Some("transport-error") => NictInput::TransportError,
            _ => panic!("unknown nict input {words:?}"),
        };
        self.0.handle(now, input);
        Vec::new()
    }
    fn timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }
    fn next_timeout(&mut self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.0.poll_output())
            .map(|o| match o {
                NictOutput::Transmit(b) => format!("transmit {}", label(&b)),
                NictOutput::Response(s) => format!("response {s}"),
                NictOutput::Timeout => "timeout".into(),
                NictOutput::TransportError => "transport-error".into(),
                NictOutput::Terminated => "terminated".into(),
            })
            .collect()
    }
}

struct IctDriver(Ict);

impl Driven for IctDriver {
    fn input(&mut self, now: Instant, words: &[&str]) -> Vec<String> {
        let input = match words.first().copied() {
            Some("response") => IctInput::Response(response_to("a", "INVITE", status(words, 1))),
            Some("transport-error") => IctInput::TransportError,
            _ => panic!("unknown ict input {words:?}"),
        };
        self.0.handle(now, input);
        Vec::new()
    }
    fn timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }
    fn next_timeout(&mut self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.0.poll_output())
            .map(|o| match o {
                IctOutput::Transmit(b) => format!("transmit {}", label(&b)),
                IctOutput::Response(r) => format!("tu {}", r.status()),
                IctOutput::Timeout => "timeout".into(),
                IctOutput::TransportError => "transport-error".into(),
                IctOutput::Terminated => "terminated".into(),
            })
            .collect()
    }
}

struct Uas2xxDriver(Uas2xx);

impl Driven for Uas2xxDriver {
    fn input(&mut self, now: Instant, words: &[&str]) -> Vec<String> {
        match words.first().copied() {
            Some("ack") => self.0.handle(now, Uas2xxInput::Ack),
            _ => panic!("unknown uas2xx input {words:?}"),
        }
        Vec::new()
    }
    fn timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }
    fn next_timeout(&mut self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.0.poll_output())
            .map(|o| match o {
                Uas2xxOutput::Transmit(b) => format!("transmit {}", label(&b)),
                Uas2xxOutput::GiveUp => "give-up".into(),
            })
            .collect()
    }
}

/// The table under test. Transactions are named by tokens: `a` is the INVITE transaction
/// with branch `z9hG4bKa`, `a/CANCEL` and `a/BYE` server transactions on the same branch,
/// `c:a/BYE` a client transaction (`c:a` an INVITE client transaction). Keys named `bulk...` are created by `bulk N` and their
/// outputs are reported as counts per millisecond: `bulk <event> xN`.
pub struct TableDriver {
    table: TransactionTable,
    transport: Transport,
    trying: bool,
    names: HashMap<TransactionKey, String>,
    bulk: Vec<TransactionKey>,
}

impl TableDriver {
    pub fn key(token: &str) -> TransactionKey {
        let (client, token) = match token.strip_prefix("c:") {
            Some(rest) => (true, rest),
            None => (false, token),
        };
        let (name, method) = match token.split_once('/') {
            Some((name, method)) => (name, Method::parse(method)),
            None => (token, Method::Invite),
        };
        let branch = Bytes::from(format!("z9hG4bK{name}"));
        if client {
            TransactionKey::client(branch, method)
        } else {
            TransactionKey::server(branch, Bytes::from_static(b"192.0.2.1:5060"), method)
                .unwrap_or_else(|| panic!("bad token {token}"))
        }
    }

    fn named(&mut self, token: &str) -> TransactionKey {
        let key = Self::key(token);
        self.names.insert(key.clone(), token.to_string());
        key
    }

    fn create_server(&mut self, now: Instant, key: TransactionKey) -> Vec<String> {
        let trying = self.trying.then(|| Bytes::from_static(b"100"));
        if *key.method() == Method::Invite {
            err(self.table.create_ist(now, key, self.transport, (), trying))
        } else {
            err(self.table.create_nist(key, self.transport, ()))
        }
    }
}

impl Driven for TableDriver {
    fn input(&mut self, now: Instant, words: &[&str]) -> Vec<String> {
        let token = words.get(1).copied().unwrap_or_default();
        match words.first().copied() {
            Some("request") => {
                let key = self.named(token);
                match self.table.handle_request(now, &key) {
                    RequestMatch::Retransmission => vec![format!("{token} retransmission")],
                    RequestMatch::New => {
                        let mut out = vec![format!("{token} new")];
                        if *key.method() == Method::Cancel {
                            let target = self.table.ist_state(&key.invite_key());
                            out.push(format!("{token} target {target:?}"));
                        }
                        out.extend(self.create_server(now, key));
                        out
                    }
                }
            }
            Some("respond") => {
                let key = self.named(token);
                let status = status(words, 2);
                err(self.table.respond(now, &key, status, response(status)))
            }
            Some("ack") => {
                let key = self.named(token);
                let result = match self.table.handle_ack(now, &key) {
                    AckMatch::Absorbed => "absorbed",
                    AckMatch::ToTu => "to-tu",
                    AckMatch::NoMatch => "no-match",
                };
                vec![format!("{token} ack {result}")]
            }
            Some("ack-2xx") => {
                let key = self.named(token);
                vec![format!("{token} ack-2xx {}", self.table.ack_2xx(now, &key))]
            }
            Some("send") => {
                let key = self.named(token);
                if *key.method() == Method::Invite {
                    let name = token.trim_start_matches("c:");
                    err(self
                        .table
                        .create_ict(now, key, self.transport, (), invite(name)))
                } else {
                    err(self.table.create_nict(
                        now,
                        key,
                        self.transport,
                        (),
                        Bytes::from_static(b"request"),
                    ))
                }
            }
            Some("cancel") => {
                let key = self.named(token);
                match self.table.cancel_ict(now, &key) {
                    Ok(cancel) => {
                        self.names.insert(cancel, format!("{token}/CANCEL"));
                        Vec::new()
                    }
                    Err(e) => vec![format!("error {e:?}")],
                }
            }
            Some("response") => {
                let key = self.named(token);
                let bare = token.trim_start_matches("c:");
                let (name, method) = bare.split_once('/').unwrap_or((bare, "INVITE"));
                let response = response_to(name, method, status(words, 2));
                let result = match self.table.handle_response(now, &key, response) {
                    ResponseMatch::ToTu => "to-tu",
                    ResponseMatch::Absorbed => "absorbed",
                    ResponseMatch::NoMatch => "no-match",
                };
                vec![format!("{token} response {result}")]
            }
            Some("transport-error") => {
                let key = self.named(token);
                err(self.table.transport_error(now, &key))
            }
            Some("len") => vec![format!("len {}", self.table.len())],
            Some("bulk") => {
                // bulk N STATUS: N new INVITEs, each answered with STATUS at once.
                let count = count(words, 1);
                let final_status = status(words, 2);
                let trying = self.trying.then(|| Bytes::from_static(b"100"));
                let mut out = Vec::new();
                for i in 0..count {
                    let key = Self::key(&format!("bulk{i}"));
                    assert_eq!(self.table.handle_request(now, &key), RequestMatch::New);
                    out.extend(err(self.table.create_ist(
                        now,
                        key.clone(),
                        self.transport,
                        (),
                        trying.clone(),
                    )));
                    out.extend(err(self.table.respond(
                        now,
                        &key,
                        final_status,
                        response(final_status),
                    )));
                    self.bulk.push(key);
                }
                out
            }
            Some("bulk-ack") => {
                // bulk-ack N: ACK the first N bulk transactions.
                let count = count(words, 1);
                let mut absorbed = 0;
                for key in self.bulk.iter().take(count) {
                    if self.table.handle_ack(now, key) == AckMatch::Absorbed {
                        absorbed += 1;
                    }
                }
                vec![format!("bulk ack absorbed x{absorbed}")]
            }
            _ => panic!("unknown table input {words:?}"),
        }
    }
    fn timeout(&mut self, now: Instant) {
        self.table.handle_timeout(now);
    }
    fn next_timeout(&mut self) -> Option<Instant> {
        self.table.poll_timeout()
    }
    fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut counts: Vec<(String, usize)> = Vec::new();
        while let Some(output) = self.table.poll_output() {
            let event = match output.event {
                Event::Transmit(b) => format!("transmit {}", label(&b)),
                Event::Response(r) => format!("tu {}", r.status()),
                Event::NoAck => "no-ack".into(),
                Event::GiveUp => "give-up".into(),
                Event::Timeout => "timeout".into(),
                Event::TransportError => "transport-error".into(),
                Event::Terminated => "terminated".into(),
            };
            match self.names.get(&output.key) {
                Some(name) => out.push(format!("{name} {event}")),
                None => match counts.iter_mut().find(|(e, _)| *e == event) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((event, 1)),
                },
            }
        }
        out.extend(
            counts
                .into_iter()
                .map(|(event, n)| format!("bulk {event} x{n}")),
        );
        out
    }
}

/// A parsed scenario fixture.
pub struct Scenario {
    machine: String,
    transport: Transport,
    trying: bool,
    inputs: Vec<(u64, Vec<String>)>,
    pub expected: Vec<String>,
}

impl Scenario {
    pub fn parse(text: &str) -> Scenario {
        let mut scenario = Scenario {
            machine: String::new(),
            transport: Transport::Udp,
            trying: false,
            inputs: Vec::new(),
            expected: Vec::new(),
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let words: Vec<&str> = line.split_whitespace().collect();
            let ms = |words: &[&str]| -> u64 {
                words
                    .get(1)
                    .and_then(|w| w.parse().ok())
                    .unwrap_or_else(|| panic!("line {}: bad millisecond", n + 1))
            };
            match words.first().copied() {
                None => {}
                Some("machine") => {
                    scenario.machine = words.get(1).copied().unwrap_or_default().into()
                }
                Some("transport") => {
                    scenario.transport = match words.get(1).copied() {
                        Some("udp") => Transport::Udp,
                        Some("tcp") => Transport::Tcp,
                        other => panic!("line {}: bad transport {other:?}", n + 1),
                    }
                }
                Some("trying") => scenario.trying = words.get(1).copied() == Some("yes"),
                Some("at") => scenario.inputs.push((
                    ms(&words),
                    words.iter().skip(2).map(|w| w.to_string()).collect(),
                )),
                Some("expect") => {
                    scenario
                        .expected
                        .push(format!("{} {}", ms(&words), words[2..].join(" ")))
                }
                Some(other) => panic!("line {}: unknown directive {other}", n + 1),
            }
        }
        scenario.inputs.sort_by_key(|(ms, _)| *ms);
        scenario
    }

    /// Runs the scenario on virtual time; returns the outputs as `"<ms> <output>"`.
    pub fn run(&self) -> Vec<String> {
        let mut clock = Clock::new();
        let config = TimerConfig::default();
        let now = clock.now();
        let mut machine: Box<dyn Driven> = match self.machine.as_str() {
            "ist" => {
                let trying = self.trying.then(|| Bytes::from_static(b"100"));
                Box::new(IstDriver(Ist::new(now, config, self.transport, trying)))
            }
            "nist" => Box::new(NistDriver(Nist::new(config, self.transport))),
            "nict" => Box::new(NictDriver(Nict::new(
                now,
                config,
                self.transport,
                Bytes::from_static(b"request"),
            ))),
            "ict" => Box::new(IctDriver(Ict::new(
                now,
                config,
                self.transport,
                invite("a"),
            ))),
            "uas2xx" => Box::new(Uas2xxDriver(Uas2xx::new(
                now,
                config,
                Bytes::from_static(b"200"),
            ))),
            "table" => Box::new(TableDriver {
                table: TransactionTable::new(config),
                transport: self.transport,
                trying: self.trying,
                names: HashMap::new(),
                bulk: Vec::new(),
            }),
            other => panic!("unknown machine {other:?}"),
        };
        let mut record = Vec::new();
        let mut push = |clock: &Clock, lines: Vec<String>| {
            record.extend(
                lines
                    .into_iter()
                    .map(|l| format!("{} {l}", clock.ms(clock.now()))),
            );
        };
        push(&clock, machine.drain());
        let mut inputs = self.inputs.iter().peekable();
        loop {
            let timer = machine.next_timeout();
            let input_at = inputs.peek().map(|(ms, _)| clock.at_ms(*ms));
            let timer_first = match (timer, input_at) {
                (None, None) => break,
                (Some(t), Some(at)) => t <= at,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if let (true, Some(t)) = (timer_first, timer) {
                assert!(t <= clock.at_ms(0) + HORIZON, "runaway timer");
                clock.set(t.max(clock.now()));
                machine.timeout(clock.now());
                let out = machine.drain();
                push(&clock, out);
            } else if let Some((ms, words)) = inputs.next() {
                clock.set(clock.at_ms(*ms));
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                let mut out = machine.input(clock.now(), &words);
                out.extend(machine.drain());
                push(&clock, out);
            }
        }
        record
    }
}

/// Runs the fixture `name` from `sip-fixtures/scenarios/` and asserts its outputs.
pub fn run_fixture(name: &str) {
    let path = format!(
        "{}/sip-fixtures/scenarios/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let scenario = Scenario::parse(&text);
    assert!(!scenario.machine.is_empty(), "{name}: no machine line");
    let actual = scenario.run();
    if actual != scenario.expected {
        let mut msg = format!("{name}: outputs differ\n  expected | actual\n");
        for i in 0..actual.len().max(scenario.expected.len()) {
            let e = scenario.expected.get(i).map_or("-", String::as_str);
            let a = actual.get(i).map_or("-", String::as_str);
            let mark = if e == a { ' ' } else { '!' };
            msg.push_str(&format!("{mark} {e:<32} | {a}\n"));
        }
        panic!("{msg}");
    }
}
