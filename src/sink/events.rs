//! Events out: segmentation violations (written as their deduplication
//! windows close) and anomalies (written as detectors find them), as JSON
//! lines in one file, and kept (up to [`REPORT_EVENT_CAP`] each) for the
//! report and the summary.

use std::io;

use super::jsonl::JsonLinesWriter;
use crate::detect::AnomalyEvent;
use crate::segmentation::ViolationEvent;
use crate::segmentation::dedup::DedupStats;

/// Events kept in memory for the report; past it they are only written.
pub const REPORT_EVENT_CAP: usize = 10_000;

/// The events of a run.
#[derive(Debug, Default)]
pub struct EventReport {
    pub stats: DedupStats,
    /// The events, in order, up to [`REPORT_EVENT_CAP`].
    pub events: Vec<ViolationEvent>,
    /// Events not kept for the report (still written).
    pub not_kept: u64,
    pub written: u64,
    /// Anomaly events, in order, up to [`REPORT_EVENT_CAP`].
    pub anomalies: Vec<AnomalyEvent>,
    pub anomalies_not_kept: u64,
    pub anomalies_written: u64,
}

/// Where events go: the optional event file, and the report's list.
pub struct EventOutput {
    out: Option<JsonLinesWriter>,
    report: EventReport,
}

impl EventOutput {
    pub fn new(out: Option<JsonLinesWriter>) -> EventOutput {
        EventOutput {
            out,
            report: EventReport::default(),
        }
    }

    pub fn emit(&mut self, events: Vec<ViolationEvent>) -> io::Result<()> {
        let r = &mut self.report;
        write_and_keep(
            self.out.as_mut(),
            events,
            (&mut r.events, &mut r.not_kept, &mut r.written),
        )
    }

    pub fn emit_anomalies(&mut self, events: Vec<AnomalyEvent>) -> io::Result<()> {
        let r = &mut self.report;
        write_and_keep(
            self.out.as_mut(),
            events,
            (
                &mut r.anomalies,
                &mut r.anomalies_not_kept,
                &mut r.anomalies_written,
            ),
        )
    }

    /// A quiet moment: retry a file that failed.
    pub fn idle(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(w) => w.chunk_done(),
            None => Ok(()),
        }
    }

    /// Close the event file (moved into place for capture files).
    pub fn finish(mut self) -> io::Result<EventReport> {
        if let Some(w) = self.out.take() {
            w.finish()?;
        }
        Ok(self.report)
    }
}

/// Write events to the file (when there is one) and keep the first
/// [`REPORT_EVENT_CAP`] in `kept`, counting the rest.
fn write_and_keep<T: serde::Serialize>(
    out: Option<&mut JsonLinesWriter>,
    events: Vec<T>,
    (kept, not_kept, written): (&mut Vec<T>, &mut u64, &mut u64),
) -> io::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    if let Some(w) = out {
        for e in &events {
            w.write(e)?;
        }
        w.chunk_done()?;
        *written += events.len() as u64;
    }
    for e in events {
        if kept.len() < REPORT_EVENT_CAP {
            kept.push(e);
        } else {
            *not_kept += 1;
        }
    }
    Ok(())
}
