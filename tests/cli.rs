//! The real binary: subcommands, exit codes, outputs and error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn segwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segwatch"))
        .args(args)
        .output()
        .expect("run segwatch")
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn analyze_the_bundled_sample_with_its_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows.jsonl");
    let summary = dir.path().join("summary.json");
    let out = segwatch(&[
        "analyze",
        repo("configs/sample/office.pcap")
            .to_str()
            .unwrap_or_default(),
        "--config",
        repo("configs/sample/segwatch.toml")
            .to_str()
            .unwrap_or_default(),
        "--flows",
        flows.to_str().unwrap_or_default(),
        "--summary-json",
        summary.to_str().unwrap_or_default(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for needle in [
        "packets          12380",
        "flows by protocol and outcome",
        "top talkers",
        "decode problems  none",
        "packets/s",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    let lines = std::fs::read_to_string(&flows).expect("flows written");
    let first: serde_json::Value =
        serde_json::from_str(lines.lines().next().unwrap_or("{}")).expect("json");
    for field in [
        "start",
        "end",
        "proto",
        "src_ip",
        "src_port",
        "dst_ip",
        "dst_port",
        "vlan",
        "packets_fwd",
        "packets_rev",
        "bytes_fwd",
        "bytes_rev",
        "outcome",
    ] {
        assert!(first.get(field).is_some(), "field {field} missing: {first}");
    }
    // The CDE breach from the scenario is there, established and closed.
    let breach = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["src_ip"] == "10.10.1.23" && r["dst_ip"] == "10.20.0.20")
        .expect("breach flow");
    assert_eq!(breach["dst_port"], 5432);
    assert_eq!(breach["vlan"], 20);
    assert_eq!(breach["outcome"], "closed");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    assert_eq!(s["capture"]["frames"], 12380);
    assert_eq!(s["flows"], lines.lines().count());
    assert!(!dir.path().join("flows.jsonl.partial").exists());
}

/// `segwatch ARGS --help` mentions every one of `needles`.
fn assert_help_lists(args: &[&str], needles: &[&str]) {
    let mut argv = args.to_vec();
    argv.push("--help");
    let help = text(&segwatch(&argv).stdout);
    for n in needles {
        assert!(help.contains(n), "{args:?} help lacks {n}: {help}");
    }
}

#[test]
fn help_lists_every_subcommand() {
    assert_help_lists(
        &[],
        &["analyze", "run", "report", "check-config", "generate"],
    );
    assert_help_lists(&["report"], &["--config", "--out", "--events"]);
    assert_help_lists(
        &["analyze"],
        &[
            "--config",
            "--flows",
            "--workers",
            "--max-flows",
            "--summary-json",
            "--events",
            "--report",
            "--metrics-listen",
            "--web-config",
            "Exit status",
        ],
    );
    assert_help_lists(
        &["run"],
        &[
            "--interface",
            "--filter",
            "--snaplen",
            "--buffer-mib",
            "--no-promisc",
            "--no-metrics",
            "--web-config",
            "--user",
            "--group",
            "--allow-root",
        ],
    );
}

#[test]
fn bad_config_names_file_line_and_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[pipeline]\nworkers = 2\n\n[flows]\nmax_flow = 10\n").expect("write");
    let out = segwatch(&["check-config", cfg.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("bad.toml:5:1"), "{err}");
    assert!(err.contains("max_flow"), "{err}");
    assert!(err.contains("fix:"), "{err}");
    let out = segwatch(&[
        "analyze",
        repo("configs/sample/office.pcap")
            .to_str()
            .unwrap_or_default(),
        "--config",
        cfg.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("bad.toml:5:1"));
}

#[test]
fn every_shipped_config_is_valid() {
    let mut checked = 0;
    for dir in ["configs", "configs/sample"] {
        for entry in std::fs::read_dir(repo(dir)).expect("configs dir").flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "toml") {
                let out = segwatch(&["check-config", p.to_str().unwrap_or_default()]);
                assert!(
                    out.status.success(),
                    "{}: {}",
                    p.display(),
                    text(&out.stderr)
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 2);
}

#[test]
fn missing_and_corrupt_inputs_fail_cleanly() {
    let out = segwatch(&["analyze", "/nonexistent/x.pcap"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("/nonexistent/x.pcap"), "{err}");

    // Truncated file: exit 2, summary still printed with what was read.
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(repo("configs/sample/office.pcap")).expect("sample");
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let out = segwatch(&["analyze", cut.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("input problem"), "{stdout}");
    assert!(stdout.contains("flows by protocol"), "{stdout}");
}

#[test]
fn run_without_interface_explains_what_to_do() {
    let out = segwatch(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--interface"));
    let out = segwatch(&["run", "--allow-root", "--interface", "segwatch-no-such-if0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("segwatch-no-such-if0"));
}

#[test]
fn generated_sample_matches_the_bundled_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("office.pcap");
    let out = segwatch(&[
        "generate",
        "sample",
        "--out",
        p.to_str().unwrap_or_default(),
    ]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(&p).expect("generated"),
        std::fs::read(repo("configs/sample/office.pcap")).expect("bundled"),
        "regenerate with: segwatch generate sample --out configs/sample/office.pcap"
    );
}

#[test]
fn check_config_explains_the_policy_and_its_warnings() {
    let out = segwatch(&[
        "check-config",
        repo("configs/sample/segwatch.toml")
            .to_str()
            .unwrap_or_default(),
    ]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    for needle in [
        "valid (0 warnings)",
        "cde              cde          10.20.0.0/24 vlans 20",
        "allow dmz -> cde tcp/8443  shop-to-payment-api",
        "otherwise: deny between zones, allow within a zone",
    ] {
        assert!(s.contains(needle), "missing {needle:?} in\n{s}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("policy.toml");
    std::fs::write(
        &cfg,
        "[[zone]]\nname = \"a\"\ncidrs = [\"10.0.0.0/24\"]\n[[zone]]\nname = \"b\"\ncidrs = [\"10.0.1.0/24\"]\n[[rule]]\nfrom = \"a\"\nto = \"b\"\n",
    )
    .expect("write");
    let out = segwatch(&["check-config", cfg.to_str().unwrap_or_default()]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(
        s.contains("policy.toml:7: warning: rule \"rule-1\" allows traffic without a `why`"),
        "{s}"
    );
    assert!(s.contains("valid (1 warning)"), "{s}");
    std::fs::write(&cfg, "[[zone]]\nname = \"a\"\ncidrs = [\"10.0.0.0/33\"]\n").expect("write");
    let out = segwatch(&["check-config", cfg.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("policy.toml:3:10:") && e.contains("not a CIDR") && e.contains("fix:"),
        "{e}"
    );
}

#[test]
fn report_needs_a_policy_and_events_need_something_to_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = dir.path().join("ev.jsonl");
    let sample = repo("configs/sample/office.pcap");
    let out = segwatch(&[
        "analyze",
        sample.to_str().unwrap_or_default(),
        "--report",
        dir.path().join("r").to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("needs a segmentation policy"),
        "{}",
        text(&out.stderr)
    );
    let out = segwatch(&[
        "analyze",
        sample.to_str().unwrap_or_default(),
        "--no-detect",
        "--events",
        ev.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nothing to write"),
        "{}",
        text(&out.stderr)
    );
    let out = segwatch(&[
        "analyze",
        sample.to_str().unwrap_or_default(),
        "-q",
        "--config",
        repo("configs/sample/segwatch.toml")
            .to_str()
            .unwrap_or_default(),
        "--events",
        ev.to_str().unwrap_or_default(),
        "--report",
        dir.path().join("rep").to_str().unwrap_or_default(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&ev)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let violations: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "segmentation_violation")
        .collect();
    let critical: Vec<_> = violations
        .iter()
        .filter(|e| e["severity"] == "critical")
        .collect();
    assert_eq!(critical.len(), 1, "{critical:?}");
    assert_eq!(critical[0]["src_ip"], "10.10.1.23");
    assert_eq!(critical[0]["dst_port"], 5432);
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("rep/pci-report.json")).expect("report json"),
    )
    .expect("json");
    assert_eq!(
        report["violations"].as_array().map(Vec::len),
        Some(violations.len())
    );
    // Without a baseline, anomalies come only from the detectors that need none.
    assert!(
        events.iter().filter(|e| e["kind"] == "anomaly").all(|e| [
            "scan",
            "beacon",
            "tcp_flags",
            "arp_spoof"
        ]
        .contains(&e["detector"].as_str().unwrap_or_default())),
        "{events:?}"
    );
    assert!(!dir.path().join("rep/pci-report.json.partial").exists());
}

#[test]
fn bad_web_config_stops_segwatch_with_file_line_and_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = repo("tests/fixtures/tls");
    let fixture = |f: &str| fixtures.join(f).display().to_string();
    let sample = repo("configs/sample/office.pcap");
    let sample = sample.to_str().unwrap_or_default();
    let web = dir.path().join("web.yml");
    let web_arg = web.to_str().unwrap_or_default();

    // A key that is not the certificate's: analyze and run both refuse to start.
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            fixture("server.pem"),
            fixture("other.key")
        ),
    )
    .expect("write");
    let analyze = ["analyze", sample, "-q", "--metrics-listen", "127.0.0.1:0"];
    let out = segwatch(&[&analyze[..], &["--web-config", web_arg]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("web.yml:3:") && err.contains("does not belong"),
        "{err}"
    );
    assert!(err.contains("fix:"), "{err}");
    assert!(text(&out.stdout).is_empty(), "nothing analysed");
    let out = segwatch(&["run", "-i", "lo", "--web-config", web_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not belong"));

    // An unknown key, with its line.
    std::fs::write(&web, "basic_auth_users: {}\nbasic_auth: {}\n").expect("write");
    let out = segwatch(&[&analyze[..], &["--web-config", web_arg]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("web.yml:2:") && err.contains("basic_auth"),
        "{err}"
    );

    // --web-config wins over metrics.web_config: a good flag over a bad
    // config entry serves, a bad flag over a good entry does not.
    let good = dir.path().join("good.yml");
    std::fs::write(&good, "# plain HTTP, no auth\n").expect("write");
    let good_arg = good.to_str().unwrap_or_default();
    let pointing = |to: &str| {
        let cfg = dir.path().join("seg.toml");
        std::fs::write(&cfg, format!("[metrics]\nweb_config = {to:?}\n")).expect("write");
        cfg.display().to_string()
    };
    let cfg = pointing(web_arg);
    let out = segwatch(&[&analyze[..], &["--config", &cfg]].concat());
    assert_eq!(out.status.code(), Some(1), "the config's bad web config");
    let out = segwatch(&[&analyze[..], &["--config", &cfg, "--web-config", good_arg]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("metrics: http://127.0.0.1:"));
    let cfg = pointing(good_arg);
    let out = segwatch(&[&analyze[..], &["--config", &cfg, "--web-config", web_arg]].concat());
    assert_eq!(out.status.code(), Some(1), "the flag's bad web config");

    // --web-config without an endpoint to protect.
    let out = segwatch(&["analyze", sample, "-q", "--web-config", web_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--metrics-listen"));
}

#[test]
fn check_config_checks_the_web_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = repo("tests/fixtures/tls");
    let hash = bcrypt::hash_with_salt("pw", 4, [3; 16])
        .expect("hash")
        .to_string();
    // Relative to the TOML file; the web config's own paths to its folder.
    std::fs::create_dir(dir.path().join("web")).expect("mkdir");
    for f in ["server.pem", "server.key", "ca.pem"] {
        std::fs::copy(fixtures.join(f), dir.path().join("web").join(f)).expect("copy");
    }
    let web = dir.path().join("web/web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .expect("write");
    let cfg = dir.path().join("segwatch.toml");
    std::fs::write(&cfg, "[metrics]\nweb_config = \"web/web.yml\"\n").expect("write");
    let out = segwatch(&["check-config", cfg.to_str().unwrap_or_default()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(
            "web.yml: TLS (client certificates: RequireAndVerifyClientCert), basic auth for 1 user"
        ),
        "{}",
        text(&out.stdout)
    );
    // The same file with a password where the hash belongs.
    std::fs::write(&web, "basic_auth_users:\n  prometheus: hunter2\n").expect("write");
    let out = segwatch(&["check-config", cfg.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("web.yml:2:") && err.contains("not a bcrypt hash"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the password is not repeated: {err}"
    );
}
