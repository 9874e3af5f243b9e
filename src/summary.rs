//! The run summary: what a run saw, as counters, and its readable form.
//!
//! Workers keep their own [`FlowTotals`] (no sharing on the packet path) and the
//! pipeline merges them at the end. Per-host totals are bounded: past
//! [`HOST_CAP`] distinct hosts per worker, new hosts are only counted as
//! untracked, so a flood of spoofed sources cannot grow memory without bound.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use hashbrown::HashMap;
use serde::Serialize;

use crate::decode::{DecodeProblem, proto_name};
use crate::dispatch::DispatchStats;
use crate::flow::{FlowRecord, Outcome, TableStats};

/// Distinct hosts tracked for top talkers, per worker.
pub const HOST_CAP: usize = 200_000;

/// Bytes and flows of one host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostTotals {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub flows: u64,
}

/// Flows by protocol number and outcome: a fixed table, because it is
/// counted for every finished flow.
#[derive(Clone, PartialEq, Eq)]
pub struct ProtoOutcomes(Box<[[u64; Outcome::ALL.len()]; 256]>);

impl Default for ProtoOutcomes {
    fn default() -> Self {
        ProtoOutcomes(Box::new([[0; Outcome::ALL.len()]; 256]))
    }
}

impl fmt::Debug for ProtoOutcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl ProtoOutcomes {
    pub fn add(&mut self, proto: u8, outcome: Outcome, n: u64) {
        self.0[usize::from(proto)][outcome as usize] += n;
    }

