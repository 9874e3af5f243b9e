//! The `segwatch` command line: subcommands and their options, nothing else.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use segwatch::analysis::LearnSetup;
use segwatch::baseline::Baseline;
use segwatch::baseline::learn::Learner;
use segwatch::capture::{FileSource, LiveSource};
use segwatch::config::Config;
use segwatch::detect::Detectors;
use segwatch::detect::network::Networks;
use segwatch::metrics::web_config::WebConfig;
use segwatch::pipeline::{self, RunHooks};
use segwatch::privileges::{self, Named, Plan};
use segwatch::reload::{Reloader, Watcher};
use segwatch::summary::RunSummary;
use segwatch::synth;

/// Passive network sensor: follows every flow on a mirror port or in capture
/// files, and reports what it saw.
#[derive(Parser, Debug)]
#[command(name = "segwatch", version, about, long_about = None)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Analyse capture files (pcap or pcapng); several files are merged in time order.
    ///
    /// Exit status: 0 success, 1 error (nothing analysed), 2 an input file was
    /// truncated or corrupt, or of a link type segwatch does not decode (what was
    /// read before the problem is analysed and reported).
    Analyze(AnalyzeArgs),
    /// Capture live on an interface until SIGINT or SIGTERM, then flush every
    /// flow and print the summary. Started as root, it drops to --user once
    /// the capture is open (without --user it refuses, unless --allow-root).
    Run(RunArgs),
    /// Write the PCI scope evidence report (HTML and JSON) for capture files:
    /// the same as `analyze FILE... --config C --report DIR --quiet`.
    Report(ReportArgs),
    /// Learn a baseline of normal traffic from capture files and write it
    /// (atomically) to --out; --extend adds to an existing baseline.
    Learn(LearnArgs),
    /// Inspect baseline files.
    Baseline {
        #[command(subcommand)]
        what: BaselineWhat,
    },
    /// Validate a configuration file and explain its policy; exit 0 when
    /// valid (warnings are printed), 1 when not.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Write synthetic capture files with known contents.
    Generate {
        #[command(subcommand)]
        what: GenerateWhat,
    },
}

#[derive(Subcommand, Debug)]
enum BaselineWhat {
    /// Summarise a baseline: what it was learned from, its zones and its
    /// busiest hosts with their peers, services and learned distributions.
    Show {
        /// The baseline file.
        file: PathBuf,
        /// Hosts to list (the busiest first).
        #[arg(long, default_value_t = 20)]
        hosts: usize,
    },
}

