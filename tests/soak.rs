//! Soak: `segwatch run` on a mirror port (the [`MirrorLab`] topology: a
//! client and a server routed through a router whose traffic `tc` mirrors
//! to a monitor namespace) while real tools load it: HTTP with curl, an nmap
//! SYN scan, a spoofed-source SYN flood from hping3, and tcpreplay of a
//! generated capture at rising rates up to a `--topspeed` burst into a 1 MiB
//! kernel buffer. A watcher scrapes `/metrics` and reads `/proc/PID/status`
//! every half second throughout.
//!
//! Asserted: the process stays alive and every scrape answers, even during
//! the flood; resident memory stays under [`RSS_CEILING_MIB`]; evictions
//! are counted during the flood and drops once overloaded; every HTTP
//! request appears in the flows file as a `closed` TCP flow; the scan and
//! the flood appear as `scan` anomaly events; SIGTERM writes everything out
//! and exits 0 within 10 s; stderr has no panic.
//!
//! `soak_ci` runs rounds for a minute (about 70 s in all). `soak_long`
//! (ignored) repeats rounds with rising rates for `SEGWATCH_SOAK_SECS` and
//! writes samples to `SEGWATCH_SOAK_CSV`: `scripts/soak.sh` runs it. `zero_loss` (ignored) finds
//! the highest replay rate segwatch and tcpdump capture without loss:
//! `benches/zero_loss.sh` runs it. Root only; skipped with a message where
//! namespaces or the tools are missing.

mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::netns::{Killed, MirrorLab, Netns};
use serde_json::Value;

/// Where segwatch serves metrics, inside the monitor namespace (its own
/// loopback, so no other test can hold the port).
const METRICS: &str = "127.0.0.1:19951";
const MAX_FLOWS: u64 = 20_000;
/// A kernel buffer small enough that a `--topspeed` burst overflows it.
const BUFFER_MIB: &str = "1";
const HTTP_PORT: &str = "8080";
const HTTP_REQUESTS: usize = 5;

/// The memory ceiling given in `config()` (`[limits] memory_mib`): segwatch
/// sizes its flow table and detector state to fit (without it, the scan
/// detector's per-source windows alone took about 180 MiB under the flood).
const RSS_CEILING_MIB: u64 = 160;

fn config() -> String {
    // Closed flows end fast so the HTTP records are written during the run;
    // the half-open timeout stays at its default so the flood must evict.
    // Small rotated files, all kept: the flood's records rotate the flow
    // file several times a round, and the checks read every piece.
    // Immediate delivery: in the default block mode segwatch keeps up with
    // tcpreplay's top speed here, and the bursts must overflow the ring to
    // check the drop counters.
    format!(
        "[flows]\nmax_flows = {MAX_FLOWS}\n[flows.timeouts]\ntcp_closed = 2\n[output]\nrotate_mib = 16\nrotate_keep = 10000\n[limits]\nmemory_mib = {RSS_CEILING_MIB}\n[capture]\nimmediate = true\n"
    )
}

/// What a soak does: rounds of steps, then the final checks.
struct Plan {
    /// Keep starting rounds until this much time has passed (at least one).
    duration: Duration,
    min_rounds: usize,
    flood: Duration,
    /// Replay rates (packets/s) of the first round; each round adds half.
    rates: Vec<u64>,
    replay_secs: u64,
    /// Truncate the flows file after each round's check (bounded disk).
    truncate_flows: bool,
    csv: Option<PathBuf>,
    csv_every: Duration,
}

impl Plan {
    fn ci() -> Plan {
        Plan {
            // Past a minute, so the detectors' one-minute windows roll over
            // and their sweeps run under load.
            duration: Duration::from_secs(60),
            min_rounds: 2,
            flood: Duration::from_secs(5),
            rates: vec![10_000, 50_000, 100_000],
            replay_secs: 2,
            truncate_flows: false,
            csv: None,
            csv_every: Duration::from_secs(5),
        }
    }

