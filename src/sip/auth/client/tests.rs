//! Known answers from RFC 7616 §3.9.1, the retry policy, and a round trip against the
//! server-side verifier.

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;

use super::*;
use crate::sip::auth::{
    DigestAuth, DigestConfig, Lockout, LockoutConfig, NonceKey, RequestInfo, Verdict,
};
use crate::sip::message::Message;

const NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

fn challenged(status: u16, header: &str, values: &[String]) -> Response {
    let mut text = format!(
        "SIP/2.0 {status} Unauthorized\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
    );
    for value in values {
        text.push_str(&format!("{header}: {value}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    match Message::parse(Bytes::from(text)) {
        Ok(Message::Response(r)) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn rfc_challenge(algorithm: &str) -> String {
    format!(
        "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
         algorithm={algorithm}, nonce=\"{NONCE}\", opaque=\"{OPAQUE}\""
    )
}

#[test]
fn rfc_7616_sha_256_example_and_sha_256_preferred_over_md5() {
    let response = challenged(
        401,
        "WWW-Authenticate",
        &[rfc_challenge("MD5"), rfc_challenge("SHA-256")],
    );
    let mut client = DigestClient::new("Mufasa", "Circle of Life");
    let headers = client
        .answer(&response, "GET", "/dir/index.html", CNONCE)
        .unwrap();
    assert_eq!(
        headers,
        vec![AuthHeader {
            name: "Authorization",
            value: format!(
                "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
                 nonce=\"{NONCE}\", uri=\"/dir/index.html\", \
                 response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", \
                 algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"{CNONCE}\", \
                 opaque=\"{OPAQUE}\""
            ),
        }]
    );
}

#[test]
fn rfc_7616_md5_example_in_a_407() {
    let response = challenged(407, "Proxy-Authenticate", &[rfc_challenge("MD5")]);
    let mut client = DigestClient::new("Mufasa", "Circle of Life");
    let headers = client
        .answer(&response, "GET", "/dir/index.html", CNONCE)
        .unwrap();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].name, "Proxy-Authorization");
    assert!(
        headers[0]
            .value
            .contains("response=\"8ca523f5e9506fed4657c9700eebdbec\", algorithm=MD5"),
        "{}",
        headers[0].value
    );
}

#[test]
fn without_qop_the_rfc_2617_response_has_no_cnonce_or_nc() {
    // RFC 2617 §3.5: Mufasa / "Circle Of Life" / testrealm@host.com.
    let response = challenged(
        401,
        "WWW-Authenticate",
        &[
            "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\""
                .into(),
        ],
    );
    let mut client = DigestClient::new("Mufasa", "Circle Of Life");
    let headers = client
        .answer(&response, "GET", "/dir/index.html", "unused")
        .unwrap();
    // H(HA1:nonce:HA2) with MD5, the algorithm of a challenge that names none.
    let ha1 = DigestAlgorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
    let ha2 = DigestAlgorithm::Md5.hex(b"GET:/dir/index.html");
    let expected = DigestAlgorithm::Md5
        .hex(format!("{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:{ha2}").as_bytes());
    assert_eq!(
        headers[0].value,
        format!(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
             response=\"{expected}\", algorithm=MD5"
        )
    );
}

#[test]
fn the_nonce_count_grows_per_nonce_and_restarts_on_a_new_one() {
    let mut client = DigestClient::new("u", "p");
    let first = challenged(
        401,
        "WWW-Authenticate",
        &["Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"".into()],
    );
    let h = client.answer(&first, "INVITE", "sip:x", "c1").unwrap();
    assert!(h[0].value.contains("nc=00000001"));
    let h = client.authorize("BYE", "sip:x", "c2");
    assert!(h[0].value.contains("nonce=\"n1\""));
    assert!(h[0].value.contains("nc=00000002"));
    let h = client.authorize("INVITE", "sip:x", "c3");
    assert!(h[0].value.contains("nc=00000003"));
    let stale = challenged(
        401,
        "WWW-Authenticate",
        &["Digest realm=\"r\", nonce=\"n2\", qop=\"auth\", stale=true".into()],
    );
    let h = client.answer(&stale, "INVITE", "sip:x", "c4").unwrap();
    assert!(h[0].value.contains("nonce=\"n2\""));
    assert!(h[0].value.contains("nc=00000001"));
}

#[test]
fn a_second_challenge_without_stale_means_the_credentials_were_refused() {
    let mut client = DigestClient::new("u", "p");
    let same = challenged(
        401,
        "WWW-Authenticate",
        &["Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"".into()],
    );
    client.answer(&same, "INVITE", "sip:x", "c").unwrap();
    assert_eq!(
        client.answer(&same, "INVITE", "sip:x", "c"),
        Err(ClientAuthError::Refused("r".into()))
    );
    // A fresh nonce without stale is a refusal too (vca-sip's own server answers a wrong
    // password with a new nonce); stale=true on the nonce already answered is no progress.
    let fresh = challenged(
        401,
        "WWW-Authenticate",
        &["Digest realm=\"r\", nonce=\"n9\", qop=\"auth\"".into()],
    );
    assert!(client.answer(&fresh, "INVITE", "sip:x", "c").is_err());
    let stale_same = challenged(
        401,
        "WWW-Authenticate",
        &["Digest realm=\"r\", nonce=\"n1\", qop=\"auth\", stale=true".into()],
    );
    assert!(client.answer(&stale_same, "INVITE", "sip:x", "c").is_err());
}

#[test]
fn unusable_challenges_are_reported() {
    let mut client = DigestClient::new("u", "p");
    let basic = challenged(401, "WWW-Authenticate", &["Basic realm=\"r\"".into()]);
    assert_eq!(
        client.answer(&basic, "INVITE", "sip:x", "c"),
        Err(ClientAuthError::NoUsableChallenge)
    );
    let sess = challenged(
        401,
        "WWW-Authenticate",
        &["Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256-sess".into()],
    );
    assert_eq!(
        client.answer(&sess, "INVITE", "sip:x", "c"),
        Err(ClientAuthError::NoUsableChallenge)
    );
    let ok = challenged(200, "X", &[]);
    assert_eq!(
        client.answer(&ok, "INVITE", "sip:x", "c"),
        Err(ClientAuthError::NotAChallenge(200))
    );
}

#[test]
fn round_trip_against_the_server_side_verifier() {
    let source = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
    let now = 1_800_000_000;
    for (algorithms, expected) in [
        (
            vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
            DigestAlgorithm::Sha256,
        ),
        (vec![DigestAlgorithm::Md5], DigestAlgorithm::Md5),
    ] {
        let mut config = DigestConfig::new("vca.example");
        config.algorithms = algorithms;
        let mut server = DigestAuth::new(config, NonceKey::new(&[7u8; 32]).unwrap()).unwrap();
        let response = challenged(
            401,
            "WWW-Authenticate",
            &server.challenge(now, source, "call-1", false),
        );
        let mut client = DigestClient::new("trunk", "s3cret");
        let headers = client
            .answer(&response, "INVITE", "sip:+15551234567@vca.example", "cn-1")
            .unwrap();
        let req = RequestInfo {
            method: "INVITE",
            request_uri: "sip:+15551234567@vca.example",
            source,
            call_id: "call-1",
            allow_listed: false,
        };
        let mut lockout = Lockout::new(LockoutConfig::default());
        let outcome = server.verify(now, &req, &headers[0].value, &mut lockout, |user, alg| {
            (user == "trunk").then(|| alg.ha1(user, "vca.example", "s3cret"))
        });
        assert_eq!(
            outcome.verdict,
            Verdict::Authenticated {
                username: "trunk".into(),
                algorithm: expected
            }
        );
        // The next request on the same nonce carries nc=2, which the server accepts.
        let next = client.authorize("INVITE", "sip:+15551234567@vca.example", "cn-2");
        let outcome = server.verify(now + 1, &req, &next[0].value, &mut lockout, |user, alg| {
            Some(alg.ha1(user, "vca.example", "s3cret"))
        });
        assert!(matches!(outcome.verdict, Verdict::Authenticated { .. }));
        // A wrong password is challenged again, and the client then gives up.
        let mut wrong = DigestClient::new("trunk", "guess");
        let headers = wrong
            .answer(&response, "INVITE", "sip:+15551234567@vca.example", "cn-3")
            .unwrap();
        let outcome = server.verify(now, &req, &headers[0].value, &mut lockout, |user, alg| {
            Some(alg.ha1(user, "vca.example", "s3cret"))
        });
        let Verdict::Challenge { stale, .. } = outcome.verdict else {
            panic!("{:?}", outcome.verdict)
        };
        let again = challenged(
            401,
            "WWW-Authenticate",
            &server.challenge(now, source, "call-1", stale),
        );
        assert_eq!(
            wrong.answer(&again, "INVITE", "sip:+15551234567@vca.example", "cn-4"),
            Err(ClientAuthError::Refused("vca.example".into()))
        );
    }
}
