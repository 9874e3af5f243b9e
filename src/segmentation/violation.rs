//! A violation: a flow the policy denies. The flow-analysis thread makes one
//! [`Violation`] per denied flow and deduplicates them into
//! [`ViolationEvent`]s, the JSON lines users and SIEMs read.
//!
//! Event fields: `timestamp` (first seen, RFC 3339 UTC), `kind`
//! (`segmentation_violation`), `severity`, `src_ip`, `src_port`, `dst_ip`,
//! `dst_port` (ports are null for protocols without ports, and for folded
//! events), `proto`, `src_zone`, `dst_zone`, `vlan`, `outcome`, `count` (flows
//! behind the event), `packets_fwd`, `packets_rev`, `bytes_fwd`, `bytes_rev`
//! (summed over those flows), `first_seen`, `last_seen`, `rule` and
//! `rule_line` (the deny rule, or null when the default denied), and
//! `explanation`. Folded events (`aggregate: true`) add `distinct_dst_hosts`,
//! `distinct_dst_ports` and `ports` (ranges).

use std::net::IpAddr;

use serde::Serialize;

use crate::decode::proto;
use crate::flow::{FlowRecord, Outcome};
use crate::policy::{Judgement, Policy};
use crate::zones::{Pci, ZoneId};

/// How urgent a violation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Denied, not answered or refused, no PCI zone involved.
    Low,
    /// Denied attempts into or out of the CDE or a connected zone: the
    /// firewall held, but someone tried.
    Medium,
    /// A denied connection that worked.
    High,
    /// A denied connection into or out of the CDE that worked: the
    /// segmentation PCI DSS relies on is broken.
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Rate a denied flow between two zones.
    pub fn rate(outcome: Outcome, src: Pci, dst: Pci) -> Severity {
        let cde = src == Pci::Cde || dst == Pci::Cde;
        let scoped = cde || src == Pci::Connected || dst == Pci::Connected;
        match (outcome.connected(), cde, scoped) {
            (true, true, _) => Severity::Critical,
            (true, false, _) => Severity::High,
            (false, _, true) => Severity::Medium,
            (false, _, false) => Severity::Low,
        }
    }
}

/// One denied flow: the parts of its record that events need (a compact
/// copy, without TCP flags and end reason), its zones, rule and severity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub start: i64,
    pub end: i64,
    pub proto: u8,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub vlan: Option<u16>,
    pub src_zone: ZoneId,
    pub dst_zone: ZoneId,
    pub outcome: Outcome,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// The deny rule, or `None` for the default.
    pub rule: Option<u32>,
    pub severity: Severity,
}

impl Violation {
    pub fn new(r: &FlowRecord, j: &Judgement, policy: &Policy) -> Violation {
        Violation {
            start: r.start,
            end: r.end,
            proto: r.proto,
            src_ip: r.src_ip,
            src_port: r.src_port,
            dst_ip: r.dst_ip,
            dst_port: r.dst_port,
            vlan: r.inner_vlan.or(r.vlan),
            src_zone: j.src_zone,
            dst_zone: j.dst_zone,
            outcome: r.outcome,
            packets: [r.packets_fwd, r.packets_rev],
            bytes: [r.bytes_fwd, r.bytes_rev],
            rule: j.rule,
            severity: Severity::rate(
                r.outcome,
                policy.zone(j.src_zone).pci,
                policy.zone(j.dst_zone).pci,
            ),
        }
    }

    /// Protocols whose flows have ports.
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, proto::TCP | proto::UDP)
    }
}

/// A deduplicated violation, ready to write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ViolationEvent {
    #[serde(serialize_with = "crate::flow::record::rfc3339")]
    pub timestamp: i64,
    pub kind: &'static str,
    pub severity: Severity,
    pub src_ip: IpAddr,
    pub src_port: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    #[serde(serialize_with = "crate::flow::record::proto_str")]
    pub proto: u8,
    pub src_zone: String,
    pub dst_zone: String,
    pub vlan: Option<u16>,
    pub outcome: Outcome,
    pub count: u64,
    pub packets_fwd: u64,
    pub packets_rev: u64,
    pub bytes_fwd: u64,
    pub bytes_rev: u64,
    #[serde(serialize_with = "crate::flow::record::rfc3339")]
    pub first_seen: i64,
    #[serde(serialize_with = "crate::flow::record::rfc3339")]
    pub last_seen: i64,
    pub rule: Option<String>,
    pub rule_line: Option<usize>,
    pub explanation: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aggregate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_dst_hosts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_dst_ports: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<String>>,
}

