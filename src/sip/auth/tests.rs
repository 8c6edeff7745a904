//! Tests of server-side digest authentication and lockout (RFC 3261 §22, RFC 7616, RFC 8760).

use std::net::IpAddr;

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The fake wall clock: every test time is `T0 + offset`.
const T0: u64 = 1_800_000_000;
const REALM: &str = "trunk.example.net";
const USER: &str = "carrier";
const PASSWORD: &str = "s3cret";
const RURI: &str = "sip:+912212345678@10.0.0.5:5060;transport=udp";
const CALL_ID: &str = "a84b4c76e66710@pc33.example.com";

fn src() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))
}

fn other_src() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99))
}

fn auth_with(algorithms: Vec<DigestAlgorithm>) -> DigestAuth {
    let mut cfg = DigestConfig::new(REALM);
    cfg.algorithms = algorithms;
    let key = NonceKey::new(&[7u8; 32]).expect("static key");
    DigestAuth::new(cfg, key).expect("valid config")
}

fn auth() -> DigestAuth {
    auth_with(vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5])
}

fn req(source: IpAddr, call_id: &str) -> RequestInfo<'_> {
    RequestInfo {
        method: "INVITE",
        request_uri: RURI,
        source,
        call_id,
        allow_listed: false,
    }
}

fn lookup(user: &str, alg: DigestAlgorithm) -> Option<String> {
    (user == USER).then(|| alg.ha1(USER, REALM, PASSWORD))
}

/// Pulls the nonce out of a challenge header value.
fn nonce_of(challenge: &str) -> String {
    let start = challenge.find("nonce=\"").expect("nonce") + 7;
    let rest = &challenge[start..];
    rest[..rest.find('"').expect("closing quote")].to_owned()
}

struct Answer<'a> {
    alg: DigestAlgorithm,
    user: &'a str,
    password: &'a str,
    realm: &'a str,
    uri: &'a str,
    nonce: &'a str,
    nc: u32,
}

impl Answer<'_> {
    fn header(&self) -> String {
        let nc = format!("{:08x}", self.nc);
        let ha1 = self.alg.ha1(self.user, self.realm, self.password);
        let resp = response(
            self.alg, &ha1, self.nonce, &nc, "0a4f113b", "auth", "INVITE", self.uri,
        );
        format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", \
             response=\"{resp}\", algorithm={}, cnonce=\"0a4f113b\", nc={nc}, qop=auth",
            self.user,
            self.realm,
            self.nonce,
            self.uri,
            self.alg.token()
        )
    }
}

fn answer<'a>(alg: DigestAlgorithm, nonce: &'a str, nc: u32) -> Answer<'a> {
    Answer {
        alg,
        user: USER,
        password: PASSWORD,
        realm: REALM,
        uri: RURI,
        nonce,
        nc,
    }
}

fn lockout() -> Lockout {
    Lockout::new(LockoutConfig::default())
}

fn verify(a: &mut DigestAuth, l: &mut Lockout, now: u64, r: &RequestInfo<'_>, h: &str) -> Verdict {
    a.verify(now, r, h, l, lookup).verdict
}

fn authenticated(alg: DigestAlgorithm) -> Verdict {
    Verdict::Authenticated {
        username: USER.to_owned(),
        algorithm: alg,
    }
}

fn challenged(stale: bool, reason: AuthError) -> Verdict {
    Verdict::Challenge { stale, reason }
}

// --- known vectors -------------------------------------------------------------

#[test]
fn md5_response_matches_rfc2617_example() {
    // RFC 2617 §3.5.
    let ha1 = DigestAlgorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
    let r = response(
        DigestAlgorithm::Md5,
        &ha1,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "00000001",
        "0a4f113b",
        "auth",
        "GET",
        "/dir/index.html",
    );
    assert_eq!(r, "6629fae49393a05397450978507c4ef1");
}