    /// The counts that are not zero, by protocol, then outcome.
    pub fn iter(&self) -> impl Iterator<Item = ((u8, Outcome), u64)> + '_ {
        (0..=u8::MAX).flat_map(move |p| {
            Outcome::ALL
                .iter()
                .map(move |&o| ((p, o), self.0[usize::from(p)][o as usize]))
                .filter(|&(_, n)| n > 0)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// Totals over finished flows.
#[derive(Clone, Debug, Default)]
pub struct FlowTotals {
    pub flows: u64,
    /// (protocol number, outcome) → flows.
    pub by_proto_outcome: ProtoOutcomes,
    pub hosts: HashMap<IpAddr, HostTotals>,
    /// Flow endpoints not tracked because the host table was full.
    pub untracked_hosts: u64,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
}

impl FlowTotals {
    pub fn add(&mut self, r: &FlowRecord) {
        self.flows += 1;
        self.by_proto_outcome.add(r.proto, r.outcome, 1);
        self.host(r.src_ip, r.bytes_fwd, r.bytes_rev);
        self.host(r.dst_ip, r.bytes_rev, r.bytes_fwd);
        self.first_ns = Some(self.first_ns.map_or(r.start, |t| t.min(r.start)));
        self.last_ns = Some(self.last_ns.map_or(r.end, |t| t.max(r.end)));
    }

    fn host(&mut self, ip: IpAddr, sent: u64, received: u64) {
        let len = self.hosts.len();
        match self.hosts.get_mut(&ip) {
            Some(h) => {
                h.bytes_sent += sent;
                h.bytes_received += received;
                h.flows += 1;
            }
            None if len < HOST_CAP => {
                self.hosts.insert(
                    ip,
                    HostTotals {
                        bytes_sent: sent,
                        bytes_received: received,
                        flows: 1,
                    },
                );
            }
            None => self.untracked_hosts += 1,
        }
    }

    pub fn merge(&mut self, other: FlowTotals) {
        self.flows += other.flows;
        for ((p, o), n) in other.by_proto_outcome.iter() {
            self.by_proto_outcome.add(p, o, n);
        }
        if self.hosts.is_empty() {
            // The first worker's map becomes the total as it is (one worker:
            // the only one), rather than being copied entry by entry.
            self.hosts = other.hosts;
        } else {
            self.merge_hosts(other.hosts);
        }
        self.untracked_hosts += other.untracked_hosts;
        self.first_ns = match (self.first_ns, other.first_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ns = match (self.last_ns, other.last_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Make room at once for the hosts of `flows` more flows (the end of
    /// capture finishes every flow left), rather than growing step by step.
    pub fn expect_flows(&mut self, flows: usize) {
        let room = HOST_CAP.saturating_sub(self.hosts.len());
        self.hosts.reserve(flows.saturating_mul(2).min(room));
    }

    fn merge_hosts(&mut self, hosts: HashMap<IpAddr, HostTotals>) {
        for (ip, h) in hosts {
            let e = self.hosts.entry(ip).or_default();
            e.bytes_sent += h.bytes_sent;
            e.bytes_received += h.bytes_received;
            e.flows += h.flows;
        }
    }

    /// The `n` hosts with the most bytes (sent + received), ties by address.
    pub fn top_talkers(&self, n: usize) -> Vec<(IpAddr, HostTotals)> {
        let order = |a: &(IpAddr, HostTotals), b: &(IpAddr, HostTotals)| {
            (b.1.bytes_sent + b.1.bytes_received)
                .cmp(&(a.1.bytes_sent + a.1.bytes_received))
                .then(a.0.cmp(&b.0))
        };
        let mut v: Vec<_> = self.hosts.iter().map(|(ip, h)| (*ip, *h)).collect();
        // Select the first n in linear time, then sort only those: hosts
        // can number hundreds of thousands.
        if n < v.len() {
            v.select_nth_unstable_by(n, order);
            v.truncate(n);
        }
        v.sort_by(order);
        v
    }
}

/// Counters of the capture side.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CaptureTotals {
    /// Frames read from the capture.
    pub frames: u64,
    /// Sum of on-the-wire frame lengths.
    pub bytes: u64,
    /// Frames that were cut short (snaplen) but still attributed to a flow.
    pub truncated_frames: u64,
    /// Frames that could not be used, by reason.
    pub decode_problems: BTreeMap<&'static str, u64>,
    /// Later IP fragments attributed to their flow through their first fragment.
    pub fragments_attributed: u64,
    /// Packets the kernel or interface dropped (live capture, from libpcap).
    pub kernel_dropped: u64,
    pub interface_dropped: u64,
    /// Live capture: times it stopped receiving (interface down, without
    /// carrier, gone or re-created, read error), and times it was reopened.
    pub interruptions: u64,
    pub reopens: u64,
    /// Problems with capture files (truncated, corrupt), one line each.
    pub file_problems: Vec<String>,
}

impl CaptureTotals {
    pub fn problems_total(&self) -> u64 {
        self.decode_problems.values().sum()
    }
}

/// Worker-side packet counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerCounters {
    /// Frames decoded and used (IP packets attributed to a flow, and ARP).
    pub packets: u64,
    pub arp_packets: u64,
    pub icmp_errors_attributed: u64,
    pub fragments_attributed: u64,
    pub truncated_frames: u64,
    /// Frames that could not be used, indexed by [`DecodeProblem::index`].
    #[serde(skip)]
    pub problems: [u64; DecodeProblem::ALL.len()],
}

impl WorkerCounters {
    pub fn count_problem(&mut self, p: DecodeProblem) {
        self.problems[p.index()] += 1;
    }

    pub fn merge(&mut self, o: WorkerCounters) {
        self.packets += o.packets;
        self.arp_packets += o.arp_packets;
        self.icmp_errors_attributed += o.icmp_errors_attributed;
        self.fragments_attributed += o.fragments_attributed;
        self.truncated_frames += o.truncated_frames;
        for (a, b) in self.problems.iter_mut().zip(o.problems) {
            *a += b;
        }
    }
}

/// Everything a run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Time workers took per batch, nanoseconds (all workers).
    pub batch_ns: hdrhistogram::Histogram<u64>,
    pub capture: CaptureTotals,
    pub dispatch: DispatchStats,
    pub workers: usize,
    /// Live capture (drop counters are meaningful), not files.
    pub live: bool,
    /// Packets per batch the run used.
    pub batch_size: usize,
    pub worker: WorkerCounters,
    pub table: TableStats,
    pub flows: FlowTotals,
    /// Segmentation checking, when a policy with zones was loaded.
    pub segmentation: Option<crate::pipeline::SegmentationResult>,
    /// Present when anomaly detectors ran.
    pub anomalies: Option<crate::pipeline::AnomalyResult>,
    /// Present when a baseline was learned (or learning failed to save).
    pub learned: Option<Result<crate::analysis::Learned, String>>,
    /// Configs reloaded by SIGHUP during the run.
    pub reloads: u32,
    /// Times memory went over the ceiling (each made every part shed).
    pub memory_pressure: u64,
    /// Peak resident memory of the process at the end of the run.
    pub peak_resident_bytes: Option<u64>,
    pub elapsed_secs: f64,
}

impl Default for RunSummary {
    fn default() -> Self {
        RunSummary {
            batch_ns: crate::worker::batch_histogram(),
            capture: CaptureTotals::default(),
            dispatch: DispatchStats::default(),
            workers: 0,
            live: false,
            batch_size: 0,
            worker: WorkerCounters::default(),
            table: TableStats::default(),
            flows: FlowTotals::default(),
            segmentation: None,
            anomalies: None,
            learned: None,
            reloads: 0,
            memory_pressure: 0,
            peak_resident_bytes: None,
            elapsed_secs: 0.0,
        }
    }
}

impl RunSummary {
    /// Batch processing time quantiles in microseconds: (p50, p99, max).
    pub fn batch_latency_us(&self) -> Option<(f64, f64, f64)> {
        let h = &self.batch_ns;
        (!h.is_empty()).then(|| {
            (
                h.value_at_quantile(0.5) as f64 / 1e3,
                h.value_at_quantile(0.99) as f64 / 1e3,
                h.max() as f64 / 1e3,
            )
        })
    }

    pub fn packets_per_sec(&self) -> f64 {
        if self.elapsed_secs > 0.0 {
            self.capture.frames as f64 / self.elapsed_secs
        } else {
            0.0
        }
    }

    /// A JSON object with the same content as the text form.
    pub fn to_json(&self) -> serde_json::Value {
        let flows_by: Vec<_> = self
            .flows
            .by_proto_outcome
            .iter()
            .map(
                |((p, o), n)| serde_json::json!({"proto": proto_name(p), "outcome": o, "flows": n}),
            )
            .collect();
        let top: Vec<_> = self
            .flows
            .top_talkers(10)
            .into_iter()
            .map(|(ip, h)| serde_json::json!({"ip": ip, "bytes_sent": h.bytes_sent, "bytes_received": h.bytes_received, "flows": h.flows}))
            .collect();
        serde_json::json!({
            "capture": self.capture,
            "capture_start": self.flows.first_ns.map(crate::flow::record::format_rfc3339),
            "capture_end": self.flows.last_ns.map(crate::flow::record::format_rfc3339),
            "workers": self.workers,
            "dispatch": {
                "batches": self.dispatch.batches,
                "reader_waits": self.dispatch.waits,
                "dropped_packets": self.dispatch.dropped_packets,
            },
            "worker": self.worker,
            "flow_table": {
                "created": self.table.created,
                "expired": self.table.expired,
                "evicted": self.table.evicted,
                "reused": self.table.reused,
                "peak_active": self.table.peak_active,
            },
            "flows": self.flows.flows,
            "flows_by_proto_outcome": flows_by,
            "top_talkers": top,
            "untracked_hosts": self.flows.untracked_hosts,
            "config_reloads": self.reloads,
            "memory_pressure": self.memory_pressure,
            "peak_resident_bytes": self.peak_resident_bytes,
            "batch_processing_us": self.batch_latency_us().map(|(p50, p99, max)| serde_json::json!({"p50": p50, "p99": p99, "max": max})),
            "segmentation": self.segmentation.as_ref().map(|s| {
                let st = &s.events.stats;
                serde_json::json!({
                    "policy_since": s.policy_since.map(crate::flow::record::format_rfc3339),
                    "flows_judged": s.tally.judged,
                    "flows_not_judged": s.tally.not_judged,
                    "denied_flows": st.violations,
                    "events": st.events,
                    "aggregate_events": st.aggregates,
                    "events_by_severity": crate::segmentation::Severity::ALL.iter().map(|v| (v.as_str(), st.by_severity[*v as usize])).collect::<BTreeMap<_, _>>(),
                })
            }),
            "anomalies": self.anomalies.as_ref().map(|a| {
                let mut by: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
                for ((d, sev), n) in &a.stats.events {
                    by.entry(d.as_str().to_string()).or_default().insert(sev.as_str(), *n);
                }
                serde_json::json!({
                    "baseline_loaded": a.baseline_loaded,
                    "events": a.stats.total(),
                    "events_by_detector": by,
                    "suppressed": a.stats.suppressed,
                    "allowlisted": a.stats.allowed.values().sum::<u64>(),
                    "below_min_severity": a.stats.below_min_severity,
                })
            }),
            "baseline_learned": self.learned.as_ref().map(|l| match l {
                Ok(l) => serde_json::json!({
                    "path": l.saved_to,
                    "flows": l.baseline.learned.flows,
                    "hosts": l.baseline.hosts.len(),
                    "unfinished": l.baseline.learned.unfinished,
                    "zones": l.baseline.zones.len(),
                }),
                Err(e) => serde_json::json!({"error": e}),
            }),
            "elapsed_seconds": self.elapsed_secs,
            "packets_per_second": self.packets_per_sec(),
        })
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.capture;
        writeln!(f, "segwatch summary")?;
        if let (Some(a), Some(b)) = (self.flows.first_ns, self.flows.last_ns) {
            writeln!(
                f,
                "  capture window   {} .. {}",
                crate::flow::record::format_rfc3339(a),
                crate::flow::record::format_rfc3339(b)
            )?;
        }
        writeln!(
            f,
            "  packets          {} ({} on the wire)",
            c.frames,
            human_bytes(c.bytes)
        )?;
        writeln!(
            f,
            "  elapsed          {:.2} s, {:.0} packets/s, {} worker(s)",
            self.elapsed_secs,
            self.packets_per_sec(),
            self.workers
        )?;
        if let Some((p50, p99, max)) = self.batch_latency_us() {
            writeln!(
                f,
                "  batch time       p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs per batch of up to {} packets",
                self.batch_size
            )?;
        }
        writeln!(
            f,
            "  flows            {} (peak {} active, {} expired, {} evicted for room)",
            self.flows.flows, self.table.peak_active, self.table.expired, self.table.evicted
        )?;
        if !self.flows.by_proto_outcome.is_empty() {
            writeln!(f, "  flows by protocol and outcome")?;
            let mut protos: BTreeMap<u8, [u64; 4]> = BTreeMap::new();
            for ((p, o), n) in self.flows.by_proto_outcome.iter() {
                protos.entry(p).or_default()[o as usize] += n;
            }
            writeln!(
                f,
                "    {:<12} {:>10} {:>10} {:>12} {:>10}",
                "proto", "attempted", "rejected", "established", "closed"
            )?;
            for (p, n) in protos {
                writeln!(
                    f,
                    "    {:<12} {:>10} {:>10} {:>12} {:>10}",
                    proto_name(p),
                    n[0],
                    n[1],
                    n[2],
                    n[3]
                )?;
            }
        }
        let top = self.flows.top_talkers(10);
        if !top.is_empty() {
            writeln!(f, "  top talkers (bytes sent + received)")?;
            for (ip, h) in top {
                writeln!(
                    f,
                    "    {:<40} {:>12} {:>8} flows",
                    ip.to_string(),
                    human_bytes(h.bytes_sent + h.bytes_received),
                    h.flows
                )?;
            }
        }
        if c.truncated_frames > 0 {
            writeln!(
                f,
                "  truncated frames {} (cut by snaplen, decoded as far as they go)",
                c.truncated_frames
            )?;
        }
        if c.decode_problems.is_empty() {
            writeln!(f, "  decode problems  none")?;
        } else {
            writeln!(
                f,
                "  decode problems  {} frames skipped",
                c.problems_total()
            )?;
            for (reason, n) in &c.decode_problems {
                writeln!(f, "    {reason:<24} {n}")?;
            }
        }
        if c.fragments_attributed > 0 {
            writeln!(
                f,
                "  fragments        {} later fragments attributed to their flow",
                c.fragments_attributed
            )?;
        }
        if c.kernel_dropped + c.interface_dropped + self.dispatch.dropped_packets > 0 {
            writeln!(
                f,
                "  capture loss     kernel {}, interface {}, segwatch queues {}",
                c.kernel_dropped, c.interface_dropped, self.dispatch.dropped_packets
            )?;
        }
        if c.interruptions > 0 {
            writeln!(
                f,
                "  interruptions    {} (interface down, without carrier or gone), reopened {} times",
                c.interruptions, c.reopens
            )?;
        }
        for p in &c.file_problems {
            writeln!(f, "  input problem    {p}")?;
        }
        if self.memory_pressure > 0 {
            writeln!(
                f,
                "  memory           over the ceiling {} times: flows and analysis state shed (see the README)",
                self.memory_pressure
            )?;
        }
        if self.reloads > 0 {
            writeln!(f, "  config reloads   {}", self.reloads)?;
        }
        if let Some(s) = &self.segmentation {
            let st = &s.events.stats;
            writeln!(
                f,
                "  segmentation     {} flows judged, {} denied by the policy, {} events",
                s.tally.judged, st.violations, st.events
            )?;
            if let Some(t) = s.policy_since {
                writeln!(
                    f,
                    "  policy           reloaded at {}; the figures above count from then",
                    crate::flow::record::format_rfc3339(t)
                )?;
            }
            let sev: Vec<String> = crate::segmentation::Severity::ALL
                .iter()
                .rev()
                .map(|v| format!("{} {}", st.by_severity[*v as usize], v.as_str()))
                .collect();
            writeln!(f, "    by severity    {}", sev.join(", "))?;
        }
        if let Some(a) = &self.anomalies {
            let st = &a.stats;
            writeln!(
                f,
                "  anomalies        {} events ({}), {} repeats suppressed, {} allowlisted, {} under min_severity",
                st.total(),
                if a.baseline_loaded {
                    "compared with a baseline"
                } else {
                    "no baseline: scan, beacon, tcp_flags and arp_spoof only"
                },
                st.suppressed,
                st.allowed.values().sum::<u64>(),
                st.below_min_severity
            )?;
            let mut by: BTreeMap<&str, u64> = BTreeMap::new();
            for ((d, _), n) in &st.events {
                *by.entry(d.as_str()).or_default() += n;
            }
            if !by.is_empty() {
                let parts: Vec<String> = by.iter().map(|(d, n)| format!("{n} {d}")).collect();
                writeln!(f, "    by detector    {}", parts.join(", "))?;
            }
            for e in a
                .events
                .iter()
                .filter(|e| e.severity >= crate::segmentation::Severity::High)
                .take(5)
            {
                writeln!(f, "    {:<8}      {}", e.severity.as_str(), e.explanation)?;
            }
        }
        match &self.learned {
            Some(Ok(l)) => {
                let b = &l.baseline;
                writeln!(
                    f,
                    "  baseline         learned from {} flows: {} hosts, {} zones, {} ARP bindings; written to {}",
                    b.learned.flows,
                    b.hosts.len(),
                    b.zones.len(),
                    b.arp.len(),
                    l.saved_to.display()
                )?;
                if let Some(u) = b.learned.unfinished {
                    writeln!(
                        f,
                        "                   unfinished: {} of {} learned; the same `run --learn-for` resumes it",
                        humantime::format_duration(std::time::Duration::from_secs(u.done_secs)),
                        humantime::format_duration(std::time::Duration::from_secs(u.goal_secs))
                    )?;
                }
            }
            Some(Err(e)) => writeln!(f, "  baseline         NOT SAVED: {e}")?,
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(hosts: &[(u8, u64)]) -> FlowTotals {
        let mut t = FlowTotals::default();
        for &(last, bytes) in hosts {
            t.host(IpAddr::from([10, 0, 0, last]), bytes, 0);
        }
        t
    }

    #[test]
    fn top_talkers_by_bytes_then_address() {
        let t = totals(&[(5, 10), (1, 300), (9, 50), (3, 50), (7, 1), (2, 300)]);
        let ips = |v: Vec<(IpAddr, HostTotals)>| -> Vec<String> {
            v.into_iter().map(|(ip, _)| ip.to_string()).collect()
        };
        assert_eq!(ips(t.top_talkers(3)), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(ips(t.top_talkers(6)).len(), 6);
        assert_eq!(ips(t.top_talkers(6))[5], "10.0.0.7");
        assert_eq!(ips(t.top_talkers(60)), ips(t.top_talkers(6)));
        assert!(t.top_talkers(0).is_empty());
    }

    #[test]
    fn flows_by_protocol_and_outcome_count_and_merge() {
        let mut a = ProtoOutcomes::default();
        assert!(a.is_empty());
        a.add(17, Outcome::Established, 2);
        a.add(6, Outcome::Closed, 1);
        let mut b = ProtoOutcomes::default();
        b.add(6, Outcome::Closed, 4);
        for ((p, o), n) in b.iter() {
            a.add(p, o, n);
        }
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![((6, Outcome::Closed), 5), ((17, Outcome::Established), 2)]
        );
    }
}
