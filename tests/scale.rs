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

/// `--memory-mib` on a flood of 300,000 spoofed sources, every flow a
/// violation of a CDE policy with events written and every detector on:
/// the flow table is sized to fit, the process's peak resident memory
/// stays under the ceiling, and every violation is still in an event.
#[test]
fn a_memory_ceiling_holds_under_a_violation_flood() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 300_000u32;
    let file = dir.path().join("flood.pcap");
    write_syn_flood(&file, n, 100_000, 1_700_000_000_000_000_000).expect("write");
    let cfg = dir.path().join("cde.toml");
    std::fs::write(
        &cfg,
        "[[zone]]\nname = \"cde\"\ncidrs = [\"198.18.0.0/24\"]\npci = \"cde\"\n[policy]\nmax_events_per_source = 100000\n",
    )
    .expect("config");
    let (events, summary) = (dir.path().join("ev.jsonl"), dir.path().join("s.json"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segwatch"))
        .args([
            "analyze",
            "--quiet",
            "--max-flows",
            "2000000",
            "--memory-mib",
            "96",
        ])
        .arg(&file)
        .arg("-c")
        .arg(&cfg)
        .arg("--events")
        .arg(&events)
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    let peak = s["peak_resident_bytes"].as_u64().expect("peak");
    assert!(peak <= 96 << 20, "peak {} MiB", peak >> 20);
    let active = s["flow_table"]["peak_active"].as_u64().expect("active");
    assert!(
        active < 100_000,
        "the table was sized to the ceiling: {active}"
    );
    assert!(s["flow_table"]["evicted"].as_u64() >= Some(u64::from(n) - active));
    let counted: u64 = std::fs::read_to_string(&events)
        .expect("events")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| e["count"].as_u64().unwrap_or(0))
        .sum();
    // Random sources include multicast and link-local ones, not judged.
    let denied = s["segmentation"]["denied_flows"].as_u64().expect("denied");
    assert!(denied > u64::from(n) * 9 / 10, "{denied}");
    assert_eq!(counted, denied, "every violation is in an event");
}
