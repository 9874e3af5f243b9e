//! segwatch scraped by a real Prometheus: in a network namespace of its own,
//! `segwatch run` captures real TCP and UDP traffic on the loopback while a
//! Prometheus server scrapes it every second. After the traffic stops and
//! every flow has ended, the values Prometheus stored (queried through its
//! HTTP API) must equal what segwatch reports in its summary when it stops.
//! A scrape must also pass `promtool check metrics` with no warnings.
//!
//! A second test has Prometheus scrape segwatch over TLS with basic auth
//! (certificates made with `openssl`): the job with the CA and the password
//! is up and stores segwatch's metrics, while jobs with a wrong password or
//! plain HTTP are down.
//!
//! Skipped with a message where namespaces, Prometheus or openssl are not
//! available (`scripts/install-deps.sh test` installs them).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{Killed, Netns};

const POLICY: &str = r#"
[flows.timeouts]
tcp_closed = 1
tcp_half_open = 1
udp = 1
icmp = 1

[[zone]]
name = "clients"
cidrs = ["127.0.0.1/32"]
[[zone]]
name = "servers"
cidrs = ["127.0.0.2/32"]
pci = "cde"

[[rule]]
name = "web"
from = "clients"
to = "servers"
proto = "tcp"
ports = [8080]
why = "test service"
"#;

/// Talks from 127.0.0.1 to 127.0.0.2: five TCP sessions to 8080 (allowed),
/// one UDP exchange and one connection to a closed port (violations).
const TRAFFIC: &str = r#"
import socket, threading, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.2", 8080)); srv.listen(8)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.2", 5353))
def serve():
    for _ in range(5):
        c, _ = srv.accept(); c.recv(4096); c.sendall(b"x" * 2000); c.close()
def echo():
    d, peer = udp.recvfrom(2048); udp.sendto(d, peer)
threading.Thread(target=serve).start(); threading.Thread(target=echo).start()
for i in range(5):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.connect(("127.0.0.2", 8080))
    s.sendall(b"hello"); 
    while s.recv(4096): pass
    s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); u.settimeout(2)
u.sendto(b"ping", ("127.0.0.2", 5353)); u.recvfrom(2048)
r = socket.socket(); r.bind(("127.0.0.1", 0))
try:
    r.connect(("127.0.0.2", 8081))
except ConnectionRefusedError:
    pass
print("done", flush=True)
"#;

