//! The shipped systemd unit and sysusers file: the unit passes
//! `systemd-analyze verify` (with ExecStart pointed at the binary under test)
//! and scores an exposure of at most 2.5 in `systemd-analyze security`; its
//! hardening and the command it runs agree with what segwatch needs. Skipped
//! where systemd-analyze is missing.

mod common;

use std::path::Path;

fn shipped(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(name),
    )
    .expect("shipped file")
}

/// The unit with the installed binary's path replaced by the one under test.
fn unit_for_test(dir: &Path) -> std::path::PathBuf {
    let unit = shipped("segwatch.service")
        .replace("/usr/local/bin/segwatch", env!("CARGO_BIN_EXE_segwatch"));
    let path = dir.join("segwatch.service");
    std::fs::write(&path, unit).expect("write unit");
    path
}

#[test]
fn unit_passes_systemd_analyze_verify_and_security() {
    if !common::has("systemd-analyze") {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_test(dir.path());
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze verify");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for segwatch.service:")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    assert!(score <= 2.5, "exposure {score}:\n{text}");
}

#[test]
fn unit_hardening_matches_what_segwatch_needs() {
    let unit = shipped("segwatch.service");
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "User=segwatch",
        "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN",
        "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=segwatch",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestrictAddressFamilies=AF_PACKET AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "MemoryMax=1G",
    ] {
        assert!(has(line), "segwatch.service lacks {line}");
    }
    // Everything it writes is under the state directory, and the config it
    // reads is the one ExecStartPre checks.
    let start = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    for word in start.split_whitespace().filter(|w| w.starts_with('/')) {
        assert!(
            word.starts_with("/var/lib/segwatch/")
                || word == "/usr/local/bin/segwatch"
                || word == "/etc/segwatch/segwatch.toml",
            "{word}"
        );
    }
    assert!(
        unit.contains(
            "ExecStartPre=/usr/local/bin/segwatch check-config /etc/segwatch/segwatch.toml"
        )
    );
    // The service user is the one segwatch.sysusers creates.
    let sysusers = shipped("segwatch.sysusers");
    let entry = sysusers
        .lines()
        .find(|l| l.starts_with("u "))
        .expect("a u line");
    assert!(entry.starts_with("u segwatch - "), "{entry}");
    assert!(
        entry.ends_with(" /var/lib/segwatch /usr/sbin/nologin"),
        "{entry}"
    );
}
