//! Segmentation checking end to end on a generated network with known ground
//! truth: which flows violate the policy (and how), deduplication under a port
//! scan, IPv6 zones, determinism over worker counts, and the report's matrix
//! and connected-systems list.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use segwatch::capture::FileSource;
use segwatch::config::Config;
use segwatch::decode::tcp_flags::{ACK, RST, SYN};
use segwatch::pipeline::{self, RunHooks};
use segwatch::report::{PciReport, Verdict};
use segwatch::summary::RunSummary;
use segwatch::synth::pcap_file::FileOptions;
use segwatch::synth::trace::{Conv, MS, Trace};
use serde_json::Value;

const SEC: i64 = 1_000 * MS;
const T0: i64 = 1_767_225_600 * 1_000_000_000; // 2026-01-01T00:00:00Z

pub const POLICY: &str = r#"
[[zone]]
name = "corp"
cidrs = ["10.1.0.0/16", "2001:db8:1::/48"]
[[zone]]
name = "dmz"
cidrs = ["10.3.0.0/24", "2001:db8:3::/48"]
[[zone]]
name = "cde"
cidrs = ["10.2.0.0/24", "2001:db8:2::/48"]
pci = "cde"
[[zone]]
name = "guest"
cidrs = ["10.4.0.0/24"]
[[zone]]
name = "lab"
cidrs = ["10.9.0.0/24"]

[[rule]]
name = "shop-api"
from = "dmz"
to = "cde"
proto = "tcp"
ports = ["8443"]
to_hosts = ["10.2.0.10", "2001:db8:2::10"]
why = "shop calls the payment API"
[[rule]]
name = "corp-web"
from = "corp"
to = "external"
proto = "tcp"
ports = [443]
why = "browsing"
[[rule]]
name = "cde-updates"
from = "cde"
to = "external"
proto = "tcp"
ports = [443]
to_hosts = ["192.0.2.80"]
why = "vendor updates"
[[rule]]
name = "old-ftp"
from = "corp"
to = "dmz"
proto = "tcp"
ports = [21]
why = "legacy transfer (to review)"

[policy]
dedup_window_secs = 60
max_events_per_source = 5
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The network's traffic; the comments give the ground truth.
fn network() -> Trace {
    let mut t = Trace::new();
    // Allowed: dmz -> cde API (IPv4 and IPv6), corp browsing, CDE updates.
    for k in 0..4u16 {
        t.tcp_session(
            T0 + i64::from(k) * SEC,
            &Conv::new(ip("10.3.0.5"), 40_000 + k, ip("10.2.0.10"), 8443),
            500,
            900,
        );
    }
    t.tcp_session(
        T0 + 5 * SEC,
        &Conv::new(ip("2001:db8:3::5"), 41_000, ip("2001:db8:2::10"), 8443),
        500,
        900,
    );
    t.tcp_session(
        T0 + 6 * SEC,
        &Conv::new(ip("10.1.0.7"), 42_000, ip("203.0.113.9"), 443),
        400,
        4_000,
    );
    t.tcp_session(
        T0 + 7 * SEC,
        &Conv::new(ip("10.2.0.20"), 43_000, ip("192.0.2.80"), 443),
        300,
        9_000,
    );
    // Within a zone: allowed by default.
    t.tcp_session(
        T0 + 8 * SEC,
        &Conv::new(ip("10.2.0.10"), 44_000, ip("10.2.0.20"), 5432),
        300,
        1_000,
    );

    // Violation, established: corp laptop -> CDE database, twice in one
    // window (one event, count 2) and once in the next window.
    t.tcp_session(
        T0 + 10 * SEC,
        &Conv::new(ip("10.1.0.23"), 45_000, ip("10.2.0.20"), 5432),
        400,
        6_000,
    );
    t.tcp_session(
        T0 + 20 * SEC,
        &Conv::new(ip("10.1.0.23"), 45_001, ip("10.2.0.20"), 5432),
        400,
        6_000,
    );
    t.tcp_session(
        T0 + 70 * SEC,
        &Conv::new(ip("10.1.0.23"), 45_002, ip("10.2.0.20"), 5432),
        400,
        6_000,
    );
    // Violation, attempted (dropped) and rejected (RST) into the CDE.
    t.tcp_unanswered(
        T0 + 12 * SEC,
        &Conv::new(ip("10.1.0.31"), 46_000, ip("10.2.0.20"), 22),
        3,
    );
    t.tcp_refused(
        T0 + 13 * SEC,
        &Conv::new(ip("10.1.0.31"), 46_001, ip("10.2.0.10"), 3389),
    );
    // Violation from the CDE out: a CDE host reaches an external host the
    // update rule does not name.
    t.tcp_session(
        T0 + 14 * SEC,
        &Conv::new(ip("10.2.0.20"), 47_000, ip("198.51.100.5"), 443),
        300,
        900,
    );
    // IPv6 violation, established: corp -> CDE.
    t.tcp_session(
        T0 + 15 * SEC,
        &Conv::new(ip("2001:db8:1::23"), 48_000, ip("2001:db8:2::20"), 443),
        300,
        900,
    );
    // UDP violation, rejected with ICMP port unreachable: guest -> lab.
    t.udp_unreachable(
        T0 + 16 * SEC,
        &Conv::new(ip("10.4.0.9"), 49_000, ip("10.9.0.1"), 161),
    );
    // Port scan from the guest network into the CDE: ports 1-200 of one
    // host, 80 and 111 open (SYN-ACK, then the scanner's RST: closed).
    for p in 1..=200u16 {
        let c = Conv::new(ip("10.4.0.66"), 50_000, ip("10.2.0.30"), p);
        let at = T0 + 30 * SEC + i64::from(p) * 2 * MS;
        t.tcp_segment(at, &c, true, SYN, 0);
        if p == 80 || p == 111 {
            t.tcp_segment(at + MS / 2, &c, false, SYN | ACK, 0);
            t.tcp_segment(at + MS, &c, true, RST, 0);
        } else {
            t.tcp_segment(at + MS / 2, &c, false, RST | ACK, 0);
        }
    }
    t
}