#[derive(Args, Debug)]
struct LearnArgs {
    /// Capture files to learn from (merged in time order).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// TOML configuration: zones (the baseline is kept per zone) and [learn] caps.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// The baseline file to write (for example baselines/office.json).
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// Add to the baseline already in --out instead of starting afresh
    /// (without it, learning starts from nothing: a reset).
    #[arg(long)]
    extend: bool,
    /// Worker threads; 0 or absent: available cores minus one, at least one.
    #[arg(long)]
    workers: Option<usize>,
    /// Do not print the summary.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum GenerateWhat {
    /// The bundled sample: five minutes of a small office network (configs/sample/office.pcap).
    Sample {
        /// Output capture file.
        #[arg(long)]
        out: PathBuf,
    },
    /// The benchmark capture: interleaved TCP and UDP flows with realistic sizes.
    Bench {
        /// Output capture file.
        #[arg(long)]
        out: PathBuf,
        /// Number of flows.
        #[arg(long, default_value_t = 200_000)]
        flows: u32,
        /// Packets per flow (6 or more: handshake, data, FIN exchange).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(6..))]
        packets_per_flow: u32,
        /// Distinct client hosts (0: a random 10.0.0.0/8 address per flow).
        #[arg(long, default_value_t = 0)]
        clients: u32,
        /// Microseconds between flow starts (10: the 200,000 flows start
        /// within 2 s; 3000: they spread over 10 minutes, so flows end
        /// while the capture goes on, as on a live network).
        #[arg(long, default_value_t = 10)]
        flow_gap_us: u32,
    },
    /// A large segmentation policy (for benchmarks): client zones splitting
    /// 10.0.0.0/8, a CDE of servers, narrow rules and one broad rule.
    Policy {
        /// Output TOML file.
        #[arg(long)]
        out: PathBuf,
        /// Number of zones (one of them the servers' CDE).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..=60_000))]
        zones: u32,
        /// Number of rules.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rules: u32,
    },
    /// The anomaly scenario: two days of a small office to learn from, and a
    /// morning with one injected case of every detector's kind
    /// (learn.pcap, detect.pcap, detect-benign.pcap, segwatch.toml).
    Scenario {
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// A SYN flood from random spoofed sources (one half-open flow per SYN).
    Flood {
        /// Output capture file.
        #[arg(long)]
        out: PathBuf,
        /// Number of SYNs.
        #[arg(long, default_value_t = 1_000_000)]
        packets: u32,
        /// SYNs per second of capture time.
        #[arg(long, default_value_t = 100_000)]
        rate: u32,
    },
}

/// Options shared by `analyze` and `run`.
#[derive(Args, Debug)]
struct CommonArgs {
    /// TOML configuration (see configs/segwatch.example.toml); flags override it.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Write finished flows as JSON lines to PATH ("-" for stdout).
    #[arg(long, value_name = "PATH")]
    flows: Option<PathBuf>,
    /// Write events (segmentation violations and anomalies) as JSON lines to
    /// PATH ("-" for stdout).
    #[arg(long, value_name = "PATH")]
    events: Option<PathBuf>,
    /// Compare traffic with this learned baseline (overrides [detect]
    /// baseline in the config). Without one, only the detectors that need
    /// no baseline run (scan, beacon, tcp_flags, arp_spoof).
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Run no anomaly detectors.
    #[arg(long)]
    no_detect: bool,
    /// Write the PCI scope evidence report (HTML and JSON) into DIR; needs a
    /// config with zones.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Write the run summary as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,
    /// Serve Prometheus metrics on ADDR (for example 127.0.0.1:9947; port 0
    /// picks a free port). `run` serves on metrics.listen from the config, or
    /// 127.0.0.1:9947, unless --no-metrics; `analyze` only with this option.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// TLS and basic auth for the metrics endpoint: a web config file in the
    /// format of Prometheus exporters (see
    /// configs/prometheus/web-config.example.yml); overrides
    /// metrics.web_config.
    #[arg(long, value_name = "FILE")]
    web_config: Option<PathBuf>,
    /// Worker threads; 0 or absent: available cores minus one, at least one.
    #[arg(long)]
    workers: Option<usize>,
    /// Flows tracked at once over all workers; the oldest idle flow is evicted past it.
    #[arg(long)]
    max_flows: Option<usize>,
    /// Memory ceiling in MiB (overrides limits.memory_mib): flow tables are
    /// sized to fit, and past it segwatch sheds state (see the README).
    #[arg(long, value_name = "MIB")]
    memory_mib: Option<u64>,
    /// Do not print the summary.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct AnalyzeArgs {
    /// Capture files to read.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
    /// Never show a progress bar (it shows only when stderr is a terminal).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// Capture files to read.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// TOML configuration with the segmentation policy.
    #[arg(short, long, required = true)]
    config: PathBuf,
    /// Directory for pci-report.html and pci-report.json (created if missing).
    #[arg(short, long, value_name = "DIR")]
    out: PathBuf,
    /// Also write the violation events as JSON lines to PATH.
    #[arg(long, value_name = "PATH")]
    events: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Interface to capture on (overrides capture.interface in the config).
    #[arg(short, long)]
    interface: Option<String>,
    /// BPF capture filter in tcpdump syntax.
    #[arg(long)]
    filter: Option<String>,
    /// Bytes captured per frame (64 to 262144).
    #[arg(long, value_parser = clap::value_parser!(i32).range(64..=262_144))]
    snaplen: Option<i32>,
    /// Kernel capture buffer in MiB (1 to 2047).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=2047))]
    buffer_mib: Option<i32>,
    /// Do not put the interface in promiscuous mode.
    #[arg(long)]
    no_promisc: bool,
    /// Do not serve Prometheus metrics.
    #[arg(long)]
    no_metrics: bool,
    /// Learn a baseline for this long (packet time: "7d", "12h", "30m"),
    /// write it to --baseline, then detect with it. Detectors that need no
    /// baseline run meanwhile.
    #[arg(long, value_name = "DURATION", requires = "baseline")]
    learn_for: Option<humantime::Duration>,
    /// With --learn-for: add to the baseline already in --baseline instead
    /// of starting afresh.
    #[arg(long, requires = "learn_for")]
    extend: bool,
    /// With --learn-for: write the baseline learned so far this often
    /// (wall clock), marked unfinished, so a crash or restart loses at most
    /// this much learning; the same command resumes from it. "0s" = never.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "15m",
        requires = "learn_for"
    )]
    checkpoint_every: humantime::Duration,
    /// Started as root: once the capture is open, become USER, keeping only
    /// CAP_NET_RAW and CAP_NET_ADMIN (overrides service.user).
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// With --user: the primary group to take instead of the user's own
    /// (overrides service.group).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Started as root without --user: keep running as root instead of
    /// refusing (service.allow_root).
    #[arg(long)]
    allow_root: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("segwatch: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Analyze(a) => analyze(a),
        Command::Run(r) => run_live(r),
        Command::Report(r) => analyze(AnalyzeArgs {
            files: r.files,
            common: CommonArgs {
                config: Some(r.config),
                flows: None,
                events: r.events,
                report: Some(r.out),
                summary_json: None,
                baseline: None,
                no_detect: false,
                metrics_listen: None,
                web_config: None,
                workers: None,
                max_flows: None,
                memory_mib: None,
                quiet: true,
            },
            no_progress: false,
        }),
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(cfg) => {
                print_out(&segwatch::policy::explain::explain(
                    &file,
                    &cfg.policy,
                    &cfg.warnings,
                ))?;
                print_out(&segwatch::detect::settings::explain(&cfg.detect))?;
                if let Some(limit) = cfg.pipeline.memory_limit {
                    let buffer = u64::try_from(cfg.capture.buffer_bytes).unwrap_or(0);
                    let plan = segwatch::memory::Plan::new(limit, &cfg.pipeline, buffer, 0);
                    print_out(&match plan {
                        Ok(p) => format!("  {} (live, before any baseline)\n", p.describe()),
                        Err(e) => format!("  limits.memory_mib: {e}\n"),
                    })?;
                }
                if let Some(web) = &cfg.metrics_web_config {
                    match WebConfig::load(web) {
                        Ok(w) => print_out(&describe_web_config(&w))?,
                        Err(e) => {
                            eprintln!("{e}");
                            return Ok(ExitCode::from(1));
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Generate { what } => generate(what),
        Command::Learn(l) => learn(l),
        Command::Baseline {
            what: BaselineWhat::Show { file, hosts },
        } => {
            let b = Baseline::load(&file)?;
            print_out(&segwatch::baseline::show::render(&b, hosts))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The detectors a run uses (None with --no-detect or `[detect] enabled = false`),
/// with the baseline from --baseline or the config unless `learning`.
fn detectors(cfg: &Config, common: &CommonArgs, learning: bool) -> Result<Option<Detectors>> {
    if common.no_detect || !cfg.detect.enabled {
        return Ok(None);
    }
    let nets = Networks::new(Some(&cfg.policy));
    let path = common
        .baseline
        .clone()
        .or_else(|| cfg.detect.baseline.clone());
    let baseline = match path {
        Some(p) if !learning => Some(Baseline::load(&p)?),
        _ => None,
    };
    if let Some(u) = baseline.as_ref().and_then(|b| b.learned.unfinished) {
        tracing::warn!(
            "the baseline is an unfinished checkpoint ({} s of {} s learned): detectors may flag normal traffic it has not seen yet; finish it with run --learn-for",
            u.done_secs,
            u.goal_secs
        );
    }
    let mut d = Detectors::new(nets, cfg.detect.clone(), baseline);
    // A fifth of the memory ceiling (crate::memory).
    if let Some(limit) = cfg.pipeline.memory_limit {
        d.limit_memory(segwatch::memory::detector_bytes(limit));
    }
    Ok(Some(d))
}

/// What live learning starts from: an unfinished checkpoint in `out` is
/// resumed (with how much it had learned); `--extend` adds to a finished
/// baseline; otherwise learning starts afresh.
fn learning_start(out: &std::path::Path, extend: bool) -> Result<(Option<Baseline>, i64)> {
    if !out.exists() {
        return Ok((None, 0));
    }
    let b = match Baseline::load(out) {
        Ok(b) => b,
        Err(e) if extend => return Err(e.into()),
        // Overwritten at the end anyway.
        Err(_) => return Ok((None, 0)),
    };
    match b.learned.unfinished {
        Some(u) => {
            let done = i64::try_from(u.done_secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX);
            let mut b = b;
            b.learned.unfinished = None;
            Ok((Some(b), done))
        }
        None if extend => Ok((Some(b), 0)),
        None => Ok((None, 0)),
    }
}

fn learn(l: LearnArgs) -> Result<ExitCode> {
    let common = CommonArgs {
        config: l.config,
        flows: None,
        events: None,
        report: None,
        summary_json: None,
        baseline: None,
        no_detect: true,
        metrics_listen: None,
        web_config: None,
        workers: l.workers,
        max_flows: None,
        memory_mib: None,
        quiet: l.quiet,
    };
    let cfg = load_config(&common)?;
    let existing = if l.extend && l.out.exists() {
        Some(Baseline::load(&l.out)?)
    } else {
        None
    };
    let mut learner = Learner::new(
        Networks::new(Some(&cfg.policy)),
        cfg.detect.limits,
        cfg.detect.beacon.clone(),
        existing,
    );
    for f in &l.files {
        learner.add_source(f.display().to_string());
    }
    let mut source = FileSource::open(&l.files)?;
    let hooks = RunHooks {
        policy: Some(cfg.policy.clone()),
        learn: Some(LearnSetup {
            learner,
            duration_ns: None,
            out: l.out.clone(),
            resumed_ns: 0,
            checkpoint_every: None,
        }),
        ..RunHooks::default()
    };
    let summary = pipeline::run(&mut source, &cfg.pipeline, None, hooks)?;
    report(&summary, &common)?;
    match &summary.learned {
        Some(Ok(_)) => {}
        Some(Err(e)) => anyhow::bail!("{e}"),
        None => anyhow::bail!("no baseline was learned"),
    }
    Ok(if summary.capture.file_problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Print to stdout; a reader that closed the pipe (`| head`) is not an error.
fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn load_config(common: &CommonArgs) -> Result<Config> {
    let mut cfg = match &common.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if common.report.is_some() && cfg.policy.is_empty() {
        anyhow::bail!(
            "--report needs a segmentation policy: pass --config FILE with [[zone]] and [[rule]] sections (see configs/segwatch.example.toml)"
        );
    }
    if common.events.is_some() && cfg.policy.is_empty() && (common.no_detect || !cfg.detect.enabled)
    {
        anyhow::bail!(
            "--events has nothing to write: anomaly detection is off and the config has no segmentation policy"
        );
    }
    for w in &cfg.warnings {
        if let Some(src) = &cfg.source {
            tracing::warn!("{}:{}: {}", src.display(), w.line, w.message);
        }
    }
    if let Some(w) = common.workers {
        cfg.pipeline.workers = if w == 0 {
            segwatch::pipeline::PipelineConfig::default_workers()
        } else {
            w
        };
    }
    if let Some(m) = common.max_flows {
        cfg.pipeline.max_flows = m.max(1);
    }
    if let Some(m) = common.memory_mib {
        cfg.pipeline.memory_limit = (m > 0).then_some(m << 20);
    }
    Ok(cfg)
}

/// Fit the flow tables under the memory ceiling, if there is one, with
/// room for the baseline (learned up to its host cap, or the file in use).
fn plan_memory(cfg: &mut Config, common: &CommonArgs, live: bool, learning: bool) -> Result<()> {
    let Some(ceiling) = cfg.pipeline.memory_limit else {
        return Ok(());
    };
    let file = common
        .baseline
        .clone()
        .or_else(|| cfg.detect.baseline.clone())
        .filter(|_| !common.no_detect && cfg.detect.enabled);
    let baseline = segwatch::memory::baseline_bytes(
        learning.then_some(cfg.detect.limits.max_hosts),
        file.and_then(|f| std::fs::metadata(f).ok())
            .map(|m| m.len()),
    );
    let buffer = if live {
        u64::try_from(cfg.capture.buffer_bytes).unwrap_or(0)
    } else {
        0
    };
    let plan = segwatch::memory::Plan::new(ceiling, &cfg.pipeline, buffer, baseline).map_err(|e| {
        let from = cfg
            .source
            .as_ref()
            .map_or("--memory-mib".into(), |p| format!("{}: limits.memory_mib", p.display()));
        anyhow::anyhow!(
            "{from}: {e}\n  fix: raise the ceiling, or lower capture.buffer_mib, pipeline.queue_batches, pipeline.frame_prefix or learn.max_hosts"
        )
    })?;
    if plan.max_flows < cfg.pipeline.max_flows {
        tracing::info!(
            "flows.max_flows lowered from {} to {} to fit the memory ceiling",
            cfg.pipeline.max_flows,
            plan.max_flows
        );
    }
    tracing::info!("{}", plan.describe());
    cfg.pipeline.max_flows = plan.max_flows;
    Ok(())
}

fn analyze(a: AnalyzeArgs) -> Result<ExitCode> {
    let mut cfg = load_config(&a.common)?;
    plan_memory(&mut cfg, &a.common, false, false)?;
    let mut source = FileSource::open(&a.files)?;
    let bar = (!a.no_progress && !a.common.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    anyhow::ensure!(
        a.common.web_config.is_none() || a.common.metrics_listen.is_some(),
        "--web-config secures the metrics endpoint, which analyze serves only with --metrics-listen ADDR: add it, or drop --web-config"
    );
    let web = web_config(&a.common, &cfg)?;
    let exporter = a
        .common
        .metrics_listen
        .as_deref()
        .map(|addr| serve_metrics(addr, cfg.pipeline.workers, web.as_ref()))
        .transpose()?;
    let hooks = RunHooks {
        stop: None,
        progress: bar.as_ref().map(|_| &progress as &dyn Fn(u64, u64)),
        policy: Some(cfg.policy.clone()),
        events: a.common.events.as_deref(),
        metrics: exporter.as_ref().map(|(m, _)| Arc::clone(m)),
        detectors: detectors(&cfg, &a.common, false)?,
        learn: None,
        reload: None,
    };
    let summary = pipeline::run(&mut source, &cfg.pipeline, a.common.flows.as_deref(), hooks)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    report(&summary, &a.common)?;
    Ok(if summary.capture.file_problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn run_live(r: RunArgs) -> Result<ExitCode> {
    let mut cfg = load_config(&r.common)?;
    if let Some(i) = r.interface {
        cfg.capture.interface = i;
    }
    if let Some(f) = r.filter {
        cfg.capture.filter = f;
    }
    if let Some(s) = r.snaplen {
        cfg.capture.snaplen = s;
    }
    if let Some(b) = r.buffer_mib {
        cfg.capture.buffer_bytes = b << 20;
    }
    if r.no_promisc {
        cfg.capture.promiscuous = false;
    }
    let named = |name: String, origin: &str| Named {
        name,
        origin: origin.to_string(),
    };
    if let Some(u) = r.user {
        cfg.service.user = Some(named(u, "--user"));
    }
    if let Some(g) = r.group {
        cfg.service.group = Some(named(g, "--group"));
    }
    cfg.service.allow_root |= r.allow_root;
    plan_memory(&mut cfg, &r.common, true, r.learn_for.is_some())?;
    anyhow::ensure!(
        !cfg.capture.interface.is_empty(),
        "no interface to capture on: pass --interface IF or set capture.interface in the config"
    );
    anyhow::ensure!(
        !(r.no_metrics && r.common.web_config.is_some()),
        "--web-config secures the metrics endpoint, which --no-metrics turns off: drop one of them"
    );
    // A bad web config stops segwatch before the capture opens.
    let web = if r.no_metrics {
        None
    } else {
        web_config(&r.common, &cfg)?
    };
    // Who to become is settled before the interface is touched, so a wrong
    // name stops segwatch before anything happens.
    let plan = privileges::plan(&cfg.service)?;
    let mut source = LiveSource::open(&cfg.capture)?;
    // Before any thread starts: threads inherit the dropped credentials.
    privileges::drop_privileges(&plan)?;
    if let Plan::Become(id) = &plan {
        check_outputs(&id.user, &r.common, r.learn_for.is_some())?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    tracing::info!(interface = %cfg.capture.interface, "capturing");
    let exporter = if r.no_metrics {
        None
    } else {
        let addr = r
            .common
            .metrics_listen
            .clone()
            .or_else(|| cfg.metrics_listen.clone())
            .unwrap_or_else(|| segwatch::metrics::DEFAULT_LISTEN.to_string());
        Some(serve_metrics(&addr, cfg.pipeline.workers, web.as_ref())?)
    };
    let learn = match (r.learn_for, &r.common.baseline) {
        (Some(d), Some(out)) => {
            let goal = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
            let (existing, resumed_ns) = learning_start(out, r.extend)?;
            if resumed_ns > 0 {
                eprintln!(
                    "resuming the unfinished baseline in {}: {} of {d} already learned",
                    out.display(),
                    humantime::format_duration(std::time::Duration::from_secs(
                        (resumed_ns / 1_000_000_000) as u64
                    ))
                );
            }
            let mut learner = Learner::new(
                Networks::new(Some(&cfg.policy)),
                cfg.detect.limits,
                cfg.detect.beacon.clone(),
                existing,
            );
            learner.add_source(format!("interface {}", cfg.capture.interface));
            eprintln!(
                "learning a baseline for {d} (packet time), then detecting with it; it will be written to {}",
                out.display()
            );
            let every = *r.checkpoint_every;
            Some(LearnSetup {
                learner,
                // At least a nanosecond: a checkpoint that already reached
                // its goal finishes at the first flow.
                duration_ns: Some(goal.saturating_sub(resumed_ns).max(1)),
                out: out.clone(),
                resumed_ns,
                checkpoint_every: (!every.is_zero()).then_some(every),
            })
        }
        _ => None,
    };
    // SIGHUP reloads the policy, thresholds, allowlist and baseline; the
    // file as written (before command-line overrides) is what later loads
    // are compared with.
    let learning = learn.is_some();
    let first = match &r.common.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let reloader = Reloader::new(
        r.common.config.clone(),
        first,
        r.common.baseline.clone(),
        learning,
    );
    let (_watcher, reload) =
        Watcher::start(reloader, exporter.as_ref().map(|(m, _)| Arc::clone(m)))
            .context("cannot install the SIGHUP handler")?;
    let hooks = RunHooks {
        stop: Some(&stop),
        progress: None,
        policy: Some(cfg.policy.clone()),
        events: r.common.events.as_deref(),
        metrics: exporter.as_ref().map(|(m, _)| Arc::clone(m)),
        detectors: detectors(&cfg, &r.common, learning)?,
        learn,
        reload: Some(reload),
    };
    let summary = pipeline::run(&mut source, &cfg.pipeline, r.common.flows.as_deref(), hooks)?;
    report(&summary, &r.common)?;
    // A live capture ends only when asked to: interface trouble is retried.
    Ok(ExitCode::SUCCESS)
}

/// After dropping root: every file `run` will write is writable by the user.
fn check_outputs(user: &str, common: &CommonArgs, learning: bool) -> Result<()> {
    use privileges::{Output, Write};
    let outputs = [
        ("the flow records", common.flows.as_deref(), Write::Append),
        ("the events", common.events.as_deref(), Write::Append),
        (
            "the summary",
            common.summary_json.as_deref(),
            Write::Replace,
        ),
        ("the report", common.report.as_deref(), Write::Folder),
        (
            "the learned baseline",
            common.baseline.as_deref().filter(|_| learning),
            Write::Replace,
        ),
    ];
    let outputs: Vec<Output<'_>> = outputs
        .into_iter()
        .filter_map(|(what, path, write)| path.map(|path| Output { what, path, write }))
        .collect();
    privileges::check_writable(user, &outputs)?;
    Ok(())
}

/// The metrics endpoint's web config (--web-config, else metrics.web_config),
/// loaded and checked; its warnings are logged.
fn web_config(common: &CommonArgs, cfg: &Config) -> Result<Option<WebConfig>> {
    let Some(path) = common
        .web_config
        .as_ref()
        .or(cfg.metrics_web_config.as_ref())
    else {
        return Ok(None);
    };
    let web = WebConfig::load(path)?;
    for w in &web.warnings {
        tracing::warn!("{w}");
    }
    Ok(Some(web))
}

/// One line on what a web config turns on (for check-config).
fn describe_web_config(w: &WebConfig) -> String {
    let tls = if w.tls.is_some() {
        format!("TLS (client certificates: {})", w.client_auth)
    } else {
        "no TLS".to_string()
    };
    let auth = match w.users.len() {
        0 => "no basic auth".to_string(),
        1 => "basic auth for 1 user".to_string(),
        n => format!("basic auth for {n} users"),
    };
    let limit = match w.rate_limit {
        Some((interval, burst)) => {
            format!(", rate limit {burst} at once then one per {interval:?}")
        }
        None => String::new(),
    };
    let mut out = format!(
        "metrics web config {}: {tls}, {auth}{limit}\n",
        w.path.display()
    );
    for warning in &w.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

/// Start the metrics endpoint; the log says where it listens.
fn serve_metrics(
    addr: &str,
    workers: usize,
    web: Option<&WebConfig>,
) -> Result<(
    Arc<segwatch::metrics::Metrics>,
    segwatch::metrics::server::MetricsServer,
)> {
    let metrics = segwatch::metrics::Metrics::new(workers).context("cannot set up metrics")?;
    let server =
        segwatch::metrics::server::MetricsServer::start_with(addr, Arc::clone(&metrics), web)?;
    let scheme = if server.tls { "https" } else { "http" };
    tracing::info!(addr = %server.addr, tls = server.tls, auth = web.is_some_and(|w| !w.users.is_empty()), "serving metrics");
    eprintln!("metrics: {scheme}://{}/metrics", server.addr);
    Ok((metrics, server))
}

fn report(summary: &RunSummary, common: &CommonArgs) -> Result<()> {
    if let (Some(dir), Some(seg)) = (&common.report, &summary.segmentation) {
        let r = segwatch::report::PciReport::build(summary, seg, common.config.as_deref());
        r.write(dir)
            .with_context(|| format!("cannot write the report into {}", dir.display()))?;
        eprintln!(
            "report: {}",
            dir.join(segwatch::report::HTML_NAME).display()
        );
    }
    if !common.quiet {
        print_out(&summary.to_string())?;
    }
    if let Some(p) = &common.summary_json {
        segwatch::sink::write_atomic(p, &serde_json::to_vec_pretty(&summary.to_json())?)?;
    }
    Ok(())
}

fn generate(what: GenerateWhat) -> Result<ExitCode> {
    match what {
        GenerateWhat::Sample { out } => {
            let mut t = synth::office::office_trace();
            t.write(&out, synth::pcap_file::FileOptions::default())
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {} frames to {}", t.frames.len(), out.display());
        }
        GenerateWhat::Bench {
            out,
            flows,
            packets_per_flow,
            clients,
            flow_gap_us,
        } => {
            let shape = synth::bench::BenchShape {
                flows,
                packets_per_flow,
                clients,
                flow_gap_ns: i64::from(flow_gap_us) * 1_000,
                ..Default::default()
            };
            let w = synth::bench::write_bench(&out, shape, synth::office::START_NS)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "wrote {} packets, {} flows, {} bytes to {}",
                w.packets,
                w.flows,
                w.bytes,
                out.display()
            );
        }
        GenerateWhat::Policy { out, zones, rules } => {
            segwatch::sink::write_atomic(
                &out,
                synth::policy::large_policy(zones, rules).as_bytes(),
            )?;
            println!("wrote {zones} zones and {rules} rules to {}", out.display());
        }
        GenerateWhat::Scenario { out } => {
            synth::scenario::write(&out)
                .with_context(|| format!("cannot write the scenario into {}", out.display()))?;
            println!(
                "wrote learn.pcap, detect.pcap, detect-benign.pcap and segwatch.toml to {}",
                out.display()
            );
        }
        GenerateWhat::Flood { out, packets, rate } => {
            let w = synth::bench::write_syn_flood(&out, packets, rate, synth::office::START_NS)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {} SYNs to {}", w.packets, out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
