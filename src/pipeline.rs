//! The pipeline: one reader thread (the caller's) owns the capture, decodes
//! each frame and dispatches batches to N worker threads over bounded channels;
//! each worker owns its flow table; when flows are written or judged, one
//! flow-analysis thread receives every finished flow ([`crate::analysis`]).
//!
//! ```text
//! source ─► decode ─► Dispatcher ══batches══► Worker 0..N ══records══► analysis
//!                          ▲                      │            (policy, events, flow records)
//!                          └──── emptied batches ─┘
//! ```

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded};
use thiserror::Error;

use crate::analysis::AnalysisSetup;
use crate::capture::{FrameSource, Next};
use crate::decode::DecodeProblem;
use crate::dispatch::{Backpressure, DispatchConfig, Dispatcher};
use crate::flow::Timeouts;
use crate::memory::Watchdog;
use crate::metrics::{Metrics, ReaderMetrics, WorkerMetrics};
use crate::policy::SharedPolicy;
use crate::segmentation::SegTally;
use crate::sink::events::EventReport;
use crate::sink::jsonl::JsonLinesWriter;
use crate::sink::live_file::Rotation;
use crate::summary::RunSummary;
use crate::worker::{Worker, WorkerReport};

/// Pipeline settings (validated; see `config` for the file form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Packets per batch.
    pub batch_size: usize,
    /// Batches queued per worker before the reader waits (files) or drops (live).
    pub queue_batches: usize,
    /// Bytes of each frame copied to the workers (headers plus the start of
    /// the payload).
    pub frame_prefix: usize,
    /// Flows tracked at once, over all workers; past it the oldest idle is evicted.
    pub max_flows: usize,
    pub timeouts: Timeouts,
    /// Live output files (events, flow records) rotate by this rule.
    pub rotation: Rotation,
    /// The memory ceiling in bytes ([`crate::memory`]); `None`: none.
    pub memory_limit: Option<u64>,
}

impl PipelineConfig {
    /// Default worker count: available cores minus one (the reader), at least one.
    pub fn default_workers() -> usize {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
            .max(1)
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: PipelineConfig::default_workers(),
            batch_size: 256,
            queue_batches: 64,
            frame_prefix: 192,
            max_flows: 1_000_000,
            timeouts: Timeouts::default(),
            rotation: Rotation::default(),
            memory_limit: None,
        }
    }
}

/// Errors that stop a run.
#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(
        "cannot write flow records: {0}\n  fix: write them to a folder segwatch may create files in, with space left"
    )]
    FlowOutput(std::io::Error),
    #[error(
        "cannot write events: {0}\n  fix: write them to a folder segwatch may create files in, with space left"
    )]
    EventOutput(std::io::Error),
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    #[error("a worker thread failed: {0}")]
    Worker(String),
    #[error(transparent)]
    Baseline(#[from] crate::baseline::BaselineError),
}

/// Optional hooks for the caller: control, and what to do with finished
/// flows besides counting them.
#[derive(Default)]
pub struct RunHooks<'a> {
    /// Set to stop reading (signal handlers).
    pub stop: Option<&'a AtomicBool>,
    /// Called now and then with (bytes done, bytes total) for file sources.
    pub progress: Option<&'a dyn Fn(u64, u64)>,
    /// Judge every finished flow against this policy (ignored when it
    /// declares no zones).
    pub policy: Option<SharedPolicy>,
    /// Write segmentation violation events as JSON lines here ("-": stdout).
    pub events: Option<&'a Path>,
    /// Export counters to these Prometheus metrics (created for the same
    /// number of workers).
    pub metrics: Option<Arc<Metrics>>,
    /// Anomaly detectors to run on every finished flow and ARP packet.
    pub detectors: Option<crate::detect::Detectors>,
    /// Learn a baseline.
    pub learn: Option<crate::analysis::LearnSetup>,
    /// Reloaded configs to apply as they arrive (SIGHUP).
    pub reload: Option<crossbeam_channel::Receiver<crate::reload::Reload>>,
}