#[test]
fn sha256_and_md5_responses_match_rfc7616_example() {
    // RFC 7616 §3.9.1.
    let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let realm = "http-auth@example.org";
    let sha = DigestAlgorithm::Sha256.ha1("Mufasa", realm, "Circle of Life");
    let r = response(
        DigestAlgorithm::Sha256,
        &sha,
        nonce,
        "00000001",
        cnonce,
        "auth",
        "GET",
        "/dir/index.html",
    );
    assert_eq!(
        r,
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    let md5 = DigestAlgorithm::Md5.ha1("Mufasa", realm, "Circle of Life");
    let r = response(
        DigestAlgorithm::Md5,
        &md5,
        nonce,
        "00000001",
        cnonce,
        "auth",
        "GET",
        "/dir/index.html",
    );
    assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
}

// --- challenges ----------------------------------------------------------------

#[test]
fn challenge_lists_one_header_per_algorithm_in_order() {
    let a = auth();
    let c = a.challenge(T0, src(), CALL_ID, false);
    assert_eq!(c.len(), 2);
    let nonce = nonce_of(&c[0]);
    assert_eq!(nonce.len(), NONCE_LEN);
    assert_eq!(
        c[0],
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=SHA-256, qop=\"auth\"")
    );
    assert_eq!(
        c[1],
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"")
    );
    let stale = a.challenge(T0, src(), CALL_ID, true);
    assert!(stale.iter().all(|h| h.ends_with(", stale=true")));
    let md5_only = auth_with(vec![DigestAlgorithm::Md5]).challenge(T0, src(), CALL_ID, false);
    assert_eq!(md5_only.len(), 1);
    assert!(md5_only[0].contains("algorithm=MD5"));
}

#[test]
fn config_errors() {
    let key = NonceKey::new(&[1u8; 32]).expect("key");
    let mut cfg = DigestConfig::new(REALM);
    cfg.algorithms.clear();
    assert_eq!(
        DigestAuth::new(cfg, key.clone()).err(),
        Some(ConfigError::NoAlgorithms)
    );
    assert_eq!(
        DigestAuth::new(DigestConfig::new("bad\r\nrealm"), key).err(),
        Some(ConfigError::BadRealm)
    );
    assert_eq!(
        NonceKey::new(&[0u8; 8]).err(),
        Some(ConfigError::KeyTooShort)
    );
}

// --- accepting good credentials -------------------------------------------------

#[test]
fn correct_credentials_accepted_for_both_algorithms() {
    for alg in [DigestAlgorithm::Sha256, DigestAlgorithm::Md5] {
        let mut a = auth();
        let mut l = lockout();
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let h = answer(alg, &nonce, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, T0 + 1, &req(src(), CALL_ID), &h),
            authenticated(alg)
        );
    }
}

#[test]
fn sipp_style_uri_accepted() {
    let mut a = auth_with(vec![DigestAlgorithm::Md5]);
    let mut l = lockout();
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    for (nc, uri) in [
        (1, "sip:10.0.0.5:5060"),
        (2, "sip:10.0.0.5"),
        (3, "SIP:10.0.0.5"),
    ] {
        let mut ans = answer(DigestAlgorithm::Md5, &nonce, nc);
        ans.uri = uri;
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &ans.header()),
            authenticated(DigestAlgorithm::Md5),
            "{uri}"
        );
    }
}

#[test]
fn uri_for_another_host_port_or_user_rejected() {
    let mut a = auth_with(vec![DigestAlgorithm::Md5]);
    let mut l = lockout();
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    for uri in [
        "sip:10.0.0.6:5060",
        "sip:10.0.0.5:5070",
        "sips:10.0.0.5:5060",
        "sip:+919999999999@10.0.0.5:5060",
        "tel:+912212345678",
        "garbage",
    ] {
        let mut ans = answer(DigestAlgorithm::Md5, &nonce, 1);
        ans.uri = uri;
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &ans.header()),
            challenged(false, AuthError::UriMismatch),
            "{uri}"
        );
    }
}

#[test]
fn uri_matching_rules() {
    assert!(uri_matches(
        "sip:[2001:db8::1]:5060",
        "sip:alice@[2001:DB8::1]"
    ));
    assert!(uri_matches(
        "sip:alice@host.example;transport=tcp",
        "sip:alice@HOST.example"
    ));
    assert!(uri_matches(
        "sips:host.example",
        "sips:bob@host.example:5061"
    ));
    assert!(!uri_matches("sip:host.example", "sips:bob@host.example"));
    assert!(!uri_matches("sip:host.example:x", "sip:host.example"));
    assert!(uri_matches("tel:+15551234", "tel:+15551234"));
}

