//! Helpers shared by the integration tests: write generated traces, run the
//! pipeline, and read flow records back as JSON.
#![allow(dead_code)]

pub mod netns;
pub mod pki;

use std::path::{Path, PathBuf};

use segwatch::capture::FileSource;
use segwatch::pipeline::{self, PipelineConfig, RunHooks};
use segwatch::summary::RunSummary;
use segwatch::synth::pcap_file::FileOptions;
use segwatch::synth::trace::Trace;
use serde_json::Value;

pub fn write(dir: &Path, name: &str, trace: &mut Trace, opts: FileOptions) -> PathBuf {
    let p = dir.join(name);
    trace.write(&p, opts).expect("write trace");
    p
}

/// Run the pipeline on files; return the summary and the flow records sorted
/// by (start, src, dst) so runs can be compared.
pub fn analyze(files: &[PathBuf], cfg: &PipelineConfig) -> (RunSummary, Vec<Value>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("flows.jsonl");
    let mut src = FileSource::open(files).expect("open");
    let summary = pipeline::run(&mut src, cfg, Some(&out), RunHooks::default()).expect("run");
    (summary, read_records(&out))
}

pub fn read_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read flows");
    let mut v: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    v.sort_by_key(|r| {
        (
            r["start"].as_str().unwrap_or("").to_string(),
            r["src_ip"].as_str().unwrap_or("").to_string(),
            r["src_port"].as_u64(),
            r["dst_ip"].as_str().unwrap_or("").to_string(),
            r["dst_port"].as_u64(),
            r["proto"].as_str().unwrap_or("").to_string(),
        )
    });
    v
}

pub fn cfg(workers: usize) -> PipelineConfig {
    PipelineConfig {
        workers,
        ..PipelineConfig::default()
    }
}

/// The record whose initiator is `src_ip:src_port` towards `dst_ip:dst_port`.
pub fn find<'a>(records: &'a [Value], src: &str, sport: u64, dst: &str, dport: u64) -> &'a Value {
    records
        .iter()
        .find(|r| {
            r["src_ip"] == src
                && r["src_port"] == sport
                && r["dst_ip"] == dst
                && r["dst_port"] == dport
        })
        .unwrap_or_else(|| panic!("no record {src}:{sport} -> {dst}:{dport} in {records:#?}"))
}

/// Directory of the shared real captures, when present.
pub fn shared_pcaps() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    p.is_dir().then_some(p)
}

/// Whether a program is on the PATH.
pub fn has(program: &str) -> bool {
    std::process::Command::new("which")
        .arg(program)
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Send `signal` (`"TERM"`, `"INT"`) to a running segwatch and wait up to
/// `limit` for it to exit; its status and what it wrote on stderr (when
/// piped). Kills it and panics if it does not stop in time.
pub fn stop(
    child: &mut std::process::Child,
    signal: &str,
    limit: std::time::Duration,
) -> (std::process::ExitStatus, String) {
    let _ = std::process::Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status();
    let start = std::time::Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("segwatch did not stop within {limit:?} of SIG{signal}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status, err)
}