    fn long() -> Plan {
        let secs = env_u64("SEGWATCH_SOAK_SECS").unwrap_or(1800);
        Plan {
            duration: Duration::from_secs(secs),
            min_rounds: 1,
            flood: Duration::from_secs(10),
            rates: vec![10_000, 25_000, 50_000, 100_000],
            replay_secs: 5,
            truncate_flows: true,
            csv: std::env::var_os("SEGWATCH_SOAK_CSV").map(PathBuf::from),
            csv_every: Duration::from_secs(env_u64("SEGWATCH_SOAK_SAMPLE_SECS").unwrap_or(10)),
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// The sensor's binary: the one cargo built, or `SEGWATCH_BIN` (the release
/// build, for `benches/zero_loss.sh`).
fn segwatch_bin() -> String {
    std::env::var("SEGWATCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_segwatch").to_string())
}

/// The lab, or `None` with the reason printed.
fn lab(tag: &str, tools: &[&str]) -> Option<MirrorLab> {
    for tool in tools {
        if !common::has(tool) {
            eprintln!(
                "SKIPPED: {tool} is not installed (scripts/install-deps.sh test installs it)"
            );
            return None;
        }
    }
    let lab = MirrorLab::build(tag);
    if lab.is_none() {
        eprintln!("SKIPPED: cannot build the mirror topology here (needs root, iproute2 and tc)");
    }
    lab
}

const TOOLS: &[&str] = &[
    "ip",
    "tc",
    "curl",
    "python3",
    "nmap",
    "hping3",
    "tcpreplay",
    "tcprewrite",
    "timeout",
];

/// Sum of every series of metric `name` in a scrape.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn drops(text: &str) -> u64 {
    metric(text, "segwatch_capture_dropped_packets_total")
}

/// One scrape of `/metrics` from inside the monitor namespace.
fn scrape(monitor: &Netns) -> Result<String, String> {
    scrape_in(&monitor.0)
}

/// [`scrape`] by namespace name (for the watcher's thread).
fn scrape_in(ns: &str) -> Result<String, String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "5",
        ])
        .arg(format!("http://{METRICS}/metrics"))
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// What the watcher saw.
#[derive(Default)]
struct Seen {
    step: String,
    max_rss_kib: u64,
    max_hwm_kib: u64,
    scrapes: u64,
    /// Successful scrapes per step name.
    answered: Vec<(String, u64)>,
    failures: Vec<String>,
    gone: Option<String>,
}

