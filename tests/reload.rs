//! SIGHUP while capturing live: the new policy is judged from the reload on,
//! a broken config is rejected and the one in force stays, and no flow is
//! lost across reloads.
//!
//! The two hosts are addresses on the loopback of a network namespace of
//! the test's own (198.18.9.1 and .2); skipped where namespaces cannot be
//! made.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::netns::{Killed, Netns};

const PORT: &str = "19951";

fn config(rule: bool) -> String {
    let mut c = String::from(
        "[flows.timeouts]\nudp = 1\n[policy]\ndedup_window_secs = 1\n\
         [[zone]]\nname = \"a\"\ncidrs = [\"198.18.9.1\"]\n\
         [[zone]]\nname = \"b\"\ncidrs = [\"198.18.9.2\"]\n",
    );
    if rule {
        c.push_str("[[rule]]\nfrom = \"a\"\nto = \"b\"\nproto = \"udp\"\nports = [5000]\nwhy = \"test service\"\n");
    }
    c
}

/// `n` one-datagram UDP flows from .1 to .2:5000, each from its own port.
fn send(ns: &Netns, n: u32) {
    let py = format!(
        "import socket\nfor i in range({n}):\n    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('198.18.9.1',0)); s.sendto(b'x',('198.18.9.2',5000)); s.close()\n"
    );
    let ok = ns
        .command("python3")
        .args(["-c", &py])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "sending UDP failed");
}

fn metric(ns: &Netns, name: &str) -> Option<f64> {
    let out = ns
        .command("curl")
        .args(["-s", &format!("http://127.0.0.1:{PORT}/metrics")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// Wait until `name` reads `want` (the reload happens on another thread).
fn wait_for(ns: &Netns, name: &str, want: f64) {
    let start = Instant::now();
    while metric(ns, name) != Some(want) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name} never became {want} (now {:?})",
            metric(ns, name)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hup(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -HUP");
}

fn lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn sighup_reloads_the_policy_and_keeps_the_old_one_on_error() {
    let Some(ns) = Netns::create("rl") else {
        eprintln!("skipped: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    if !common::has("curl") {
        eprintln!("skipped: curl is missing");
        return;
    }
    for a in ["198.18.9.1/32", "198.18.9.2/32"] {
        let ok = ns
            .command("ip")
            .args(["addr", "add", a, "dev", "lo"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip addr add {a}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("seg.toml");
    let (events, flows, summary) = (
        dir.path().join("events.jsonl"),
        dir.path().join("flows.jsonl"),
        dir.path().join("summary.json"),
    );
    std::fs::write(&cfg, config(true)).expect("config");
    let child = ns
        .command(env!("CARGO_BIN_EXE_segwatch"))
        .args(["run", "--interface", "lo", "--quiet", "--no-detect"])
        .arg("--config")
        .arg(&cfg)
        .arg("--events")
        .arg(&events)
        .arg("--flows")
        .arg(&flows)
        .arg("--summary-json")
        .arg(&summary)
        .args(["--metrics-listen", &format!("127.0.0.1:{PORT}")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start segwatch run");
    let mut sensor = Killed(child);
    let pid = sensor.0.id();
    wait_for(&ns, "segwatch_config_last_reload_successful", 1.0);

    // Allowed by the first policy.
    send(&ns, 3);
    std::thread::sleep(Duration::from_millis(2500));
    // The rule goes: the same traffic is now denied.
    std::fs::write(&cfg, config(false)).expect("config");
    hup(pid);
    wait_for(&ns, "segwatch_config_reloads_total{result=\"ok\"}", 1.0);
    send(&ns, 2);
    std::thread::sleep(Duration::from_millis(2500));
    // A broken file: rejected, and the policy without the rule stays.
    std::fs::write(&cfg, "[[zone]]\nname = 5\n").expect("config");
    hup(pid);
    wait_for(&ns, "segwatch_config_reloads_total{result=\"error\"}", 1.0);
    assert_eq!(
        metric(&ns, "segwatch_config_last_reload_successful"),
        Some(0.0)
    );
    send(&ns, 1);
    std::thread::sleep(Duration::from_millis(2500));

    let (status, err) = common::stop(&mut sensor.0, "TERM", Duration::from_secs(10));
    assert!(status.success(), "{err}");
    assert!(
        err.contains("seg.toml:2:") && err.contains("reload rejected"),
        "the rejection names the file and line: {err}"
    );
    let udp: Vec<_> = lines(&flows)
        .into_iter()
        .filter(|f| f["dst_port"] == 5000 && f["proto"] == "udp")
        .collect();
    assert_eq!(udp.len(), 6, "every flow is kept across reloads: {udp:?}");
    let denied: u64 = lines(&events)
        .iter()
        .filter(|e| e["kind"] == "segmentation_violation")
        .map(|e| e["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(denied, 3, "only flows after the first reload are denied");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    assert_eq!(s["config_reloads"], 1, "{s}");
    // The tally restarts with the new policy (the metrics scrapes on
    // 127.0.0.1 are judged too).
    assert_eq!(s["segmentation"]["denied_flows"], 3, "{s}");
    assert!(s["segmentation"]["policy_since"].is_string(), "{s}");
}
