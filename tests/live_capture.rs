//! Live capture: two hosts in network namespaces joined by a veth pair
//! (198.18.77.0/24), real TCP and UDP between them, `segwatch run` capturing
//! on one end. Skipped, with a message, where namespaces cannot be made.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::netns::{Netns, Pair};

const SERVER: &str = r#"
import socket, sys
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("198.18.77.2", 8080)); tcp.listen(1)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("198.18.77.2", 9999))
print("ready", flush=True)
c, _ = tcp.accept(); got = 0
while got < 1000:
    d = c.recv(4096)
    if not d: break
    got += len(d)
c.sendall(b"y" * 3000); c.close()
d, peer = udp.recvfrom(2048); udp.sendto(d * 2, peer)
"#;

const CLIENT: &str = r#"
import socket, time
s = socket.create_connection(("198.18.77.2", 8080)); s.sendall(b"x" * 1000)
got = 0
while True:
    d = s.recv(4096)
    if not d: break
    got += len(d)
s.close(); assert got == 3000, got
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
u.bind(("198.18.77.1", 40999))
u.sendto(b"ping" * 10, ("198.18.77.2", 9999)); u.recvfrom(2048)
u.sendto(b"nobody", ("198.18.77.2", 9998))
try:
    u.recvfrom(2048)
except OSError:
    pass
r = socket.socket()
try:
    r.connect(("198.18.77.2", 81))
except ConnectionRefusedError:
    pass
time.sleep(0.3)
"#;

