//! Baselines and anomaly detection through the real binary: the generated
//! scenario (two days to learn from, then a morning with one injected case
//! of every detector's kind) must yield each injected case and nothing
//! else, the same morning without them must yield nothing, and the labelled
//! real captures in `../shared/pcaps` (when present) must be detected.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use segwatch::synth::scenario;
use serde_json::Value;

fn segwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segwatch"))
        .args(args)
        .output()
        .expect("run segwatch")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The scenario in a temporary directory, with its baseline learned.
struct Scenario {
    dir: tempfile::TempDir,
}

impl Scenario {
    fn new() -> Scenario {
        let dir = tempfile::tempdir().expect("tempdir");
        scenario::write(dir.path()).expect("write scenario");
        let sc = Scenario { dir };
        let out = segwatch(&[
            "learn",
            s(&sc.path("learn.pcap")),
            "-c",
            s(&sc.path("segwatch.toml")),
            "-o",
            s(&sc.path("base.json")),
            "-q",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        sc
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Anomaly events of `analyze FILE` with the baseline and extra args.
    fn detect(&self, file: &str, extra: &[&str]) -> Vec<Value> {
        let ev = self.path(&format!("{file}.events.jsonl"));
        let (pcap, cfg, base) = (
            self.path(file),
            self.path("segwatch.toml"),
            self.path("base.json"),
        );
        let mut args = vec![
            "analyze",
            s(&pcap),
            "-c",
            s(&cfg),
            "--baseline",
            s(&base),
            "-q",
            "--events",
            s(&ev),
        ];
        args.extend_from_slice(extra);
        let out = segwatch(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        anomalies(&ev)
    }
}

fn anomalies(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .filter(|e| e["kind"] == "anomaly")
        .collect()
}

/// (detector, who): the source address, or the zone for zone-level findings,
/// or the target for floods (many sources).
fn found(events: &[Value]) -> BTreeSet<(String, String)> {
    events
        .iter()
        .map(|e| {
            let who = e["src_ip"]
                .as_str()
                .or(e["src_zone"].as_str())
                .or(e["dst_ip"].as_str())
                .unwrap_or("?");
            (
                e["detector"].as_str().unwrap_or("?").to_string(),
                who.to_string(),
            )
        })
        .collect()
}

#[test]
fn every_injected_case_is_found_and_nothing_else() {
    let sc = Scenario::new();
    let events = sc.detect("detect.pcap", &[]);
    let expected: BTreeSet<(String, String)> = scenario::INJECTED
        .iter()
        .map(|(d, who, _)| (d.to_string(), who.to_string()))
        .collect();
    assert_eq!(found(&events), expected, "{events:#?}");
    for e in &events {
        for field in ["timestamp", "detector", "severity", "score", "explanation"] {
            assert!(!e[field].is_null(), "{field} missing in {e}");
        }
        assert!(
            e["observed"].is_object() && e["baseline"].is_object(),
            "{e}"
        );
        assert!(
            e["explanation"].as_str().is_some_and(|x| x.len() > 40),
            "{e}"
        );
    }
    // The CDE breach and the gateway impersonation rank highest.
    let high: BTreeSet<_> = events
        .iter()
        .filter(|e| e["severity"] == "high")
        .map(|e| e["detector"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        high,
        BTreeSet::from(["new_peer", "arp_spoof"]),
        "{events:#?}"
    );
    let upload = events
        .iter()
        .find(|e| e["detector"] == "volume" && e["src_ip"] == "10.10.1.29")
        .expect("upload");
    assert!(
        upload["observed"]["bytes"]
            .as_u64()
            .is_some_and(|b| b > 5_000_000)
    );
    assert!(
        upload["baseline"]["median"]
            .as_f64()
            .is_some_and(|m| m < 100_000.0)
    );
}

#[test]
fn the_benign_morning_raises_no_alert() {
    let sc = Scenario::new();
    let events = sc.detect("detect-benign.pcap", &[]);
    assert!(events.is_empty(), "{events:#?}");
}

#[test]
fn findings_do_not_depend_on_the_worker_count() {
    let sc = Scenario::new();
    let one = found(&sc.detect("detect.pcap", &["--workers", "1"]));
    let four = found(&sc.detect("detect.pcap", &["--workers", "4"]));
    assert_eq!(one, four);
}

#[test]
fn allowlist_and_severity_floor_tune_without_code() {
    let sc = Scenario::new();
    let cfg = format!(
        "{}\n[detect]\nmin_severity = \"medium\"\n\n[[allow]]\ndetectors = [\"beacon\"]\nsrc = [\"10.10.1.17\"]\nwhy = \"test: the updater pilot\"\n\n[[allow]]\nsrc_zones = [\"corp\"]\ndetectors = [\"tcp_flags\"]\nwhy = \"test: the red team\"\n",
        scenario::CONFIG
    );
    std::fs::write(sc.path("segwatch.toml"), cfg).expect("config");
    let summary = sc.path("summary.json");
    let events = sc.detect("detect.pcap", &["--summary-json", s(&summary)]);
    let got = found(&events);
    assert!(
        !got.iter().any(|(d, _)| d == "beacon" || d == "tcp_flags"),
        "{got:?}"
    );
    assert!(
        got.contains(&("scan".into(), "10.10.1.66".into())),
        "{got:?}"
    );
    assert!(events.iter().all(|e| e["severity"] != "low"), "{events:#?}");
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("json");
    assert!(
        j["anomalies"]["allowlisted"]
            .as_u64()
            .is_some_and(|n| n >= 2),
        "{j}"
    );

    // An unknown detector name is an error naming the line.
    std::fs::write(
        sc.path("bad.toml"),
        "[[allow]]\ndetectors = [\"scann\"]\nwhy = \"x\"\n",
    )
    .expect("config");
    let out = segwatch(&["check-config", s(&sc.path("bad.toml"))]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml:2:") && err.contains("unknown detector"),
        "{err}"
    );
}

#[test]
fn baselines_extend_reset_show_and_reject_bad_files() {
    let sc = Scenario::new();
    let read = |p: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
    };
    let base = sc.path("base.json");
    let learned = read(&base)["learned"]["flows"].as_u64().expect("flows");
    assert!(learned > 20_000, "{learned}");
    assert_eq!(read(&base)["version"], 1);

    let cfg = sc.path("segwatch.toml");
    let more = sc.path("detect-benign.pcap");
    let out = segwatch(&[
        "learn",
        s(&more),
        "-c",
        s(&cfg),
        "-o",
        s(&base),
        "--extend",
        "-q",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let extended = read(&base)["learned"]["flows"].as_u64().expect("flows");
    assert!(extended > learned, "{extended} vs {learned}");
    let out = segwatch(&["learn", s(&more), "-c", s(&cfg), "-o", s(&base), "-q"]);
    assert!(out.status.success());
    assert_eq!(
        read(&base)["learned"]["flows"].as_u64(),
        Some(extended - learned)
    );
    assert!(!sc.path("base.json.partial").exists());

    let out = segwatch(&["baseline", "show", s(&base), "--hosts", "3"]);
    assert!(out.status.success());
    let shown = text(&out.stdout);
    assert!(
        shown.contains("corp") && shown.contains("hosts (busiest 3)"),
        "{shown}"
    );

    // Corrupt and future baselines are refused with the file, line and a fix.
    let bad = sc.path("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"schema\": \"segwatch-baseline\",\n  \"version\": 1,\n  \"learned\": [\n",
    )
    .expect("write");
    let out = segwatch(&["analyze", s(&more), "--baseline", s(&bad), "-q"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("bad.json:") && err.contains("fix:"), "{err}");
    std::fs::write(&bad, "{\"schema\": \"segwatch-baseline\", \"version\": 7}").expect("write");
    let err = text(&segwatch(&["baseline", "show", s(&bad)]).stderr);
    assert!(err.contains("newer segwatch"), "{err}");
}

fn shared_pcaps() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    p.is_dir().then_some(p)
}

/// Anomalies of `analyze` on a shared capture without a baseline.
fn detect_shared(file: &Path, config: Option<&Path>) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = dir.path().join("ev.jsonl");
    let mut args = vec!["analyze", s(file), "-q", "--events", s(&ev)];
    if let Some(c) = config {
        args.extend(["-c", s(c)]);
    }
    let out = segwatch(&args);
    assert!(
        out.status.code().is_some_and(|c| c == 0 || c == 2),
        "{}",
        text(&out.stderr)
    );
    anomalies(&ev)
}

/// A labelled capture, the config to use, and the (detector, who) expected.
type Case<'a> = (&'a str, Option<&'a Path>, &'a [(&'a str, &'a str)]);

#[test]
fn labelled_real_captures_are_detected() {
    let Some(root) = shared_pcaps() else {
        eprintln!("skipped: ../shared/pcaps not present");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The CTU captures use public addresses inside: say which are local.
    let ctu = dir.path().join("ctu.toml");
    std::fs::write(
        &ctu,
        "[[zone]]\nname = \"lab\"\ncidrs = [\"147.32.80.0/24\"]\n",
    )
    .expect("config");
    let cases: &[Case] = &[
        ("nmap_syn_scan.pcap", None, &[("scan", "192.168.1.10")]),
        ("nmap_connect_scan.pcap", None, &[("scan", "192.168.1.10")]),
        ("nmap_udp_scan.pcap", None, &[("scan", "192.168.1.10")]),
        ("nmap_ack_scan.pcap", None, &[("scan", "192.168.1.10")]),
        ("nmap_ipproto_scan.pcap", None, &[("scan", "192.168.1.10")]),
        (
            "nmap_null_scan.pcap",
            None,
            &[("scan", "192.168.1.10"), ("tcp_flags", "192.168.1.10")],
        ),
        (
            "nmap_fin_scan.pcap",
            None,
            &[("scan", "192.168.1.10"), ("tcp_flags", "192.168.1.10")],
        ),
        (
            "nmap_xmas_scan.pcap",
            None,
            &[("scan", "192.168.1.10"), ("tcp_flags", "192.168.1.10")],
        ),
        (
            "ntopng_syn_scan_scanme.pcap",
            None,
            &[("scan", "172.16.0.8")],
        ),
        (
            "pcaphunt_tcp_syn_ping_sweep.pcap",
            None,
            &[("scan", "10.0.0.128")],
        ),
        ("slips_arp_scan.pcap", None, &[("scan", "192.168.1.247")]),
        (
            "ntopng_arp_spoofing_mitm.pcap",
            None,
            &[("arp_spoof", "192.168.1.254"), ("scan", "192.168.1.57")],
        ),
        (
            "stopddos_synflood_spoofed.pcap",
            None,
            &[("scan", "10.10.10.10")],
        ),
        (
            "slips_c2_beacon_periodic_2s.pcap",
            Some(&ctu),
            &[("beacon", "147.32.80.37")],
        ),
        (
            "slips_c2_beacon_jitter_2to3.6s.pcap",
            Some(&ctu),
            &[("beacon", "147.32.80.37")],
        ),
    ];
    for (name, config, want) in cases {
        let file = root.join("labeled").join(name);
        if !file.exists() {
            continue;
        }
        let got = found(&detect_shared(&file, *config));
        let want: BTreeSet<(String, String)> = want
            .iter()
            .map(|(d, w)| (d.to_string(), w.to_string()))
            .collect();
        assert_eq!(got, want, "{name}");
    }
    for name in [
        "composite_real_app_traffic_170k.pcap",
        "ntopng_home_lan_snapshot.pcap",
    ] {
        let file = root.join("benign").join(name);
        if file.exists() {
            let events = detect_shared(&file, None);
            assert!(events.is_empty(), "{name}: {events:#?}");
        }
    }
}

/// `run --learn-for`'s path through the pipeline, on packet time: learn for
/// the first 48 hours, write the baseline, then detect with it.
#[test]
fn learning_for_a_while_then_detecting_with_what_was_learned() {
    use segwatch::analysis::LearnSetup;
    use segwatch::baseline::learn::Learner;
    use segwatch::config::Config;
    use segwatch::detect::Detectors;
    use segwatch::detect::network::Networks;
    use segwatch::pipeline::{self, PipelineConfig, RunHooks};

    let dir = tempfile::tempdir().expect("tempdir");
    scenario::write(dir.path()).expect("scenario");
    let cfg = Config::parse(scenario::CONFIG, Path::new("scenario.toml")).expect("config");
    let nets = || Networks::new(Some(&cfg.policy));
    let out = dir.path().join("live.json");
    let events = dir.path().join("events.jsonl");
    let metrics = segwatch::metrics::Metrics::new(2).expect("metrics");
    let mut source = segwatch::capture::FileSource::open(&[
        dir.path().join("learn.pcap"),
        dir.path().join("detect.pcap"),
    ])
    .expect("open");
    let hooks = RunHooks {
        policy: Some(cfg.policy.clone()),
        events: Some(&events),
        metrics: Some(std::sync::Arc::clone(&metrics)),
        detectors: Some(Detectors::new(nets(), cfg.detect.clone(), None)),
        learn: Some(LearnSetup {
            learner: Learner::new(nets(), cfg.detect.limits, cfg.detect.beacon.clone(), None),
            duration_ns: Some(48 * 3_600_000_000_000),
            out: out.clone(),
            resumed_ns: 0,
            checkpoint_every: None,
        }),
        ..RunHooks::default()
    };
    let pc = PipelineConfig {
        workers: 2,
        ..PipelineConfig::default()
    };
    let summary = pipeline::run(&mut source, &pc, None, hooks).expect("run");
    let learned = summary.learned.expect("learned").expect("saved");
    assert_eq!(learned.saved_to, out);
    assert!(
        learned
            .completed_at_ns
            .is_some_and(|t| t >= scenario::LEARN_END - 60_000_000_000)
    );
    assert!(out.exists());
    let a = summary.anomalies.expect("detection ran");
    assert!(a.baseline_loaded);
    let got = found(&anomalies(&events));
    for want in [
        ("new_peer", "10.10.1.23"),
        ("new_service", "10.10.1.12"),
        ("volume", "10.10.1.29"),
    ] {
        assert!(
            got.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {got:?}"
        );
    }
    let text = metrics.render();
    assert!(text.contains("segwatch_baseline_loaded 1"), "{text}");
    assert!(text.contains("segwatch_baseline_learning 0"), "{text}");
    assert!(
        text.contains("segwatch_anomaly_events_total{detector=\"new_peer\",severity=\"high\"} 1"),
        "{text}"
    );
}
