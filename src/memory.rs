//! The memory ceiling (`[limits] memory_mib`, `--memory-mib`): a plan made
//! at start that sizes the flow tables to fit, and a watchdog that reads the
//! process's resident memory once a second and, past the ceiling, makes
//! every part shed state by fixed rules.
//!
//! The plan, from measured costs (README, "Performance and memory"):
//! a fixed 32 MiB for code, threads, buffers and capped summary state; the
//! reader-to-worker queues at full depth and, live, the kernel's capture
//! buffer; the baseline (about 4 KiB per host, loaded or being
//! learned); half the ceiling for the analysis state: a fifth of the
//! ceiling for the detectors (sources, targets, pairs and suppression keys
//! tracked, at about 800 bytes each, are capped to fit), a tenth for open
//! violation windows (past it they are written early), the rest for report
//! tallies and the writers; what is left for flows at 160 bytes each (140
//! measured).
//! `flows.max_flows` is lowered to fit, never raised.
//!
//! Under pressure (resident memory over the ceiling and higher than at the
//! last shedding): each worker evicts its least recently active flows down
//! to three quarters of what it tracks and keeps that as its new cap (their
//! records are still written, `end_reason` `evicted`); the analysis thread
//! writes open violation windows early (nothing is lost), forgets scan
//! windows, beacon series and suppression keys, and learning evicts its least
//! recently seen tenth of hosts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::pipeline::PipelineConfig;

/// Code, thread stacks, channel and output buffers, the summary's host
/// totals (up to 200,000 hosts) and the report's kept events (measured:
/// about 32 MiB besides the flows under a random-source flood).
pub const FIXED_BYTES: u64 = 32 << 20;
/// Per tracked flow: 140 bytes measured, with headroom for table growth.
pub const FLOW_BYTES: u64 = 160;
/// Per host of a baseline in memory (37 MiB measured for 10,000 busy hosts).
pub const BASELINE_HOST_BYTES: u64 = 4 << 10;
/// Bookkeeping per queued frame besides its copied bytes.
const FRAME_OVERHEAD: u64 = 48;
/// Per open violation group: its aggregate and table slot, and the event
/// and sort vectors made when its window is written (measured with massif).
pub const DEDUP_GROUP_BYTES: u64 = 1200;

/// Open violation groups allowed under `ceiling`: a tenth of it. Past it,
/// open windows are written early.
pub fn dedup_cap(ceiling: u64) -> usize {
    usize::try_from(ceiling / 10 / DEDUP_GROUP_BYTES).unwrap_or(usize::MAX)
}

/// Detector state allowed under `ceiling`: a fifth of it.
pub fn detector_bytes(ceiling: u64) -> u64 {
    ceiling / 5
}

/// The fewest flows a plan may leave room for.
pub const MIN_FLOWS: u64 = 10_000;

/// How the ceiling is shared out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub ceiling: u64,
    pub queues: u64,
    pub baseline: u64,
    pub analysis: u64,
    pub flows: u64,
    /// The flow cap that fits (at most the configured one).
    pub max_flows: usize,
}

impl Plan {
    /// Share `ceiling` bytes out for `cfg`, with `baseline` bytes of
    /// baseline in memory ([`baseline_bytes`]). `Err` says what does not fit.
    pub fn new(
        ceiling: u64,
        cfg: &PipelineConfig,
        capture_buffer: u64,
        baseline: u64,
    ) -> Result<Plan, String> {
        let frames = (cfg.workers.max(1) as u64)
            .saturating_mul(cfg.queue_batches as u64 + 2)
            .saturating_mul(cfg.batch_size as u64);
        // The kernel's capture ring is mapped into the process and counts
        // as resident memory too.
        let queues = frames
            .saturating_mul(cfg.frame_prefix as u64 + FRAME_OVERHEAD)
            .saturating_add(capture_buffer);
        let analysis = ceiling / 2;
        let flows = ceiling
            .saturating_sub(FIXED_BYTES)
            .saturating_sub(queues)
            .saturating_sub(baseline)
            .saturating_sub(analysis);
        let fit = flows / FLOW_BYTES;
        if fit < MIN_FLOWS {
            let needed = FIXED_BYTES + queues + baseline + MIN_FLOWS * FLOW_BYTES;
            // The analysis half comes on top.
            let mib = (needed * 2).div_ceil(1 << 20);
            return Err(format!(
                "{} MiB leaves room for {fit} flows after the queues and capture buffer ({} MiB), the baseline ({} MiB) and the analysis state; at least {mib} MiB is needed",
                ceiling >> 20,
                queues >> 20,
                baseline >> 20
            ));
        }
        Ok(Plan {
            ceiling,
            queues,
            baseline,
            analysis,
            flows,
            max_flows: cfg
                .max_flows
                .min(usize::try_from(fit).unwrap_or(usize::MAX)),
        })
    }

