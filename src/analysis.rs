//! The flow-analysis thread: every finished flow from every worker passes
//! through here once. It judges flows against the segmentation policy, keeps
//! the tallies the report is built from, deduplicates violations into events
//! and writes them, and writes the flow records.
//!
//! Why one thread after the workers rather than judging on each worker:
//! analysis that looks across flows (one source's violations into a zone, and
//! later per-host baselines and scans) needs every flow of a host, while the
//! workers split a host's flows by flow hash; one place keeps that state
//! without merging or locks and gives the same result for any worker count.
//! Flows are far fewer than packets (one thread judges several million per
//! second), and judging here overlaps with the workers' packet processing
//! instead of adding to it, including at the end of a capture when every
//! worker drains its table at once.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use std::path::PathBuf;

use crate::baseline::learn::Learner;
use crate::baseline::model::{Baseline, Unfinished};
use crate::decode::ArpPacket;
use crate::detect::network::Networks;
use crate::detect::{DetectStats, Detectors};
use crate::flow::FlowRecord;
use crate::metrics::{AnalysisMetrics, Metrics};
use crate::policy::SharedPolicy;
use crate::reload::Reload;
use crate::segmentation::SegTally;
use crate::segmentation::dedup::Deduper;
use crate::sink::events::{EventOutput, EventReport};
use crate::sink::jsonl::JsonLinesWriter;
use crate::zones::ZoneId;

/// How often a live run looks at the wall clock when no flows arrive.
const LIVE_TICK: Duration = Duration::from_secs(1);

/// An ARP packet as the workers pass it on (for ARP spoofing and sweep
/// detection, and IP-to-MAC bindings in baselines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpFact {
    pub ts_ns: i64,
    /// Innermost VLAN tag.
    pub vlan: Option<u16>,
    pub arp: ArpPacket,
}

/// What a worker hands over at the end of a batch.
#[derive(Debug, Default)]
pub struct Chunk {
    pub flows: Vec<FlowRecord>,
    pub arp: Vec<ArpFact>,
    /// The worker that sent it, and its packet clock then: every flow it
    /// still holds ended after that clock less the longest timeout.
    pub worker: usize,
    pub clock_ns: i64,
}

/// Learning a baseline on this thread.
pub struct LearnSetup {
    pub learner: Learner,
    /// Live learning: stop after this much packet time, save, and detect
    /// with what was learned. `None`: learn until the capture ends.
    pub duration_ns: Option<i64>,
    /// Where the baseline is written (atomically).
    pub out: PathBuf,
    /// Live learning resumed from a checkpoint that had this much done.
    pub resumed_ns: i64,
    /// Live learning: write the baseline so far this often (wall clock),
    /// marked unfinished, so a crash loses at most this much learning.
    pub checkpoint_every: Option<Duration>,
}

/// What learning produced.
#[derive(Clone, Debug)]
pub struct Learned {
    pub baseline: Baseline,
    pub saved_to: PathBuf,
    /// Learning ran its full duration (live) or to the end of the capture.
    pub completed_at_ns: Option<i64>,
}

/// What the analysis thread needs.
pub struct AnalysisSetup {
    /// Judge flows against this policy (with zones).
    pub policy: Option<SharedPolicy>,
    /// Violation windows stay open this long past their end (the longest
    /// flow timeout), for flows that started in them to arrive.
    pub hold_ns: i64,
    /// Worker threads sending chunks (for the watermark of packet time
    /// that all of them have passed).
    pub workers: usize,
    pub events_out: Option<JsonLinesWriter>,
    pub flows_out: Option<JsonLinesWriter>,
    /// Live capture: wall-clock time closes windows when the wire is quiet.
    pub live: bool,
    pub metrics: Option<Arc<Metrics>>,
    pub detectors: Option<Detectors>,
    pub learn: Option<LearnSetup>,
    /// Reloaded configs (SIGHUP), applied between two chunks.
    pub reload: Option<Receiver<Reload>>,
    /// The memory watchdog's counter ([`crate::memory`]).
    pub pressure: Option<crate::memory::Pressure>,
    /// Open violation groups kept at most (memory ceiling); past it the
    /// open windows are written early.
    pub dedup_cap: Option<usize>,
}

/// Anomaly detection's results.
#[derive(Debug, Default)]
pub struct AnomalyReport {
    pub stats: DetectStats,
    pub baseline_loaded: bool,
}

