//! The PCI scope evidence report: what the segmentation checking of one run
//! proves, as a JSON document and a self-contained HTML page with the same
//! content ([`html`]).
//!
//! Sections: capture window and coverage (zones never observed are called out,
//! since silence from a zone the mirror does not cover proves nothing), the
//! zone-to-zone matrix with a verdict per pair, the systems connected to the
//! CDE, every violation event, rule usage and rules never hit, and the PCI DSS
//! v4.0 requirements each section supports.

pub mod html;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use crate::flow::Outcome;
use crate::flow::record::format_rfc3339;
use crate::pipeline::SegmentationResult;
use crate::policy::{Action, ZoneSet};
use crate::segmentation::{Direction, Seen, Severity, ViolationEvent};
use crate::summary::RunSummary;
use crate::zones::{Pci, ZoneId};

/// File names written into the report directory.
pub const HTML_NAME: &str = "pci-report.html";
pub const JSON_NAME: &str = "pci-report.json";

/// Matrices with more zones than this list only the observed pairs.
pub const FULL_MATRIX_ZONES: usize = 60;

/// The verdict on one zone pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Denied flows got through.
    Violated,
    /// Only flows the policy allows got through (denied attempts failed).
    Allowed,
    /// Flows were seen, none allowed and none got through.
    Isolated,
    /// No flows at all.
    NotObserved,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Violated => "violated",
            Verdict::Allowed => "allowed",
            Verdict::Isolated => "isolated",
            Verdict::NotObserved => "not observed",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CaptureInfo {
    pub start: Option<String>,
    /// The policy was reloaded (SIGHUP) at this time; the figures cover the
    /// flows judged from then on, against the policy in this report.
    pub policy_since: Option<String>,
    pub end: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub flows_judged: u64,
    /// Broadcast, multicast and link-local flows (not judged by default).
    pub flows_not_judged: u64,
    /// Packets lost before analysis, when known (live capture).
    pub capture_loss: Option<CaptureLoss>,
    pub input_problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaptureLoss {
    pub kernel_dropped: u64,
    pub interface_dropped: u64,
    pub segwatch_dropped: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ZoneReport {
    pub name: String,
    pub pci: Pci,
    pub cidrs: Vec<String>,
    pub vlans: Vec<u16>,
    pub description: String,
    pub observed: bool,
    pub flows_out: u64,
    pub flows_in: u64,
    pub bytes: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct OutcomeCounts {
    pub attempted: u64,
    pub rejected: u64,
    pub established: u64,
    pub closed: u64,
}

impl OutcomeCounts {
    fn from(a: &[u64; 4], b: &[u64; 4]) -> OutcomeCounts {
        let n = |o: Outcome| a[o.index()] + b[o.index()];
        OutcomeCounts {
            attempted: n(Outcome::Attempted),
            rejected: n(Outcome::Rejected),
            established: n(Outcome::Established),
            closed: n(Outcome::Closed),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleCount {
    /// Rule name, or `default` for the policy default.
    pub rule: String,
    pub flows: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PairReport {
    pub from: String,
    pub to: String,
    pub verdict: Verdict,
    pub flows: u64,
    pub by_outcome: OutcomeCounts,
    pub allowed_flows: u64,
    pub denied_flows: u64,
    /// Denied flows that got through (established or closed).
    pub denied_connected: u64,
    /// Allowed flows by the rule that allowed them.
    pub allowed_by: Vec<RuleCount>,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConnectedService {
    /// `to_cde`: the host opened connections into the CDE; `from_cde`: CDE
    /// hosts opened connections to it.
    pub direction: &'static str,
    pub proto: String,
    pub port: Option<u16>,
    pub allowed: bool,
    /// The deciding rule, or `default`.
    pub rule: String,
    pub why: String,
    pub cde_hosts: Vec<IpAddr>,
    /// More CDE hosts were involved than listed.
    pub more_cde_hosts: bool,
    pub flows: u64,
    pub bytes: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConnectedSystem {
    pub host: IpAddr,
    pub zone: String,
    pub services: Vec<ConnectedService>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleUsage {
    pub name: String,
    pub line: usize,
    pub action: Action,
    pub from: String,
    pub to: String,
    pub service: String,
    pub why: String,
    pub flows: u64,
    pub bytes: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Requirement {
    pub id: &'static str,
    pub requirement: &'static str,
    pub evidence: &'static str,
    pub sections: &'static [&'static str],
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct PciReport {
    pub title: String,
    pub generated_by: String,
    pub policy_file: Option<String>,
    /// Plain-language findings, most important first.
    pub findings: Vec<String>,
    pub capture: CaptureInfo,
    pub zones: Vec<ZoneReport>,
    /// Every pair of zones when there are at most [`FULL_MATRIX_ZONES`],
    /// otherwise the observed pairs only.
    pub matrix: Vec<PairReport>,
    pub matrix_complete: bool,
    pub connected_systems: Vec<ConnectedSystem>,
    /// Connected-system entries not listed because the table was full.
    pub connected_not_listed: u64,
    /// Events by severity, most severe first.
    pub violations_by_severity: Vec<(&'static str, u64)>,
    pub violations: Vec<ViolationEvent>,
    /// Violation events written but not listed (past the report's cap).
    pub violations_not_listed: u64,
    pub rules: Vec<RuleUsage>,
    pub rules_never_hit: Vec<String>,
    pub requirements: Vec<Requirement>,
    pub limitations: Vec<String>,
}

fn time(ns: i64) -> Option<String> {
    (ns != 0).then(|| format_rfc3339(ns))
}

fn seen(s: Seen) -> (Option<String>, Option<String>) {
    (time(s.first_ns), time(s.last_ns))
}

/// The verdict from allowed and denied flows by outcome.
pub fn verdict(allowed: &[u64; 4], denied: &[u64; 4]) -> Verdict {
    let denied_connected = denied[Outcome::Established.index()] + denied[Outcome::Closed.index()];
    if denied_connected > 0 {
        Verdict::Violated
    } else if allowed.iter().sum::<u64>() > 0 {
        Verdict::Allowed
    } else if denied.iter().sum::<u64>() > 0 {
        Verdict::Isolated
    } else {
        Verdict::NotObserved
    }
}

const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        id: "1.2.5",
        requirement: "All services, protocols and ports allowed are identified, approved, and have a defined business need.",
        evidence: "Every allowed flow is attributed to the rule that allows it, with the rule's business justification.",
        sections: &["rules", "connected"],
    },
    Requirement {
        id: "1.2.7",
        requirement: "Configurations of network security controls are reviewed at least once every six months.",
        evidence: "Rule usage over the capture window; rules never hit are candidates for removal.",
        sections: &["rules"],
    },
    Requirement {
        id: "1.3.1",
        requirement: "Inbound traffic to the CDE is restricted to only that which is necessary.",
        evidence: "The matrix column of each CDE zone and every violation into it.",
        sections: &["matrix", "violations"],
    },
    Requirement {
        id: "1.3.2",
        requirement: "Outbound traffic from the CDE is restricted to only that which is necessary.",
        evidence: "The matrix row of each CDE zone and every violation out of it.",
        sections: &["matrix", "violations"],
    },
    Requirement {
        id: "1.4.x",
        requirement: "Network connections between trusted and untrusted networks are controlled.",
        evidence: "Pairs with the unzoned (external) zone in the matrix, and violations across them.",
        sections: &["matrix", "violations"],
    },
    Requirement {
        id: "10.7.2",
        requirement: "Failures of critical security control systems, including network security controls, are detected, alerted and addressed promptly.",
        evidence: "Denied flows that got through are failures of a network security control; each is a critical or high event.",
        sections: &["violations"],
    },
    Requirement {
        id: "11.5.1",
        requirement: "Intrusion-detection and/or intrusion-prevention techniques are used to detect and/or prevent intrusions into the network.",
        evidence: "Traffic at the CDE perimeter is monitored continuously from a mirror port; attempts and scans are reported.",
        sections: &["coverage", "violations"],
    },
    Requirement {
        id: "12.5.2",
        requirement: "PCI DSS scope is documented and confirmed at least once every 12 months and upon significant change.",
        evidence: "Zones observed, and every system outside the CDE that exchanged traffic with it (connected-to systems are in scope).",
        sections: &["coverage", "connected"],
    },
];

const PENTEST_NOTE: &str = "This report is passive evidence from observed traffic. It supports, but does not replace, the segmentation penetration test of PCI DSS 11.4.5: paths that carried no traffic during the capture window were not tested.";

impl PciReport {
    /// Build the report of a run with a policy.
    pub fn build(
        summary: &RunSummary,
        seg: &SegmentationResult,
        policy_file: Option<&Path>,
    ) -> PciReport {
        let p = &seg.policy;
        let t = &seg.tally;
        let c = &summary.capture;
        let zone_name = |z: ZoneId| p.zone(z).name.clone();
        let zones: Vec<ZoneReport> = p
            .zones
            .iter()
            .zip(&t.zones)
            .map(|(z, zt)| {
                let (first_seen, last_seen) = seen(zt.seen);
                ZoneReport {
                    name: z.name.clone(),
                    pci: z.pci,
                    cidrs: z.cidrs.iter().map(ToString::to_string).collect(),
                    vlans: z.vlans.clone(),
                    description: z.description.clone(),
                    observed: zt.flows_in + zt.flows_out > 0,
                    flows_out: zt.flows_out,
                    flows_in: zt.flows_in,
                    bytes: zt.bytes,
                    first_seen,
                    last_seen,
                }
            })
            .collect();

        let rule_name =
            |r: Option<u32>| r.map_or("default".to_string(), |i| p.rules[i as usize].name.clone());
        let pair_report = |(f, to): (ZoneId, ZoneId)| {
            let pt = t.pairs.get(&(f, to)).cloned().unwrap_or_default();
            PairReport {
                from: zone_name(f),
                to: zone_name(to),
                verdict: verdict(&pt.allowed, &pt.denied),
                flows: pt.flows(),
                by_outcome: OutcomeCounts::from(&pt.allowed, &pt.denied),
                allowed_flows: pt.allowed.iter().sum(),
                denied_flows: pt.denied.iter().sum(),
                denied_connected: pt.denied_connected(),
                allowed_by: pt
                    .by_rule
                    .iter()
                    .map(|(r, n)| RuleCount {
                        rule: rule_name(*r),
                        flows: *n,
                    })
                    .collect(),
                bytes: pt.bytes,
            }
        };
        let n = p.zones.len();
        let matrix_complete = n <= FULL_MATRIX_ZONES;
        let mut pairs: Vec<(ZoneId, ZoneId)> = if matrix_complete {
            (0..n)
                .flat_map(|a| (0..n).map(move |b| (a, b)))
                .map(|(a, b)| (a as ZoneId, b as ZoneId))
                .collect()
        } else {
            t.pairs.keys().copied().collect()
        };
        pairs.sort_unstable();
        let matrix: Vec<PairReport> = pairs.into_iter().map(pair_report).collect();

        // Connected systems: one entry per host, services sorted.
        let mut hosts: BTreeMap<(IpAddr, ZoneId), Vec<ConnectedService>> = BTreeMap::new();
        let mut keys: Vec<_> = t.connected.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in keys {
            let (first_seen, last_seen) = seen(v.seen);
            let has_ports = matches!(
                k.proto,
                crate::decode::proto::TCP | crate::decode::proto::UDP
            );
            hosts
                .entry((k.host, k.host_zone))
                .or_default()
                .push(ConnectedService {
                    direction: match k.direction {
                        Direction::ToCde => "to_cde",
                        Direction::FromCde => "from_cde",
                    },
                    proto: crate::decode::proto_name(k.proto).into_owned(),
                    port: has_ports.then_some(k.port),
                    allowed: k.allowed,
                    rule: rule_name(k.rule),
                    why: k
                        .rule
                        .map_or(String::new(), |i| p.rules[i as usize].why.clone()),
                    cde_hosts: v.cde_hosts.iter().copied().collect(),
                    more_cde_hosts: v.more_cde_hosts,
                    flows: v.flows,
                    bytes: v.bytes,
                    first_seen,
                    last_seen,
                });
        }
        let connected_systems: Vec<ConnectedSystem> = hosts
            .into_iter()
            .map(|((host, zone), services)| ConnectedSystem {
                host,
                zone: zone_name(zone),
                services,
            })
            .collect();

        let zset = |s: &ZoneSet| match s {
            ZoneSet::Any => "any".to_string(),
            ZoneSet::Some(ids) => ids
                .iter()
                .map(|&i| zone_name(i))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let rules: Vec<RuleUsage> = p
            .rules
            .iter()
            .zip(&t.rules)
            .map(|(r, rt)| {
                let (first_seen, last_seen) = seen(rt.seen);
                RuleUsage {
                    name: r.name.clone(),
                    line: r.line,
                    action: r.action,
                    from: zset(&r.from),
                    to: zset(&r.to),
                    service: r.describe_service(),
                    why: r.why.clone(),
                    flows: rt.flows,
                    bytes: rt.bytes,
                    first_seen,
                    last_seen,
                }
            })
            .collect();
        let rules_never_hit: Vec<String> = rules
            .iter()
            .filter(|r| r.flows == 0)
            .map(|r| r.name.clone())
            .collect();

        let ev = &seg.events;
        let violations_by_severity = Severity::ALL
            .iter()
            .rev()
            .map(|s| (s.as_str(), ev.stats.by_severity[*s as usize]))
            .collect();
        let capture = CaptureInfo {
            start: summary.flows.first_ns.map(format_rfc3339),
            policy_since: seg.policy_since.map(format_rfc3339),
            end: summary.flows.last_ns.map(format_rfc3339),
            packets: c.frames,
            bytes: c.bytes,
            flows: summary.flows.flows,
            flows_judged: t.judged,
            flows_not_judged: t.not_judged,
            capture_loss: (summary.capture.kernel_dropped
                + summary.capture.interface_dropped
                + summary.dispatch.dropped_packets
                > 0
                || summary.live)
                .then_some(CaptureLoss {
                    kernel_dropped: c.kernel_dropped,
                    interface_dropped: c.interface_dropped,
                    segwatch_dropped: summary.dispatch.dropped_packets,
                }),
            input_problems: c.file_problems.clone(),
        };
        let mut report = PciReport {
            title: "PCI DSS segmentation and scope evidence".into(),
            generated_by: format!("segwatch {}", env!("CARGO_PKG_VERSION")),
            policy_file: policy_file.map(|f| f.display().to_string()),
            findings: Vec::new(),
            capture,
            zones,
            matrix,
            matrix_complete,
            connected_systems,
            connected_not_listed: t.connected_untracked,
            violations_by_severity,
            violations: ev.events.clone(),
            violations_not_listed: ev.not_kept,
            rules,
            rules_never_hit,
            requirements: REQUIREMENTS.to_vec(),
            limitations: vec![
                PENTEST_NOTE.to_string(),
                "Flows are judged when they end; a connection still open when the capture stopped is judged at that point.".into(),
                "Zones are assigned by address (and VLAN); traffic with spoofed or translated (NAT) addresses is judged by the addresses seen on the mirror.".into(),
            ],
        };
        report.findings = report.findings(seg);
        report
    }

    fn findings(&self, seg: &SegmentationResult) -> Vec<String> {
        let mut f = Vec::new();
        let cde: Vec<&ZoneReport> = self.zones.iter().filter(|z| z.pci == Pci::Cde).collect();
        for pair in self
            .matrix
            .iter()
            .filter(|m| m.verdict == Verdict::Violated)
        {
            let into_cde = cde.iter().any(|z| z.name == pair.to || z.name == pair.from);
            f.push(format!(
                "{}: segmentation between {} and {} is broken: {} connection{} the policy denies got through.",
                if into_cde { "CRITICAL" } else { "HIGH" },
                pair.from,
                pair.to,
                pair.denied_connected,
                if pair.denied_connected == 1 { "" } else { "s" }
            ));
        }
        if cde.is_empty() {
            f.push("No zone is marked pci = \"cde\": the report cannot say which systems are in PCI scope.".into());
        }
        if let Some(t) = &self.capture.policy_since {
            f.push(format!(
                "The policy was changed and reloaded at {t}: the figures here cover flows judged against this policy from then on; violations before it were judged by the earlier policy and are in the event file."
            ));
        }
        for z in self.zones.iter().filter(|z| !z.observed) {
            f.push(format!(
                "Zone {} was never observed: the mirror may not cover it, so the absence of violations there proves nothing.",
                z.name
            ));
        }
        let n = self.connected_systems.len();
        if n > 0 {
            f.push(format!(
                "{n} system{} outside the CDE exchanged traffic with it: {} in PCI scope as connected-to systems (12.5.2).",
                if n == 1 { "" } else { "s" },
                if n == 1 { "it is" } else { "they are" }
            ));
        }
        let attempts: u64 = self
            .matrix
            .iter()
            .map(|m| m.denied_flows - m.denied_connected)
            .sum();
        if attempts > 0 {
            f.push(format!(
                "{attempts} denied flow{} blocked or refused (segmentation held there); the violations list who tried.",
                if attempts == 1 { " was" } else { "s were" }
            ));
        }
        if !self.rules_never_hit.is_empty() {
            f.push(format!(
                "{} rule{} never used during the capture: candidates for removal in the six-monthly review (1.2.7): {}.",
                self.rules_never_hit.len(),
                if self.rules_never_hit.len() == 1 { " was" } else { "s were" },
                self.rules_never_hit.join(", ")
            ));
        }
        if seg.events.stats.violations == 0 && cde.iter().all(|z| z.observed) && !cde.is_empty() {
            f.push("No flow the policy denies was observed.".into());
        }
        f
    }

    /// Write `pci-report.html` and `pci-report.json` into `dir` (created if
    /// missing), each atomically.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::sink::write_atomic(&dir.join(JSON_NAME), &json)?;
        crate::sink::write_atomic(&dir.join(HTML_NAME), html::render(self).as_bytes())?;
        Ok(())
    }
}
