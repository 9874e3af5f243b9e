//! Flow records from generated captures with known contents, asserted exactly.

mod common;

use std::net::IpAddr;

use common::{analyze, cfg, find, write};
use segwatch::synth::frame::{L4, Spec, arp};
use segwatch::synth::pcap_file::{FileOptions, Format};
use segwatch::synth::trace::{Conv, Trace};
use serde_json::{Value, json};

const T0: i64 = 1_700_000_000_000_000_000;
const S: i64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Every kind of conversation the tracker distinguishes, 10 s apart.
fn known_trace() -> Trace {
    let mut t = Trace::new();
    let c = ip("10.0.0.1");
    t.tcp_session(T0, &Conv::new(c, 40000, ip("10.0.0.2"), 80), 100, 3000);
    t.tcp_refused(T0 + 10 * S, &Conv::new(c, 40001, ip("10.0.0.3"), 81));
    t.tcp_unanswered(T0 + 20 * S, &Conv::new(c, 40002, ip("10.0.0.4"), 22), 3);
    t.udp_exchange(T0 + 30 * S, &Conv::new(c, 5353, ip("10.0.0.5"), 53), 30, 90);
    t.udp_unreachable(T0 + 40 * S, &Conv::new(c, 40003, ip("10.0.0.6"), 161));
    t.ping(T0 + 50 * S, c, ip("10.0.0.7"), 9, 1);
    let v6 = Conv::new(ip("2001:db8::1"), 40004, ip("2001:db8::2"), 443);
    t.tcp_session(T0 + 60 * S, &v6, 10, 10);
    let tagged = Conv::new(ip("10.20.0.1"), 1000, ip("10.20.0.2"), 2000).vlan(20);
    t.udp_exchange(T0 + 70 * S, &tagged, 10, 10);
    let qinq = Spec::new(
        ip("10.20.0.1"),
        ip("10.20.0.3"),
        L4::Udp {
            sport: 1001,
            dport: 2001,
        },
    )
    .vlans(&[100, 20]);
    t.push(T0 + 80 * S, qinq.frame());
    let mut big = Spec::new(
        ip("10.0.0.8"),
        ip("10.0.0.9"),
        L4::Udp {
            sport: 5000,
            dport: 6000,
        },
    )
    .payload(&[7u8; 3000]);
    big.ip_id = 7;
    for (i, f) in big.ipv4_fragments(1480).into_iter().enumerate() {
        t.push(T0 + 90 * S + i as i64 * 1000, f);
    }
    // A later fragment whose first fragment never came.
    let mut orphan = big.clone();
    orphan.ip_id = 8;
    t.push(T0 + 95 * S, orphan.ipv4_fragments(1480).remove(1));
    // Garbage: too short, unknown ethertype, bad IPv4 header length.
    t.push(T0 + 100 * S, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    let mut lldp = vec![0u8; 60];
    lldp[12] = 0x88;
    lldp[13] = 0xcc;
    t.push(T0 + 100 * S + 1, lldp);
    let mut bad_ihl = Spec::new(
        ip("10.0.0.1"),
        ip("10.0.0.2"),
        L4::Udp { sport: 1, dport: 2 },
    )
    .frame();
    bad_ihl[14] = 0x43;
    t.push(T0 + 100 * S + 2, bad_ihl);
    t.push(
        T0 + 110 * S,
        arp(
            1,
            [2, 0, 0, 0, 0, 1],
            [10, 0, 0, 1],
            [0; 6],
            [10, 0, 0, 254],
        ),
    );
    t.push(
        T0 + 110 * S + 1,
        arp(
            2,
            [2, 0, 0, 0, 0, 254],
            [10, 0, 0, 254],
            [2, 0, 0, 0, 0, 1],
            [10, 0, 0, 1],
        ),
    );
    t
}

fn subset(r: &Value, keys: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for k in keys {
        m.insert(k.to_string(), r[*k].clone());
    }
    Value::Object(m)
}

const COUNTS: [&str; 6] = [
    "packets_fwd",
    "packets_rev",
    "bytes_fwd",
    "bytes_rev",
    "outcome",
    "vlan",
];

#[test]
fn exact_records_for_known_conversations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = known_trace();
    let file = write(dir.path(), "known.pcap", &mut t, FileOptions::default());
    let (summary, records) = analyze(&[file], &cfg(2));

    let tcp = find(&records, "10.0.0.1", 40000, "10.0.0.2", 80);
    assert_eq!(
        subset(tcp, &COUNTS),
        json!({"packets_fwd": 5, "packets_rev": 5, "bytes_fwd": 370, "bytes_rev": 3270, "outcome": "closed", "vlan": null})
    );
    assert_eq!(tcp["proto"], "tcp");
    assert_eq!(tcp["tcp_flags_fwd"], "SAFP");
    assert_eq!(tcp["handshake"], true);
    assert_eq!(tcp["start"], "2023-11-14T22:13:20Z");

    let refused = find(&records, "10.0.0.1", 40001, "10.0.0.3", 81);
    assert_eq!(
        subset(refused, &COUNTS),
        json!({"packets_fwd": 1, "packets_rev": 1, "bytes_fwd": 54, "bytes_rev": 54, "outcome": "rejected", "vlan": null})
    );
    assert_eq!(refused["tcp_flags_rev"], "AR");

    let dropped = find(&records, "10.0.0.1", 40002, "10.0.0.4", 22);
    assert_eq!(
        subset(dropped, &COUNTS),
        json!({"packets_fwd": 3, "packets_rev": 0, "bytes_fwd": 162, "bytes_rev": 0, "outcome": "attempted", "vlan": null})
    );

    let dns = find(&records, "10.0.0.1", 5353, "10.0.0.5", 53);
    assert_eq!(
        subset(dns, &COUNTS),
        json!({"packets_fwd": 1, "packets_rev": 1, "bytes_fwd": 72, "bytes_rev": 132, "outcome": "established", "vlan": null})
    );

    // The ICMP port unreachable is attributed to the UDP flow it quotes.
    let snmp = find(&records, "10.0.0.1", 40003, "10.0.0.6", 161);
    assert_eq!(
        subset(snmp, &COUNTS),
        json!({"packets_fwd": 1, "packets_rev": 1, "bytes_fwd": 42, "bytes_rev": 70, "outcome": "rejected", "vlan": null})
    );

    // ICMP: ports are the initiator's type and code.
    let ping = find(&records, "10.0.0.1", 8, "10.0.0.7", 0);
    assert_eq!(ping["proto"], "icmp");
    assert_eq!(
        subset(ping, &COUNTS),
        json!({"packets_fwd": 1, "packets_rev": 1, "bytes_fwd": 98, "bytes_rev": 98, "outcome": "established", "vlan": null})
    );

    let v6 = find(&records, "2001:db8::1", 40004, "2001:db8::2", 443);
    assert_eq!(
        subset(v6, &COUNTS),
        json!({"packets_fwd": 5, "packets_rev": 3, "bytes_fwd": 380, "bytes_rev": 232, "outcome": "closed", "vlan": null})
    );

    let tagged = find(&records, "10.20.0.1", 1000, "10.20.0.2", 2000);
    assert_eq!(
        subset(tagged, &COUNTS),
        json!({"packets_fwd": 1, "packets_rev": 1, "bytes_fwd": 56, "bytes_rev": 56, "outcome": "established", "vlan": 20})
    );

    let qinq = find(&records, "10.20.0.1", 1001, "10.20.0.3", 2001);
    assert_eq!(qinq["vlan"], 100);
    assert_eq!(qinq["inner_vlan"], 20);
    assert_eq!(qinq["outcome"], "attempted");

    // Fragments: all three attributed to one flow, with their wire bytes.
    let frag = find(&records, "10.0.0.8", 5000, "10.0.0.9", 6000);
    assert_eq!(
        subset(frag, &COUNTS),
        json!({"packets_fwd": 3, "packets_rev": 0, "bytes_fwd": 1514 + 1514 + 82, "bytes_rev": 0, "outcome": "attempted", "vlan": null})
    );
    assert_eq!(summary.capture.fragments_attributed, 2);

    assert_eq!(records.len(), 10, "{records:#?}");
    let problems = &summary.capture.decode_problems;
    assert_eq!(problems.get("fragment_unattributed"), Some(&1));
    assert_eq!(problems.get("truncated_link"), Some(&1));
    assert_eq!(problems.get("unsupported_ethertype"), Some(&1));
    assert_eq!(problems.get("malformed_ip"), Some(&1));
    assert_eq!(summary.worker.arp_packets, 2);
    assert_eq!(summary.capture.frames, t.frames.len() as u64);
    assert_eq!(summary.flows.flows, 10);
}