#[test]
fn header_parsing_is_case_and_space_tolerant() {
    let mut a = auth_with(vec![DigestAlgorithm::Md5]);
    let mut l = lockout();
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let ha1 = DigestAlgorithm::Md5.ha1(USER, REALM, PASSWORD);
    let resp = response(
        DigestAlgorithm::Md5,
        &ha1,
        &nonce,
        "00000001",
        "xyz",
        "auth",
        "INVITE",
        RURI,
    );
    // No algorithm parameter means MD5; upper-case hex response; odd spacing; opaque.
    let h = format!(
        "digest  USERNAME = \"{USER}\",Realm=\"{REALM}\" , NONCE=\"{nonce}\",\turi=\"{RURI}\", \
         response=\"{}\", opaque=\"\", cnonce=\"xyz\", NC=00000001, qop=\"auth\"",
        resp.to_ascii_uppercase()
    );
    assert_eq!(
        verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
        authenticated(DigestAlgorithm::Md5)
    );
}

#[test]
fn malformed_headers_refused() {
    let cases: &[(&str, HeaderFault)] = &[
        ("Basic dXNlcjpwYXNz", HeaderFault::NotDigest),
        ("Digest", HeaderFault::NotDigest),
        ("Digest username=\"a", HeaderFault::Syntax),
        ("Digest username", HeaderFault::Syntax),
        ("Digest username=\"a\" realm=\"b\"", HeaderFault::Syntax),
        (
            "Digest username=\"a\", username=\"b\"",
            HeaderFault::DuplicateParam("username"),
        ),
        (
            "Digest username=\"a\", nc=00000001",
            HeaderFault::MissingParam("realm"),
        ),
        ("Digest username=\"a\", nc=zz", HeaderFault::BadNonceCount),
        (
            "Digest username=\"a\", nc=00000000",
            HeaderFault::BadNonceCount,
        ),
        (
            "Digest username=\"a\", nc=123456789",
            HeaderFault::BadNonceCount,
        ),
        ("Digest username=\"a\\\"b\", nc=1", HeaderFault::Syntax),
        ("Digest username=\"é\"", HeaderFault::MissingParam("nc")),
    ];
    let mut a = auth();
    let mut l = lockout();
    for (h, fault) in cases {
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), h),
            Verdict::Refuse {
                reason: AuthError::Malformed(*fault)
            },
            "{h}"
        );
    }
    let long = format!("Digest username=\"{}\"", "a".repeat(5000));
    assert_eq!(
        verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &long),
        Verdict::Refuse {
            reason: AuthError::Malformed(HeaderFault::TooLong)
        }
    );
    assert_eq!(AuthError::Malformed(HeaderFault::Syntax).status_code(), 400);
    assert!(l.is_empty());
}

// --- replay protection ------------------------------------------------------------

#[test]
fn increasing_nc_accepted_and_replay_rejected() {
    let mut a = auth();
    let mut l = lockout();
    let r = req(src(), CALL_ID);
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let first = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
    assert_eq!(
        verify(&mut a, &mut l, T0, &r, &first),
        authenticated(DigestAlgorithm::Sha256)
    );
    assert_eq!(
        verify(&mut a, &mut l, T0 + 1, &r, &first),
        challenged(false, AuthError::Replay)
    );
    let third = answer(DigestAlgorithm::Sha256, &nonce, 3).header();
    assert_eq!(
        verify(&mut a, &mut l, T0 + 2, &r, &third),
        authenticated(DigestAlgorithm::Sha256)
    );
    let second = answer(DigestAlgorithm::Sha256, &nonce, 2).header();
    assert_eq!(
        verify(&mut a, &mut l, T0 + 2, &r, &second),
        challenged(false, AuthError::Replay)
    );
}