    /// One line for logs and check-config.
    pub fn describe(&self) -> String {
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        format!(
            "memory ceiling {:.0} MiB: fixed {:.0}, queues and capture buffer {:.1}, baseline {:.1}, analysis state {:.0}, flows {:.0} (up to {} flows)",
            mib(self.ceiling),
            mib(FIXED_BYTES),
            mib(self.queues),
            mib(self.baseline),
            mib(self.analysis),
            mib(self.flows),
            self.max_flows
        )
    }
}

/// Memory a baseline takes: learning up to `max_hosts` hosts, or loading a
/// file (resident about 1.6 times its JSON size, measured; counted twice).
pub fn baseline_bytes(learning_hosts: Option<usize>, file_len: Option<u64>) -> u64 {
    match (learning_hosts, file_len) {
        (Some(h), _) => (h as u64).saturating_mul(BASELINE_HOST_BYTES),
        (None, Some(len)) => len.saturating_mul(2),
        (None, None) => 0,
    }
}

/// Resident memory of this process, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(rustix::param::page_size() as u64))
}

/// Peak resident memory of this process (`VmHWM`).
pub fn peak_resident_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib << 10)
}

/// A counter the watchdog bumps when memory runs over; each part compares
/// it with the value it last acted on (one relaxed load per batch).
pub type Pressure = Arc<AtomicU64>;

/// Whether the pressure counter moved since `seen` (and remember it).
pub fn pressed(p: &Pressure, seen: &mut u64) -> bool {
    let now = p.load(Ordering::Relaxed);
    if now != *seen {
        *seen = now;
        true
    } else {
        false
    }
}

/// Reads resident memory once a second and raises the pressure counter.
pub struct Watchdog {
    ceiling: u64,
    pub pressure: Pressure,
    last_check: Instant,
    /// Resident memory when pressure was last raised: freed memory mostly
    /// stays with the process, so only growth past it calls for more.
    last_raised: u64,
    pub resident: u64,
    pub peak: u64,
}

const CHECK_EVERY: Duration = Duration::from_secs(1);

impl Watchdog {
    pub fn new(ceiling: u64) -> Watchdog {
        Watchdog {
            ceiling,
            pressure: Arc::new(AtomicU64::new(0)),
            last_check: Instant::now(),
            last_raised: 0,
            resident: 0,
            peak: 0,
        }
    }

    /// Look at memory if a second has passed; true when pressure was raised.
    pub fn tick(&mut self) -> bool {
        if self.last_check.elapsed() < CHECK_EVERY {
            return false;
        }
        self.last_check = Instant::now();
        let Some(rss) = resident_bytes() else {
            return false;
        };
        self.resident = rss;
        self.peak = self.peak.max(rss);
        if rss > self.ceiling && rss > self.last_raised {
            self.last_raised = rss + rss / 50;
            self.pressure.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                resident_mib = rss >> 20,
                ceiling_mib = self.ceiling >> 20,
                "memory over the ceiling: shedding flows and analysis state"
            );
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_fits_flows_in_what_is_left() {
        let cfg = PipelineConfig {
            workers: 1,
            ..PipelineConfig::default()
        };
        let p = Plan::new(512 << 20, &cfg, 0, 0).expect("fits");
        // 66 batches of 256 frames of 192 + 48 bytes.
        assert_eq!(p.queues, 66 * 256 * 240);
        assert_eq!(p.flows, (512 << 20) - FIXED_BYTES - p.queues - (256 << 20));
        assert_eq!(p.max_flows, cfg.max_flows, "1,000,000 flows fit in 512 MiB");
        let small = Plan::new(128 << 20, &cfg, 0, 0).expect("fits");
        assert_eq!(small.max_flows as u64, small.flows / FLOW_BYTES);
        assert!(small.max_flows < cfg.max_flows, "{small:?}");
        let live = Plan::new(128 << 20, &cfg, 64 << 20, 0).expect_err("buffer too big");
        assert!(live.contains("at least"), "{live}");
        let e = Plan::new(32 << 20, &cfg, 0, 0).expect_err("too small");
        assert!(e.contains("at least"), "{e}");
        let b = baseline_bytes(Some(2_000), None);
        let with_base = Plan::new(128 << 20, &cfg, 0, b).expect("fits");
        assert_eq!(with_base.baseline, 2_000 * BASELINE_HOST_BYTES);
        assert_eq!(baseline_bytes(None, Some(100)), 200);
        assert!(with_base.max_flows < small.max_flows);
    }

    #[test]
    fn resident_memory_is_read() {
        assert!(resident_bytes().is_some_and(|b| b > 1 << 20));
    }

    #[test]
    fn pressure_is_seen_once() {
        let p: Pressure = Arc::new(AtomicU64::new(0));
        let mut seen = 0;
        assert!(!pressed(&p, &mut seen));
        p.fetch_add(1, Ordering::Relaxed);
        assert!(pressed(&p, &mut seen));
        assert!(!pressed(&p, &mut seen));
    }
}
