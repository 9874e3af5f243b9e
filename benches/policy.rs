//! Cost of segmentation checking per finished flow with a large policy
//! (1,000 zones, 1,000 rules): zone lookup alone, the full judgement, and the
//! judgement plus tallying as workers do it.
//! Run: cargo bench --bench policy

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use segwatch::config::Config;
use segwatch::flow::{EndReason, FlowRecord, Outcome};
use segwatch::segmentation::SegTally;
use segwatch::synth::SplitMix;
use segwatch::synth::policy::large_policy;

fn flows(n: usize) -> Vec<FlowRecord> {
    let mut rng = SplitMix(7);
    (0..n)
        .map(|i| {
            let src = Ipv4Addr::from(0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff));
            let dst = Ipv4Addr::from(0xc612_0000 | (rng.next() % 5000) as u32);
            FlowRecord {
                start: i as i64 * 1_000_000,
                end: i as i64 * 1_000_000 + 500_000,
                proto: 6,
                src_ip: IpAddr::V4(src),
                src_port: 40_000,
                dst_ip: IpAddr::V4(dst),
                dst_port: [443, 80, 22, 445, 8443, 3389][i % 6],
                vlan: None,
                inner_vlan: None,
                packets_fwd: 5,
                packets_rev: 5,
                bytes_fwd: 800,
                bytes_rev: 4000,
                outcome: Outcome::Closed,
                tcp_flags_fwd: None,
                tcp_flags_rev: None,
                odd_tcp_flags: None,
                handshake: Some(true),
                end_reason: EndReason::Timeout,
            }
        })
        .collect()
}

fn bench_policy(c: &mut Criterion) {
    let cfg = Config::parse(&large_policy(1000, 1000), Path::new("bench.toml"))
        .unwrap_or_else(|e| panic!("generated policy is invalid: {e}"));
    let policy = cfg.policy;
    let flows = flows(4096);
    let mut g = c.benchmark_group("policy_1000_zones_1000_rules");
    g.throughput(Throughput::Elements(flows.len() as u64));
    g.bench_function("zone_lookup_both_ends", |b| {
        b.iter(|| {
            for f in &flows {
                black_box(policy.zone_of(f.src_ip, None));
                black_box(policy.zone_of(f.dst_ip, None));
            }
        })
    });
    g.bench_function("judge", |b| {
        b.iter(|| {
            for f in &flows {
                black_box(policy.judge(black_box(f)));
            }
        })
    });
    g.bench_function("judge_and_tally", |b| {
        let mut tally = SegTally::new(&policy);
        b.iter(|| {
            for f in &flows {
                black_box(tally.judge(&policy, black_box(f)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_policy);
criterion_main!(benches);