#[test]
fn a_count_handed_back_authenticates_again_until_a_higher_one_is_accepted() {
    let mut a = auth();
    let mut l = lockout();
    let r = req(src(), CALL_ID);
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let first = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
    let used = a.verify(T0, &r, &first, &mut l, lookup).nonce_use;
    let used = used.expect("an authenticated request uses a count");
    // Refused before anything acted on it: its retransmission authenticates again.
    a.give_back(&used);
    assert_eq!(
        verify(&mut a, &mut l, T0 + 1, &r, &first),
        authenticated(DigestAlgorithm::Sha256)
    );
    // Not handed back this time: the same count is a replay.
    assert_eq!(
        verify(&mut a, &mut l, T0 + 1, &r, &first),
        challenged(false, AuthError::Replay)
    );
    // A count handed back after a higher one was accepted changes nothing.
    let third = answer(DigestAlgorithm::Sha256, &nonce, 3).header();
    let third_use = a.verify(T0 + 2, &r, &third, &mut l, lookup).nonce_use;
    assert!(third_use.is_some());
    a.give_back(&used);
    assert_eq!(
        verify(&mut a, &mut l, T0 + 2, &r, &first),
        challenged(false, AuthError::Replay)
    );
    let second = answer(DigestAlgorithm::Sha256, &nonce, 2).header();
    assert_eq!(
        verify(&mut a, &mut l, T0 + 2, &r, &second),
        challenged(false, AuthError::Replay)
    );
    // A failed verification uses no count.
    let mut bad = answer(DigestAlgorithm::Sha256, &nonce, 4);
    bad.password = "guess";
    assert_eq!(
        a.verify(T0 + 3, &r, &bad.header(), &mut l, lookup)
            .nonce_use,
        None
    );
}

#[test]
fn forged_responses_do_not_advance_nc() {
    let mut a = auth();
    let mut l = lockout();
    let r = req(src(), CALL_ID);
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let mut bad = answer(DigestAlgorithm::Sha256, &nonce, 9);
    bad.password = "guess";
    assert_eq!(
        verify(&mut a, &mut l, T0, &r, &bad.header()),
        challenged(false, AuthError::BadCredentials)
    );
    let good = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
    assert_eq!(
        verify(&mut a, &mut l, T0, &r, &good),
        authenticated(DigestAlgorithm::Sha256)
    );
}

#[test]
fn nc_above_255_is_stale() {
    let mut a = auth();
    let mut l = lockout();
    let r = req(src(), CALL_ID);
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let h = answer(DigestAlgorithm::Sha256, &nonce, 255).header();
    assert_eq!(
        verify(&mut a, &mut l, T0, &r, &h),
        authenticated(DigestAlgorithm::Sha256)
    );
    let h = answer(DigestAlgorithm::Sha256, &nonce, 256).header();
    assert_eq!(
        verify(&mut a, &mut l, T0, &r, &h),
        challenged(true, AuthError::NonceCountExhausted)
    );
}