#[test]
fn snaplen_cut_frames_count_their_wire_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = Trace::new();
    t.tcp_session(
        T0,
        &Conv::new(ip("10.0.0.10"), 40005, ip("10.0.0.11"), 80),
        1000,
        0,
    );
    let opts = FileOptions {
        snaplen: 60,
        ..FileOptions::default()
    };
    let file = write(dir.path(), "cut.pcap", &mut t, opts);
    let (summary, records) = analyze(&[file], &cfg(1));
    let r = find(&records, "10.0.0.10", 40005, "10.0.0.11", 80);
    assert_eq!(r["bytes_fwd"], 54 * 4 + 1054);
    assert_eq!(r["outcome"], "closed");
    assert_eq!(summary.capture.truncated_frames, 1);
    assert!(summary.capture.decode_problems.is_empty());
}

/// Key fields that do not depend on the link layer.
fn link_independent(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            subset(
                r,
                &[
                    "start",
                    "proto",
                    "src_ip",
                    "src_port",
                    "dst_ip",
                    "dst_port",
                    "packets_fwd",
                    "packets_rev",
                    "outcome",
                ],
            )
        })
        .collect()
}

fn untagged_ip_trace() -> Trace {
    let mut t = Trace::new();
    let c = ip("10.0.0.1");
    t.tcp_session(T0, &Conv::new(c, 40000, ip("10.0.0.2"), 80), 100, 3000);
    t.tcp_refused(T0 + S, &Conv::new(c, 40001, ip("10.0.0.3"), 81));
    t.udp_unreachable(T0 + 2 * S, &Conv::new(c, 40003, ip("10.0.0.6"), 161));
    t.tcp_session(
        T0 + 3 * S,
        &Conv::new(ip("2001:db8::1"), 40004, ip("2001:db8::2"), 443),
        10,
        10,
    );
    t
}