/// "TCP", "UDP", "ICMP" for sentences.
pub fn proto_word(p: u8) -> String {
    crate::decode::proto_name(p).to_uppercase()
}

/// Why the flow was denied, for explanations.
pub fn denied_by(policy: &Policy, rule: Option<u32>, src_zone: ZoneId, dst_zone: ZoneId) -> String {
    let (s, d) = (&policy.zone(src_zone).name, &policy.zone(dst_zone).name);
    match rule.map(|i| &policy.rules[i as usize]) {
        Some(r) => format!("rule \"{}\" (line {}) denies it", r.name, r.line),
        None if src_zone == dst_zone => format!("the policy denies traffic within {s}"),
        None => format!("no rule allows {s} → {d}"),
    }
}

/// The one-line explanation of a (deduplicated) violation.
pub fn explain(policy: &Policy, v: &Violation, count: u64) -> String {
    let (sz, dz) = (&policy.zone(v.src_zone).name, &policy.zone(v.dst_zone).name);
    let target = if v.has_ports() {
        match v.dst_ip {
            IpAddr::V6(_) => format!("[{}]:{}", v.dst_ip, v.dst_port),
            IpAddr::V4(_) => format!("{}:{}", v.dst_ip, v.dst_port),
        }
    } else {
        v.dst_ip.to_string()
    };
    let times = if count > 1 {
        format!(" ({count} times)")
    } else {
        String::new()
    };
    let why = denied_by(policy, v.rule, v.src_zone, v.dst_zone);
    let pci = if policy.zone(v.src_zone).pci == Pci::Cde || policy.zone(v.dst_zone).pci == Pci::Cde
    {
        " This crosses the boundary of the cardholder data environment."
    } else {
        ""
    };
    let head = format!(
        "{} ({sz}) opened {} to {target} ({dz}){times}",
        v.src_ip,
        proto_word(v.proto)
    );
    match v.outcome {
        Outcome::Established | Outcome::Closed => format!(
            "{head} and it worked, but {why}: segmentation between {sz} and {dz} is broken; fix the firewall or add a justified rule.{pci}"
        ),
        Outcome::Rejected => format!(
            "{head} and was refused (TCP reset or ICMP unreachable); {why}. The path is reachable, so a host or firewall answered: check that the refusal comes from the firewall.{pci}"
        ),
        Outcome::Attempted => format!(
            "{head} with no answer; {why}. A firewall most likely dropped it (segmentation held); find out why the source tried.{pci}"
        ),
    }
}

/// Compress a sorted list of ports into ranges ("1-21", "23").
pub fn port_ranges(ports: &[u16], max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ports.len() {
        let mut j = i;
        while j + 1 < ports.len() && ports[j + 1] == ports[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ports[i].to_string()
        } else {
            format!("{}-{}", ports[i], ports[j])
        });
        i = j + 1;
        if out.len() == max && i < ports.len() {
            out.push("…".into());
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_ranks_connected_cde_highest() {
        use Outcome::*;
        assert_eq!(
            Severity::rate(Established, Pci::OutOfScope, Pci::Cde),
            Severity::Critical
        );
        assert_eq!(
            Severity::rate(Closed, Pci::Cde, Pci::OutOfScope),
            Severity::Critical
        );
        assert_eq!(
            Severity::rate(Established, Pci::OutOfScope, Pci::OutOfScope),
            Severity::High
        );
        assert_eq!(
            Severity::rate(Rejected, Pci::OutOfScope, Pci::Cde),
            Severity::Medium
        );
        assert_eq!(
            Severity::rate(Attempted, Pci::Connected, Pci::OutOfScope),
            Severity::Medium
        );
        assert_eq!(
            Severity::rate(Attempted, Pci::OutOfScope, Pci::OutOfScope),
            Severity::Low
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(port_ranges(&[1, 2, 3, 5, 7, 8], 10), ["1-3", "5", "7-8"]);
        assert_eq!(port_ranges(&[1, 3, 5, 7], 2), ["1", "3", "…"]);
        assert!(port_ranges(&[], 3).is_empty());
    }
}