/// What the analysis thread hands back.
#[derive(Debug, Default)]
pub struct AnalysisReport {
    pub flows_written: u64,
    /// Present when a policy was applied.
    pub tally: Option<SegTally>,
    pub events: Option<EventReport>,
    pub anomalies: Option<AnomalyReport>,
    pub learned: Option<Result<Learned, String>>,
    /// The policy in force at the end (it changes on reload).
    pub policy: Option<SharedPolicy>,
    /// Packet time the policy in force was reloaded at: the tally covers
    /// flows judged since then.
    pub policy_since: Option<i64>,
    pub reloads: u32,
}

struct Segmentation {
    policy: SharedPolicy,
    tally: SegTally,
    dedup: Deduper,
    zones: Vec<Option<(ZoneId, ZoneId)>>,
    metrics: Option<AnalysisMetrics>,
}

impl Segmentation {
    fn new(policy: SharedPolicy, hold_ns: i64, metrics: Option<&Arc<Metrics>>) -> Segmentation {
        Segmentation {
            tally: SegTally::new(&policy),
            dedup: Deduper::new(policy.clone(), hold_ns),
            zones: Vec::new(),
            metrics: metrics.cloned().map(AnalysisMetrics::new),
            policy,
        }
    }

    /// Judge a chunk: every zone lookup first, then the decisions, so the
    /// lookups' cache misses overlap.
    fn judge(&mut self, chunk: &[FlowRecord]) {
        let policy = &*self.policy;
        self.zones.clear();
        self.zones.extend(chunk.iter().map(|r| policy.zones_of(r)));
        for (r, z) in chunk.iter().zip(&self.zones) {
            let v = self.tally.judge_in_zones(policy, r, *z);
            if let (Some(m), Some((s, d))) = (&mut self.metrics, z) {
                m.flow(policy, *s, *d, r.outcome, r.bytes());
                if let Some(v) = &v {
                    m.violation(policy, v);
                }
            }
            if let Some(v) = v {
                self.dedup.push(v);
            }
        }
    }

    /// Write the events whose windows closed (all of them at the end).
    fn emit(&mut self, all: bool, out: &mut EventOutput) -> io::Result<()> {
        let events = if all {
            self.dedup.finish()
        } else {
            self.dedup.take_closed()
        };
        if let Some(m) = &self.metrics {
            m.events(&events);
        }
        out.emit(events)
    }
}

/// Reloads applied so far.
#[derive(Default)]
struct Reloads {
    count: u32,
    /// Packet time of the last one that changed the policy.
    since: Option<i64>,
}

impl Reloads {
    /// Swap in a reloaded config. Violation windows open under the old
    /// policy are closed and written first, so every event is judged by one
    /// policy; the tally starts again with the new one (zone and rule ids
    /// change). Flow state in the workers is untouched.
    fn apply(
        &mut self,
        r: Reload,
        (seg, detectors, out): (
            &mut Option<Segmentation>,
            &mut Option<Detectors>,
            &mut EventOutput,
        ),
        hold_ns: i64,
        metrics: Option<&Arc<Metrics>>,
        now: i64,
    ) -> io::Result<()> {
        let policy_changed = match seg.as_ref() {
            Some(s) => *s.policy != *r.policy,
            None => !r.policy.is_empty(),
        };
        if policy_changed {
            if let Some(s) = seg.as_mut() {
                s.emit(true, out)?;
            }
            *seg = (!r.policy.is_empty())
                .then(|| Segmentation::new(r.policy.clone(), hold_ns, metrics));
            self.since = (now != i64::MIN).then_some(now);
        }
        let allow = r.detect.allow.len();
        if let Some(d) = detectors.as_mut() {
            d.reload(Networks::new(Some(&r.policy)), r.detect, r.baseline);
        }
        self.count += 1;
        if let Some(m) = metrics {
            m.config_reload(true);
        }
        tracing::info!(
            config = %r.path.display(),
            zones = r.policy.zones.len(),
            rules = r.policy.rules.len(),
            allow,
            policy_changed,
            "config reloaded"
        );
        Ok(())
    }
}

/// Learning, then (live, after its duration) detecting with the result.
struct Learning {
    setup: LearnSetup,
    started: Option<i64>,
    last_checkpoint: std::time::Instant,
}