#[test]
fn pcapng_nanosecond_sll_sll2_and_raw_ip_give_the_same_flows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut base = untagged_ip_trace();
    let reference = {
        let f = write(dir.path(), "ref.pcap", &mut base, FileOptions::default());
        link_independent(&analyze(&[f], &cfg(1)).1)
    };
    assert_eq!(reference.len(), 4);
    let relink = |t: &Trace, f: &dyn Fn(&[u8]) -> Vec<u8>| Trace {
        frames: t.frames.iter().map(|(ts, fr)| (*ts, f(fr))).collect(),
    };
    let sll = |fr: &[u8]| {
        let mut h = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        h.extend_from_slice(&fr[12..14]);
        h.extend_from_slice(&fr[14..]);
        h
    };
    let sll2 = |fr: &[u8]| {
        let mut h = fr[12..14].to_vec();
        h.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        h.extend_from_slice(&fr[14..]);
        h
    };
    let raw = |fr: &[u8]| fr[14..].to_vec();
    let cases: Vec<(&str, Trace, FileOptions)> = vec![
        (
            "ng-ns.pcapng",
            base.clone(),
            FileOptions {
                format: Format::PcapNg,
                nanos: true,
                ..FileOptions::default()
            },
        ),
        (
            "ng-us.pcapng",
            base.clone(),
            FileOptions {
                format: Format::PcapNg,
                ..FileOptions::default()
            },
        ),
        (
            "ns.pcap",
            base.clone(),
            FileOptions {
                nanos: true,
                ..FileOptions::default()
            },
        ),
        (
            "sll.pcap",
            relink(&base, &sll),
            FileOptions {
                linktype: 113,
                ..FileOptions::default()
            },
        ),
        (
            "sll2.pcap",
            relink(&base, &sll2),
            FileOptions {
                linktype: 276,
                ..FileOptions::default()
            },
        ),
        (
            "raw.pcap",
            relink(&base, &raw),
            FileOptions {
                linktype: 101,
                ..FileOptions::default()
            },
        ),
    ];
    for (name, mut trace, opts) in cases {
        let f = write(dir.path(), name, &mut trace, opts);
        let (summary, records) = analyze(&[f], &cfg(2));
        assert_eq!(link_independent(&records), reference, "{name}");
        assert!(summary.capture.decode_problems.is_empty(), "{name}");
    }
}

