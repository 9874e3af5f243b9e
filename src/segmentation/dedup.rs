//! Deduplication of violations into events, on packet time.
//!
//! Violations fall into fixed windows by flow start (`dedup_window_secs`).
//! Within a window, all flows with the same (source, destination, protocol,
//! destination port, outcome) are one event with a count. Past
//! `max_events_per_source` such events from one source into one zone with one
//! protocol and outcome, the rest are folded into a single aggregate event
//! (ports as ranges, distinct hosts and ports): a 10,000-port scan becomes a
//! few events plus one summary. Because windows are fixed, the result does not
//! depend on the order in which workers hand violations over.
//!
//! A window is closed once the violations' packet clock is `hold` past its end
//! (long enough for flows that started in it to time out and arrive); a flow
//! that arrives later still gets its own event.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use hashbrown::HashMap;

use super::violation::{
    Severity, Violation, ViolationEvent, denied_by, explain, port_ranges, proto_word,
};
use crate::flow::Outcome;
use crate::policy::SharedPolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    src_ip: IpAddr,
    dst_ip: IpAddr,
    proto: u8,
    dst_port: u16,
    outcome: Outcome,
}

/// Flows folded into one event.
#[derive(Clone, Debug)]
struct Agg {
    first: Violation,
    count: u64,
    packets: [u64; 2],
    bytes: [u64; 2],
    last_seen: i64,
}

/// Counters of the deduplication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DedupStats {
    /// Violations (denied flows) received.
    pub violations: u64,
    /// Events produced, of which aggregates.
    pub events: u64,
    pub aggregates: u64,
    /// Violations that arrived after their window had closed.
    pub late: u64,
    /// Events by severity (index: `Severity as usize`).
    pub by_severity: [u64; 4],
}

/// Turns a stream of violations into deduplicated events.
pub struct Deduper {
    policy: SharedPolicy,
    window_ns: i64,
    hold_ns: i64,
    max_per_source: usize,
    clock: i64,
    /// Highest window index already closed.
    closed_through: i64,
    open: BTreeMap<i64, HashMap<Key, Agg>>,
    pub stats: DedupStats,
}

impl Deduper {
    /// `hold_ns`: how long after a window's end to wait for late flows
    /// (the longest flow timeout is a good value).
    pub fn new(policy: SharedPolicy, hold_ns: i64) -> Deduper {
        let window_ns = policy.events.dedup_window_ns.max(1);
        let max_per_source = policy.events.max_events_per_source.max(1);
        Deduper {
            policy,
            window_ns,
            hold_ns: hold_ns.max(0),
            max_per_source,
            clock: i64::MIN,
            closed_through: i64::MIN,
            open: BTreeMap::new(),
            stats: DedupStats::default(),
        }
    }

    pub fn push(&mut self, v: Violation) {
        self.stats.violations += 1;
        self.clock = self.clock.max(v.end);
        let w = v.start.div_euclid(self.window_ns);
        if w <= self.closed_through {
            self.stats.late += 1;
        }
        let key = Key {
            src_ip: v.src_ip,
            dst_ip: v.dst_ip,
            proto: v.proto,
            dst_port: if v.has_ports() { v.dst_port } else { 0 },
            outcome: v.outcome,
        };
        let window = self.open.entry(w).or_default();
        match window.get_mut(&key) {
            Some(a) => {
                a.count += 1;
                for i in 0..2 {
                    a.packets[i] += v.packets[i];
                    a.bytes[i] += v.bytes[i];
                }
                a.last_seen = a.last_seen.max(v.end);
                if (v.start, v.src_port) < (a.first.start, a.first.src_port) {
                    a.first = v;
                }
            }
            None => {
                window.insert(
                    key,
                    Agg {
                        count: 1,
                        packets: v.packets,
                        bytes: v.bytes,
                        last_seen: v.end,
                        first: v,
                    },
                );
            }
        }
    }

    /// Groups (source, destination, service, outcome) in open windows.
    pub fn open_groups(&self) -> usize {
        self.open.values().map(HashMap::len).sum()
    }

    /// Let the clock advance without violations (live capture, idle).
    pub fn advance_clock(&mut self, now_ns: i64) {
        self.clock = self.clock.max(now_ns);
    }

    /// Events of the windows that can no longer change.
    pub fn take_closed(&mut self) -> Vec<ViolationEvent> {
        let mut out = Vec::new();
        while let Some((&w, _)) = self.open.first_key_value() {
            let end = (w + 1).saturating_mul(self.window_ns);
            if end.saturating_add(self.hold_ns) > self.clock {
                break;
            }
            if let Some((_, groups)) = self.open.pop_first() {
                self.closed_through = self.closed_through.max(w);
                self.close(groups, &mut out);
            }
        }
        out
    }

    /// End of the run: every remaining event.
    pub fn finish(&mut self) -> Vec<ViolationEvent> {
        let mut out = Vec::new();
        while let Some((w, groups)) = self.open.pop_first() {
            self.closed_through = self.closed_through.max(w);
            self.close(groups, &mut out);
        }
        out
    }