impl Learning {
    /// How far live learning got, when it has a goal and did not reach it.
    fn progress(&self, now: i64) -> Option<Unfinished> {
        let goal = self.setup.duration_ns?;
        let done = self.started.map_or(0, |s| now.saturating_sub(s).max(0));
        let secs = |ns: i64| u64::try_from(ns / 1_000_000_000).unwrap_or(0);
        let resumed = self.setup.resumed_ns;
        Some(Unfinished {
            goal_secs: secs(resumed.saturating_add(goal)),
            done_secs: secs(resumed.saturating_add(done)),
        })
    }

    /// Write the baseline learned so far, marked unfinished. A failure is
    /// logged; learning goes on.
    fn checkpoint(&mut self, now: i64) {
        self.last_checkpoint = std::time::Instant::now();
        let mut b = self.setup.learner.snapshot();
        b.learned.unfinished = self.progress(now);
        match b.save(&self.setup.out) {
            Ok(()) => tracing::info!(
                path = %self.setup.out.display(),
                hosts = b.hosts.len(),
                done_secs = b.learned.unfinished.map_or(0, |u| u.done_secs),
                "baseline checkpoint written"
            ),
            Err(e) => tracing::error!("baseline checkpoint failed, learning goes on: {e}"),
        }
    }
}

