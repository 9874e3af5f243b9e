//! Segmentation on real traffic: three zones in network namespaces (corp
//! 198.18.1.0/24, dmz 198.18.2.0/24, cde 198.18.3.0/24) behind a router
//! namespace with an nftables firewall; every packet entering the router is
//! mirrored (`tc ... u32 match u32 0 0 action mirred egress mirror`) to a monitor veth where
//! `segwatch run` captures. Real connections: allowed ones, one the firewall
//! drops, one refused by a closed port, and one the firewall wrongly lets
//! through. The events must be exactly the three violations.
//!
//! Skipped with a message where namespaces, tc or nft are not available.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Run a set-up command; a failure is printed so a skip explains itself.
fn run(args: &[&str]) -> bool {
    let out = Command::new(args[0]).args(&args[1..]).output();
    let ok = out.as_ref().is_ok_and(|o| o.status.success());
    if !ok {
        let why = out.map_or_else(
            |e| e.to_string(),
            |o| String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        eprintln!("failed: {}: {}", args.join(" "), why.trim());
    }
    ok
}

/// The namespaces of the test network; removed on drop.
struct Lab {
    id: u32,
    names: Vec<String>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("sgw{role}{}", self.id)
    }

    fn exec(&self, role: &str, args: &[&str]) -> bool {
        let ns = self.ns(role);
        let mut v = vec!["ip", "netns", "exec", ns.as_str()];
        v.extend_from_slice(args);
        run(&v)
    }

    fn command(&self, role: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role), program]);
        c
    }

    fn build() -> Option<Lab> {
        let id = std::process::id() % 10_000;
        let mut lab = Lab {
            id,
            names: Vec::new(),
        };
        for role in ["r", "c", "d", "p", "m"] {
            let ns = lab.ns(role);
            if !run(&["ip", "netns", "add", &ns]) {
                return None;
            }
            lab.names.push(ns);
            lab.exec(role, &["ip", "link", "set", "lo", "up"]);
        }
        let router = lab.ns("r");
        // Host-side veth in the zone namespace, router side in the router.
        for (role, net) in [("c", 1), ("d", 2), ("p", 3)] {
            let host = lab.ns(role);
            let (hv, rv) = (format!("h{role}{id}"), format!("r{role}{id}"));
            let ok = run(&[
                "ip", "link", "add", &hv, "netns", &host, "type", "veth", "peer", "name", &rv,
                "netns", &router,
            ]) && lab.exec(
                role,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("198.18.{net}.2/24"),
                    "dev",
                    &hv,
                ],
            ) && lab.exec(role, &["ip", "link", "set", &hv, "up"])
                && lab.exec(
                    role,
                    &[
                        "ip",
                        "route",
                        "add",
                        "default",
                        "via",
                        &format!("198.18.{net}.1"),
                    ],
                )
                && lab.exec(
                    "r",
                    &[
                        "ip",
                        "addr",
                        "add",
                        &format!("198.18.{net}.1/24"),
                        "dev",
                        &rv,
                    ],
                )
                && lab.exec("r", &["ip", "link", "set", &rv, "up"]);
            if !ok {
                return None;
            }
        }
        // The mirror port: router side "mir", monitor side "mon".
        let (mir, mon) = (format!("mir{id}"), format!("mon{id}"));
        let ok = run(&[
            "ip",
            "link",
            "add",
            &mir,
            "netns",
            &router,
            "type",
            "veth",
            "peer",
            "name",
            &mon,
            "netns",
            &lab.ns("m"),
        ]) && lab.exec("r", &["ip", "link", "set", &mir, "up"])
            && lab.exec("m", &["ip", "link", "set", &mon, "up"])
            && lab.exec("r", &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        if !ok {
            return None;
        }
        for role in ["c", "d", "p"] {
            let rv = format!("r{role}{id}");
            // A u32 filter that matches everything: older than matchall and
            // present in more kernels.
            let ok = lab.exec("r", &["tc", "qdisc", "add", "dev", &rv, "clsact"])
                && lab.exec(
                    "r",
                    &[
                        "tc", "filter", "add", "dev", &rv, "ingress", "protocol", "all", "u32",
                        "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev",
                        &mir,
                    ],
                );
            if !ok {
                return None;
            }
        }
        // The firewall: drops SSH into the CDE, and (wrongly) lets the rest through.
        let ruleset = "table inet segwatch_test {\n  chain forward_filter {\n    type filter hook forward priority 0; policy accept;\n    ip daddr 198.18.3.2 tcp dport 22 drop\n  }\n}\n";
        let nft = lab
            .command("r", "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .ok()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take()?.write_all(ruleset.as_bytes()).ok()?;
                c.wait().ok()
            });
        if !nft.is_some_and(|s| s.success()) {
            return None;
        }
        Some(lab)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

const POLICY: &str = r#"
[[zone]]
name = "corp"
cidrs = ["198.18.1.0/24"]
[[zone]]
name = "dmz"
cidrs = ["198.18.2.0/24"]
[[zone]]
name = "cde"
cidrs = ["198.18.3.0/24"]
pci = "cde"