#[test]
fn nanosecond_timestamps_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = Trace::new();
    t.udp_exchange(
        T0 + 123_456_789,
        &Conv::new(ip("10.0.0.1"), 1, ip("10.0.0.2"), 2),
        1,
        1,
    );
    let opts = FileOptions {
        format: Format::PcapNg,
        nanos: true,
        ..FileOptions::default()
    };
    let f = write(dir.path(), "ns.pcapng", &mut t, opts);
    let (_, records) = analyze(&[f], &cfg(1));
    assert_eq!(records[0]["start"], "2023-11-14T22:13:20.123456789Z");
    assert_eq!(records[0]["end"], "2023-11-14T22:13:20.124456789Z");
}

#[test]
fn several_files_are_merged_in_time_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut whole = known_trace();
    whole.sort();
    let single = write(dir.path(), "whole.pcap", &mut whole, FileOptions::default());
    let (_, expected) = analyze(&[single], &cfg(1));
    // Deal the frames alternately into two files: each alone is nonsense,
    // merged by time they are the original capture.
    let mut a = Trace::new();
    let mut b = Trace::new();
    for (i, (ts, f)) in whole.frames.iter().enumerate() {
        if i % 2 == 0 {
            a.push(*ts, f.clone());
        } else {
            b.push(*ts, f.clone());
        }
    }
    let fa = write(dir.path(), "a.pcap", &mut a, FileOptions::default());
    let fb = write(
        dir.path(),
        "b.pcapng",
        &mut b,
        FileOptions {
            format: Format::PcapNg,
            nanos: true,
            ..FileOptions::default()
        },
    );
    let (_, merged) = analyze(&[fb, fa], &cfg(2));
    let strip = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().map(|o| o.remove("end_reason"));
                r
            })
            .collect()
    };
    assert_eq!(strip(&merged), strip(&expected));
}

#[test]
fn truncated_file_is_reported_and_what_was_read_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = known_trace();
    let f = write(dir.path(), "cut.pcap", &mut t, FileOptions::default());
    let bytes = std::fs::read(&f).expect("read");
    std::fs::write(&f, &bytes[..bytes.len() - 20]).expect("truncate");
    let (summary, records) = analyze(&[f], &cfg(2));
    assert_eq!(summary.capture.frames, t.frames.len() as u64 - 1);
    assert_eq!(summary.capture.file_problems.len(), 1);
    assert!(
        summary.capture.file_problems[0].contains("truncated"),
        "{:?}",
        summary.capture.file_problems
    );
    // Every flow before the cut is there (the last frame was an ARP reply).
    assert_eq!(records.len(), 10);
}

#[test]
fn corrupt_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("junk.pcap");
    std::fs::write(&f, b"this is not a capture file at all").expect("write");
    let err = segwatch::capture::FileSource::open(&[&f])
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("junk.pcap"), "{err}");
}