#[test]
fn replay_table_is_bounded_and_entries_expire() {
    let mut cfg = DigestConfig::new(REALM);
    cfg.replay_capacity = 3;
    let mut a = DigestAuth::new(cfg, NonceKey::new(&[3u8; 32]).expect("key")).expect("cfg");
    let mut l = lockout();
    let call_ids = ["c1", "c2", "c3", "c4"];
    let mut verdicts = Vec::new();
    for cid in call_ids {
        let nonce = nonce_of(&a.challenge(T0, src(), cid, false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
        verdicts.push(verify(&mut a, &mut l, T0, &req(src(), cid), &h));
    }
    assert_eq!(verdicts[2], authenticated(DigestAlgorithm::Sha256));
    assert_eq!(verdicts[3], challenged(true, AuthError::ReplayTableFull));
    assert_eq!(a.replay.len(), 3);
    // Once the first nonces expire, their entries go and new nonces fit again.
    let later = T0 + 31;
    let nonce = nonce_of(&a.challenge(later, src(), "c4", false)[0]);
    let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
    assert_eq!(
        verify(&mut a, &mut l, later, &req(src(), "c4"), &h),
        authenticated(DigestAlgorithm::Sha256)
    );
    assert_eq!(a.replay.len(), 1);
}

// --- nonce lifetime and binding ------------------------------------------------------

#[test]
fn expired_nonce_is_stale() {
    let mut a = auth();
    let mut l = lockout();
    let r = req(src(), CALL_ID);
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
    assert_eq!(
        verify(&mut a, &mut l, T0 + 31, &r, &h),
        challenged(true, AuthError::NonceExpired)
    );
    assert_eq!(
        verify(&mut a, &mut l, T0 + 30, &r, &h),
        authenticated(DigestAlgorithm::Sha256)
    );
    assert!(l.is_empty(), "stale nonces are not failures");
}

#[test]
fn configurable_expiry() {
    let mut cfg = DigestConfig::new(REALM);
    cfg.nonce_ttl_secs = 300;
    let mut a = DigestAuth::new(cfg, NonceKey::new(&[3u8; 32]).expect("key")).expect("cfg");
    let mut l = lockout();
    let r = req(src(), CALL_ID);
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
    assert_eq!(
        verify(&mut a, &mut l, T0 + 301, &r, &h),
        challenged(true, AuthError::NonceExpired)
    );
}

#[test]
fn future_nonce_is_stale() {
    let mut a = auth();
    let mut l = lockout();
    let r = req(src(), CALL_ID);
    // A nonce issued by a node whose clock runs ahead.
    let ahead = nonce_of(&a.challenge(T0 + 4, src(), CALL_ID, false)[0]);
    let h = answer(DigestAlgorithm::Sha256, &ahead, 1).header();
    assert_eq!(
        verify(&mut a, &mut l, T0, &r, &h),
        challenged(true, AuthError::NonceFromFuture)
    );
    let skew = nonce_of(&a.challenge(T0 + 3, src(), CALL_ID, false)[0]);
    let h = answer(DigestAlgorithm::Sha256, &skew, 1).header();
    assert_eq!(
        verify(&mut a, &mut l, T0, &r, &h),
        authenticated(DigestAlgorithm::Sha256)
    );
}

#[test]
fn tampered_nonce_is_not_stale_and_counts() {
    let mut a = auth();
    let mut l = lockout();
    let r = req(src(), CALL_ID);
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    // Move the timestamp forward by one second, keeping the MAC.
    let mut forged = format!("{:016x}", T0 + 1);
    forged.push_str(&nonce[NONCE_TS_HEX..]);
    let mut flipped = nonce.clone();
    flipped.replace_range(
        NONCE_LEN - 1..,
        if nonce.ends_with('0') { "1" } else { "0" },
    );
    for bad in [
        forged.as_str(),
        flipped.as_str(),
        "abc",
        &"z".repeat(NONCE_LEN),
    ] {
        let h = answer(DigestAlgorithm::Sha256, bad, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, T0, &r, &h),
            challenged(false, AuthError::NonceInvalid),
            "{bad}"
        );
    }
    assert_eq!(l.len(), (1, 1), "counted as failures");
}

#[test]
fn nonce_bound_to_source_and_call_id() {
    let mut a = auth();
    let mut l = lockout();
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
    assert_eq!(
        verify(&mut a, &mut l, T0, &req(src(), "another-call"), &h),
        challenged(false, AuthError::NonceInvalid)
    );
    assert_eq!(
        verify(&mut a, &mut l, T0, &req(other_src(), CALL_ID), &h),
        challenged(false, AuthError::NonceInvalid)
    );
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(
        verify(&mut a, &mut l, T0, &req(v6, CALL_ID), &h),
        challenged(false, AuthError::NonceInvalid)
    );
    assert_eq!(
        verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
        authenticated(DigestAlgorithm::Sha256)
    );
}

#[test]
fn nonce_bound_to_realm() {
    let mut cfg = DigestConfig::new("tenant-b.example.net");
    cfg.algorithms = vec![DigestAlgorithm::Sha256];
    let b = DigestAuth::new(cfg, NonceKey::new(&[7u8; 32]).expect("key")).expect("cfg");
    let mut a = auth();
    let mut l = lockout();
    // Tenant B's nonce answered with tenant A's realm and password.
    let nonce = nonce_of(&b.challenge(T0, src(), CALL_ID, false)[0]);
    let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
    assert_eq!(
        verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
        challenged(false, AuthError::NonceInvalid)
    );
}

// --- algorithm and realm -------------------------------------------------------------

#[test]
fn md5_answer_to_sha256_only_challenge_rejected() {
    let mut a = auth_with(vec![DigestAlgorithm::Sha256]);
    let mut l = lockout();
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let h = answer(DigestAlgorithm::Md5, &nonce, 1).header();
    assert_eq!(
        verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
        challenged(false, AuthError::AlgorithmNotOffered("MD5".to_owned()))
    );
    // No algorithm parameter means MD5, also not offered.
    let h = h.replace(", algorithm=MD5", "");
    assert!(matches!(
        verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
        Verdict::Challenge {
            reason: AuthError::AlgorithmNotOffered(_),
            ..
        }
    ));
    let h = answer(DigestAlgorithm::Md5, &nonce, 1)
        .header()
        .replace("=MD5", "=MD5-sess");
    assert!(matches!(
        verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
        Verdict::Challenge {
            reason: AuthError::AlgorithmNotOffered(_),
            stale: false
        }
    ));
}

#[test]
fn wrong_realm_gets_fresh_challenge() {
    let mut a = auth();
    let mut l = lockout();
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let mut ans = answer(DigestAlgorithm::Sha256, &nonce, 1);
    ans.realm = "tenant-b.example.net";
    assert_eq!(
        verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &ans.header()),
        challenged(false, AuthError::WrongRealm)
    );
    assert!(a.challenge(T0, src(), CALL_ID, false)[0].contains(REALM));
}

