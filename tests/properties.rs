//! Properties over arbitrary input: decoding, config parsing and baseline
//! parsing never panic, and the flow key is symmetric.

use std::path::Path;

use proptest::prelude::*;
use segwatch::baseline::model::{
    BeaconKey, Edge, HostBaseline, HourSlot, Mac, Proto, Service, ZoneBaseline, ZoneEdge,
};
use segwatch::baseline::{Baseline, show};
use segwatch::config::Config;
use segwatch::decode::{Body, LinkType, decode};
use segwatch::flow::{Endpoint, FlowKey};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256), dlt in prop::sample::select(vec![1, 113, 276, 101, 0, 228, 147])) {
        let _ = decode(LinkType::from_dlt(dlt), &data, data.len() as u32, 0);
    }

    #[test]
    fn decode_of_ethernet_ip_prefixes_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..120),
        ether_type in prop::sample::select(vec![0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x0806]),
        version in prop::sample::select(vec![0x45u8, 0x46, 0x4f, 0x60, 0x41]),
    ) {
        // Frames that pass the link layer, so the fuzzing reaches IP and transport.
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.push(version);
        f.extend_from_slice(&body);
        if let Ok(d) = decode(LinkType::Ethernet, &f, f.len() as u32, 0)
            && let Body::Ip(ip) = d.packet.body
        {
            let (k, _) = FlowKey::for_ip(d.packet.vlans, &ip);
            prop_assert!(k.lo.ip == ip.src || k.hi.ip == ip.src || ip.quoted.is_some());
        }
    }

    #[test]
    fn config_parsing_never_panics(text in "\\PC{0,200}") {
        let _ = Config::parse(&text, Path::new("fuzz.toml"));
    }

    #[test]
    fn baseline_parsing_never_panics(text in "\\PC{0,300}") {
        use_baseline(&text);
    }

    #[test]
    fn mutated_baselines_never_panic(at in any::<prop::sample::Index>(), cut in 0usize..8, with in "\\PC{0,6}") {
        // A valid file with a few characters replaced: reaches the fields.
        let valid = valid_baseline();
        let chars: Vec<char> = valid.chars().collect();
        let i = at.index(chars.len());
        let end = (i + cut).min(chars.len());
        let text: String = chars[..i].iter().copied().chain(with.chars()).chain(chars[end..].iter().copied()).collect();
        use_baseline(&text);
    }

    #[test]
    fn baselines_with_extreme_numbers_never_panic(
        which in any::<prop::sample::Index>(),
        number in prop_oneof![
            Just("18446744073709551615".to_string()),
            Just("9223372036854775807".to_string()),
            Just("-9223372036854775808".to_string()),
            Just("0".to_string()),
            Just("-1".to_string()),
            Just("1e400".to_string()),
            Just("99999999999999999999".to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
        ],
    ) {
        // Every run of digits (counts, ports, limits, timestamps' parts) is a
        // place a corrupt or hand-edited file can hold any number.
        let valid = valid_baseline();
        let runs = digit_runs(&valid);
        let (a, b) = runs[which.index(runs.len())];
        use_baseline(&format!("{}{number}{}", &valid[..a], &valid[b..]));
    }

    #[test]
    fn flow_key_is_symmetric(a in any::<[u8; 4]>(), b in any::<[u8; 4]>(), pa: u16, pb: u16, proto: u8) {
        let ea = Endpoint { ip: a.into(), port: pa };
        let eb = Endpoint { ip: b.into(), port: pb };
        let (k1, s1) = FlowKey::new(Default::default(), proto, ea, eb);
        let (k2, s2) = FlowKey::new(Default::default(), proto, eb, ea);
        prop_assert_eq!(k1, k2);
        if ea != eb {
            prop_assert_eq!(s1, s2.other());
        }
    }
}

/// Parse, and when it loads, do what `baseline show` and the detectors do.
fn use_baseline(text: &str) {
    if let Ok(b) = Baseline::parse(text, Path::new("prop.json")) {
        let _ = show::render(&b, 8);
        for h in b.hosts.values() {
            for d in [
                &h.bytes_out_per_hour,
                &h.external_bytes_per_hour,
                &h.fanout_hosts,
                &h.fanout_ports,
            ] {
                let _ = (d.robust(), d.quantile(0.99), d.count());
            }
        }
    }
}

/// A small baseline with every kind of field filled in, as its file text.
fn valid_baseline() -> String {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    let mut b = Baseline::default();
    b.learned.first_packet.0 = 1_772_409_600_000_000_000;
    b.learned.last_packet.0 = 1_772_582_400_000_000_000;
    b.learned.flows = 1234;
    b.learned.sources.push("learn.pcap".into());
    let mut h = HostBaseline {
        zone: "corp".into(),
        flows_out: 40,
        flows_in: 2,
        ..HostBaseline::default()
    };
    h.peers.insert(
        Edge {
            peer: ip("10.0.0.2"),
            proto: Proto(6),
            port: 445,
        },
        7,
    );
    h.services.insert(
        Service {
            proto: Proto(17),
            port: 53,
        },
        3,
    );
    for v in [10, 2_000, 2_100, 90_000] {
        h.bytes_out_per_hour.record(v);
        h.external_bytes_per_hour.record(v / 2);
        h.fanout_hosts.record(v % 7);
        h.fanout_ports.record(v % 5);
    }
    b.hosts.insert(ip("10.0.0.1"), h);
    let mut z = ZoneBaseline {
        hosts: 1,
        external_flows: 9,
        ..ZoneBaseline::default()
    };
    z.edges.insert(
        ZoneEdge {
            to: "external".into(),
            proto: Proto(6),
            port: 443,
        },
        9,
    );
    z.external.insert(ip("203.0.113.7"));
    z.hours.push(HourSlot {
        hour_of_week: 10,
        flows: vec![5, 6],
        packets: vec![50, 60],
        bytes: vec![500, 600],
    });
    b.zones.insert("corp".into(), z);
    b.arp.insert(
        "10.0.0.1".parse().expect("ip"),
        [Mac([2, 0, 0, 0, 0, 1])].into_iter().collect(),
    );
    b.beacons.insert(BeaconKey {
        src: ip("10.0.0.1"),
        dst: ip("203.0.113.7"),
        proto: Proto(6),
        port: 443,
    });
    serde_json::to_string_pretty(&b).expect("serialises")
}

/// Byte ranges of the runs of ASCII digits in `text`.
fn digit_runs(text: &str) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (c.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    runs
}
