//! Real captures from `../shared/pcaps` (skipped when the folder is absent):
//! every file is analysed without a panic, and flows agree with tshark's
//! conversation tables.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{analyze, cfg, shared_pcaps};
use segwatch::capture::{FileSource, FrameSource, Next};
use segwatch::decode::LinkType;
use segwatch::flow::Timeouts;
use segwatch::pipeline::{self, RunHooks};

fn captures_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            captures_under(&p, out);
        } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
            out.push(p);
        }
    }
}

#[test]
fn every_shared_capture_is_analysed_without_panic() {
    let Some(root) = shared_pcaps() else {
        eprintln!("skipped: ../shared/pcaps not present");
        return;
    };
    let mut files = Vec::new();
    captures_under(&root, &mut files);
    files.sort();
    assert!(files.len() > 100, "found {}", files.len());
    let mut frames = 0;
    for f in &files {
        // A file libpcap refuses to open is an error with the file's name, not a panic.
        let mut src = match FileSource::open(std::slice::from_ref(f)) {
            Ok(s) => s,
            Err(e) => {
                assert!(e.to_string().contains(&*f.to_string_lossy()));
                continue;
            }
        };
        let s = pipeline::run(&mut src, &cfg(2), None, RunHooks::default())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let used = s.worker.packets + s.capture.problems_total();
        assert_eq!(
            used,
            s.capture.frames,
            "{}: every frame is used or counted",
            f.display()
        );
        frames += s.capture.frames;
    }
    assert!(frames > 200_000, "{frames}");
}

/// Frames each way per unordered endpoint pair: ((a, b), (frames a→b, frames b→a)) with a < b.
type ConvTable = BTreeMap<(String, String), (u64, u64)>;

/// Add frames `x_to_y` and `y_to_x` of the pair (x, y) in canonical order.
fn add_pair(table: &mut ConvTable, x: String, y: String, x_to_y: u64, y_to_x: u64) {
    let (a, b, ab, ba) = if x <= y {
        (x, y, x_to_y, y_to_x)
    } else {
        (y, x, y_to_x, x_to_y)
    };
    let e = table.entry((a, b)).or_default();
    e.0 += ab;
    e.1 += ba;
}

fn tshark_conversations(file: &Path, kind: &str) -> Option<ConvTable> {
    let out = Command::new("tshark")
        .args(["-n", "-q", "-r"])
        .arg(file)
        .args(["-z", &format!("conv,{kind}")])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut table = ConvTable::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((left, rest)) = line.split_once("<->") else {
            continue;
        };
        let mut cols = rest.split_whitespace();
        let right = cols.next()?.to_string();
        // "<-" frames (right → left), bytes, unit, "->" frames (left → right).
        let to_left: u64 = cols.next()?.parse().ok()?;
        cols.next();
        cols.next();
        let to_right: u64 = cols.next()?.parse().ok()?;
        add_pair(
            &mut table,
            left.trim().to_string(),
            right,
            to_right,
            to_left,
        );
    }
    Some(table)
}

fn segwatch_conversations(file: &Path, proto: &str) -> ConvTable {
    // No idle splits: tshark's table has one row per address/port pair.
    let mut c = cfg(2);
    c.timeouts = Timeouts::from_secs(604_800, 604_800, 604_800, 604_800, 604_800, 604_800);
    let (_, records) = analyze(&[file.to_path_buf()], &c);
    let mut table = ConvTable::new();
    for r in records.iter().filter(|r| r["proto"] == proto) {
        let ep = |ip: &str, port: &serde_json::Value| format!("{ip}:{port}");
        let src = ep(r["src_ip"].as_str().unwrap_or(""), &r["src_port"]);
        let dst = ep(r["dst_ip"].as_str().unwrap_or(""), &r["dst_port"]);
        let fwd = r["packets_fwd"].as_u64().unwrap_or(0);
        let rev = r["packets_rev"].as_u64().unwrap_or(0);
        add_pair(&mut table, src, dst, fwd, rev);
    }
    table
}