#[test]
fn qop_other_than_auth_rejected() {
    let mut a = auth();
    let mut l = lockout();
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let h = answer(DigestAlgorithm::Sha256, &nonce, 1)
        .header()
        .replace("qop=auth", "qop=auth-int");
    assert_eq!(
        verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
        challenged(false, AuthError::UnsupportedQop)
    );
}

#[test]
fn unknown_user_and_wrong_password_look_the_same() {
    let mut a = auth();
    let mut l = lockout();
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let mut wrong = answer(DigestAlgorithm::Sha256, &nonce, 1);
    wrong.password = "nope";
    let mut unknown = answer(DigestAlgorithm::Sha256, &nonce, 2);
    unknown.user = "nobody";
    let v1 = verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &wrong.header());
    let v2 = verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &unknown.header());
    assert_eq!(v1, v2);
    assert_eq!(v1, challenged(false, AuthError::BadCredentials));
}

#[test]
fn unknown_user_never_matches_dummy_ha1() {
    // Even a client that somehow answered with the dummy HA1 is not admitted.
    let mut a = auth();
    let mut l = lockout();
    let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
    let nc = "00000001";
    let uri = RURI;
    let resp = response(
        DigestAlgorithm::Sha256,
        &a.dummy_sha256,
        &nonce,
        nc,
        "c",
        "auth",
        "INVITE",
        uri,
    );
    let h = format!(
        "Digest username=\"ghost\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm=SHA-256, cnonce=\"c\", nc={nc}, qop=auth"
    );
    assert_eq!(
        verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
        challenged(false, AuthError::BadCredentials)
    );
}

#[test]
fn constant_time_compare() {
    assert!(ct_eq_hex(b"abcdef", b"ABCDEF"));
    assert!(!ct_eq_hex(b"abcdef", b"abcdee"));
    assert!(!ct_eq_hex(b"abcdef", b"abcde"));
    let long = [b'a'; 65];
    assert!(!ct_eq_hex(&long, &long));
}

// --- lockout ---------------------------------------------------------------------

/// Sends `n` wrong-password answers for `user` from `source`, each on a fresh nonce.
fn fail_n(
    a: &mut DigestAuth,
    l: &mut Lockout,
    now: u64,
    user: &str,
    source: IpAddr,
    allow_listed: bool,
    n: usize,
) -> Vec<LockoutEvent> {
    let mut events = Vec::new();
    for i in 0..n {
        let cid = format!("crack-{i}");
        let nonce = nonce_of(&a.challenge(now, source, &cid, false)[0]);
        let mut ans = answer(DigestAlgorithm::Sha256, &nonce, 1);
        ans.user = user;
        ans.password = "wrong";
        let mut r = req(source, &cid);
        r.allow_listed = allow_listed;
        events.extend(a.verify(now, &r, &ans.header(), l, lookup).events);
    }
    events
}

fn good_attempt(a: &mut DigestAuth, l: &mut Lockout, now: u64, source: IpAddr) -> Verdict {
    let nonce = nonce_of(&a.challenge(now, source, "good", false)[0]);
    let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
    verify(a, l, now, &req(source, "good"), &h)
}

