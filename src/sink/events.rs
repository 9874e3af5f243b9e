//! The event sink thread: receives violations from the workers in chunks,
//! deduplicates them ([`Deduper`]) and writes the events as JSON lines. It
//! also keeps the events (up to [`REPORT_EVENT_CAP`]) for the report.

use std::io;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::jsonl::JsonLinesWriter;
use crate::policy::SharedPolicy;
use crate::segmentation::dedup::{DedupStats, Deduper};
use crate::segmentation::{Violation, ViolationEvent};

/// Events kept in memory for the report; past it they are only written.
pub const REPORT_EVENT_CAP: usize = 10_000;

/// How often a live sink looks at the wall clock when no violations come.
const LIVE_TICK: Duration = Duration::from_secs(1);

/// What the event sink hands back at the end of a run.
#[derive(Debug, Default)]
pub struct EventReport {
    pub stats: DedupStats,
    /// The events, in order, up to [`REPORT_EVENT_CAP`].
    pub events: Vec<ViolationEvent>,
    /// Events not kept for the report (still written).
    pub not_kept: u64,
    pub written: u64,
}

struct Emitter {
    out: Option<JsonLinesWriter>,
    report: EventReport,
}

impl Emitter {
    fn emit(&mut self, events: Vec<ViolationEvent>) -> io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some(w) = &mut self.out {
            for e in &events {
                w.write(e)?;
            }
            w.chunk_done()?;
            self.report.written += events.len() as u64;
        }
        for e in events {
            if self.report.events.len() < REPORT_EVENT_CAP {
                self.report.events.push(e);
            } else {
                self.report.not_kept += 1;
            }
        }
        Ok(())
    }
}

/// Run until every sender is gone. `hold_ns`: see [`Deduper::new`]; `live`:
/// wall-clock time advances the windows when traffic is quiet.
pub fn run(
    rx: Receiver<Vec<Violation>>,
    policy: SharedPolicy,
    hold_ns: i64,
    out: Option<JsonLinesWriter>,
    live: bool,
) -> io::Result<EventReport> {
    let mut dedup = Deduper::new(policy, hold_ns);
    let mut emitter = Emitter {
        out,
        report: EventReport::default(),
    };
    loop {
        let next = if live {
            rx.recv_timeout(LIVE_TICK)
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match next {
            Ok(chunk) => {
                for v in chunk {
                    dedup.push(v);
                }
            }
            Err(RecvTimeoutError::Timeout) => dedup.advance_clock(crate::pipeline::wall_clock_ns()),
            Err(RecvTimeoutError::Disconnected) => break,
        }
        emitter.emit(dedup.take_closed())?;
    }
    emitter.emit(dedup.finish())?;
    if let Some(w) = emitter.out.take() {
        w.finish()?;
    }
    emitter.report.stats = dedup.stats;
    Ok(emitter.report)
}
