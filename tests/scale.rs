//! Determinism across worker counts, and bounded memory under a SYN flood.

mod common;

use common::{analyze, cfg, read_records};
use segwatch::capture::FileSource;
use segwatch::pipeline::{self, PipelineConfig, RunHooks};
use segwatch::synth::bench::{BenchShape, write_bench, write_syn_flood};

#[test]
fn one_worker_or_eight_give_the_same_flow_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("many.pcap");
    let shape = BenchShape {
        flows: 20_000,
        packets_per_flow: 8,
        flow_gap_ns: 200_000,
        packet_gap_ns: 300_000_000,
        ..BenchShape::default()
    };
    let written = write_bench(&file, shape, 1_700_000_000_000_000_000).expect("bench file");
    assert_eq!(written.packets, 160_000);
    // Idle timeouts must split some flows for the test to cover expiry.
    let mut small_timeouts = cfg(1);
    small_timeouts.timeouts = segwatch::flow::Timeouts::from_secs(1, 1, 1, 1, 1, 1);
    let (s1, one) = analyze(std::slice::from_ref(&file), &small_timeouts);
    let mut eight_cfg = small_timeouts.clone();
    eight_cfg.workers = 8;
    let (s8, eight) = analyze(std::slice::from_ref(&file), &eight_cfg);
    assert_eq!(one.len(), 20_000);
    assert_eq!(one, eight);
    assert_eq!(s1.flows.flows, s8.flows.flows);
    assert_eq!(s1.flows.by_proto_outcome, s8.flows.by_proto_outcome);
    assert!(s1.table.expired > 0);
    let (_, default_one) = analyze(std::slice::from_ref(&file), &cfg(1));
    let (_, default_three) = analyze(std::slice::from_ref(&file), &cfg(3));
    assert_eq!(default_one, default_three);
}

#[test]
fn syn_flood_from_random_sources_stays_under_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 200_000u32;
    let file = dir.path().join("flood.pcap");
    write_syn_flood(&file, n, 100_000, 1_700_000_000_000_000_000).expect("write");
    let cap = 20_000;
    let config = PipelineConfig {
        workers: 2,
        max_flows: cap,
        ..PipelineConfig::default()
    };
    let out = dir.path().join("flows.jsonl");
    let mut src = FileSource::open(&[&file]).expect("open");
    let s = pipeline::run(&mut src, &config, Some(&out), RunHooks::default()).expect("run");
    assert!(
        s.table.peak_active <= cap as u64,
        "peak {}",
        s.table.peak_active
    );
    assert!(s.table.evicted >= u64::from(n) - cap as u64 - 100);
    // Nothing is lost: every SYN is in a record, evicted or not.
    let records = read_records(&out);
    let packets: u64 = records
        .iter()
        .map(|r| r["packets_fwd"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(packets, u64::from(n));
    assert!(records.iter().all(|r| r["outcome"] == "attempted"));
}