[[rule]]
name = "shop-api"
from = "dmz"
to = "cde"
proto = "tcp"
ports = [8443]
why = "shop calls the payment API"

[[rule]]
name = "intranet"
from = "corp"
to = "dmz"
proto = "tcp"
ports = [80]
why = "staff use the intranet"
"#;

/// Listens on the given ports, answers every connection, until killed.
const SERVER: &str = r#"
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(8)
    while True:
        c, _ = s.accept()
        c.recv(4096); c.sendall(b"ok" * 500); c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// Connects to host:port; prints the result.
const CLIENT: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(); s.settimeout(1.5)
try:
    s.connect((host, port)); s.sendall(b"hello" * 20)
    while s.recv(4096): pass
    print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError:
    print("timeout")
s.close()
"#;

fn server(lab: &Lab, role: &str, ports: &[&str]) -> Child {
    let mut c = lab
        .command(role, "python3")
        .args(["-c", SERVER])
        .args(ports)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start server");
    let mut line = String::new();
    if let Some(out) = c.stdout.as_mut() {
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
    }
    assert_eq!(line.trim(), "ready");
    c
}

fn connect(lab: &Lab, role: &str, host: &str, port: u16) -> String {
    let out = lab
        .command(role, "python3")
        .args(["-c", CLIENT, host, &port.to_string()])
        .output()
        .expect("client");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn violations_seen_on_a_mirror_port_match_what_happened() {
    for tool in ["ip", "tc", "nft", "python3"] {
        if !common::has(tool) {
            eprintln!(
                "SKIPPED: {tool} is not installed (scripts/install-deps.sh test installs it)"
            );
            return;
        }
    }
    let Some(lab) = Lab::build() else {
        eprintln!("SKIPPED: cannot build namespaces, tc mirroring or nftables here (needs root)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).expect("policy");
    let events = dir.path().join("events.jsonl");
    let report = dir.path().join("report");
    let mut sensor = lab
        .command("m", env!("CARGO_BIN_EXE_segwatch"))
        .args([
            "run",
            "--allow-root",
            "--interface",
            &format!("mon{}", lab.id),
            "--quiet",
            "--config",
        ])
        .arg(&policy)
        .arg("--events")
        .arg(&events)
        .arg("--report")
        .arg(&report)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start segwatch run");
    let mut servers = [
        server(&lab, "p", &["8443", "5432"]),
        server(&lab, "d", &["80"]),
    ];
    std::thread::sleep(Duration::from_millis(1500));

    // Allowed by the policy.
    assert_eq!(connect(&lab, "d", "198.18.3.2", 8443), "connected");
    assert_eq!(connect(&lab, "c", "198.18.2.2", 80), "connected");
    // Denied by the policy: dropped by the firewall, refused by a closed
    // port, and let through by the firewall (the real breach).
    assert_eq!(connect(&lab, "c", "198.18.3.2", 22), "timeout");
    assert_eq!(connect(&lab, "c", "198.18.3.2", 3389), "refused");
    assert_eq!(connect(&lab, "c", "198.18.3.2", 5432), "connected");
    std::thread::sleep(Duration::from_millis(500));

    let (status, err) = common::stop(&mut sensor, "TERM", Duration::from_secs(15));
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(status.success(), "segwatch run failed: {err}");

    let text = std::fs::read_to_string(&events).unwrap_or_else(|e| panic!("{e}: {err}"));
    let mut got: Vec<(String, String, u64, String, String)> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("event json"))
        .map(|e| {
            (
                e["src_ip"].as_str().unwrap_or_default().to_string(),
                e["dst_ip"].as_str().unwrap_or_default().to_string(),
                e["dst_port"].as_u64().unwrap_or(0),
                e["outcome"].as_str().unwrap_or_default().to_string(),
                e["severity"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, String, u64, String, String)> = [
        ("198.18.1.2", "198.18.3.2", 22, "attempted", "medium"),
        ("198.18.1.2", "198.18.3.2", 3389, "rejected", "medium"),
        ("198.18.1.2", "198.18.3.2", 5432, "closed", "critical"),
    ]
    .into_iter()
    .map(|(a, b, p, o, s)| (a.into(), b.into(), p, o.into(), s.into()))
    .collect();
    assert_eq!(got, want, "events:\n{text}");

    let r: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report.join("pci-report.json")).expect("report written"),
    )
    .expect("report json");
    let verdict = |from: &str, to: &str| {
        r["matrix"]
            .as_array()
            .and_then(|m| m.iter().find(|p| p["from"] == from && p["to"] == to))
            .map(|p| p["verdict"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert_eq!(verdict("corp", "cde"), "violated");
    assert_eq!(verdict("dmz", "cde"), "allowed");
    assert_eq!(verdict("corp", "dmz"), "allowed");
    assert_eq!(verdict("cde", "corp"), "not_observed");
    assert_eq!(r["capture"]["capture_loss"]["segwatch_dropped"], 0);
}