#[test]
fn live_capture_between_two_namespaces() {
    let Some(net) = Pair::create("lc", "198.18.77") else {
        eprintln!("skipped: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows.jsonl");
    let summary = dir.path().join("summary.json");
    let mut sensor = net
        .b
        .command(env!("CARGO_BIN_EXE_segwatch"))
        .args([
            "run",
            "--allow-root",
            "--interface",
            &net.veth_b,
            "--workers",
            "2",
            "--quiet",
        ])
        .arg("--flows")
        .arg(&flows)
        .arg("--summary-json")
        .arg(&summary)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start segwatch run");
    let mut server = net
        .b
        .command("python3")
        .args(["-c", SERVER])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start server");
    // Give libpcap and the server time to open.
    std::thread::sleep(Duration::from_millis(1500));
    let client = net
        .a
        .command("python3")
        .args(["-c", CLIENT])
        .status()
        .expect("client");
    assert!(client.success(), "client failed");
    let _ = server.wait();
    std::thread::sleep(Duration::from_millis(300));
    let (status, err) = common::stop(&mut sensor, "INT", Duration::from_secs(10));
    assert!(status.success(), "segwatch run failed: {err}");
    check_flows(&flows, &err);
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    assert_eq!(s["dispatch"]["dropped_packets"], 0);
}

fn check_flows(path: &Path, stderr: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |proto: &str, dport: u64| {
        records
            .iter()
            .find(|r| {
                r["proto"] == proto
                    && r["src_ip"] == "198.18.77.1"
                    && r["dst_ip"] == "198.18.77.2"
                    && r["dst_port"] == dport
            })
            .unwrap_or_else(|| panic!("no {proto} flow to port {dport} in {records:#?}"))
    };
    let tcp = find("tcp", 8080);
    assert_eq!(tcp["outcome"], "closed");
    assert_eq!(tcp["handshake"], true);
    // 1000 bytes of payload up, 3000 down, plus headers.
    assert!(tcp["bytes_fwd"].as_u64().unwrap_or(0) > 1000);
    assert!(tcp["bytes_rev"].as_u64().unwrap_or(0) > 3000);
    assert_eq!(find("tcp", 81)["outcome"], "rejected");
    let udp = find("udp", 9999);
    assert_eq!(udp["outcome"], "established");
    assert_eq!(udp["src_port"], 40999);
    assert_eq!(udp["bytes_fwd"], 14 + 20 + 8 + 40);
    assert_eq!(udp["bytes_rev"], 14 + 20 + 8 + 80);
    assert_eq!(find("udp", 9998)["outcome"], "rejected");
}

/// Regression: libpcap's read timeout does not fire on Linux while no packet
/// arrives at all, so a silent interface used to block the reader forever:
/// no idle expiry and no reaction to SIGTERM. The capture now polls.
#[test]
fn a_silent_interface_still_stops_on_sigterm() {
    let Some(ns) = Netns::create("quiet") else {
        eprintln!("skipped: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let mut sensor = ns
        .command(env!("CARGO_BIN_EXE_segwatch"))
        .args([
            "run",
            "--allow-root",
            "--interface",
            "lo",
            "--quiet",
            "--no-metrics",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start segwatch run");
    std::thread::sleep(Duration::from_millis(1500));
    let (status, err) = common::stop(&mut sensor, "TERM", Duration::from_secs(2));
    assert!(status.success(), "{err}");
}

/// In block mode (the default) the kernel holds packets in a block until
/// it is full or the read timeout retires it: packets sent just before
/// SIGTERM are still analysed, because segwatch reads until that block is out.
#[test]
fn the_last_packets_before_sigterm_are_kept() {
    let Some(ns) = Netns::create("lastblk") else {
        eprintln!("skipped: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows.jsonl");
    let mut sensor = ns
        .command(env!("CARGO_BIN_EXE_segwatch"))
        .args(["run", "--allow-root", "--interface", "lo", "--quiet"])
        .args(["--no-metrics", "--filter", "udp"])
        .arg("--flows")
        .arg(&flows)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start segwatch run");
    std::thread::sleep(Duration::from_millis(1500));
    let send = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor p in range(7101, 7111): s.sendto(b'last', ('127.0.0.1', p))\n";
    assert!(ns.run("python3", &["-c", send]), "send the datagrams");
    let (status, err) = common::stop(&mut sensor, "TERM", Duration::from_secs(3));
    assert!(status.success(), "{err}");
    let mut ports: Vec<u64> = common::read_records(&flows)
        .iter()
        .filter_map(|r| r["dst_port"].as_u64())
        .filter(|p| (7101..=7110).contains(p))
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, (7101..=7110).collect::<Vec<u64>>(), "{err}");
}

const ECHO_SERVER: &str = r#"
import socket, threading, time
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("198.18.77.2", 9999))
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("198.18.77.2", 8080)); tcp.listen(4)
def echo():
    while True:
        d, peer = udp.recvfrom(2048); udp.sendto(d, peer)
def serve():
    while True:
        c, _ = tcp.accept(); c.recv(4096); c.sendall(b"ok" * 100); c.close()
threading.Thread(target=echo, daemon=True).start()
threading.Thread(target=serve, daemon=True).start()
time.sleep(30)
"#;

/// `run --learn-for` live: learn for a few seconds (UDP only), write the
/// baseline while still capturing, then report the first TCP connection
/// between the two hosts as a new peer; the metrics follow the state.
#[test]
fn live_learning_then_detecting() {
    let Some(net) = Pair::create("learn", "198.18.77") else {
        eprintln!("skipped: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("lab.toml");
    std::fs::write(
        &cfg,
        "[[zone]]\nname = \"lab\"\ncidrs = [\"198.18.77.0/24\"]\n[flows.timeouts]\nudp = 1\ntcp_closed = 1\ntcp_established = 2\n",
    )
    .expect("config");
    let baseline = dir.path().join("lab-baseline.json");
    let events = dir.path().join("events.jsonl");
    let summary = dir.path().join("summary.json");
    let mut server = net
        .b
        .command("python3")
        .args(["-c", ECHO_SERVER])
        .spawn()
        .expect("server");
    let mut sensor = net
        .b
        .command(env!("CARGO_BIN_EXE_segwatch"))
        .args([
            "run",
            "--allow-root",
            "--interface",
            &net.veth_b,
            "--quiet",
            "--learn-for",
            "4s",
        ])
        .arg("--config")
        .arg(&cfg)
        .arg("--baseline")
        .arg(&baseline)
        .arg("--events")
        .arg(&events)
        .arg("--summary-json")
        .arg(&summary)
        .args(["--metrics-listen", "127.0.0.1:19948"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start segwatch run");
    let metrics = || {
        net.b
            .command("curl")
            .args(["-s", "http://127.0.0.1:19948/metrics"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    std::thread::sleep(Duration::from_millis(1200));
    let learning = metrics();
    // Normal while learning: UDP to the echo service.
    let udp = "import socket\nu=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.settimeout(2)\nfor i in range(3):\n    u.sendto(b'hello', ('198.18.77.2', 9999)); u.recvfrom(100)\n";
    assert!(net.a.run("python3", &["-c", udp]), "udp");
    std::thread::sleep(Duration::from_millis(5000));
    assert!(
        baseline.exists(),
        "the baseline is written when learning ends, while capturing"
    );
    let detecting = metrics();
    // New: a TCP connection between the two.
    let tcp = "import socket\ns=socket.create_connection(('198.18.77.2', 8080)); s.sendall(b'hi'); s.recv(1000); s.close()\n";
    assert!(net.a.run("python3", &["-c", tcp]), "tcp");
    std::thread::sleep(Duration::from_millis(3000));
    let (status, err) = common::stop(&mut sensor, "TERM", Duration::from_secs(10));
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "{err}");
    if common::has("curl") {
        assert!(
            learning.contains("segwatch_baseline_learning 1"),
            "{learning}"
        );
        assert!(
            detecting.contains("segwatch_baseline_learning 0"),
            "{detecting}"
        );
        assert!(
            detecting.contains("segwatch_baseline_loaded 1"),
            "{detecting}"
        );
    }
    let b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&baseline).expect("baseline")).expect("json");
    assert!(
        b["learned"]["flows"].as_u64().is_some_and(|n| n >= 1),
        "{b}"
    );
    assert!(
        b["hosts"]["198.18.77.2"]["services"]
            .to_string()
            .contains("9999"),
        "{b}"
    );
    let text = std::fs::read_to_string(&events).expect("events");
    let new_peer = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["detector"] == "new_peer")
        .unwrap_or_else(|| panic!("no new_peer in {text}\n{err}"));
    assert_eq!(new_peer["src_ip"], "198.18.77.1");
    assert_eq!(new_peer["dst_port"], 8080);
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    assert_eq!(s["anomalies"]["baseline_loaded"], true, "{s}");
}