impl Seen {
    fn answered_in(&self, step: &str) -> u64 {
        self.answered
            .iter()
            .filter(|(s, _)| s == step)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Scrapes and samples memory every half second until dropped; writes a CSV
/// row every `csv_every`.
struct Watcher {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(monitor: String, pid: u32, csv: Option<PathBuf>, csv_every: Duration) -> Watcher {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut csv = csv.map(|p| {
                let mut f = std::fs::File::create(&p).expect("csv");
                let _ = writeln!(
                    f,
                    "elapsed_s,step,rss_kib,hwm_kib,packets,dropped,evicted,flows_active,anomaly_events,violation_events,scrape_ms"
                );
                f
            });
            let mut next_row = Duration::ZERO;
            while !st.load(Ordering::Relaxed) {
                let t = Instant::now();
                let got = scrape_in(&monitor);
                let ms = t.elapsed().as_millis();
                let mem = memory_kib(pid);
                let mut g = s.lock().expect("lock");
                g.scrapes += 1;
                let step = g.step.clone();
                match (&got, mem) {
                    (_, None) => {
                        g.gone = Some(format!("segwatch gone during {step}"));
                        break;
                    }
                    (Ok(_), Some((rss, hwm))) => {
                        g.max_rss_kib = g.max_rss_kib.max(rss);
                        g.max_hwm_kib = g.max_hwm_kib.max(hwm);
                        match g.answered.iter_mut().find(|(s, _)| *s == step) {
                            Some((_, n)) => *n += 1,
                            None => g.answered.push((step.clone(), 1)),
                        }
                    }
                    (Err(e), Some(_)) => g.failures.push(format!("{step}: {e}")),
                }
                if let (Some(f), Some((rss, hwm))) = (csv.as_mut(), mem)
                    && start.elapsed() >= next_row
                {
                    next_row += csv_every;
                    let m = got.as_deref().unwrap_or("");
                    let _ = writeln!(
                        f,
                        "{:.1},{step},{rss},{hwm},{},{},{},{},{},{},{ms}",
                        start.elapsed().as_secs_f64(),
                        metric(m, "segwatch_capture_packets_total"),
                        drops(m),
                        metric(m, "segwatch_flows_evicted_total"),
                        metric(m, "segwatch_flows_active"),
                        metric(m, "segwatch_anomaly_events_total"),
                        metric(m, "segwatch_violation_events_total"),
                    );
                }
                drop(g);
                std::thread::sleep(Duration::from_millis(500).saturating_sub(t.elapsed()));
            }
        });
        Watcher {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn step(&self, name: &str) {
        self.seen.lock().expect("lock").step = name.to_string();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Everything a step can use.
struct Ctx<'a> {
    lab: &'a MirrorLab,
    plan: &'a Plan,
    round: usize,
    replay: &'a Path,
    watcher: &'a Watcher,
    /// segwatch's pid and config file (for reloads).
    pid: u32,
    config: &'a Path,
}

/// Requests `http://SERVER:8080/` with curl from the client.
fn http(cx: &Ctx<'_>) {
    for _ in 0..HTTP_REQUESTS {
        let ok = cx
            .lab
            .client
            .command("curl")
            .args(["-sf", "--max-time", "5", "-o", "/dev/null"])
            .arg(format!("http://{}:{HTTP_PORT}/", MirrorLab::SERVER_IP))
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "curl to the server failed");
    }
}

/// A SYN scan of the server's first 1,000 ports.
fn scan(cx: &Ctx<'_>) {
    let ok = cx
        .lab
        .client
        .command("nmap")
        .args([
            "-sS",
            "-Pn",
            "-n",
            "-T4",
            "--max-retries",
            "1",
            "-p",
            "1-1000",
        ])
        .arg(MirrorLab::SERVER_IP)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "nmap failed");
}

/// hping3 SYN flood from random spoofed sources to the server's port 80.
fn flood(cx: &Ctx<'_>) {
    let before = scrape(&cx.lab.monitor).expect("scrape before the flood");
    let secs = cx.plan.flood.as_secs().to_string();
    // `timeout -k` so hping3 cannot outlive the step.
    let _ = cx
        .lab
        .client
        .command("timeout")
        .args(["-s", "INT", "-k", "2", &secs])
        .args(["hping3", "--flood", "--rand-source", "-S", "-p", "80"])
        .arg(MirrorLab::SERVER_IP)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let after = scrape(&cx.lab.monitor).expect("/metrics does not answer after the flood");
    let evicted = |t: &str| metric(t, "segwatch_flows_evicted_total");
    assert!(
        evicted(&after) > evicted(&before),
        "no flow evicted during the flood (max_flows {MAX_FLOWS}):\n{after}"
    );
    let answered = cx.watcher.seen.lock().expect("lock").answered_in("flood");
    assert!(
        answered as f64 >= cx.plan.flood.as_secs_f64(),
        "only {answered} scrapes answered during a {:?} flood",
        cx.plan.flood
    );
}

/// tcpreplay at this round's rates, then a `--topspeed` burst that must
/// overflow the 1 MiB buffer (tried three times at most).
fn replay(cx: &Ctx<'_>) {
    let file = cx.replay.to_str().expect("path");
    for base in &cx.plan.rates {
        let pps = base + base * cx.round as u64 / 2;
        let limit = (pps * cx.plan.replay_secs).to_string();
        tcpreplay(
            &cx.lab.client,
            &["--pps", &pps.to_string(), "--limit", &limit, "--loop", "0"],
            file,
        );
    }
    let before = drops(&scrape(&cx.lab.monitor).expect("scrape"));
    for _ in 0..3 {
        tcpreplay(
            &cx.lab.client,
            &["--topspeed", "--preload-pcap", "--loop", "2"],
            file,
        );
        std::thread::sleep(Duration::from_millis(500));
        let now = drops(&scrape(&cx.lab.monitor).expect("scrape after the burst"));
        if now > before {
            return;
        }
    }
    panic!("three --topspeed bursts into a {BUFFER_MIB} MiB buffer and no drop counted");
}

/// tcpreplay onto the client's interface (the router's ingress mirrors it);
/// the packets it sent and the rate it reached.
fn tcpreplay(client: &Netns, args: &[&str], file: &str) -> (u64, f64) {
    let out = client
        .command("tcpreplay")
        .args(["-i", MirrorLab::CLIENT_IF])
        .args(args)
        .arg(file)
        .output()
        .expect("tcpreplay");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tcpreplay {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "Successful packets:        200000"
    let sent = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Successful packets:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    // "Rated: 25768070.3 Bps, 206.14 Mbps, 99998.25 pps"
    let pps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Rated: "))
        .and_then(|l| l.split(", ").find_map(|p| p.strip_suffix(" pps")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0);
    (sent, pps)
}

/// SIGHUP with a changed config while the round's HTTP flows are still
/// open in the flow table: the reload is applied (counted `ok`), and the
/// round's check later finds every one of those flows.
fn reload(cx: &Ctx<'_>) {
    let before = scrape(&cx.lab.monitor).expect("scrape before the reload");
    let ok = |t: &str| metric(t, "segwatch_config_reloads_total{result=\"ok\"}");
    // A changed threshold each round, so every reload changes something.
    let text = format!(
        "{}[detect]\nsuppress_secs = {}\n",
        config(),
        3600 + cx.round
    );
    std::fs::write(cx.config, text).expect("config");
    let sent = Command::new("kill")
        .args(["-HUP", &cx.pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = scrape(&cx.lab.monitor).expect("/metrics does not answer after SIGHUP");
        if ok(&now) > ok(&before) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload was not applied:\n{now}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A step of a round.
type Step = (&'static str, fn(&Ctx<'_>));

const STEPS: &[Step] = &[
    ("http", http),
    ("reload", reload),
    ("scan", scan),
    ("flood", flood),
    ("replay", replay),
];

/// The bench capture, with its 10.0.0.0/16 clients moved into
/// 198.19.0.0/16 so that even replayed packets carry test addresses.
fn replay_capture(dir: &Path, flows: u32) -> PathBuf {
    let raw = dir.join("bench.pcap");
    let ok = Command::new(segwatch_bin())
        .args(["generate", "bench", "--clients", "2000", "--flows"])
        .arg(flows.to_string())
        .arg("--out")
        .arg(&raw)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "segwatch generate bench failed");
    let out = dir.join("replay.pcap");
    let ok = Command::new("tcprewrite")
        .arg("--pnat=10.0.0.0/16:198.19.0.0/16")
        .arg("--fixcsum")
        .arg(format!("--infile={}", raw.display()))
        .arg(format!("--outfile={}", out.display()))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "tcprewrite failed");
    let _ = std::fs::remove_file(raw);
    out
}

/// Closed HTTP flows from the client in the flows file.
/// The flow file and its rotated predecessors (`FILE.1`, `FILE.2`, ...).
fn with_rotated(path: &Path) -> Vec<PathBuf> {
    let mut all = vec![path.to_path_buf()];
    for i in 1.. {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{i}"));
        let p = PathBuf::from(p);
        if !p.exists() {
            break;
        }
        all.push(p);
    }
    all
}

fn http_flows(path: &Path) -> (usize, Vec<Value>) {
    let mut closed = 0;
    let mut other = Vec::new();
    let needle = format!("\"dst_port\":{HTTP_PORT}");
    let files = with_rotated(path);
    let lines = files
        .iter()
        .filter_map(|p| std::fs::File::open(p).ok())
        .flat_map(|f| BufReader::new(f).lines().map_while(Result::ok));
    for line in lines {
        if !line.contains(&needle) {
            continue;
        }
        let r: Value = serde_json::from_str(&line).expect("flow record");
        if r["src_ip"] == MirrorLab::CLIENT_IP
            && r["dst_ip"] == MirrorLab::SERVER_IP
            && r["proto"] == "tcp"
        {
            if r["outcome"] == "closed" {
                closed += 1;
            } else {
                other.push(r);
            }
        }
    }
    (closed, other)
}

fn soak(tag: &str, plan: &Plan) {
    let Some(lab) = lab(tag, TOOLS) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("soak.toml");
    std::fs::write(&cfg, config()).expect("config");
    let (flows, events, summary, stderr) = (
        dir.path().join("flows.jsonl"),
        dir.path().join("events.jsonl"),
        dir.path().join("summary.json"),
        dir.path().join("stderr.txt"),
    );
    let replay = replay_capture(dir.path(), 10_000);
    let www = dir.path().join("www");
    std::fs::create_dir(&www).expect("www");
    std::fs::write(www.join("index.html"), "soak\n".repeat(200)).expect("index");
    let _server = Killed(
        lab.server
            .command("python3")
            .args([
                "-m",
                "http.server",
                HTTP_PORT,
                "--bind",
                MirrorLab::SERVER_IP,
            ])
            .arg("--directory")
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("http server"),
    );
    // Up before the sensor starts, so these probes are not captured.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab
        .client
        .command("curl")
        .args(["-sf", "--max-time", "1", "-o", "/dev/null"])
        .arg(format!("http://{}:{HTTP_PORT}/", MirrorLab::SERVER_IP))
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "the HTTP server did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Killed on drop: a failed assertion must not leave segwatch running.
    let mut sensor = Killed(
        lab.monitor
            .command(&segwatch_bin())
            .args([
                "run",
                "--allow-root",
                "--interface",
                MirrorLab::MIRROR_IF,
                "--quiet",
            ])
            .args(["--buffer-mib", BUFFER_MIB, "--metrics-listen", METRICS])
            .arg("--config")
            .arg(&cfg)
            .arg("--flows")
            .arg(&flows)
            .arg("--events")
            .arg(&events)
            .arg("--summary-json")
            .arg(&summary)
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start segwatch run"),
    );
    let pid = sensor.0.id();
    let stderr_text = || std::fs::read_to_string(&stderr).unwrap_or_default();
    // `ip netns exec` execs the program: the pid is segwatch's own.
    let deadline = Instant::now() + Duration::from_secs(20);
    while scrape(&lab.monitor).is_err() {
        assert!(
            Instant::now() < deadline,
            "segwatch did not serve metrics: {}",
            stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "segwatch", "pid {pid} is not segwatch");
    let watcher = Watcher::start(lab.monitor.0.clone(), pid, plan.csv.clone(), plan.csv_every);

    let started = Instant::now();
    let mut round = 0;
    let mut http_seen = 0;
    let mut report = String::new();
    while round < plan.min_rounds || started.elapsed() < plan.duration {
        let cx = Ctx {
            lab: &lab,
            plan,
            round,
            replay: &replay,
            watcher: &watcher,
            pid,
            config: &cfg,
        };
        for (name, step) in STEPS {
            watcher.step(name);
            step(&cx);
            let gone = watcher.seen.lock().expect("lock").gone.clone();
            assert!(gone.is_none(), "{gone:?}: {}", stderr_text());
        }
        // Every request of the round becomes a closed flow once its
        // tcp_closed timeout (2 s) passes.
        watcher.step("settle");
        let want = HTTP_REQUESTS * (round + 1) - http_seen;
        let deadline = Instant::now() + Duration::from_secs(15);
        let (mut closed, mut other) = http_flows(&flows);
        while closed < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            (closed, other) = http_flows(&flows);
        }
        assert_eq!(
            closed,
            want,
            "round {round}: HTTP requests as closed flows; others: {other:#?}\nsegwatch said: {}",
            stderr_text()
        );
        if plan.truncate_flows {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&flows)
                .and_then(|f| f.set_len(0))
                .expect("truncate flows");
            for old in &with_rotated(&flows)[1..] {
                let _ = std::fs::remove_file(old);
            }
            http_seen = HTTP_REQUESTS * (round + 1);
        }
        let g = watcher.seen.lock().expect("lock");
        let _ = writeln!(
            report,
            "round {round}: {:.0} s, max RSS {} MiB, {} scrapes, {} failed",
            started.elapsed().as_secs_f64(),
            g.max_rss_kib / 1024,
            g.scrapes,
            g.failures.len()
        );
        eprint!("{}", report.lines().last().unwrap_or_default());
        eprintln!();
        drop(g);
        round += 1;
    }

    watcher.step("stop");
    let last = scrape(&lab.monitor).expect("scrape before stopping");
    // Stop watching before segwatch stops, so no scrape hits a closing process.
    let seen = watcher.seen.clone();
    drop(watcher);
    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    let t = Instant::now();
    let (status, _) = common::stop(&mut sensor.0, "TERM", Duration::from_secs(10));
    let stop_time = t.elapsed();
    let err = stderr_text();
    assert!(!err.contains("panicked"), "segwatch panicked: {err}");
    assert!(status.success(), "segwatch run exited with {status}: {err}");

    let s: Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    let ev = std::fs::read_to_string(&events).expect("events");
    let events: Vec<Value> = ev
        .lines()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
    let scan_event = |pred: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .any(|e| e["kind"] == "anomaly" && e["detector"] == "scan" && pred(e))
    };
    assert!(
        scan_event(&|e| e["src_ip"] == MirrorLab::CLIENT_IP && e["observed"]["kind"] == "vertical"),
        "no scan event for nmap's port scan from {}: {ev}",
        MirrorLab::CLIENT_IP
    );
    assert!(
        scan_event(&|e| e["dst_ip"] == MirrorLab::SERVER_IP
            && e["dst_port"] == 80
            && e["observed"]["kind"] == "flood"),
        "no scan event for the flood on {}:80: {ev}",
        MirrorLab::SERVER_IP
    );
    let ft = &s["flow_table"];
    let evicted = ft["evicted"].as_u64().unwrap_or(0);
    assert!(evicted > 0, "{s}");
    assert!(
        ft["peak_active"].as_u64().unwrap_or(u64::MAX) <= MAX_FLOWS,
        "{s}"
    );
    let cap = &s["capture"];
    let dropped = cap["kernel_dropped"].as_u64().unwrap_or(0)
        + cap["interface_dropped"].as_u64().unwrap_or(0)
        + s["dispatch"]["dropped_packets"].as_u64().unwrap_or(0);
    assert!(dropped > 0, "{s}");
    assert!(drops(&last) > 0, "drops not in the metrics: {last}");

    let (rss, hwm) = (seen.max_rss_kib / 1024, seen.max_hwm_kib / 1024);
    eprintln!(
        "soak: {round} rounds in {:.0} s; max RSS {rss} MiB (HWM {hwm} MiB, ceiling {RSS_CEILING_MIB} MiB); \
         {} packets, {dropped} dropped, {evicted} evicted, {} events; {} scrapes, {} failed; stopped in {:.1} s",
        started.elapsed().as_secs_f64(),
        cap["frames"],
        events.len(),
        seen.scrapes,
        seen.failures.len(),
        stop_time.as_secs_f64()
    );
    assert!(
        hwm <= RSS_CEILING_MIB,
        "peak RSS {hwm} MiB over the {RSS_CEILING_MIB} MiB ceiling"
    );
    assert!(
        seen.failures.is_empty(),
        "scrapes failed: {:?}",
        seen.failures
    );
}

#[test]
fn soak_ci() {
    soak("soak", &Plan::ci());
}

/// `scripts/soak.sh`: rounds with rising rates for `SEGWATCH_SOAK_SECS`.
#[test]
#[ignore = "long: run by scripts/soak.sh"]
fn soak_long() {
    soak("soakl", &Plan::long());
}

/// What one capture tool saw of one replay.
struct Capture {
    /// Sent by tcpreplay, and the rate it reached.
    sent: u64,
    pps: f64,
    captured: u64,
    /// Drops the tool itself reported (kernel, interface, queue).
    dropped: u64,
}

/// Runs `segwatch run` (metrics on, flows and events written, as deployed)
/// on the mirror during one replay.
fn segwatch_during(lab: &MirrorLab, dir: &Path, send: &dyn Fn() -> (u64, f64)) -> Capture {
    let summary = dir.join("zl-summary.json");
    let mut c = lab.monitor.command(&segwatch_bin());
    c.args([
        "run",
        "--allow-root",
        "--interface",
        MirrorLab::MIRROR_IF,
        "--quiet",
    ])
    .args(["--metrics-listen", METRICS])
    .arg("--flows")
    .arg(dir.join("zl-flows.jsonl"))
    .arg("--events")
    .arg(dir.join("zl-events.jsonl"))
    .arg("--summary-json")
    .arg(&summary);
    if let Ok(cfg) = std::env::var("ZERO_LOSS_CONFIG") {
        c.args(["--config", &cfg]);
    }
    if let Ok(args) = std::env::var("SEGWATCH_ARGS") {
        c.args(args.split_whitespace());
    }
    let mut child = c
        .stderr(Stdio::piped())
        .spawn()
        .expect("start segwatch run");
    let deadline = Instant::now() + Duration::from_secs(20);
    while scrape(&lab.monitor).is_err() {
        assert!(Instant::now() < deadline, "segwatch did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (sent, pps) = send();
    std::thread::sleep(Duration::from_secs(1));
    let (status, err) = common::stop(&mut child, "TERM", Duration::from_secs(30));
    assert!(status.success(), "{err}");
    let s: Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let cap = &s["capture"];
    Capture {
        sent,
        pps,
        // Frames read but dropped at a full worker queue were not analysed.
        captured: n(&cap["frames"]).saturating_sub(n(&s["dispatch"]["dropped_packets"])),
        dropped: n(&cap["kernel_dropped"])
            + n(&cap["interface_dropped"])
            + n(&s["dispatch"]["dropped_packets"]),
    }
}

/// Runs `tcpdump -w /dev/null` on the mirror during one replay.
fn tcpdump_during(lab: &MirrorLab, dir: &Path, send: &dyn Fn() -> (u64, f64)) -> Capture {
    let log = dir.join("tcpdump.txt");
    let mut child = lab
        .monitor
        .command("tcpdump")
        .args(["-n", "-i", MirrorLab::MIRROR_IF, "-w", "/dev/null"])
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("tcpdump");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(Instant::now() < deadline, "tcpdump did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (sent, pps) = send();
    std::thread::sleep(Duration::from_secs(1));
    let (status, _) = common::stop(&mut child, "INT", Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{text}");
    // "200000 packets captured" ... "0 packets dropped by kernel"
    let count = |what: &str| {
        text.lines()
            .find_map(|l| l.strip_suffix(what))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{what}` in {text}"))
    };
    Capture {
        sent,
        pps,
        captured: count(" packets captured"),
        dropped: count(" packets dropped by kernel"),
    }
}

/// `benches/zero_loss.sh`: replays at rising rates (`ZERO_LOSS_RATES`,
/// packets/s, for `ZERO_LOSS_SECS` each) onto the mirror topology while
/// segwatch, then tcpdump, captures on the monitor port; a rate is lossless
/// when the tool captured every packet tcpreplay sent and reported no
/// drop. Prints a table and a `ZERO_LOSS` line for the script: the highest
/// lossless rate of each tool, their ratio, and the lowest rate that lost
/// (0: none did).
#[test]
#[ignore = "a measurement: run by benches/zero_loss.sh"]
fn zero_loss() {
    let Some(lab) = lab(
        "zl",
        &["ip", "tc", "curl", "tcpreplay", "tcprewrite", "tcpdump"],
    ) else {
        return;
    };
    let rates: Vec<u64> = std::env::var("ZERO_LOSS_RATES")
        .unwrap_or_else(|_| "10000,20000,50000,100000,150000,200000,300000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let secs = env_u64("ZERO_LOSS_SECS").unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let replay = replay_capture(dir.path(), 20_000);
    let file = replay.to_str().expect("path");
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load().trim());
    println!(
        "{:>9} | {:>9} {:>8} {:>9} {:>8} {:>8} | {:>9} {:>8} {:>9} {:>8} {:>8}",
        "pps asked",
        "sent",
        "pps",
        "segwatch",
        "missing",
        "dropped",
        "sent",
        "pps",
        "tcpdump",
        "missing",
        "dropped"
    );
    // Per tool: the highest rate without loss (on a shared machine a lower
    // rate can still lose to a burst of other work), and the first with.
    let mut best = [0u64; 2];
    let mut first_loss = [0u64; 2];
    for &pps in &rates {
        let limit = (pps * secs).to_string();
        let send = || {
            tcpreplay(
                &lab.client,
                &[
                    "--pps",
                    &pps.to_string(),
                    "--limit",
                    &limit,
                    "--loop",
                    "0",
                    "--preload-pcap",
                ],
                file,
            )
        };
        let runs = [
            segwatch_during(&lab, dir.path(), &send),
            tcpdump_during(&lab, dir.path(), &send),
        ];
        let mut row = format!("{pps:>9} |");
        for (i, c) in runs.iter().enumerate() {
            let missing = c.sent.saturating_sub(c.captured);
            let _ = write!(
                row,
                " {:>9} {:>8.0} {:>9} {missing:>9} {:>8} |",
                c.sent, c.pps, c.captured, c.dropped
            );
            if missing == 0 && c.dropped == 0 {
                // The rate reached, which is lower than asked where the
                // sender is the limit.
                best[i] = best[i].max((c.pps.round() as u64).min(pps));
            } else if first_loss[i] == 0 {
                first_loss[i] = pps;
            }
        }
        println!("{}", row.trim_end_matches(" |"));
    }
    let ratio = best[0] as f64 / best[1].max(1) as f64;
    let load_after = load();
    println!("load average after: {}", load_after.trim());
    println!(
        "ZERO_LOSS segwatch={} tcpdump={} ratio={ratio:.2} segwatch_first_loss={} tcpdump_first_loss={} load1={}",
        best[0],
        best[1],
        first_loss[0],
        first_loss[1],
        load_after.split(' ').next().unwrap_or("?")
    );
}