/// The value of an instant query (sum over series), or None.
fn query(ns: &Netns, promql: &str) -> Option<f64> {
    let url = format!(
        "http://127.0.0.1:19090/api/v1/query?query={}",
        promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    );
    let body = ns.get(&url)?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    let first = result.first()?;
    first["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_stores_what_segwatch_counted() {
    for tool in ["ip", "prometheus", "promtool", "python3"] {
        if !common::has(tool) {
            eprintln!(
                "SKIPPED: {tool} is not installed (scripts/install-deps.sh test installs it)"
            );
            return;
        }
    }
    let Some(ns) = Netns::create("prom") else {
        eprintln!("SKIPPED: cannot create a network namespace here (needs root)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("segwatch.toml");
    std::fs::write(&cfg, POLICY).expect("config");
    let summary = dir.path().join("summary.json");
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: segwatch\n    static_configs:\n      - targets: ['127.0.0.1:9947']\n",
    )
    .expect("prometheus config");

    let mut sensor = Killed(
        ns.command(env!("CARGO_BIN_EXE_segwatch"))
            .args([
                "run",
                "--allow-root",
                "-i",
                "lo",
                "--quiet",
                "--metrics-listen",
                "127.0.0.1:9947",
            ])
            // The scrapes themselves are not the traffic under test.
            .args(["--filter", "not tcp port 9947 and not tcp port 19090"])
            .arg("--config")
            .arg(&cfg)
            .arg("--summary-json")
            .arg(&summary)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start segwatch"),
    );
    let _prometheus = Killed(
        ns.command("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .args(["--web.listen-address=127.0.0.1:19090", "--log.level=error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    // Wait for the first successful scrape.
    let start = Instant::now();
    while query(&ns, "up").is_none_or(|v| v != 1.0) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Prometheus never scraped segwatch"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        ns.get("http://127.0.0.1:9947/readyz").as_deref(),
        Some("ready\n")
    );
    assert_eq!(
        ns.get("http://127.0.0.1:9947/healthz").as_deref(),
        Some("ok\n")
    );
    assert!(
        ns.get("http://127.0.0.1:9947/")
            .is_some_and(|b| b.contains("/metrics"))
    );

    let out = ns
        .command("python3")
        .args(["-c", TRAFFIC])
        .output()
        .expect("traffic");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Flows time out after 1 s of quiet (packet time advances with the wall
    // clock on an idle interface); then the counters stop moving.
    let packets = "segwatch_capture_packets_total";
    let flows = "sum(segwatch_zone_pair_flows_total)";
    let mut last = (None, None);
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = (query(&ns, packets), query(&ns, flows));
        if now.0.is_some() && now.1 == Some(7.0) && now == last {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "metrics never settled: {now:?}"
        );
        last = now;
    }

    // A scrape passes promtool.
    let text = ns.get("http://127.0.0.1:9947/metrics").expect("scrape");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    if let Some(mut stdin) = check.stdin.take() {
        use std::io::Write;
        stdin.write_all(text.as_bytes()).expect("feed promtool");
    }
    let checked = check.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );

    let stored = |q: &str| query(&ns, q).unwrap_or(-1.0);
    let values = [
        ("packets", stored(packets)),
        ("bytes", stored("segwatch_capture_bytes_total")),
        ("flows_created", stored("segwatch_flows_created_total")),
        (
            "allowed",
            stored(
                "sum(segwatch_zone_pair_flows_total{src_zone=\"clients\",dst_zone=\"servers\"}) - sum(segwatch_violation_flows_total)",
            ),
        ),
        ("violations", stored("sum(segwatch_violation_flows_total)")),
        (
            "udp_violation",
            stored(
                "sum(segwatch_violation_flows_total{outcome=\"established\",severity=\"critical\"})",
            ),
        ),
        (
            "refused",
            stored("sum(segwatch_violation_flows_total{outcome=\"rejected\",severity=\"medium\"})"),
        ),
        (
            "dropped",
            stored("sum(segwatch_capture_dropped_packets_total)"),
        ),
    ];

    let (status, err) = common::stop(&mut sensor.0, "TERM", Duration::from_secs(10));
    assert!(status.success(), "segwatch: {err}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    let get = |k: &str| values.iter().find(|v| v.0 == k).map_or(-1.0, |v| v.1);
    assert_eq!(
        get("packets"),
        s["capture"]["frames"].as_f64().unwrap_or(-2.0),
        "{values:?}"
    );
    assert_eq!(
        get("bytes"),
        s["capture"]["bytes"].as_f64().unwrap_or(-2.0),
        "{values:?}"
    );
    assert_eq!(
        get("flows_created"),
        s["flows"].as_f64().unwrap_or(-2.0),
        "{values:?}"
    );
    assert_eq!(
        get("violations"),
        s["segmentation"]["denied_flows"].as_f64().unwrap_or(-2.0)
    );
    assert_eq!(get("violations"), 2.0, "{values:?}");
    assert_eq!(get("allowed"), 5.0, "{values:?}");
    assert_eq!(get("udp_violation"), 1.0, "{values:?}");
    assert_eq!(get("refused"), 1.0, "{values:?}");
    assert_eq!(get("dropped"), 0.0, "{values:?}");
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    for tool in ["ip", "prometheus", "python3", "openssl"] {
        if !common::has(tool) {
            eprintln!(
                "SKIPPED: {tool} is not installed (scripts/install-deps.sh test installs it)"
            );
            return;
        }
    }
    let Some(ns) = Netns::create("promtls") else {
        eprintln!("SKIPPED: cannot create a network namespace here (needs root)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    common::pki::make(d).expect("certificates");
    let password = "scrape me";
    std::fs::write(d.join("password"), password).expect("password file");
    let hash = bcrypt::hash(password, 10).expect("hash");
    std::fs::write(
        d.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .expect("web config");
    let target = "static_configs:\n      - targets: ['127.0.0.1:9947']";
    std::fs::write(
        d.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tls\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n    basic_auth:\n      username: prometheus\n      password_file: {pw}\n    {target}\n  - job_name: wrong-password\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n    basic_auth:\n      username: prometheus\n      password: wrong\n    {target}\n  - job_name: plain-http\n    {target}\n",
            ca = d.join("ca.pem").display(),
            pw = d.join("password").display(),
        ),
    )
    .expect("prometheus config");

    let _sensor = Killed(
        ns.command(env!("CARGO_BIN_EXE_segwatch"))
            .args([
                "run",
                "--allow-root",
                "-i",
                "lo",
                "--quiet",
                "--metrics-listen",
                "127.0.0.1:9947",
            ])
            .arg("--web-config")
            .arg(d.join("web.yml"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start segwatch"),
    );
    let _prometheus = Killed(
        ns.command("prometheus")
            .arg(format!(
                "--config.file={}",
                d.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .args(["--web.listen-address=127.0.0.1:19090", "--log.level=error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let up = |job: &str| query(&ns, &format!("up{{job=\"{job}\"}}"));
    let start = Instant::now();
    while up("tls") != Some(1.0) || up("wrong-password").is_none() || up("plain-http").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Prometheus never scraped segwatch over TLS: up = {:?} {:?} {:?}",
            up("tls"),
            up("wrong-password"),
            up("plain-http")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        query(&ns, "segwatch_build_info{job=\"tls\"}"),
        Some(1.0),
        "metrics stored from the TLS job"
    );
    assert_eq!(up("wrong-password"), Some(0.0));
    assert_eq!(up("plain-http"), Some(0.0));
    assert_eq!(query(&ns, "count(segwatch_build_info)"), Some(1.0));
}
