//! `segwatch run` as a long-running service, live: SIGHUP reloads (the new
//! policy is judged from the reload on, a broken config is rejected and the
//! one in force stays, no flow is lost), and an event file on a full disk
//! (capture goes on, the metrics say so, writing resumes when space
//! returns).
//!
//! The two hosts are addresses on the loopback of a network namespace of
//! the test's own (198.18.9.1 and .2); skipped where namespaces cannot be
//! made.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::netns::{Killed, Netns};

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

fn metric(ns: &Netns, port: u16, name: &str) -> Option<f64> {
    let out = ns
        .command("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// Wait until `name` reads `want` (the reload happens on another thread).
fn wait_for(ns: &Netns, port: u16, name: &str, want: f64) {
    let start = Instant::now();
    while metric(ns, port, name) != Some(want) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name} never became {want} (now {:?})",
            metric(ns, port, name)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A namespace whose loopback carries 198.18.9.1 and .2; `None` (with a
/// message) where that cannot be made.
fn two_hosts(tag: &str) -> Option<Netns> {
    let Some(ns) = Netns::create(tag) else {
        eprintln!("skipped: cannot create network namespaces here (needs root and iproute2)");
        return None;
    };
    if !common::has("curl") {
        eprintln!("skipped: curl is missing");
        return None;
    }
    for a in ["198.18.9.1/32", "198.18.9.2/32"] {
        let ok = ns
            .command("ip")
            .args(["addr", "add", a, "dev", "lo"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip addr add {a}");
    }
    Some(ns)
}

/// `segwatch run` on the namespace's loopback, judging against `cfg`
/// (detectors off), writing [events, flows] (and the summary), serving
/// metrics on `port`; returns once the metrics answer.
fn judge(
    ns: &Netns,
    port: u16,
    cfg: &Path,
    [events, flows]: [&Path; 2],
    summary: Option<&Path>,
) -> Killed {
    let mut c = ns.command(env!("CARGO_BIN_EXE_segwatch"));
    c.args([
        "run",
        "--allow-root",
        "--interface",
        "lo",
        "--quiet",
        "--no-detect",
    ])
    .arg("--config")
    .arg(cfg)
    .arg("--events")
    .arg(events)
    .arg("--flows")
    .arg(flows)
    .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
    .stderr(Stdio::piped());
    if let Some(s) = summary {
        c.arg("--summary-json").arg(s);
    }
    let sensor = Killed(c.spawn().expect("start segwatch run"));
    wait_for(ns, port, "segwatch_config_last_reload_successful", 1.0);
    sensor
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
    const PORT: u16 = 19951;
    let Some(ns) = two_hosts("rl") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("seg.toml");
    let (events, flows, summary) = (
        dir.path().join("events.jsonl"),
        dir.path().join("flows.jsonl"),
        dir.path().join("summary.json"),
    );
    std::fs::write(&cfg, config(true)).expect("config");
    let mut sensor = judge(&ns, PORT, &cfg, [&events, &flows], Some(&summary));
    let pid = sensor.0.id();

    // Allowed by the first policy.
    send(&ns, 3);
    std::thread::sleep(Duration::from_millis(2500));
    // The rule goes: the same traffic is now denied.
    std::fs::write(&cfg, config(false)).expect("config");
    hup(pid);
    wait_for(
        &ns,
        PORT,
        "segwatch_config_reloads_total{result=\"ok\"}",
        1.0,
    );
    send(&ns, 2);
    std::thread::sleep(Duration::from_millis(2500));
    // A broken file: rejected, and the policy without the rule stays.
    std::fs::write(&cfg, "[[zone]]\nname = 5\n").expect("config");
    hup(pid);
    wait_for(
        &ns,
        PORT,
        "segwatch_config_reloads_total{result=\"error\"}",
        1.0,
    );
    assert_eq!(
        metric(&ns, PORT, "segwatch_config_last_reload_successful"),
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

/// A tmpfs of its own, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        let p = dir.join("small");
        std::fs::create_dir(&p).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(p))
    }

    /// Write zeros until the file system is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let p = self.0.join("fill");
        let mut f = std::fs::File::create(&p).expect("fill");
        let block = [0u8; 4096];
        while f.write_all(&block).is_ok() {}
        p
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_stops_no_capture_and_writing_resumes() {
    const PORT: u16 = 19952;
    let Some(ns) = two_hosts("df") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = SmallDisk::mount(dir.path(), "256k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let cfg = dir.path().join("seg.toml");
    // Short timeouts everywhere: a violation window is written once the
    // longest flow timeout has passed after it.
    let short = "[flows.timeouts]\ntcp_half_open = 1\ntcp_established = 1\ntcp_closed = 1\nicmp = 1\nother = 1\n";
    std::fs::write(&cfg, config(false).replace("[flows.timeouts]\n", short)).expect("config");
    let events = disk.0.join("events.jsonl");
    let flows = dir.path().join("flows.jsonl");
    let mut sensor = judge(&ns, PORT, &cfg, [&events, &flows], None);
    let failing = "segwatch_output_failing{output=\"events\"}";

    // The event file is still empty: its first line needs a page the full
    // disk does not have.
    let filler = disk.fill();
    send(&ns, 2);
    wait_for(&ns, PORT, failing, 1.0);
    assert!(
        sensor.0.try_wait().expect("wait").is_none(),
        "segwatch keeps capturing"
    );
    std::fs::remove_file(&filler).expect("free space");
    wait_for(&ns, PORT, failing, 0.0);
    send(&ns, 1);
    std::thread::sleep(Duration::from_millis(2500));
    let lost = metric(
        &ns,
        PORT,
        "segwatch_output_lines_lost_total{output=\"events\"}",
    );
    let errors = metric(
        &ns,
        PORT,
        "segwatch_output_write_errors_total{output=\"events\"}",
    );

    let (status, err) = common::stop(&mut sensor.0, "TERM", Duration::from_secs(10));
    assert!(status.success(), "{err}");
    assert!(err.contains("cannot write"), "the failure is logged: {err}");
    assert!(err.contains("writing works again"), "{err}");
    assert_eq!(lost, Some(0.0), "the backlog held every event");
    assert!(errors.is_some_and(|e| e >= 1.0), "{errors:?}");
    let denied: u64 = lines(&events)
        .iter()
        .map(|e| e["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(denied, 3, "every violation is in the file");
    assert_eq!(
        lines(&flows)
            .iter()
            .filter(|f| f["dst_port"] == 5000)
            .count(),
        3
    );
}

fn baseline_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).expect("baseline")).expect("json")
}

/// Live learning writes checkpoints; after a crash (SIGKILL) the same
/// command resumes from the last one instead of starting over.
#[test]
fn learning_checkpoints_survive_a_crash_and_resume() {
    let Some(ns) = two_hosts("ck") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("seg.toml");
    std::fs::write(&cfg, config(true)).expect("config");
    let base = dir.path().join("lab-baseline.json");
    let start = || {
        ns.command(env!("CARGO_BIN_EXE_segwatch"))
            .args([
                "run",
                "--allow-root",
                "--interface",
                "lo",
                "--no-metrics",
                "--quiet",
            ])
            .args(["--learn-for", "1h", "--checkpoint-every", "1s"])
            .arg("--config")
            .arg(&cfg)
            .arg("--baseline")
            .arg(&base)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start segwatch run")
    };
    let mut first = Killed(start());
    std::thread::sleep(Duration::from_millis(500));
    send(&ns, 3);
    std::thread::sleep(Duration::from_millis(3500));
    let _ = first.0.kill();
    let _ = first.0.wait();
    let b = baseline_json(&base);
    let done = b["learned"]["unfinished"]["done_secs"].as_u64();
    assert!(done.is_some_and(|d| d >= 1), "checkpoint: {}", b["learned"]);
    assert_eq!(b["learned"]["unfinished"]["goal_secs"], 3600);
    assert!(
        b["learned"]["flows"].as_u64().is_some_and(|f| f >= 3),
        "{b}"
    );

    let mut second = Killed(start());
    std::thread::sleep(Duration::from_millis(500));
    send(&ns, 2);
    std::thread::sleep(Duration::from_millis(2500));
    let (status, err) = common::stop(&mut second.0, "TERM", Duration::from_secs(10));
    assert!(status.success(), "{err}");
    assert!(err.contains("resuming the unfinished baseline"), "{err}");
    let b = baseline_json(&base);
    assert!(
        b["learned"]["flows"].as_u64().is_some_and(|f| f >= 5),
        "flows of both runs: {}",
        b["learned"]
    );
    assert!(
        b["learned"]["unfinished"]["done_secs"].as_u64() > done,
        "{}",
        b["learned"]
    );
    assert_eq!(b["learned"]["sources"].as_array().map(Vec::len), Some(2));
}
