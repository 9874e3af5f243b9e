//! Prometheus metrics: one explicit [`Registry`] with every segwatch metric,
//! handles that each thread resolves once, and a collector that exports
//! `hdrhistogram` distributions as summaries. [`server`] serves them over
//! HTTP ([`http`]), optionally with TLS ([`tls`]) and basic auth
//! ([`basic_auth`]) and a request rate limit ([`rate_limit`]), set by a web
//! config file ([`web_config`]).
//!
//! Nothing on the packet path touches the registry per packet: the reader,
//! each worker and the flow-analysis thread count in plain fields and fold
//! the differences into these metrics once per batch (an atomic add per
//! metric), see [`WorkerMetrics`].
//!
//! Labels are bounded: worker index, decode problem reason, drop stage, zone
//! names (zone pairs are created only when observed), outcome and severity;
//! never addresses or ports. Every metric is listed in the README.

pub mod basic_auth;
pub mod http;
pub mod latency;
pub mod rate_limit;
pub mod server;
pub mod tls;
pub mod web_config;
pub mod x509;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hashbrown::HashMap;
use prometheus::{
    Counter, CounterVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::decode::DecodeProblem;
use crate::flow::Outcome;
use crate::policy::Policy;
use crate::segmentation::{Severity, Violation, ViolationEvent};
use crate::summary::WorkerCounters;
use crate::zones::ZoneId;
use latency::{LatencySummary, SharedHistogram};

/// Where `/metrics` listens unless configured: loopback, on a port not used
/// by the Zeek (9911) or Suricata (9916) exporters.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9947";

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::with_opts(Opts::new(name, help))?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::with_opts(Opts::new(name, help))?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn unix_now() -> i64 {
    crate::pipeline::wall_clock_ns() / 1_000_000_000
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Every metric segwatch exports.
pub struct Metrics {
    pub registry: Registry,
    pub capture_packets: IntCounter,
    pub capture_bytes: IntCounter,
    /// stage: kernel, interface (libpcap statistics) or queue (reader to
    /// worker channel full, live capture).
    pub capture_dropped: IntCounterVec,
    /// Live capture: capturing now, interruptions, reopens (by interface).
    pub capture_up: IntGaugeVec,
    pub capture_errors: IntCounterVec,
    pub capture_reopens: IntCounterVec,
    pub decode_problems: IntCounterVec,
    pub worker_packets: IntCounterVec,
    pub worker_queue: IntGaugeVec,
    pub worker_busy: CounterVec,
    pub flows_active: IntGaugeVec,
    pub flows_created: IntCounter,
    pub flows_expired: IntCounter,
    pub flows_evicted: IntCounter,
    pub zone_pair_flows: IntCounterVec,
    pub zone_pair_bytes: IntCounterVec,
    pub violations: IntCounterVec,
    pub violation_events: IntCounterVec,
    pub anomaly_events: IntCounterVec,
    pub baseline_learning: IntGauge,
    pub baseline_loaded: IntGauge,
    pub baseline_learning_left: prometheus::Gauge,
    /// Live output files (`events`, `flows`): lines lost, write errors,
    /// rotations, and whether writing currently fails.
    pub output_lost: IntCounterVec,
    pub output_errors: IntCounterVec,
    pub output_rotations: IntCounterVec,
    pub output_failing: IntGaugeVec,
    pub memory_resident: IntGauge,
    pub memory_ceiling: IntGauge,
    pub memory_pressure: IntCounter,
    /// SIGHUP reloads, by result (`ok`, `error`).
    pub config_reloads: IntCounterVec,
    pub config_last_reload_ok: IntGauge,
    pub config_last_reload_time: IntGauge,
    /// Per-worker batch processing time (ns) and live decision latency (ns).
    pub batch_time: Vec<SharedHistogram>,
    pub decision_latency: Vec<SharedHistogram>,
    /// Capture open and workers running (for `/readyz`).
    pub ready: AtomicBool,
}

impl Metrics {
    /// Register every metric for `workers` workers.
    pub fn new(workers: usize) -> prometheus::Result<Arc<Metrics>> {
        let r = Registry::new();
        let info = IntGaugeVec::new(
            Opts::new(
                "segwatch_build_info",
                "Always 1; the labels say which segwatch is running.",
            ),
            &["version"],
        )?;
        r.register(Box::new(info.clone()))?;
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let batch_time: Vec<SharedHistogram> =
            (0..workers).map(|_| latency::shared_histogram()).collect();
        let decision_latency: Vec<SharedHistogram> =
            (0..workers).map(|_| latency::shared_histogram()).collect();
        r.register(Box::new(LatencySummary::new(
            "segwatch_batch_processing_seconds",
            "Time a worker took to process one batch of packets.",
            batch_time.clone(),
        )?))?;
        r.register(Box::new(LatencySummary::new(
            "segwatch_decision_latency_seconds",
            "Live capture: time from a packet's capture timestamp to the end of the batch that processed it (oldest packet of each batch).",
            decision_latency.clone(),
        )?))?;
        let m = Metrics {
            capture_packets: counter(
                &r,
                "segwatch_capture_packets_total",
                "Frames read from the capture.",
            )?,
            capture_bytes: counter(
                &r,
                "segwatch_capture_bytes_total",
                "Bytes of the frames read, as on the wire.",
            )?,
            capture_dropped: counter_vec(
                &r,
                "segwatch_capture_dropped_packets_total",
                "Packets lost before analysis, by stage: kernel and interface (libpcap statistics), queue (segwatch's reader found a worker's queue full).",
                &["stage"],
            )?,
            capture_up: gauge_vec(
                &r,
                "segwatch_capture_up",
                "Live capture: 1 while segwatch captures on the interface (open, up, with a carrier); 0 while the interface is down, gone or without carrier and segwatch retries.",
                &["interface"],
            )?,
            capture_errors: counter_vec(
                &r,
                "segwatch_capture_errors_total",
                "Live capture: times the capture stopped receiving (interface set down, without carrier, gone or re-created, or a read error).",
                &["interface"],
            )?,
            capture_reopens: counter_vec(
                &r,
                "segwatch_capture_reopens_total",
                "Live capture: times segwatch opened the interface again after it went down or away.",
                &["interface"],
            )?,
            decode_problems: counter_vec(
                &r,
                "segwatch_decode_problems_total",
                "Frames that could not be used, by reason.",
                &["reason"],
            )?,
            worker_packets: counter_vec(
                &r,
                "segwatch_worker_packets_total",
                "Packets a worker decoded and attributed to a flow (or ARP).",
                &["worker"],
            )?,
            worker_queue: gauge_vec(
                &r,
                "segwatch_worker_queue_batches",
                "Batches waiting in a worker's queue.",
                &["worker"],
            )?,
            worker_busy: {
                let c = CounterVec::new(
                    Opts::new(
                        "segwatch_worker_busy_seconds_total",
                        "Time a worker spent processing batches; rate() of it is the worker's busy ratio.",
                    ),
                    &["worker"],
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            flows_active: gauge_vec(
                &r,
                "segwatch_flows_active",
                "Flows in a worker's table.",
                &["worker"],
            )?,
            flows_created: counter(&r, "segwatch_flows_created_total", "Flows created.")?,
            flows_expired: counter(
                &r,
                "segwatch_flows_expired_total",
                "Flows ended by their idle timeout.",
            )?,
            flows_evicted: counter(
                &r,
                "segwatch_flows_evicted_total",
                "Flows evicted because the table was full (max_flows).",
            )?,
            zone_pair_flows: counter_vec(
                &r,
                "segwatch_zone_pair_flows_total",
                "Finished flows judged against the policy, by initiator zone, responder zone and outcome.",
                &["src_zone", "dst_zone", "outcome"],
            )?,
            zone_pair_bytes: counter_vec(
                &r,
                "segwatch_zone_pair_bytes_total",
                "Bytes (both directions) of judged flows, by zone pair.",
                &["src_zone", "dst_zone"],
            )?,
            violations: counter_vec(
                &r,
                "segwatch_violation_flows_total",
                "Flows the policy denies, by zone pair, outcome and severity.",
                &["src_zone", "dst_zone", "outcome", "severity"],
            )?,
            violation_events: counter_vec(
                &r,
                "segwatch_violation_events_total",
                "Deduplicated violation events written, by severity.",
                &["severity"],
            )?,
            anomaly_events: counter_vec(
                &r,
                "segwatch_anomaly_events_total",
                "Anomaly events written (after allowlists, severity floor and suppression), by detector and severity.",
                &["detector", "severity"],
            )?,
            baseline_learning: gauge(
                &r,
                "segwatch_baseline_learning",
                "1 while segwatch learns a baseline, else 0.",
            )?,
            baseline_loaded: gauge(
                &r,
                "segwatch_baseline_loaded",
                "1 when detectors compare traffic with a baseline (loaded, or learned in this run), else 0.",
            )?,
            baseline_learning_left: {
                let g = prometheus::Gauge::with_opts(Opts::new(
                    "segwatch_baseline_learning_seconds_left",
                    "Live learning: packet time left before segwatch saves the baseline and starts detecting with it; 0 otherwise.",
                ))?;
                r.register(Box::new(g.clone()))?;
                g
            },
            output_lost: counter_vec(
                &r,
                "segwatch_output_lines_lost_total",
                "Lines (events, flow records) that could not be written to their file (disk full, file system read-only) and were dropped after the backlog filled.",
                &["output"],
            )?,
            output_errors: counter_vec(
                &r,
                "segwatch_output_write_errors_total",
                "Failed attempts to write an output file (retried at most once a second).",
                &["output"],
            )?,
            output_rotations: counter_vec(
                &r,
                "segwatch_output_rotations_total",
                "Output files rotated because they reached their size limit.",
                &["output"],
            )?,
            output_failing: gauge_vec(
                &r,
                "segwatch_output_failing",
                "1 while an output file cannot be written (lines wait in a bounded backlog), else 0.",
                &["output"],
            )?,
            memory_resident: gauge(
                &r,
                "segwatch_memory_resident_bytes",
                "Resident memory of segwatch, read once a second when a memory ceiling is set.",
            )?,
            memory_ceiling: gauge(
                &r,
                "segwatch_memory_ceiling_bytes",
                "The memory ceiling ([limits] memory_mib); 0 when none is set.",
            )?,
            memory_pressure: counter(
                &r,
                "segwatch_memory_pressure_total",
                "Times resident memory went over the ceiling, each making the flow tables and the analysis state shed (evictions are counted in segwatch_flows_evicted_total).",
            )?,
            config_reloads: counter_vec(
                &r,
                "segwatch_config_reloads_total",
                "Config reloads (SIGHUP), by result: ok (applied) or error (rejected; the running config stays).",
                &["result"],
            )?,
            config_last_reload_ok: gauge(
                &r,
                "segwatch_config_last_reload_successful",
                "0 when the last reload was rejected, else 1.",
            )?,
            config_last_reload_time: gauge(
                &r,
                "segwatch_config_last_reload_success_timestamp_seconds",
                "When the config was last loaded or reloaded successfully (Unix time).",
            )?,
            batch_time,
            decision_latency,
            ready: AtomicBool::new(false),
            registry: r,
        };
        for p in DecodeProblem::ALL {
            m.decode_problems.with_label_values(&[p.as_str()]);
        }
        for d in crate::detect::Detector::ALL {
            for sev in Severity::ALL {
                m.anomaly_events
                    .with_label_values(&[d.as_str(), sev.as_str()]);
            }
        }
        for output in ["events", "flows"] {
            m.output(output);
        }
        for result in ["ok", "error"] {
            m.config_reloads.with_label_values(&[result]);
        }
        m.config_last_reload_ok.set(1);
        m.config_last_reload_time.set(unix_now());
        for stage in ["kernel", "interface", "queue"] {
            m.capture_dropped.with_label_values(&[stage]);
        }
        Ok(Arc::new(m))
    }

    /// The metrics of one live output file (`events` or `flows`).
    pub fn output(&self, name: &str) -> crate::sink::live_file::OutputMetrics {
        crate::sink::live_file::OutputMetrics {
            lost: self.output_lost.with_label_values(&[name]),
            errors: self.output_errors.with_label_values(&[name]),
            rotations: self.output_rotations.with_label_values(&[name]),
            failing: self.output_failing.with_label_values(&[name]),
        }
    }

    /// Count a reload; a good one also moves the success time.
    pub fn config_reload(&self, ok: bool) {
        self.config_reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        self.config_last_reload_ok.set(i64::from(ok));
        if ok {
            self.config_last_reload_time.set(unix_now());
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        // Encoding our own families into a Vec cannot fail.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The reader's view of the metrics: what it has folded in so far.
pub struct ReaderMetrics {
    packets: IntCounter,
    bytes: IntCounter,
    kernel: IntCounter,
    interface: IntCounter,
    queue: IntCounter,
    depth: Vec<IntGauge>,
    folded: [u64; 5],
    m: Arc<Metrics>,
    /// Live capture's series, resolved once the interface is known.
    capture: Option<CaptureSeries>,
}

struct CaptureSeries {
    up: IntGauge,
    errors: IntCounter,
    reopens: IntCounter,
    folded: [u64; 2],
}

impl ReaderMetrics {
    pub fn new(m: &Arc<Metrics>, workers: usize) -> ReaderMetrics {
        ReaderMetrics {
            packets: m.capture_packets.clone(),
            bytes: m.capture_bytes.clone(),
            kernel: m.capture_dropped.with_label_values(&["kernel"]),
            interface: m.capture_dropped.with_label_values(&["interface"]),
            queue: m.capture_dropped.with_label_values(&["queue"]),
            depth: (0..workers)
                .map(|w| m.worker_queue.with_label_values(&[&w.to_string()]))
                .collect(),
            folded: [0; 5],
            m: Arc::clone(m),
            capture: None,
        }
    }

    /// Fold a live capture's state; `/readyz` follows it.
    pub fn fold_health(&mut self, interface: &str, h: crate::capture::CaptureHealth) {
        let m = &self.m;
        let s = self.capture.get_or_insert_with(|| CaptureSeries {
            up: m.capture_up.with_label_values(&[interface]),
            errors: m.capture_errors.with_label_values(&[interface]),
            reopens: m.capture_reopens.with_label_values(&[interface]),
            folded: [0; 2],
        });
        s.up.set(i64::from(h.up));
        s.errors.inc_by(h.interruptions.saturating_sub(s.folded[0]));
        s.reopens.inc_by(h.reopens.saturating_sub(s.folded[1]));
        s.folded = [h.interruptions, h.reopens];
        m.set_ready(h.up);
    }

    /// Fold the reader's totals so far: frames, bytes, kernel and interface
    /// drops (libpcap's cumulative statistics), queue drops, and the queue
    /// depth of each worker.
    pub fn fold(&mut self, totals: [u64; 5], depths: impl Iterator<Item = usize>) {
        let counters = [
            &self.packets,
            &self.bytes,
            &self.kernel,
            &self.interface,
            &self.queue,
        ];
        for (i, c) in counters.into_iter().enumerate() {
            // libpcap's counters can wrap or reset (interface re-opened).
            c.inc_by(totals[i].saturating_sub(self.folded[i]));
            self.folded[i] = self.folded[i].max(totals[i]);
        }
        for (g, d) in self.depth.iter().zip(depths) {
            g.set(i64::try_from(d).unwrap_or(i64::MAX));
        }
    }
}

/// One worker's view of the metrics: label values resolved once, and the
/// counters as last folded in.
pub struct WorkerMetrics {
    packets: IntCounter,
    busy: Counter,
    active: IntGauge,
    problems: Vec<IntCounter>,
    created: IntCounter,
    expired: IntCounter,
    evicted: IntCounter,
    pub batch_time: latency::LocalHistogram,
    pub decision_latency: latency::LocalHistogram,
    folded: WorkerCounters,
    folded_table: [u64; 3],
}

impl WorkerMetrics {
    pub fn new(m: &Metrics, worker: usize) -> WorkerMetrics {
        let w = worker.to_string();
        WorkerMetrics {
            packets: m.worker_packets.with_label_values(&[&w]),
            busy: m.worker_busy.with_label_values(&[&w]),
            active: m.flows_active.with_label_values(&[&w]),
            problems: DecodeProblem::ALL
                .iter()
                .map(|p| m.decode_problems.with_label_values(&[p.as_str()]))
                .collect(),
            created: m.flows_created.clone(),
            expired: m.flows_expired.clone(),
            evicted: m.flows_evicted.clone(),
            batch_time: latency::LocalHistogram::new(m.batch_time.get(worker).cloned()),
            decision_latency: latency::LocalHistogram::new(m.decision_latency.get(worker).cloned()),
            folded: WorkerCounters::default(),
            folded_table: [0; 3],
        }
    }

    /// Fold what changed since the last call (once per batch).
    pub fn fold(
        &mut self,
        c: &WorkerCounters,
        table: &crate::flow::TableStats,
        active: usize,
        busy_ns: u64,
    ) {
        self.packets.inc_by(c.packets - self.folded.packets);
        for (i, counter) in self.problems.iter().enumerate() {
            let d = c.problems[i] - self.folded.problems[i];
            if d > 0 {
                counter.inc_by(d);
            }
        }
        self.folded = *c;
        let now = [table.created, table.expired, table.evicted];
        self.created.inc_by(now[0] - self.folded_table[0]);
        self.expired.inc_by(now[1] - self.folded_table[1]);
        self.evicted.inc_by(now[2] - self.folded_table[2]);
        self.folded_table = now;
        self.active.set(i64::try_from(active).unwrap_or(i64::MAX));
        self.busy.inc_by(busy_ns as f64 / 1e9);
    }
}

/// The flow-analysis thread's view: counters per zone pair, resolved the
/// first time a pair (and outcome, severity) is seen and then reused.
pub struct AnalysisMetrics {
    m: Arc<Metrics>,
    flows: HashMap<(ZoneId, ZoneId, Outcome), IntCounter>,
    bytes: HashMap<(ZoneId, ZoneId), IntCounter>,
    violations: HashMap<(ZoneId, ZoneId, Outcome, Severity), IntCounter>,
    events: Vec<IntCounter>,
}

impl AnalysisMetrics {
    pub fn new(m: Arc<Metrics>) -> AnalysisMetrics {
        let events = Severity::ALL
            .iter()
            .map(|s| m.violation_events.with_label_values(&[s.as_str()]))
            .collect();
        AnalysisMetrics {
            m,
            flows: HashMap::new(),
            bytes: HashMap::new(),
            violations: HashMap::new(),
            events,
        }
    }

    /// A judged flow between two zones.
    pub fn flow(&mut self, p: &Policy, s: ZoneId, d: ZoneId, outcome: Outcome, bytes: u64) {
        let m = &self.m;
        self.flows
            .entry((s, d, outcome))
            .or_insert_with(|| {
                m.zone_pair_flows.with_label_values(&[
                    &p.zone(s).name,
                    &p.zone(d).name,
                    outcome.as_str(),
                ])
            })
            .inc();
        self.bytes
            .entry((s, d))
            .or_insert_with(|| {
                m.zone_pair_bytes
                    .with_label_values(&[&p.zone(s).name, &p.zone(d).name])
            })
            .inc_by(bytes);
    }

    /// A flow the policy denies.
    pub fn violation(&mut self, p: &Policy, v: &Violation) {
        let m = &self.m;
        self.violations
            .entry((v.src_zone, v.dst_zone, v.outcome, v.severity))
            .or_insert_with(|| {
                m.violations.with_label_values(&[
                    &p.zone(v.src_zone).name,
                    &p.zone(v.dst_zone).name,
                    v.outcome.as_str(),
                    v.severity.as_str(),
                ])
            })
            .inc();
    }

    /// Events written.
    pub fn events(&self, events: &[ViolationEvent]) {
        for e in events {
            self.events[e.severity as usize].inc();
        }
    }

    /// Anomaly events written.
    pub fn anomalies(&self, events: &[crate::detect::AnomalyEvent]) {
        for e in events {
            self.m
                .anomaly_events
                .with_label_values(&[e.detector.as_str(), e.severity.as_str()])
                .inc();
        }
    }

    /// Learning or not, a baseline in use or not, and learning time left.
    pub fn baseline_state(&self, learning: bool, loaded: bool, left_secs: Option<f64>) {
        self.m.baseline_learning.set(i64::from(learning));
        self.m.baseline_loaded.set(i64::from(loaded));
        self.m
            .baseline_learning_left
            .set(left_secs.unwrap_or(0.0).max(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_renders_with_help_and_type() {
        let m = Metrics::new(2).expect("metrics");
        let mut w = WorkerMetrics::new(&m, 1);
        let c = WorkerCounters {
            packets: 10,
            ..WorkerCounters::default()
        };
        let t = crate::flow::TableStats {
            created: 4,
            ..Default::default()
        };
        w.fold(&c, &t, 3, 1_000);
        w.fold(&c, &t, 3, 500);
        w.batch_time.record(2_000);
        w.batch_time.publish();
        let text = m.render();
        for line in [
            "segwatch_build_info{version=\"0.1.0\"} 1",
            "segwatch_worker_packets_total{worker=\"1\"} 10",
            "segwatch_flows_created_total 4",
            "segwatch_flows_active{worker=\"1\"} 3",
            "segwatch_worker_busy_seconds_total{worker=\"1\"} 0.0000015",
            "segwatch_decode_problems_total{reason=\"truncated_ip\"} 0",
            "segwatch_capture_dropped_packets_total{stage=\"kernel\"} 0",
            "# TYPE segwatch_batch_processing_seconds summary",
            "segwatch_batch_processing_seconds_count{worker=\"1\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