#[test]
fn ten_failures_lock_the_pair_but_not_another_source() {
    let mut a = auth();
    let mut l = lockout();
    let events = fail_n(&mut a, &mut l, T0, USER, src(), false, 9);
    assert!(events.is_empty());
    assert_eq!(
        good_attempt(&mut a, &mut l, T0 + 1, src()),
        authenticated(DigestAlgorithm::Sha256)
    );
    // The success cleared the pair's count; ten more failures lock it.
    let events = fail_n(&mut a, &mut l, T0 + 2, USER, src(), false, 10);
    assert_eq!(
        events,
        vec![LockoutEvent::Locked {
            scope: LockScope::Pair {
                username: USER.to_owned(),
                source: src()
            },
            failures: 10,
            until: T0 + 2 + 300,
        }]
    );
    // Locked: even the right password gets the same challenge as a wrong one.
    assert_eq!(
        good_attempt(&mut a, &mut l, T0 + 3, src()),
        challenged(false, AuthError::LockedOut)
    );
    // The same username from another source still works.
    assert_eq!(
        good_attempt(&mut a, &mut l, T0 + 3, other_src()),
        authenticated(DigestAlgorithm::Sha256)
    );
    // The lock ends after its period.
    assert_eq!(
        good_attempt(&mut a, &mut l, T0 + 2 + 300, src()),
        authenticated(DigestAlgorithm::Sha256)
    );
}

#[test]
fn failures_outside_the_window_do_not_lock() {
    let mut a = auth();
    let mut l = lockout();
    assert!(fail_n(&mut a, &mut l, T0, USER, src(), false, 9).is_empty());
    assert!(fail_n(&mut a, &mut l, T0 + 60, USER, src(), false, 9).is_empty());
    assert!(!l.is_locked(T0 + 60, USER, src(), false));
}

#[test]
fn many_usernames_from_one_source_lock_the_source() {
    let mut l = lockout();
    let mut events = Vec::new();
    for i in 0..30 {
        events.extend(l.record_failure(T0, &format!("user{i}"), src(), false));
    }
    assert_eq!(
        events,
        vec![LockoutEvent::Locked {
            scope: LockScope::Source { source: src() },
            failures: 30,
            until: T0 + 300,
        }]
    );
    assert!(l.is_locked(T0 + 1, USER, src(), false));
    assert!(!l.is_locked(T0 + 1, USER, other_src(), false));
    assert!(!l.is_locked(T0 + 300, USER, src(), false));
}

#[test]
fn allow_listed_sources_never_locked() {
    let mut a = auth();
    let mut l = lockout();
    assert!(fail_n(&mut a, &mut l, T0, USER, src(), true, 40).is_empty());
    assert!(l.is_empty());
    assert!(!l.is_locked(T0, USER, src(), true));
    let nonce = nonce_of(&a.challenge(T0, src(), "ok", false)[0]);
    let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
    let mut r = req(src(), "ok");
    r.allow_listed = true;
    assert_eq!(
        verify(&mut a, &mut l, T0, &r, &h),
        authenticated(DigestAlgorithm::Sha256)
    );
}

#[test]
fn configurable_lock_period() {
    let mut l = Lockout::new(LockoutConfig {
        lock_secs: 10,
        ..LockoutConfig::default()
    });
    for _ in 0..10 {
        l.record_failure(T0, USER, src(), false);
    }
    assert!(l.is_locked(T0 + 9, USER, src(), false));
    assert!(!l.is_locked(T0 + 10, USER, src(), false));
}

#[test]
fn lockout_tables_are_bounded() {
    let mut l = Lockout::new(LockoutConfig {
        max_entries: 100,
        ..LockoutConfig::default()
    });
    for i in 0..10_000u32 {
        let source = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        l.record_failure(T0, &format!("user{i}"), source, false);
    }
    assert_eq!(l.len(), (100, 100));
    // After the window, the sweep makes room for new keys.
    l.record_failure(T0 + 61, "late", src(), false);
    assert_eq!(l.len(), (1, 1));
    // Long usernames are truncated in the key.
    let long = "x".repeat(10_000);
    let events: Vec<_> = (0..10)
        .flat_map(|_| l.record_failure(T0 + 62, &long, other_src(), false))
        .collect();
    assert!(matches!(
        &events[..],
        [LockoutEvent::Locked { scope: LockScope::Pair { username, .. }, .. }]
            if username.len() == MAX_LOCKOUT_USERNAME
    ));
}

#[test]
fn unix_seconds_of_system_time() {
    use std::time::Duration;
    assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(T0)), T0);
    assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
}