#[test]
fn flows_match_tshark_conversation_tables() {
    let Some(root) = shared_pcaps() else {
        eprintln!("skipped: ../shared/pcaps not present");
        return;
    };
    if Command::new("tshark").arg("--version").output().is_err() {
        eprintln!("skipped: tshark not installed (scripts/install-deps.sh test installs it)");
        return;
    }
    // Files without tunnels, fragments or ICMP errors about TCP/UDP, where both
    // tools must agree frame for frame.
    let files = [
        (
            "benign/ntopng_home_lan_snapshot.pcap",
            ["tcp", "udp"].as_slice(),
        ),
        ("labeled/nmap_syn_scan.pcap", &["tcp"]),
        ("labeled/nmap_connect_scan.pcap", &["tcp"]),
        ("labeled/nmap_xmas_scan.pcap", &["tcp"]),
        ("labeled/ntopng_syn_scan_scanme.pcap", &["tcp"]),
        ("labeled/ntopng_tcp_syn_flood_lan.pcapng", &["tcp", "udp"]),
        ("labeled/stopddos_synflood_spoofed.pcap", &["tcp"]),
        ("labeled/slips_c2_beacon_periodic_2s.pcap", &["tcp", "udp"]),
        (
            "labeled/slips_c2_beacon_jitter_2to3.6s.pcap",
            &["tcp", "udp"],
        ),
        ("labeled/dns_tunnel_iodine_ndpi.pcap", &["udp"]),
    ];
    let mut compared = 0;
    for (name, protos) in files {
        let path = root.join(name);
        if !path.exists() {
            continue;
        }
        for proto in protos {
            let Some(expected) = tshark_conversations(&path, proto) else {
                panic!("tshark failed on {name}");
            };
            let got = segwatch_conversations(&path, proto);
            assert_eq!(
                got.len(),
                expected.len(),
                "{name} {proto}: conversation count"
            );
            for (k, v) in &expected {
                assert_eq!(got.get(k), Some(v), "{name} {proto} {k:?}");
            }
            compared += expected.len();
        }
    }
    assert!(compared > 1000, "compared {compared} conversations");
}

#[test]
fn the_mixed_link_type_pcapng_is_read_whole() {
    let Some(root) = shared_pcaps() else {
        eprintln!("skipped: ../shared/pcaps not present");
        return;
    };
    let f = root.join("malformed/all_edge_cases_concat.pcapng");
    if !f.exists() {
        return;
    }
    // 120 interfaces, 11 link types: every frame is read (the MANIFEST's count).
    let mut src = FileSource::open(&[&f]).expect("open");
    let s = pipeline::run(&mut src, &cfg(2), None, RunHooks::default()).expect("run");
    assert_eq!(s.capture.frames, 10_333);
    assert!(
        s.capture.file_problems.is_empty(),
        "{:?}",
        s.capture.file_problems
    );
    assert!(s.worker.packets > 6_000, "{}", s.worker.packets);
}

/// A real nmap SYN scan (attacker 192.168.1.10, victim 192.168.1.25, 1,000
/// ports) against a policy that allows nothing between the two hosts' zones:
/// every scan flow is a violation, and the events fold them into a handful
/// per outcome while accounting for every flow and every port.
#[test]
fn a_real_port_scan_folds_into_a_few_events_that_account_for_every_flow() {
    let Some(root) = shared_pcaps() else {
        eprintln!("skipped: ../shared/pcaps not present");
        return;
    };
    let file = root.join("labeled/nmap_syn_scan.pcap");
    if !file.is_file() {
        eprintln!("skipped: {} not present", file.display());
        return;
    }
    let policy = "[[zone]]\nname = \"clients\"\ncidrs = [\"192.168.1.0/28\"]\n\
                  [[zone]]\nname = \"servers\"\ncidrs = [\"192.168.1.16/28\"]\npci = \"cde\"\n\
                  [policy]\nmax_events_per_source = 5\n";
    let cfg_policy = segwatch::config::Config::parse(policy, Path::new("scan.toml"))
        .expect("policy")
        .policy;
    let dir = tempfile::tempdir().expect("tempdir");
    let events_path = dir.path().join("events.jsonl");
    let flows_path = dir.path().join("flows.jsonl");
    let mut src = FileSource::open(std::slice::from_ref(&file)).expect("open");
    let s = pipeline::run(
        &mut src,
        &cfg(2),
        Some(&flows_path),
        RunHooks {
            policy: Some(cfg_policy),
            events: Some(&events_path),
            ..RunHooks::default()
        },
    )
    .expect("run");
    let read = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    };
    let scan_flows: Vec<serde_json::Value> = read(&flows_path)
        .into_iter()
        .filter(|r| {
            r["src_ip"] == "192.168.1.10" && r["dst_ip"] == "192.168.1.25" && r["proto"] == "tcp"
        })
        .collect();
    assert!(scan_flows.len() >= 1000, "{} scan flows", scan_flows.len());
    let events = read(&events_path);
    let scan_events: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["src_ip"] == "192.168.1.10")
        .collect();
    let outcomes: std::collections::BTreeSet<&str> = scan_flows
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .collect();
    // At most five detailed events and one aggregate per outcome.
    assert!(
        scan_events.len() <= outcomes.len() * 6,
        "{} events",
        scan_events.len()
    );
    let counted: u64 = scan_events.iter().filter_map(|e| e["count"].as_u64()).sum();
    assert_eq!(
        counted,
        scan_flows.len() as u64,
        "every scan flow is in an event"
    );
    // Ports: the detailed events' ports plus the aggregates' distinct ports
    // cover every port the flows went to.
    let ports: std::collections::BTreeSet<u64> = scan_flows
        .iter()
        .filter_map(|r| r["dst_port"].as_u64())
        .collect();
    let listed: u64 = scan_events
        .iter()
        .map(|e| e["distinct_dst_ports"].as_u64().unwrap_or(1))
        .sum();
    assert!(listed >= ports.len() as u64, "{listed} < {}", ports.len());
    for e in &scan_events {
        assert_eq!(e["src_zone"], "clients");
        assert_eq!(e["dst_zone"], "servers");
    }
    let seg = s.segmentation.expect("segmentation ran");
    assert_eq!(seg.events.stats.events as usize, events.len());
}