/// Run until every worker has hung up.
pub fn run(rx: Receiver<Chunk>, setup: AnalysisSetup) -> io::Result<AnalysisReport> {
    let AnalysisSetup {
        policy,
        hold_ns,
        workers,
        events_out,
        mut flows_out,
        live,
        metrics,
        mut detectors,
        learn,
        reload,
        pressure,
        dedup_cap,
    } = setup;
    if let Some(d) = detectors.as_mut() {
        d.set_flow_timeout(hold_ns);
    }
    // Each worker's packet clock, from its chunks: the slowest is how far
    // every worker has got (beacon series are judged up to there).
    let mut clocks = vec![i64::MIN; workers.max(1)];
    let mut pressure_seen = 0;
    let mut out = EventOutput::new(events_out);
    let mut seg = policy.map(|p| Segmentation::new(p, hold_ns, metrics.as_ref()));
    let mut anomaly_metrics = metrics.clone().map(AnalysisMetrics::new);
    let mut reloads = Reloads::default();
    let mut learning = learn.map(|setup| Learning {
        setup,
        started: None,
        last_checkpoint: std::time::Instant::now(),
    });
    let mut learned = None;
    if let Some(m) = &anomaly_metrics {
        m.baseline_state(
            learning.is_some(),
            detectors.as_ref().is_some_and(Detectors::has_baseline),
            learning
                .as_ref()
                .and_then(|l| l.setup.duration_ns)
                .map(|d| d as f64 / 1e9),
        );
    }
    let mut now = i64::MIN;
    let mut last_tick = std::time::Instant::now();
    loop {
        let next = if live {
            rx.recv_timeout(LIVE_TICK)
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        // Live: once a second whether or not chunks come (workers send one
        // a second even when idle, to give their clock).
        let tick = match next {
            Ok(chunk) => {
                if let Some(s) = &mut seg {
                    s.judge(&chunk.flows);
                }
                now = chunk
                    .flows
                    .iter()
                    .map(|r| r.end)
                    .chain(chunk.arp.iter().map(|a| a.ts_ns))
                    .fold(now, i64::max);
                // Live: allowed traffic moves time on too, so a violation
                // window is written once it closes even if no further
                // violation comes. (Files keep violation time only, which
                // does not depend on how workers interleave.)
                if live && let Some(s) = &mut seg {
                    s.dedup.advance_clock(now);
                }
                if let Some(l) = &mut learning {
                    l.setup.learner.flows_done(&chunk.flows);
                    l.setup.learner.arp(&chunk.arp);
                }
                if let Some(c) = clocks.get_mut(chunk.worker) {
                    *c = (*c).max(chunk.clock_ns);
                }
                if let Some(d) = &mut detectors {
                    d.set_watermark(clocks.iter().copied().min().unwrap_or(i64::MIN));
                    d.flows(&chunk.flows);
                    d.arp(&chunk.arp);
                }
                if let Some(w) = &mut flows_out {
                    for r in &chunk.flows {
                        w.write(r)?;
                    }
                    w.chunk_done()?;
                }
                live && last_tick.elapsed() >= LIVE_TICK
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if tick {
            last_tick = std::time::Instant::now();
            now = now.max(crate::pipeline::wall_clock_ns());
            // A flow file that failed is retried even when no flow ends.
            if let Some(w) = &mut flows_out {
                w.chunk_done()?;
            }
            if let Some(s) = &mut seg {
                s.dedup.advance_clock(now);
            }
            if let Some(d) = &mut detectors {
                d.advance_clock(now);
            }
        }
        if let Some(l) = &mut learning
            && let Some(duration) = l.setup.duration_ns
            && now != i64::MIN
        {
            let started = *l.started.get_or_insert(now);
            let left = started.saturating_add(duration).saturating_sub(now);
            if let Some(m) = &anomaly_metrics {
                m.baseline_state(true, false, Some(left.max(0) as f64 / 1e9));
            }
            if left > 0
                && l.setup
                    .checkpoint_every
                    .is_some_and(|every| l.last_checkpoint.elapsed() >= every)
            {
                l.checkpoint(now);
            }
            if left <= 0 {
                let done = learning
                    .take()
                    .map(|l| finish_learning(l.setup, Some(now), None));
                if let (Some(Ok(l)), Some(d)) = (&done, &mut detectors) {
                    d.set_baseline(l.baseline.clone());
                }
                if let Some(m) = &anomaly_metrics {
                    m.baseline_state(
                        false,
                        detectors.as_ref().is_some_and(Detectors::has_baseline),
                        None,
                    );
                }
                learned = done;
            }
        }
        if let Some(s) = &mut seg {
            let full = dedup_cap.is_some_and(|cap| s.dedup.open_groups() > cap);
            s.emit(full, &mut out)?;
        }
        if let Some(p) = &pressure
            && crate::memory::pressed(p, &mut pressure_seen)
        {
            // Violation windows are written early rather than dropped.
            if let Some(s) = &mut seg {
                s.emit(true, &mut out)?;
            }
            if let Some(d) = &mut detectors {
                d.shed();
            }
            if let Some(l) = &mut learning {
                l.setup.learner.shed();
            }
        }
        // An event file that failed is retried even when no event comes.
        out.idle()?;
        if let Some(rx) = &reload {
            for r in rx.try_iter() {
                let parts = (&mut seg, &mut detectors, &mut out);
                reloads.apply(r, parts, hold_ns, metrics.as_ref(), now)?;
            }
        }
        if let Some(d) = &mut detectors {
            let events = d.take();
            if let Some(m) = &mut anomaly_metrics {
                m.anomalies(&events);
            }
            out.emit_anomalies(events)?;
        }
    }
    if let Some(d) = &mut detectors {
        d.finish();
        let events = d.take();
        if let Some(m) = &mut anomaly_metrics {
            m.anomalies(&events);
        }
        out.emit_anomalies(events)?;
    }
    let mut report = AnalysisReport::default();
    if let Some(l) = learning.take() {
        let end = l.setup.learner.flows();
        // Live learning stopped before its time: the file says how far it
        // got, so the next `run --learn-for` resumes.
        let unfinished = l.progress(now);
        learned = Some(finish_learning(l.setup, None, unfinished));
        tracing::debug!(flows = end, "learning ended with the capture");
    }
    report.learned = learned;
    if let Some(s) = &mut seg {
        s.emit(true, &mut out)?;
    }
    let mut events = out.finish()?;
    report.reloads = reloads.count;
    report.policy_since = reloads.since;
    if let Some(s) = seg {
        events.stats = s.dedup.stats;
        report.policy = Some(s.policy);
        report.tally = Some(s.tally);
        report.events = Some(events);
    } else if detectors.is_some() {
        report.events = Some(events);
    }
    if let Some(d) = detectors {
        report.anomalies = Some(AnomalyReport {
            baseline_loaded: d.has_baseline(),
            stats: d.stats,
        });
    }
    if let Some(w) = flows_out {
        report.flows_written = w.finish()?;
    }
    Ok(report)
}

fn finish_learning(
    setup: LearnSetup,
    at: Option<i64>,
    unfinished: Option<Unfinished>,
) -> Result<Learned, String> {
    let mut baseline = setup.learner.finish();
    baseline.learned.unfinished = unfinished;
    baseline.save(&setup.out).map_err(|e| e.to_string())?;
    tracing::info!(
        path = %setup.out.display(),
        hosts = baseline.hosts.len(),
        flows = baseline.learned.flows,
        "baseline saved"
    );
    Ok(Learned {
        baseline,
        saved_to: setup.out,
        completed_at_ns: at,
    })
}
