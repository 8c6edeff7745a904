//! The `vca-sip` binary as a user runs it: no setup, one clear line for bad settings, the
//! admin token generated once and reused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command};

mod common;

use common::process::{Served, command};

fn serve(dir: &Path) -> (Child, String, Vec<String>) {
    let Served {
        child, http, lines, ..
    } = common::process::serve(command(dir), &[]);
    (child, http, lines)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "vca-sip exited with {status} on SIGTERM");
}

#[tokio::test]
async fn first_start_needs_no_setup_and_the_admin_token_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url, lines) = serve(dir.path());
    let token_file = dir.path().join("vca-sip.admin-token");
    assert!(
        dir.path().join("vca-sip.db").is_file(),
        "the SQLite file was not created"
    );
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        lines.iter().any(|l| l.contains("vca-sip.admin-token")),
        "the first start does not say where the token is: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("development trunk")),
        "the start does not say that loopback is the development trunk: {lines:?}"
    );
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{url}/api/tenants"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "First"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    stop(child);

    // The second start reuses the same token and the same data.
    let (child, url, lines) = serve(dir.path());
    assert!(!lines.iter().any(|l| l.contains("generated")), "{lines:?}");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
    let list: serde_json::Value = client
        .get(format!("{url}/api/tenants"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["name"], "First");
    stop(child);
}

#[test]
fn invalid_settings_fail_fast_with_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    for (args, env, setting) in [
        (vec!["serve", "--http", "localhost"], None, "`http`"),
        (vec!["serve", "--sip-udp", "1.2.3.4"], None, "`sip_udp`"),
        (vec!["serve"], Some(("VCA_SIP_TCP", "nope")), "`sip_tcp`"),
        (
            vec!["serve", "--database-url", "mysql://db/vca"],
            None,
            "`database_url`",
        ),
        (
            vec!["serve"],
            Some(("VCA_ADMIN_TOKEN", "short")),
            "`VCA_ADMIN_TOKEN`",
        ),
        (
            vec!["migrate", "--config", "/no/such/file.toml"],
            None,
            "`config`",
        ),
        (vec!["serve", "--node-id", "edge 1"], None, "`node_id`"),
        (vec!["serve"], Some(("VCA_NODE_ID", "edge/1")), "`node_id`"),
        (
            vec!["serve"],
            Some(("VCA_ALLOW_PRIVATE_TARGETS", "maybe")),
            "`allow_private_targets`",
        ),
    ] {
        let mut cmd = command(dir.path());
        cmd.args(&args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(setting), "{args:?}: {stderr}");
    }
    assert!(
        !dir.path().join("vca-sip.db").exists(),
        "a database was created by a failed start"
    );
}

#[test]
fn flags_override_environment_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vca.toml"),
        "database_url = \"sqlite://from-file.db\"\n",
    )
    .unwrap();
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = command(dir.path());
        cmd.args(["migrate", "--config", "vca.toml"]);
        if let Some(url) = env {
            cmd.env("DATABASE_URL", url);
        }
        if let Some(url) = flag {
            cmd.args(["--database-url", url]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(None, None);
    assert!(dir.path().join("from-file.db").is_file());
    run(Some("sqlite://from-env.db"), None);
    assert!(dir.path().join("from-env.db").is_file());
    run(Some("sqlite://from-env2.db"), Some("sqlite://from-flag.db"));
    assert!(dir.path().join("from-flag.db").is_file());
    assert!(!dir.path().join("from-env2.db").exists());
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = command(dir.path()).arg("migrate").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(dir.path().join("vca-sip.db").is_file());
    let help = command(dir.path()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("serve") && text.contains("migrate"), "{text}");
    let help = command(dir.path())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--database-url",
        "--http",
        "--sip-udp",
        "--sip-tcp",
        "--config",
        "--allow-private-targets",
        "VCA_ALLOW_PRIVATE_TARGETS",
        "--recordings-dir",
        "VCA_RECORDINGS_DIR",
    ] {
        assert!(text.contains(flag), "{flag} missing from serve --help");
    }
}

#[test]
fn an_unreachable_database_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args([
            "migrate",
            "--database-url",
            "postgres://nobody:x@127.0.0.1:1/none",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("vca-sip: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The node id: the host name unless `--node-id`, `VCA_NODE_ID` or the file's `node_id`
/// names one; the start says which, with the number of calls it closed for it.
#[test]
fn the_node_id_defaults_to_the_host_name_and_the_start_names_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vca.toml"), "node_id = \"from-file\"\n").unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let cases: [(&[&str], Option<&str>, String); 4] = [
        (&[], None, host.trim().to_owned()),
        (&["--config", "vca.toml"], None, "from-file".to_owned()),
        (
            &["--config", "vca.toml"],
            Some("from-env"),
            "from-env".to_owned(),
        ),
        (
            &["--config", "vca.toml", "--node-id", "from-flag"],
            Some("from-env"),
            "from-flag".to_owned(),
        ),
    ];
    for (args, env, want) in cases {
        let mut cmd = command(dir.path());
        cmd.env("RUST_LOG", "info");
        if let Some(node) = env {
            cmd.env("VCA_NODE_ID", node);
        }
        let Served { child, lines, .. } = common::process::serve(cmd, args);
        let said = lines
            .iter()
            .find(|l| l.contains("no calls left live by this node's last run"))
            .unwrap_or_else(|| panic!("no line on calls left live: {lines:?}"));
        assert!(
            said.contains(&format!("node_id={want} closed=0")),
            "{args:?} {env:?}: {said}"
        );
        stop(child);
    }
}