/// Every frame of a classic pcap file as libpcap reads it: (timestamp in ns,
/// wire length, bytes, link type), then why libpcap stopped, if not at the end.
/// (timestamp in ns, wire length, bytes, link type) of a frame.
type Seen = (i64, u32, Vec<u8>, LinkType);

fn frames_by_libpcap(f: &Path) -> Option<(Vec<Seen>, bool)> {
    let mut cap = pcap::Capture::from_file_with_precision(f, pcap::Precision::Nano).ok()?;
    let link = LinkType::from_dlt(cap.get_datalink().0);
    let mut out = Vec::new();
    loop {
        match cap.next_packet() {
            Ok(p) => out.push((
                p.header.ts.tv_sec * 1_000_000_000 + p.header.ts.tv_usec,
                p.header.len,
                p.data.to_vec(),
                link,
            )),
            Err(pcap::Error::NoMorePackets) => return Some((out, false)),
            Err(_) => return Some((out, true)),
        }
    }
}

#[test]
fn classic_pcap_files_read_exactly_as_libpcap_reads_them() {
    // segwatch reads classic pcap itself (for speed); libpcap is the reference.
    let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sample/office.pcap")];
    if let Some(root) = shared_pcaps() {
        captures_under(&root, &mut files);
    } else {
        eprintln!("../shared/pcaps not present: checking the bundled sample only");
    }
    files.sort();
    let (mut compared, mut frames) = (0, 0);
    for f in &files {
        let is_ng = std::fs::read(f).is_ok_and(|b| b.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]));
        if is_ng {
            continue;
        }
        let Some((want, libpcap_failed)) = frames_by_libpcap(f) else {
            // libpcap refuses the file: so does segwatch, naming it.
            let err = FileSource::open(std::slice::from_ref(f)).err();
            assert!(err.is_some(), "{}: libpcap refuses it", f.display());
            continue;
        };
        let mut src = FileSource::open(std::slice::from_ref(f))
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut got = Vec::new();
        while let Next::Frame(fr) = src.next_frame() {
            got.push((fr.ts_ns, fr.wire_len, fr.data.to_vec(), fr.link));
        }
        assert_eq!(got.len(), want.len(), "{}: frame count", f.display());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{}: frame {i}", f.display());
        }
        // (Other problems, such as a link type segwatch does not decode, are
        // about the frames, not the file.)
        let stopped_early = src
            .problems()
            .iter()
            .any(|p| p.contains("frames before were"));
        assert_eq!(
            stopped_early,
            libpcap_failed,
            "{}: a problem is reported exactly when libpcap stops early: {:?}",
            f.display(),
            src.problems()
        );
        compared += 1;
        frames += got.len();
    }
    eprintln!("{compared} classic pcap files, {frames} frames, identical to libpcap");
    assert!(compared >= 1);
}