    fn close(&mut self, groups: HashMap<Key, Agg>, out: &mut Vec<ViolationEvent>) {
        // Group by source, destination zone, protocol and outcome; within a
        // group, by time. One sort, no allocation per group.
        let mut aggs: Vec<Agg> = groups.into_values().collect();
        aggs.sort_unstable_by_key(|a| {
            let f = &a.first;
            (
                f.src_ip, f.dst_zone, f.proto, f.outcome, f.start, f.dst_ip, f.dst_port,
            )
        });
        let start = out.len();
        let mut rest = Vec::new();
        let mut i = 0;
        while i < aggs.len() {
            let f = &aggs[i].first;
            let group = (f.src_ip, f.dst_zone, f.proto, f.outcome);
            let mut j = i;
            while j < aggs.len() {
                let g = &aggs[j].first;
                if (g.src_ip, g.dst_zone, g.proto, g.outcome) != group {
                    break;
                }
                if j - i < self.max_per_source {
                    out.push(self.event(&aggs[j]));
                } else {
                    rest.push(j);
                }
                j += 1;
            }
            if !rest.is_empty() {
                let folded: Vec<&Agg> = rest.drain(..).map(|k| &aggs[k]).collect();
                out.push(self.aggregate(&folded));
            }
            i = j;
        }
        out[start..].sort_by(|a, b| {
            (a.timestamp, a.src_ip, a.dst_ip, a.dst_port).cmp(&(
                b.timestamp,
                b.src_ip,
                b.dst_ip,
                b.dst_port,
            ))
        });
        for e in &out[start..] {
            self.stats.events += 1;
            self.stats.aggregates += u64::from(e.aggregate);
            self.stats.by_severity[e.severity as usize] += 1;
        }
    }

    fn base(&self, f: &Violation) -> ViolationEvent {
        let p = &self.policy;
        let rule = f.rule.map(|i| &p.rules[i as usize]);
        ViolationEvent {
            timestamp: f.start,
            kind: "segmentation_violation",
            severity: f.severity,
            src_ip: f.src_ip,
            src_port: f.has_ports().then_some(f.src_port),
            dst_ip: Some(f.dst_ip),
            dst_port: f.has_ports().then_some(f.dst_port),
            proto: f.proto,
            src_zone: p.zone(f.src_zone).name.clone(),
            dst_zone: p.zone(f.dst_zone).name.clone(),
            vlan: f.vlan,
            outcome: f.outcome,
            count: 0,
            packets_fwd: 0,
            packets_rev: 0,
            bytes_fwd: 0,
            bytes_rev: 0,
            first_seen: f.start,
            last_seen: f.end,
            rule: rule.map(|r| r.name.clone()),
            rule_line: rule.map(|r| r.line),
            explanation: String::new(),
            aggregate: false,
            distinct_dst_hosts: None,
            distinct_dst_ports: None,
            ports: None,
        }
    }

    fn event(&self, a: &Agg) -> ViolationEvent {
        ViolationEvent {
            count: a.count,
            packets_fwd: a.packets[0],
            packets_rev: a.packets[1],
            bytes_fwd: a.bytes[0],
            bytes_rev: a.bytes[1],
            last_seen: a.last_seen,
            explanation: explain(&self.policy, &a.first, a.count),
            ..self.base(&a.first)
        }
    }

    fn aggregate(&self, rest: &[&Agg]) -> ViolationEvent {
        let f = &rest[0].first;
        let mut e = self.base(f);
        let mut hosts = BTreeSet::new();
        let mut ports = BTreeSet::new();
        let mut severity = Severity::Low;
        for a in rest {
            hosts.insert(a.first.dst_ip);
            if a.first.has_ports() {
                ports.insert(a.first.dst_port);
            }
            e.count += a.count;
            e.packets_fwd += a.packets[0];
            e.packets_rev += a.packets[1];
            e.bytes_fwd += a.bytes[0];
            e.bytes_rev += a.bytes[1];
            e.first_seen = e.first_seen.min(a.first.start);
            e.last_seen = e.last_seen.max(a.last_seen);
            severity = severity.max(a.first.severity);
        }
        let ports: Vec<u16> = ports.into_iter().collect();
        e.timestamp = e.first_seen;
        e.severity = severity;
        e.aggregate = true;
        e.src_port = None;
        e.dst_port = None;
        if hosts.len() > 1 {
            e.dst_ip = None;
        }
        e.distinct_dst_hosts = Some(hosts.len() as u64);
        e.distinct_dst_ports = Some(ports.len() as u64);
        let ranges = port_ranges(&ports, 32);
        let p = &self.policy;
        let outcome = match f.outcome {
            Outcome::Attempted => "got no answer",
            Outcome::Rejected => "were refused",
            Outcome::Established | Outcome::Closed => "WORKED",
        };
        e.explanation = format!(
            "{} ({}) made {} more denied {} connection attempts into {} that {} ({} host{}, {} port{}{}), beyond the {} listed separately: this looks like a scan; {}.",
            f.src_ip,
            p.zone(f.src_zone).name,
            e.count,
            proto_word(f.proto),
            p.zone(f.dst_zone).name,
            outcome,
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" },
            ports.len(),
            if ports.len() == 1 { "" } else { "s" },
            if ranges.is_empty() {
                String::new()
            } else {
                format!(": {}", ranges.join(", "))
            },
            self.max_per_source,
            denied_by(p, f.rule, f.src_zone, f.dst_zone),
        );
        e.ports = Some(ranges);
        e
    }
}