#[test]
fn time_exceeded_is_its_own_icmp_flow_not_an_answer() {
    // Traceroute-style: a UDP probe, and a router's TTL-exceeded quoting it.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = Trace::new();
    let client = ip("10.0.0.1");
    let probe = Spec::new(
        client,
        ip("10.9.9.9"),
        L4::Udp {
            sport: 33434,
            dport: 33435,
        },
    );
    t.push(T0, probe.frame());
    let quote = probe.ip_datagram();
    let err = Spec::new(
        ip("10.0.0.254"),
        client,
        L4::Icmp {
            kind: 11,
            code: 0,
            rest: [0; 4],
        },
    )
    .payload(&quote);
    t.push(T0 + 1_000_000, err.frame());
    let f = write(dir.path(), "ttl.pcap", &mut t, FileOptions::default());
    let (summary, records) = analyze(&[f], &cfg(2));
    assert_eq!(records.len(), 2, "{records:#?}");
    let udp = find(&records, "10.0.0.1", 33434, "10.9.9.9", 33435);
    assert_eq!(udp["outcome"], "attempted");
    assert_eq!(udp["packets_rev"], 0);
    let icmp = find(&records, "10.0.0.254", 11, "10.0.0.1", 0);
    assert_eq!(icmp["proto"], "icmp");
    assert_eq!(summary.worker.icmp_errors_attributed, 0);
}

#[test]
fn pcapng_with_interfaces_of_different_link_types() {
    // Two taps merged into one file: Ethernet (µs) and raw IP (ns), as
    // `mergecap` makes; libpcap refuses such files, segwatch reads them.
    use segwatch::synth::pcap_file::CaptureWriter;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = Trace::new();
    let conv = Conv::new(ip("10.0.0.1"), 40000, ip("10.0.0.2"), 80);
    t.tcp_session(T0, &conv, 100, 3000);
    t.sort();
    let path = dir.path().join("two-links.pcapng");
    let file = std::fs::File::create(&path).expect("create");
    let opts = FileOptions {
        format: Format::PcapNg,
        ..FileOptions::default()
    };
    let mut w = CaptureWriter::new(file, opts).expect("writer");
    let raw = w.add_interface(101, true).expect("second interface");
    for (i, (ts, frame)) in t.frames.iter().enumerate() {
        if i % 2 == 0 {
            w.write(*ts + 7_000, frame).expect("write");
        } else {
            w.write_on(raw, true, *ts + 123, &frame[14..])
                .expect("write");
        }
    }
    drop(w);
    let (summary, records) = analyze(&[path], &cfg(2));
    assert_eq!(summary.capture.frames, t.frames.len() as u64);
    assert!(summary.capture.decode_problems.is_empty());
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["outcome"], "closed");
    assert_eq!(
        r["packets_fwd"].as_u64().unwrap_or(0) + r["packets_rev"].as_u64().unwrap_or(0),
        10
    );
    assert_eq!(r["start"], "2023-11-14T22:13:20.000007Z");
    assert_eq!(r["end"], "2023-11-14T22:13:20.009000123Z");
}

#[test]
fn truncated_pcapng_is_reported_and_what_was_read_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = known_trace();
    let opts = FileOptions {
        format: Format::PcapNg,
        nanos: true,
        ..FileOptions::default()
    };
    let f = write(dir.path(), "cut.pcapng", &mut t, opts);
    let bytes = std::fs::read(&f).expect("read");
    std::fs::write(&f, &bytes[..bytes.len() - 20]).expect("truncate");
    let (summary, records) = analyze(&[f], &cfg(1));
    assert_eq!(summary.capture.frames, t.frames.len() as u64 - 1);
    assert_eq!(
        summary.capture.file_problems.len(),
        1,
        "{:?}",
        summary.capture.file_problems
    );
    assert!(summary.capture.file_problems[0].contains("truncated"));
    assert_eq!(records.len(), 10);
}
