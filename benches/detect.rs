//! Anomaly detection per finished flow, and the memory of a baseline.
//!
//! - A baseline of 10,000 busy office hosts (20 internal peers and 4
//!   services each, every distribution with 24 buckets, 5,000 external
//!   destinations per zone): its resident memory (RSS before and after it
//!   is built, printed once) and its size as JSON.
//! - Detectors on 4,096 flows between those hosts, with the baseline and
//!   without one.
//!
//! Run: cargo bench --bench detect

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use segwatch::baseline::Baseline;
use segwatch::baseline::model::{Edge, HostBaseline, Proto, Service, ZoneBaseline, ZoneEdge};
use segwatch::detect::Detectors;
use segwatch::detect::network::Networks;
use segwatch::detect::settings::DetectSettings;
use segwatch::flow::{EndReason, FlowRecord, Outcome};
use segwatch::synth::SplitMix;

const HOSTS: u32 = 10_000;

fn host_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i))
}

fn baseline() -> Baseline {
    let mut rng = SplitMix(3);
    let mut b = Baseline::default();
    for i in 0..HOSTS {
        let mut h = HostBaseline {
            zone: "internal".into(),
            ..HostBaseline::default()
        };
        for _ in 0..20 {
            let peer = host_ip((rng.next() % u64::from(HOSTS)) as u32);
            h.peers.insert(
                Edge {
                    peer,
                    proto: Proto(6),
                    port: [445, 443, 22, 3389][(rng.next() % 4) as usize],
                },
                rng.next() % 100,
            );
        }
        for port in [22u16, 80, 443, 445, 8443, 3389] {
            h.services.insert(
                Service {
                    proto: Proto(6),
                    port,
                },
                10,
            );
        }
        for k in 0..24u64 {
            h.bytes_out_per_hour.record(1_000 * (k + 1) * (k + 1));
            h.external_bytes_per_hour.record(500 * (k + 1) * (k + 1));
            h.fanout_hosts.record(k);
            h.fanout_ports.record(k);
        }
        b.hosts.insert(host_ip(i), h);
    }
    let mut z = ZoneBaseline::default();
    // Every service the flows below use is known between the zones: the
    // common case, where nothing is reported.
    for to in ["internal", "external"] {
        for port in [443u16, 80, 22, 445, 8443, 3389] {
            z.edges.insert(
                ZoneEdge {
                    to: to.into(),
                    proto: Proto(6),
                    port,
                },
                100,
            );
        }
    }
    for i in 0..5_000u32 {
        z.external
            .insert(IpAddr::V4(Ipv4Addr::from(0xc612_0000 | i)));
    }
    b.zones.insert("internal".into(), z);
    b
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn flows(n: usize) -> Vec<FlowRecord> {
    let mut rng = SplitMix(7);
    (0..n)
        .map(|i| {
            let src = host_ip((rng.next() % u64::from(HOSTS)) as u32);
            let dst = if i % 2 == 0 {
                host_ip((rng.next() % u64::from(HOSTS)) as u32)
            } else {
                IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (rng.next() % 6000) as u32))
            };
            FlowRecord {
                start: i as i64 * 1_000_000,
                end: i as i64 * 1_000_000 + 500_000,
                proto: 6,
                src_ip: src,
                src_port: 40_000,
                dst_ip: dst,
                dst_port: [443, 80, 22, 445, 8443, 3389][i % 6],
                vlan: None,
                inner_vlan: None,
                packets_fwd: 5,
                packets_rev: 5,
                bytes_fwd: 800,
                bytes_rev: 4000,
                outcome: if i % 7 == 0 {
                    Outcome::Attempted
                } else {
                    Outcome::Closed
                },
                tcp_flags_fwd: None,
                tcp_flags_rev: None,
                odd_tcp_flags: None,
                handshake: Some(true),
                end_reason: EndReason::Timeout,
            }
        })
        .collect()
}

fn bench_detect(c: &mut Criterion) {
    let before = rss_kib();
    let b = baseline();
    let after = rss_kib();
    let json = serde_json::to_vec(&b).map_or(0, |v| v.len());
    eprintln!(
        "baseline of {HOSTS} hosts: {} MiB resident, {:.1} MiB as JSON",
        (after.saturating_sub(before)) / 1024,
        json as f64 / (1 << 20) as f64
    );
    let flows = flows(4096);
    let mut g = c.benchmark_group("detectors");
    g.throughput(Throughput::Elements(flows.len() as u64));
    g.bench_function("without_baseline", |bench| {
        let mut d = Detectors::new(Networks::new(None), DetectSettings::default(), None);
        bench.iter(|| {
            d.flows(black_box(&flows));
            black_box(d.take());
        });
    });
    g.bench_function("with_baseline_10000_hosts", |bench| {
        let mut d = Detectors::new(
            Networks::new(None),
            DetectSettings::default(),
            Some(b.clone()),
        );
        bench.iter(|| {
            d.flows(black_box(&flows));
            black_box(d.take());
        });
    });
    g.finish();
}

criterion_group!(benches, bench_detect);
criterion_main!(benches);
