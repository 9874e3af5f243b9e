//! The benchmark capture: many interleaved flows with realistic packet sizes,
//! generated in time order with a scheduler (memory grows with concurrent
//! flows, not with the file).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufWriter};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::SplitMix;
use super::frame::{L4, Spec};
use super::pcap_file::{CaptureWriter, FileOptions};
use crate::decode::tcp_flags::{ACK, FIN, PSH, SYN};

/// Shape of the benchmark capture.
#[derive(Clone, Copy, Debug)]
pub struct BenchShape {
    pub flows: u32,
    /// Packets per flow (at least 6 for TCP: handshake, data, FIN exchange).
    pub packets_per_flow: u32,
    /// Start-to-start gap between flows.
    pub flow_gap_ns: i64,
    /// Gap between packets of one flow.
    pub packet_gap_ns: i64,
    pub seed: u64,
    /// Distinct client hosts (10.0.0.1 up); 0: a random address in
    /// 10.0.0.0/8 per flow (nearly every flow from a new host).
    pub clients: u32,
}

impl Default for BenchShape {
    /// 200,000 flows × 10 packets = 2,000,000 packets, about 45,000 flows active at once.
    fn default() -> Self {
        BenchShape {
            flows: 200_000,
            packets_per_flow: 10,
            flow_gap_ns: 10_000,
            packet_gap_ns: 50_000_000,
            seed: 0x5e9_0a7c,
            clients: 0,
        }
    }
}

/// Counts of what was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchWritten {
    pub packets: u64,
    pub flows: u64,
    pub bytes: u64,
}

struct FlowPlan {
    client: Ipv4Addr,
    server: Ipv4Addr,
    cport: u16,
    sport: u16,
    udp: bool,
    sizes: [u16; 4],
}

fn plan(i: u32, rng: &mut SplitMix, clients: u32) -> FlowPlan {
    let c = rng.next() as u32;
    let s = (rng.next() % 5000) as u32;
    let c = if clients == 0 {
        c & 0x00ff_ffff
    } else {
        1 + c % clients
    };
    FlowPlan {
        client: Ipv4Addr::from(0x0a00_0000 | c),
        server: Ipv4Addr::from(0xc612_0000 | s),
        cport: 1024 + (i % 60_000) as u16,
        sport: [443, 80, 53, 445, 22, 8443][(rng.next() % 6) as usize],
        udp: i.is_multiple_of(10),
        sizes: [
            (rng.next() % 400) as u16,
            (rng.next() % 1400) as u16,
            (rng.next() % 1400) as u16,
            (rng.next() % 200) as u16,
        ],
    }
}

/// The frame for step `k` of flow `p`.
fn frame(p: &FlowPlan, k: u32, n: u32) -> Vec<u8> {
    let client = IpAddr::V4(p.client);
    let server = IpAddr::V4(p.server);
    if p.udp {
        let from_client = k.is_multiple_of(2);
        let (s, d, sp, dp) = if from_client {
            (client, server, p.cport, p.sport)
        } else {
            (server, client, p.sport, p.cport)
        };
        let len = usize::from(p.sizes[(k % 4) as usize]);
        return Spec::new(
            s,
            d,
            L4::Udp {
                sport: sp,
                dport: dp,
            },
        )
        .payload(&vec![0x42; len])
        .frame();
    }
    // TCP: SYN, SYN-ACK, ACK, data alternating, FIN, FIN-ACK.
    let (from_client, flags, len) = match k {
        0 => (true, SYN, 0),
        1 => (false, SYN | ACK, 0),
        2 => (true, ACK, 0),
        k if k == n - 2 => (true, FIN | ACK, 0),
        k if k == n - 1 => (false, FIN | ACK, 0),
        k => (
            k % 2 == 1,
            ACK | PSH,
            usize::from(p.sizes[(k % 4) as usize]),
        ),
    };
    let (s, d, sp, dp) = if from_client {
        (client, server, p.cport, p.sport)
    } else {
        (server, client, p.sport, p.cport)
    };
    Spec::new(
        s,
        d,
        L4::Tcp {
            sport: sp,
            dport: dp,
            flags,
            seq: k,
            ack: u32::from(flags & ACK != 0),
        },
    )
    .payload(&vec![0x42; len])
    .frame()
}

/// Write the benchmark capture to `path`.
pub fn write_bench(path: &Path, shape: BenchShape, start_ns: i64) -> io::Result<BenchWritten> {
    let n = shape.packets_per_flow.max(6);
    let file = std::fs::File::create(path)?;
    let mut w = CaptureWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        FileOptions::default(),
    )?;
    let mut rng = SplitMix(shape.seed);
    let mut plans: Vec<Option<FlowPlan>> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(i64, u32, u32)>> = BinaryHeap::new();
    let mut next_flow: u32 = 0;
    let mut out = BenchWritten::default();
    loop {
        let next_start = start_ns + i64::from(next_flow) * shape.flow_gap_ns;
        let take_start = next_flow < shape.flows
            && heap
                .peek()
                .is_none_or(|Reverse((t, _, _))| next_start <= *t);
        if take_start {
            plans.push(Some(plan(next_flow, &mut rng, shape.clients)));
            heap.push(Reverse((next_start, next_flow, 0)));
            next_flow += 1;
            out.flows += 1;
            continue;
        }
        let Some(Reverse((t, id, k))) = heap.pop() else {
            break;
        };
        let Some(p) = plans[id as usize].as_ref() else {
            continue;
        };
        let f = frame(p, k, n);
        out.bytes += f.len() as u64;
        w.write(t, &f)?;
        out.packets += 1;
        if k + 1 < n {
            // Small deterministic jitter keeps flows from moving in lockstep.
            let jitter = i64::from(id % 7) * 1_000;
            heap.push(Reverse((t + shape.packet_gap_ns + jitter, id, k + 1)));
        } else {
            plans[id as usize] = None;
        }
    }
    std::io::Write::flush(&mut w.into_inner())?;
    Ok(out)
}

/// Write a SYN flood: `packets` SYNs from random spoofed sources to one victim
/// (198.18.0.10:80), `rate` per second. Every SYN is its own half-open flow.
pub fn write_syn_flood(
    path: &Path,
    packets: u32,
    rate: u32,
    start_ns: i64,
) -> io::Result<BenchWritten> {
    let file = std::fs::File::create(path)?;
    let mut w = CaptureWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        FileOptions::default(),
    )?;
    let mut rng = SplitMix(7);
    let victim = IpAddr::from([198, 18, 0, 10]);
    let gap = 1_000_000_000 / i64::from(rate.max(1));
    let mut out = BenchWritten::default();
    for i in 0..packets {
        let src = Ipv4Addr::from(rng.next() as u32);
        let f = Spec::new(
            src.into(),
            victim,
            L4::Tcp {
                sport: (rng.next() % 60_000) as u16 + 1024,
                dport: 80,
                flags: SYN,
                seq: i,
                ack: 0,
            },
        )
        .frame();
        w.write(start_ns + i64::from(i) * gap, &f)?;
        out.packets += 1;
        out.flows += 1;
        out.bytes += f.len() as u64;
    }
    std::io::Write::flush(&mut w.into_inner())?;
    Ok(out)
}
