//! Per-packet costs of the packet path: decode, flow-table update, dispatch.
//! Run: cargo bench --bench packet_path

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use segwatch::decode::{Body, LinkType, decode, tcp_flags};
use segwatch::flow::{FlowKey, FlowTable, PacketFacts, Timeouts};
use segwatch::synth::frame::{L4, Spec};

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let tcp = Spec::new(
        [10, 0, 0, 1].into(),
        [10, 0, 0, 2].into(),
        L4::Tcp {
            sport: 40000,
            dport: 443,
            flags: tcp_flags::ACK | tcp_flags::PSH,
            seq: 1,
            ack: 1,
        },
    )
    .payload(&[0u8; 512]);
    let v6 = Spec::new(
        "2001:db8::1".parse().unwrap_or([0u8; 16].into()),
        "2001:db8::2".parse().unwrap_or([0u8; 16].into()),
        L4::Udp {
            sport: 5353,
            dport: 53,
        },
    )
    .payload(&[0u8; 64]);
    vec![
        ("ipv4_tcp", tcp.frame()),
        ("vlan_ipv4_tcp", tcp.clone().vlans(&[20]).frame()),
        ("ipv6_udp", v6.frame()),
    ]
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    for (name, f) in frames() {
        g.bench_function(name, |b| {
            b.iter(|| decode(LinkType::Ethernet, black_box(&f), f.len() as u32, 0))
        });
    }
    g.finish();
}

fn facts(ts: i64) -> PacketFacts {
    PacketFacts {
        ts_ns: ts,
        wire_len: 566,
        tcp_flags: tcp_flags::ACK,
        l4_payload_len: 512,
        icmp: None,
        icmp_error: None,
    }
}

fn bench_flow_table(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_table");
    g.throughput(Throughput::Elements(1));
    // 100,000 flows, packets spread over all of them (cache misses as in real traffic).
    let n = 100_000u32;
    let keys: Vec<_> = (0..n)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 | i);
            let d = decode(
                LinkType::Ethernet,
                &Spec::new(
                    ip.into(),
                    [198, 18, 0, 1].into(),
                    L4::Tcp {
                        sport: 1024 + (i % 50_000) as u16,
                        dport: 443,
                        flags: tcp_flags::ACK,
                        seq: 0,
                        ack: 0,
                    },
                )
                .frame(),
                60,
                0,
            )
            .map(|d| d.packet);
            match d {
                Ok(p) => match p.body {
                    Body::Ip(ip) => FlowKey::of_packet(p.vlans, &ip),
                    Body::Arp(_) => unreachable!(),
                },
                Err(e) => panic!("{e:?}"),
            }
        })
        .collect();
    let hasher = ahash::RandomState::new();
    let mut table = FlowTable::new(1_000_000, Timeouts::default(), hasher);
    let hashes: Vec<u64> = keys.iter().map(|(k, _)| table.hash(k)).collect();
    let mut ts = 0i64;
    for (i, (k, s)) in keys.iter().enumerate() {
        table.packet(hashes[i], k, *s, &facts(0), &mut |_, _| {});
    }
    let mut i = 0usize;
    g.bench_function("update_existing_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            ts += 1000;
            let (k, s) = &keys[i];
            table.packet(hashes[i], k, *s, &facts(ts), &mut |_, _| {});
        })
    });
    g.bench_function("insert_and_drain_10k", |b| {
        b.iter_batched(
            || FlowTable::new(1_000_000, Timeouts::default(), ahash::RandomState::new()),
            |mut t| {
                for (k, s) in keys.iter().take(10_000) {
                    let h = t.hash(k);
                    t.packet(h, k, *s, &facts(0), &mut |_, _| {});
                }
                t.drain(i64::MAX, &mut |f, _| {
                    black_box(f);
                });
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_flow_table);
criterion_main!(benches);