struct Run {
    summary: RunSummary,
    events: Vec<Value>,
    report: PciReport,
}

fn policy_file(dir: &Path) -> PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(&p, POLICY).expect("write policy");
    p
}

fn run(workers: usize) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = common::write(
        dir.path(),
        "net.pcap",
        &mut network(),
        FileOptions::default(),
    );
    let cfg = Config::load(&policy_file(dir.path())).expect("policy");
    let events = dir.path().join("events.jsonl");
    let mut src = FileSource::open(&[pcap]).expect("open");
    let summary = pipeline::run(
        &mut src,
        &common::cfg(workers),
        None,
        RunHooks {
            policy: Some(Arc::clone(&cfg.policy)),
            events: Some(&events),
            ..RunHooks::default()
        },
    )
    .expect("run");
    let text = std::fs::read_to_string(&events).expect("events written");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect();
    let seg = summary.segmentation.as_ref().expect("segmentation ran");
    let report = PciReport::build(&summary, seg, None);
    Run {
        summary,
        events,
        report,
    }
}

/// (src, dst, dst_port, outcome, count, severity, src_zone, dst_zone) of the
/// detailed events.
type Row = (
    String,
    String,
    Option<u64>,
    String,
    u64,
    String,
    String,
    String,
);

fn rows(events: &[Value]) -> BTreeSet<Row> {
    events
        .iter()
        .filter(|e| e.get("aggregate").is_none())
        .map(|e| {
            (
                e["src_ip"].as_str().unwrap_or_default().to_string(),
                e["dst_ip"].as_str().unwrap_or_default().to_string(),
                e["dst_port"].as_u64(),
                e["outcome"].as_str().unwrap_or_default().to_string(),
                e["count"].as_u64().unwrap_or(0),
                e["severity"].as_str().unwrap_or_default().to_string(),
                e["src_zone"].as_str().unwrap_or_default().to_string(),
                e["dst_zone"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

// One argument per event field keeps the ground-truth table readable.
#[allow(clippy::too_many_arguments)]
fn row(
    src: &str,
    dst: &str,
    port: Option<u64>,
    outcome: &str,
    count: u64,
    sev: &str,
    sz: &str,
    dz: &str,
) -> Row {
    (
        src.into(),
        dst.into(),
        port,
        outcome.into(),
        count,
        sev.into(),
        sz.into(),
        dz.into(),
    )
}

#[test]
fn every_violation_is_reported_once_with_outcome_and_zones() {
    let r = run(2);
    let got = rows(&r.events);
    let mut want: BTreeSet<Row> = [
        row(
            "10.1.0.23",
            "10.2.0.20",
            Some(5432),
            "closed",
            2,
            "critical",
            "corp",
            "cde",
        ),
        row(
            "10.1.0.23",
            "10.2.0.20",
            Some(5432),
            "closed",
            1,
            "critical",
            "corp",
            "cde",
        ),
        row(
            "10.1.0.31",
            "10.2.0.20",
            Some(22),
            "attempted",
            1,
            "medium",
            "corp",
            "cde",
        ),
        row(
            "10.1.0.31",
            "10.2.0.10",
            Some(3389),
            "rejected",
            1,
            "medium",
            "corp",
            "cde",
        ),
        row(
            "10.2.0.20",
            "198.51.100.5",
            Some(443),
            "closed",
            1,
            "critical",
            "cde",
            "external",
        ),
        row(
            "2001:db8:1::23",
            "2001:db8:2::20",
            Some(443),
            "closed",
            1,
            "critical",
            "corp",
            "cde",
        ),
        row(
            "10.4.0.9",
            "10.9.0.1",
            Some(161),
            "rejected",
            1,
            "low",
            "guest",
            "lab",
        ),
        // The scan's open ports: their own group (outcome closed).
        row(
            "10.4.0.66",
            "10.2.0.30",
            Some(80),
            "closed",
            1,
            "critical",
            "guest",
            "cde",
        ),
        row(
            "10.4.0.66",
            "10.2.0.30",
            Some(111),
            "closed",
            1,
            "critical",
            "guest",
            "cde",
        ),
    ]
    .into_iter()
    .collect();
    // The scan's refused ports: the first five in time are listed, the
    // other 193 folded into one aggregate.
    for p in [1u64, 2, 3, 4, 5] {
        want.insert(row(
            "10.4.0.66",
            "10.2.0.30",
            Some(p),
            "rejected",
            1,
            "medium",
            "guest",
            "cde",
        ));
    }
    assert_eq!(got, want, "events:\n{:#?}", r.events);
    let aggs: Vec<&Value> = r.events.iter().filter(|e| e["aggregate"] == true).collect();
    assert_eq!(aggs.len(), 1, "{aggs:#?}");
    let a = aggs[0];
    assert_eq!(a["count"], 193);
    assert_eq!(a["distinct_dst_ports"], 193);
    assert_eq!(a["distinct_dst_hosts"], 1);
    assert_eq!(a["dst_ip"], "10.2.0.30");
    assert_eq!(a["dst_port"], Value::Null);
    assert_eq!(a["ports"], serde_json::json!(["6-79", "81-110", "112-200"]));
    assert_eq!(a["outcome"], "rejected");
    assert!(
        a["explanation"]
            .as_str()
            .unwrap_or("")
            .contains("looks like a scan"),
        "{a}"
    );
    // Every event says what happened and why it is denied.
    for e in &r.events {
        assert_eq!(e["kind"], "segmentation_violation");
        let x = e["explanation"].as_str().unwrap_or("");
        assert!(x.contains("no rule allows"), "{x}");
        assert!(e["timestamp"].as_str().unwrap_or("").ends_with('Z'));
    }
    let crit = r
        .events
        .iter()
        .find(|e| e["dst_port"] == 5432 && e["count"] == 2)
        .expect("db event");
    assert_eq!(crit["packets_fwd"].as_u64(), Some(2 * crit_packets_fwd()));
    assert!(
        crit["explanation"]
            .as_str()
            .unwrap_or("")
            .contains("it worked")
    );
    let s = &r.summary.segmentation.as_ref().expect("seg").events.stats;
    assert_eq!(s.violations, 2 + 1 + 1 + 1 + 1 + 1 + 1 + 200);
    assert_eq!(s.events, 15);
}

/// Packets the initiator sends in `Trace::tcp_session` with a 400-byte request.
fn crit_packets_fwd() -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = Trace::new();
    t.tcp_session(
        T0,
        &Conv::new(ip("10.1.0.23"), 45_000, ip("10.2.0.20"), 5432),
        400,
        6_000,
    );
    let p = common::write(dir.path(), "one.pcap", &mut t, FileOptions::default());
    let (_, recs) = common::analyze(&[p], &common::cfg(1));
    recs[0]["packets_fwd"].as_u64().unwrap_or(0)
}

#[test]
fn one_worker_and_eight_give_the_same_events() {
    let a = run(1);
    let b = run(8);
    assert_eq!(a.events, b.events);
    assert_eq!(
        serde_json::to_value(&a.report.matrix).ok(),
        serde_json::to_value(&b.report.matrix).ok()
    );
}

#[test]
fn report_matrix_and_connected_systems_match_ground_truth() {
    let r = run(2).report;
    let verdict = |from: &str, to: &str| {
        r.matrix
            .iter()
            .find(|m| m.from == from && m.to == to)
            .map(|m| m.verdict)
            .unwrap_or_else(|| panic!("no pair {from} -> {to}"))
    };
    let zones = ["corp", "dmz", "cde", "guest", "lab", "external"];
    assert_eq!(r.matrix.len(), zones.len() * zones.len());
    let expected = [
        ("dmz", "cde", Verdict::Allowed),
        ("corp", "external", Verdict::Allowed),
        ("cde", "cde", Verdict::Allowed),
        ("corp", "cde", Verdict::Violated),
        ("cde", "external", Verdict::Violated),
        ("guest", "cde", Verdict::Violated),
        ("guest", "lab", Verdict::Isolated),
    ];
    for from in zones {
        for to in zones {
            let want = expected
                .iter()
                .find(|(f, t, _)| *f == from && *t == to)
                .map_or(Verdict::NotObserved, |e| e.2);
            assert_eq!(verdict(from, to), want, "{from} -> {to}");
        }
    }
    let ce = r
        .matrix
        .iter()
        .find(|m| m.from == "cde" && m.to == "external")
        .expect("pair");
    assert_eq!(
        (ce.allowed_flows, ce.denied_flows, ce.denied_connected),
        (1, 1, 1)
    );
    assert_eq!(ce.allowed_by[0].rule, "cde-updates");

    // Connected systems: hosts outside the CDE that completed a connection.
    let got: BTreeSet<(String, String, &str, Option<u16>, String)> = r
        .connected_systems
        .iter()
        .flat_map(|s| {
            s.services.iter().map(move |v| {
                (
                    s.host.to_string(),
                    s.zone.clone(),
                    v.direction,
                    v.port,
                    v.rule.clone(),
                )
            })
        })
        .collect();
    let want: BTreeSet<(String, String, &str, Option<u16>, String)> = [
        ("10.3.0.5", "dmz", "to_cde", Some(8443), "shop-api"),
        ("10.1.0.23", "corp", "to_cde", Some(5432), "default"),
        ("2001:db8:1::23", "corp", "to_cde", Some(443), "default"),
        ("10.4.0.66", "guest", "to_cde", Some(80), "default"),
        ("10.4.0.66", "guest", "to_cde", Some(111), "default"),
        ("2001:db8:3::5", "dmz", "to_cde", Some(8443), "shop-api"),
        (
            "192.0.2.80",
            "external",
            "from_cde",
            Some(443),
            "cde-updates",
        ),
        ("198.51.100.5", "external", "from_cde", Some(443), "default"),
    ]
    .into_iter()
    .map(|(h, z, d, p, r)| (h.to_string(), z.to_string(), d, p, r.to_string()))
    .collect();
    assert_eq!(got, want);
    let shop = r
        .connected_systems
        .iter()
        .find(|s| s.host == ip("10.3.0.5"))
        .expect("shop");
    assert_eq!(shop.services[0].flows, 4);
    assert!(shop.services[0].allowed);
    assert_eq!(shop.services[0].why, "shop calls the payment API");

    // Rule usage and rules never hit.
    let hits: Vec<(String, u64)> = r.rules.iter().map(|u| (u.name.clone(), u.flows)).collect();
    assert_eq!(
        hits,
        [
            ("shop-api", 5),
            ("corp-web", 1),
            ("cde-updates", 1),
            ("old-ftp", 0)
        ]
        .map(|(n, f)| (n.to_string(), f))
    );
    assert_eq!(r.rules_never_hit, ["old-ftp"]);
    // Zones: everything but dmz's peer "lab" as source was seen; all zones
    // have traffic here.
    assert!(r.zones.iter().all(|z| z.observed), "{:?}", r.zones);
    assert!(r.findings[0].starts_with("CRITICAL"), "{:?}", r.findings);
    let ids: Vec<&str> = r.requirements.iter().map(|q| q.id).collect();
    for id in [
        "1.2.5", "1.2.7", "1.3.1", "1.3.2", "1.4.x", "10.7.2", "11.5.1", "12.5.2",
    ] {
        assert!(ids.contains(&id), "{id}");
    }
    assert!(r.limitations.iter().any(|l| l.contains("11.4.5")));
}

#[test]
fn a_zone_without_traffic_is_called_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = Trace::new();
    t.tcp_session(
        T0,
        &Conv::new(ip("10.3.0.5"), 40_000, ip("10.2.0.10"), 8443),
        500,
        900,
    );
    let pcap = common::write(dir.path(), "small.pcap", &mut t, FileOptions::default());
    let cfg = Config::load(&policy_file(dir.path())).expect("policy");
    let mut src = FileSource::open(&[pcap]).expect("open");
    let summary = pipeline::run(
        &mut src,
        &common::cfg(1),
        None,
        RunHooks {
            policy: Some(cfg.policy.clone()),
            ..RunHooks::default()
        },
    )
    .expect("run");
    let report = PciReport::build(&summary, summary.segmentation.as_ref().expect("seg"), None);
    let unseen: Vec<&str> = report
        .zones
        .iter()
        .filter(|z| !z.observed)
        .map(|z| z.name.as_str())
        .collect();
    assert_eq!(unseen, ["corp", "guest", "lab", "external"]);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.contains("Zone guest was never observed") && f.contains("proves nothing"))
    );
}