/// What anomaly detection found in a run.
#[derive(Clone, Debug, Default)]
pub struct AnomalyResult {
    pub stats: crate::detect::DetectStats,
    pub baseline_loaded: bool,
    /// The events (the first [`crate::sink::events::REPORT_EVENT_CAP`]).
    pub events: Vec<crate::detect::AnomalyEvent>,
    pub written: u64,
}

/// What segmentation checking found in a run.
#[derive(Clone, Debug)]
pub struct SegmentationResult {
    /// The policy in force at the end of the run.
    pub policy: SharedPolicy,
    /// Packet time the policy was reloaded at (the tally covers flows
    /// judged since); `None`: in force from the start.
    pub policy_since: Option<i64>,
    pub tally: SegTally,
    pub events: Arc<EventReport>,
}

/// Run the pipeline over a source until it ends or `hooks.stop` is set.
pub fn run(
    source: &mut dyn FrameSource,
    cfg: &PipelineConfig,
    flows_out: Option<&Path>,
    mut hooks: RunHooks<'_>,
) -> Result<RunSummary, PipelineError> {
    let started = Instant::now();
    let workers = cfg.workers.max(1);
    let live = source.is_live();
    let output = |p: &Path, name: &str| {
        JsonLinesWriter::create(p, !live, cfg.rotation).map(|mut w| {
            if let Some(m) = &hooks.metrics {
                w.set_metrics(m.output(name));
            }
            w
        })
    };
    let flows_writer = flows_out
        .map(|p| output(p, "flows"))
        .transpose()
        .map_err(PipelineError::FlowOutput)?;
    let policy = hooks.policy.clone().filter(|p| !p.is_empty());
    let detectors = hooks.detectors.take();
    let learn = hooks.learn.take();
    if let Some(l) = &learn {
        crate::baseline::Baseline::check_writable(&l.out)?;
    }
    let judging = policy.is_some() || detectors.is_some();
    let events_writer = match hooks.events {
        Some(p) if judging => Some(output(p, "events").map_err(PipelineError::EventOutput)?),
        _ => None,
    };
    let want_arp = detectors.is_some() || learn.is_some();
    let analyzing = flows_writer.is_some() || judging || learn.is_some();
    let mut watchdog = cfg.memory_limit.map(Watchdog::new);
    let pressure = watchdog.as_ref().map(|w| Arc::clone(&w.pressure));
    if let (Some(m), Some(limit)) = (&hooks.metrics, cfg.memory_limit) {
        m.memory_ceiling
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }
    let analysis = analyzing.then(|| AnalysisSetup {
        policy: policy.clone(),
        // A window of violations stays open until the longest-lived kind
        // of flow that started in it has had time to end.
        hold_ns: cfg.timeouts.ns.iter().copied().max().unwrap_or(0),
        workers,
        events_out: events_writer,
        flows_out: flows_writer,
        live,
        metrics: hooks.metrics.clone(),
        detectors,
        learn,
        reload: hooks.reload.take(),
        pressure: pressure.clone(),
        dedup_cap: cfg.memory_limit.map(crate::memory::dedup_cap),
    });
    let hasher = ahash::RandomState::new();
    let per_worker_flows = cfg.max_flows.div_ceil(workers).max(1);
    let mut summary = RunSummary {
        workers,
        live,
        batch_size: cfg.batch_size.max(1),
        ..RunSummary::default()
    };

    let analysis_failed = AtomicBool::new(false);
    let analysis_failed = &analysis_failed;
    let (reports, dispatch_stats, analysis_result) = std::thread::scope(|scope| {
        let (record_tx, record_rx) = bounded(64);
        let analyzer = analysis.map(|setup| {
            std::thread::Builder::new()
                .name("segwatch-analysis".into())
                .spawn_scoped(scope, move || {
                    let r = crate::analysis::run(record_rx, setup);
                    // No use reading on: an output cannot be written.
                    if r.is_err() {
                        analysis_failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
        });
        let (recycle_tx, recycle_rx) = unbounded();
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let (tx, rx) = bounded(cfg.queue_batches.max(1));
            senders.push(tx);
            let recycle = recycle_tx.clone();
            let records = analyzer.is_some().then(|| record_tx.clone());
            let worker_metrics = hooks.metrics.clone();
            let worker_pressure = pressure.clone();
            let hasher = hasher.clone();
            let timeouts = cfg.timeouts;
            let handle = std::thread::Builder::new()
                .name(format!("segwatch-worker-{i}"))
                .spawn_scoped(scope, move || {
                    let mut worker =
                        Worker::new(per_worker_flows, timeouts, hasher, records, want_arp)
                            .with_index(i);
                    if let Some(m) = &worker_metrics {
                        worker = worker.with_metrics(WorkerMetrics::new(m, i), live);
                    }
                    if let Some(p) = worker_pressure {
                        worker = worker.with_pressure(p);
                    }
                    for batch in rx {
                        worker.process(&batch);
                        // The reader may have finished; then the batch is simply freed.
                        let _ = recycle.send(batch);
                    }
                    worker.finish()
                });
            handles.push(handle);
        }
        drop(record_tx);
        drop(recycle_tx);
        if let Some(m) = &hooks.metrics {
            m.set_ready(true);
        }

        let mut dispatcher = Dispatcher::new(
            senders,
            recycle_rx,
            DispatchConfig {
                batch_size: cfg.batch_size.max(1),
                frame_prefix: cfg.frame_prefix,
                backpressure: if live {
                    Backpressure::Drop
                } else {
                    Backpressure::Wait
                },
                fragment_cap: 65_536,
            },
        );
        read_loop(
            source,
            &mut dispatcher,
            &mut summary,
            (&hooks, watchdog.as_mut(), analysis_failed),
            live,
        );
        let dispatch_stats = dispatcher.finish();
        if let Some(m) = &hooks.metrics {
            m.set_ready(false);
        }

        let mut reports = Vec::with_capacity(workers);
        let mut failure = None;
        for h in handles {
            match h {
                Ok(h) => match h.join() {
                    Ok(r) => reports.push(r),
                    Err(_) => failure = Some("worker panicked".to_string()),
                },
                Err(e) => failure = Some(e.to_string()),
            }
        }
        let analysis_result = analyzer.map(|a| match a {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("flow analysis thread panicked"))),
            Err(e) => Err(e),
        });
        match failure {
            Some(f) => Err(PipelineError::Worker(f)),
            None => Ok((reports, dispatch_stats, analysis_result)),
        }
    })?;

    let analysis = analysis_result
        .transpose()
        .map_err(PipelineError::Output)?
        .unwrap_or_default();

    summary.dispatch = dispatch_stats;
    for WorkerReport {
        counters,
        table,
        totals,
        batch_ns,
    } in reports
    {
        // Same bounds on every worker: adding cannot fail.
        let _ = summary.batch_ns.add(&batch_ns);
        summary.worker.merge(counters);
        for p in DecodeProblem::ALL {
            let n = counters.problems[p.index()];
            if n > 0 {
                *summary
                    .capture
                    .decode_problems
                    .entry(p.as_str())
                    .or_default() += n;
            }
        }
        summary.table.created += table.created;
        summary.table.expired += table.expired;
        summary.table.evicted += table.evicted;
        summary.table.reused += table.reused;
        summary.table.peak_active += table.peak_active;
        summary.flows.merge(totals);
    }
    let stats = source.stats();
    summary.capture.kernel_dropped = stats.kernel_dropped;
    summary.capture.interface_dropped = stats.interface_dropped;
    summary.capture.file_problems = source.problems();
    if let Some((_, h)) = source.health() {
        summary.capture.interruptions = h.interruptions;
        summary.capture.reopens = h.reopens;
    }
    summary.capture.truncated_frames = summary.worker.truncated_frames;
    summary.capture.fragments_attributed = summary.worker.fragments_attributed;
    let mut events = analysis.events;
    if let Some(a) = analysis.anomalies {
        let (kept, written) = events.as_mut().map_or((Vec::new(), 0), |e| {
            (std::mem::take(&mut e.anomalies), e.anomalies_written)
        });
        summary.anomalies = Some(AnomalyResult {
            stats: a.stats,
            baseline_loaded: a.baseline_loaded,
            events: kept,
            written,
        });
    }
    summary.learned = analysis.learned;
    summary.reloads = analysis.reloads;
    let policy = analysis.policy.or(policy);
    if let (Some(policy), Some(tally), Some(events)) = (policy, analysis.tally, events) {
        summary.segmentation = Some(SegmentationResult {
            policy,
            policy_since: analysis.policy_since,
            tally,
            events: Arc::new(events),
        });
    }
    summary.peak_resident_bytes = crate::memory::peak_resident_bytes();
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Wall-clock time in nanoseconds since the epoch (live capture's stand-in
/// for packet time when the wire is quiet).
pub fn wall_clock_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Live capture: pending batches are sent at least this often, so flows are
/// decided promptly even at low packet rates.
const LIVE_FLUSH: Duration = Duration::from_millis(50);

fn read_loop(
    source: &mut dyn FrameSource,
    dispatcher: &mut Dispatcher,
    summary: &mut RunSummary,
    (hooks, mut watchdog, analysis_failed): (&RunHooks<'_>, Option<&mut Watchdog>, &AtomicBool),
    live: bool,
) {
    // Resident memory once a second, with the ceiling's pressure.
    let mut memory = |summary: &mut RunSummary| {
        if let Some(w) = watchdog.as_mut() {
            if w.tick() {
                summary.memory_pressure += 1;
            }
            if let Some(m) = &hooks.metrics {
                m.memory_resident
                    .set(i64::try_from(w.resident).unwrap_or(i64::MAX));
                m.memory_pressure.inc_by(
                    summary
                        .memory_pressure
                        .saturating_sub(m.memory_pressure.get()),
                );
            }
        }
    };
    let mut last_flush = Instant::now();
    let mut n: u64 = 0;
    let mut metrics = hooks.metrics.as_ref().map(|m| {
        (
            ReaderMetrics::new(m, summary.workers),
            Instant::now(),
            Default::default(),
        )
    });
    // Fold the reader's counters into the metrics; libpcap's statistics
    // (a system call) at most once a second.
    let mut fold = |source: &mut dyn FrameSource, d: &Dispatcher, s: &RunSummary, force: bool| {
        let Some((m, last_stats, stats)) = &mut metrics else {
            return;
        };
        if live && (force || last_stats.elapsed() >= Duration::from_secs(1)) {
            *stats = source.stats();
            *last_stats = Instant::now();
        }
        if let Some((interface, health)) = source.health() {
            m.fold_health(interface, health);
        }
        let st: &crate::capture::CaptureStats = stats;
        m.fold(
            [
                s.capture.frames,
                s.capture.bytes,
                st.kernel_dropped,
                st.interface_dropped,
                d.stats.dropped_packets,
            ],
            d.queue_depths(),
        );
    };
    let mut stopping = false;
    loop {
        if !stopping && hooks.stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            // A live source reads out what the kernel still holds, then ends.
            if !source.stop() {
                break;
            }
            stopping = true;
        }
        match source.next_frame() {
            Next::Frame(frame) => {
                summary.capture.frames += 1;
                summary.capture.bytes += u64::from(frame.wire_len);
                dispatcher.push(&frame);
                n += 1;
                if n.is_multiple_of(1024) {
                    if analysis_failed.load(Ordering::Relaxed) {
                        break;
                    }
                    dispatcher.tick();
                    if live && last_flush.elapsed() >= LIVE_FLUSH {
                        dispatcher.flush();
                        last_flush = Instant::now();
                    }
                    fold(source, dispatcher, summary, false);
                    memory(summary);
                    if n.is_multiple_of(65_536)
                        && let (Some(cb), Some((done, total))) = (hooks.progress, source.progress())
                    {
                        cb(done, total);
                    }
                }
            }
            Next::Idle => {
                if analysis_failed.load(Ordering::Relaxed) {
                    break;
                }
                // A quiet interface: let wall-clock time stand in for packet
                // time, so idle flows still end and are reported.
                dispatcher.advance_clock(wall_clock_ns());
                dispatcher.tick();
                dispatcher.flush();
                last_flush = Instant::now();
                fold(source, dispatcher, summary, false);
                memory(summary);
            }
            Next::Again => {}
            Next::End => break,
        }
    }
    fold(source, dispatcher, summary, true);
    if let (Some(cb), Some((done, total))) = (hooks.progress, source.progress()) {
        cb(done, total);
    }
}
