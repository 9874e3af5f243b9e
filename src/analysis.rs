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

use crate::flow::FlowRecord;
use crate::metrics::{AnalysisMetrics, Metrics};
use crate::policy::SharedPolicy;
use crate::segmentation::SegTally;
use crate::segmentation::dedup::Deduper;
use crate::sink::events::{EventOutput, EventReport};
use crate::sink::jsonl::JsonLinesWriter;
use crate::zones::ZoneId;

/// How often a live run looks at the wall clock when no flows arrive.
const LIVE_TICK: Duration = Duration::from_secs(1);

/// What the analysis thread needs.
pub struct AnalysisSetup {
    /// Judge flows against this policy (with zones).
    pub policy: Option<SharedPolicy>,
    /// Violation windows stay open this long past their end (the longest
    /// flow timeout), for flows that started in them to arrive.
    pub hold_ns: i64,
    pub events_out: Option<JsonLinesWriter>,
    pub flows_out: Option<JsonLinesWriter>,
    /// Live capture: wall-clock time closes windows when the wire is quiet.
    pub live: bool,
    pub metrics: Option<Arc<Metrics>>,
}

/// What the analysis thread hands back.
#[derive(Debug, Default)]
pub struct AnalysisReport {
    pub flows_written: u64,
    /// Present when a policy was applied.
    pub tally: Option<SegTally>,
    pub events: Option<EventReport>,
}

struct Segmentation {
    policy: SharedPolicy,
    tally: SegTally,
    dedup: Deduper,
    out: EventOutput,
    zones: Vec<Option<(ZoneId, ZoneId)>>,
    metrics: Option<AnalysisMetrics>,
}

impl Segmentation {
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
    fn emit(&mut self, all: bool) -> io::Result<()> {
        let events = if all {
            self.dedup.finish()
        } else {
            self.dedup.take_closed()
        };
        if let Some(m) = &self.metrics {
            m.events(&events);
        }
        self.out.emit(events)
    }
}

/// Run until every worker has hung up.
pub fn run(rx: Receiver<Vec<FlowRecord>>, setup: AnalysisSetup) -> io::Result<AnalysisReport> {
    let AnalysisSetup {
        policy,
        hold_ns,
        events_out,
        mut flows_out,
        live,
        metrics,
    } = setup;
    let mut seg = policy.map(|p| Segmentation {
        tally: SegTally::new(&p),
        dedup: Deduper::new(p.clone(), hold_ns),
        out: EventOutput::new(events_out),
        zones: Vec::new(),
        metrics: metrics.map(AnalysisMetrics::new),
        policy: p,
    });
    loop {
        let next = if live {
            rx.recv_timeout(LIVE_TICK)
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match next {
            Ok(chunk) => {
                if let Some(s) = &mut seg {
                    s.judge(&chunk);
                }
                if let Some(w) = &mut flows_out {
                    for r in &chunk {
                        w.write(r)?;
                    }
                    w.chunk_done()?;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(s) = &mut seg {
                    s.dedup.advance_clock(crate::pipeline::wall_clock_ns());
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(s) = &mut seg {
            s.emit(false)?;
        }
    }
    let mut report = AnalysisReport::default();
    if let Some(mut s) = seg {
        s.emit(true)?;
        let mut events = s.out.finish()?;
        events.stats = s.dedup.stats;
        report.tally = Some(s.tally);
        report.events = Some(events);
    }
    if let Some(w) = flows_out {
        report.flows_written = w.finish()?;
    }
    Ok(report)
}
