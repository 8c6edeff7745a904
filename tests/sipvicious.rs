//! The SIPVicious tools (Debian package sipvicious) against a running vca-sip, from a
//! source outside every trunk network, while the trunk keeps placing calls with sipp.
//!
//! svwar and svcrack in this version bind to every interface, so the attacker is
//! 127.0.0.1 and the trunk sends from 127.0.0.10.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::Backend;
use common::sipp::{SippRun, scenario, which};
use common::uac::sample;
use serde_json::json;
use vca_sip::config::Config;

const TRUNK_IP: &str = "127.0.0.10";
const PASSWORD: &str = "CorrectHorse42";

type Env = common::calls::CallEnv;

/// A server whose only trunk admits 127.0.0.10 by address.
async fn start(tweak: impl FnOnce(&mut Config)) -> Env {
    let env = Env::start(Backend::Sqlite, tweak).await;
    env.platform_trunk(json!({
        "name": "Tata", "provider": "tata", "auth": "ip",
        "allowed_cidrs": [format!("{TRUNK_IP}/32")],
    }))
    .await;
    env
}

impl Env {
    /// The trunk's calls: `n` basic calls at 5 per second from the trunk's address.
    async fn trunk_calls(&self, n: usize) -> SippRun {
        let mut sipp = self.sipp(
            scenario("call.xml"),
            "udp",
            &vec!["09876543210;919000000001"; n],
        );
        sipp.rate = 5;
        sipp.pause_ms = 100;
        sipp.extra = vec!["-i".to_owned(), TRUNK_IP.to_owned()];
        sipp.run().await
    }

    async fn answered_calls(&self) -> usize {
        self.calls()
            .await
            .iter()
            .filter(|c| !c["answered_at"].is_null())
            .count()
    }
}

/// Runs one SIPVicious tool to its end (at most 120 s) and returns what it printed.
async fn tool(dir: PathBuf, program: &str, args: Vec<String>) -> String {
    assert!(
        which(program).is_some(),
        "{program} is not installed: run ./scripts/test, which installs Debian's sipvicious"
    );
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(program)
            .current_dir(&dir)
            .env("HOME", &dir)
            .args(&args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{program} finished within 120 s"))
    .expect("tool ran");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svmap_and_svwar_from_outside_find_nothing_while_the_trunk_calls() {
    let _heavy = common::heavy::one_at_a_time();
    let env = start(|_| {}).await;
    let dir = env.s.db.dir.path().to_path_buf();
    let port = env.udp().port().to_string();
    let trunk = env.trunk_calls(30);
    let svmap = tool(dir.clone(), "svmap", args(&["-p", &port, "127.0.0.1"]));
    let svmap_invite = tool(
        dir.clone(),
        "svmap",
        args(&["-p", &port, "-m", "INVITE", "127.0.0.1"]),
    );
    let svwar = tool(
        dir.clone(),
        "svwar",
        args(&[
            "-p",
            &port,
            "-e",
            "9876543200-9876543220",
            "-m",
            "INVITE",
            "127.0.0.1",
        ]),
    );
    let svwar_national = tool(
        dir.clone(),
        "svwar",
        args(&[
            "-p",
            &port,
            "-e",
            "09876543205-09876543215",
            "-m",
            "OPTIONS",
            "127.0.0.1",
        ]),
    );
    let (trunk, svmap, svmap_invite, svwar, svwar_national) =
        tokio::join!(trunk, svmap, svmap_invite, svwar, svwar_national);

    let address = format!("127.0.0.1:{port}");
    for (name, out) in [("svmap", &svmap), ("svmap INVITE", &svmap_invite)] {
        assert!(!out.contains(&address), "{name} found the server:\n{out}");
    }
    for (name, out) in [("svwar", &svwar), ("svwar national", &svwar_national)] {
        assert!(
            !out.contains("9876543210"),
            "{name} found the number:\n{out}"
        );
        assert!(
            !out.contains("| reqauth") && !out.contains("| noauth"),
            "{name}:\n{out}"
        );
    }
    assert!(trunk.succeeded(), "{}", trunk.screen);
    assert_eq!(env.answered_calls().await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svwar_against_a_digest_trunk_cannot_tell_numbers_apart() {
    let _heavy = common::heavy::one_at_a_time();
    let env = start(|_| {}).await;
    // A digest-only trunk may admit any source, so everybody is challenged alike.
    env.platform_trunk(json!({
        "name": "Byoc", "provider": "byoc", "auth": "digest", "realm": "vca.test",
        "username": "byoc", "password": PASSWORD, "digest_algorithms": ["MD5"],
    }))
    .await;
    let dir = env.s.db.dir.path().to_path_buf();
    let port = env.udp().port().to_string();
    for method in ["INVITE", "REGISTER", "OPTIONS"] {
        let out = tool(
            dir.clone(),
            "svwar",
            args(&[
                "-p",
                &port,
                "-e",
                "9876543205-9876543215",
                "-m",
                method,
                "127.0.0.1",
            ]),
        )
        .await;
        assert!(
            !out.contains("9876543210"),
            "{method}: svwar found the number:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svcrack_cracks_nothing_while_the_trunk_calls() {
    let _heavy = common::heavy::one_at_a_time();
    // Neither rates nor the scanner's User-Agent are held against it here, so that what
    // stops the cracker is the lockout itself (a real cracker hides its User-Agent).
    let env = start(|c| {
        c.flood.max_requests = 100_000;
        c.gate.scanner_agents.clear();
    })
    .await;
    env.platform_trunk(json!({
        "name": "Both", "provider": "tata", "auth": "ip+digest",
        "allowed_cidrs": ["127.0.0.20/32"], "realm": "both.test", "username": "both",
        "password": PASSWORD, "digest_algorithms": ["MD5"],
    }))
    .await;
    env.platform_trunk(json!({
        "name": "Byoc", "provider": "byoc", "auth": "digest", "realm": "vca.test",
        "username": "byoc", "password": PASSWORD, "digest_algorithms": ["MD5"],
    }))
    .await;
    let dir = env.s.db.dir.path().to_path_buf();
    // 20 wrong passwords, then the right one.
    let mut words: String = (1..=20).map(|i| format!("Wrong{i:02}\n")).collect();
    words.push_str(PASSWORD);
    words.push('\n');
    let list = dir.join("words.txt");
    std::fs::write(&list, words).unwrap();
    let list = list.display().to_string();
    let port = env.udp().port().to_string();
    let before = env.metrics().await;

    let trunk = env.trunk_calls(30);
    // The ip+digest trunk's user from outside its network; then the digest-only trunk's.
    let crack = |user: &str| {
        let args = args(&[
            "-p",
            &port,
            "-u",
            user,
            "-d",
            &list,
            "-m",
            "INVITE",
            "-e",
            "9876543210",
            "127.0.0.1",
        ]);
        tool(dir.clone(), "svcrack", args)
    };
    let outside = crack("both");
    let digest = crack("byoc");
    let (trunk, outside, digest) = tokio::join!(trunk, outside, digest);
    for (name, out) in [("ip+digest", &outside), ("digest", &digest)] {
        assert!(
            !out.contains(PASSWORD),
            "{name}: svcrack cracked it:\n{out}"
        );
    }
    assert!(trunk.succeeded(), "{}", trunk.screen);
    assert_eq!(env.answered_calls().await, 30);
    let after = env.metrics().await;
    let key = "vca_sip_auth_lockouts_total";
    assert!(
        sample(&after, key) > sample(&before, key),
        "no lockout:\n{digest}\n{after}"
    );
}
