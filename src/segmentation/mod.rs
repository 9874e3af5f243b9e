//! Segmentation checking, on the flow-analysis thread ([`crate::analysis`]):
//! each finished flow is judged against the policy, tallied (zones seen, zone
//! pairs, rule use, systems connected to the CDE) and, when the policy denies
//! it, turned into a [`Violation`] for deduplication. The tallies are the
//! evidence the report is built from.

pub mod dedup;
pub mod violation;

use std::collections::BTreeMap;

use arrayvec::ArrayVec;
use std::net::IpAddr;

use hashbrown::HashMap;

use crate::flow::{FlowRecord, Outcome};
use crate::policy::{Action, Policy};
use crate::zones::{Pci, ZoneId};
pub use violation::{Severity, Violation, ViolationEvent};

/// Distinct (host, service) entries kept for the connected-systems list;
/// past it, entries are only counted.
pub const CONNECTED_CAP: usize = 20_000;
/// CDE hosts listed per connected-system entry (kept inline: no allocation
/// per entry).
pub const CDE_HOSTS_LISTED: usize = 4;

/// First and last time something was seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub first_ns: i64,
    pub last_ns: i64,
}

impl Seen {
    fn add(&mut self, start: i64, end: i64) {
        if self.first_ns == 0 || start < self.first_ns {
            self.first_ns = start;
        }
        self.last_ns = self.last_ns.max(end);
    }
}

/// Traffic seen with a zone on either end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneTally {
    pub flows_out: u64,
    pub flows_in: u64,
    pub bytes: u64,
    pub seen: Seen,
}

/// Flows from one zone to another (initiator's zone first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairTally {
    /// Flows the policy allows, by outcome (index: `Outcome::index`).
    pub allowed: [u64; 4],
    /// Flows the policy denies, by outcome.
    pub denied: [u64; 4],
    pub bytes: u64,
    /// Allowed flows by deciding rule (`None` = the default).
    pub by_rule: BTreeMap<Option<u32>, u64>,
    pub seen: Seen,
}

impl PairTally {
    pub fn flows(&self) -> u64 {
        self.allowed.iter().sum::<u64>() + self.denied.iter().sum::<u64>()
    }

    /// Denied flows that got through (established or closed).
    pub fn denied_connected(&self) -> u64 {
        self.denied[Outcome::Established.index()] + self.denied[Outcome::Closed.index()]
    }
}

/// Use of one rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleTally {
    pub flows: u64,
    pub bytes: u64,
    pub seen: Seen,
}

/// Which way a connected system's traffic went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// The outside host opened connections into the CDE.
    ToCde,
    /// A CDE host opened connections to the outside host.
    FromCde,
}

/// A host outside the CDE and one service it used with the CDE.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectedKey {
    pub host: IpAddr,
    pub host_zone: ZoneId,
    pub direction: Direction,
    pub proto: u8,
    /// The responder's port (the service).
    pub port: u16,
    /// The deciding rule (`None` = default), and whether it allowed.
    pub rule: Option<u32>,
    pub allowed: bool,
}

/// Traffic of one connected-system entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectedTally {
    pub flows: u64,
    pub bytes: u64,
    pub seen: Seen,
    /// CDE hosts involved (the first few, in order of appearance).
    pub cde_hosts: ArrayVec<IpAddr, CDE_HOSTS_LISTED>,
    /// Further distinct CDE hosts were involved but not listed.
    pub more_cde_hosts: bool,
}

/// Everything segmentation checking counted in a run.
#[derive(Clone, Debug, Default)]
pub struct SegTally {
    pub zones: Vec<ZoneTally>,
    pub pairs: HashMap<(ZoneId, ZoneId), PairTally>,
    pub rules: Vec<RuleTally>,
    pub connected: HashMap<ConnectedKey, ConnectedTally>,
    /// Connected-system entries not kept because the table was full.
    pub connected_untracked: u64,
    /// Flows judged; flows not judged (link-local traffic).
    pub judged: u64,
    pub not_judged: u64,
    pub violations: u64,
}

impl SegTally {
    pub fn new(policy: &Policy) -> SegTally {
        SegTally {
            zones: vec![ZoneTally::default(); policy.zones.len()],
            rules: vec![RuleTally::default(); policy.rules.len()],
            ..SegTally::default()
        }
    }

    /// Judge one finished flow and count it; a denied flow is returned as a
    /// violation.
    pub fn judge(&mut self, policy: &Policy, r: &FlowRecord) -> Option<Violation> {
        let zones = policy.zones_of(r);
        self.judge_in_zones(policy, r, zones)
    }

    /// [`SegTally::judge`] with the zones already looked up
    /// ([`Policy::zones_of`]).
    pub fn judge_in_zones(
        &mut self,
        policy: &Policy,
        r: &FlowRecord,
        zones: Option<(ZoneId, ZoneId)>,
    ) -> Option<Violation> {
        let Some((src_zone, dst_zone)) = zones else {
            self.not_judged += 1;
            return None;
        };
        let j = policy.decide(r, src_zone, dst_zone);
        self.judged += 1;
        let bytes = r.bytes();
        let (s, d) = (usize::from(j.src_zone), usize::from(j.dst_zone));
        self.zones[s].flows_out += 1;
        self.zones[s].bytes += bytes;
        self.zones[s].seen.add(r.start, r.end);
        self.zones[d].flows_in += 1;
        if s != d {
            self.zones[d].bytes += bytes;
        }
        self.zones[d].seen.add(r.start, r.end);
        let allowed = j.action == Action::Allow;
        let pair = self.pairs.entry((j.src_zone, j.dst_zone)).or_default();
        let counts = if allowed {
            &mut pair.allowed
        } else {
            &mut pair.denied
        };
        counts[r.outcome.index()] += 1;
        pair.bytes += bytes;
        pair.seen.add(r.start, r.end);
        if allowed {
            *pair.by_rule.entry(j.rule).or_default() += 1;
        }
        if let Some(i) = j.rule {
            let t = &mut self.rules[i as usize];
            t.flows += 1;
            t.bytes += bytes;
            t.seen.add(r.start, r.end);
        }

        let connected = matches!(r.outcome, Outcome::Established | Outcome::Closed);
        let src_cde = policy.zone(j.src_zone).pci == Pci::Cde;
        let dst_cde = policy.zone(j.dst_zone).pci == Pci::Cde;
        if connected && src_cde != dst_cde {
            let (host, host_zone, cde_host, direction) = if dst_cde {
                (r.src_ip, j.src_zone, r.dst_ip, Direction::ToCde)
            } else {
                (r.dst_ip, j.dst_zone, r.src_ip, Direction::FromCde)
            };
            let key = ConnectedKey {
                host,
                host_zone,
                direction,
                proto: r.proto,
                port: r.dst_port,
                rule: j.rule,
                allowed,
            };
            let full = self.connected.len() >= CONNECTED_CAP;
            match self.connected.get_mut(&key) {
                Some(t) => t.add(r, cde_host),
                None if full => self.connected_untracked += 1,
                None => self.connected.entry(key).or_default().add(r, cde_host),
            }
        }
        if allowed {
            return None;
        }
        self.violations += 1;
        Some(Violation::new(r, &j, policy))
    }
}

impl ConnectedTally {
    fn add(&mut self, r: &FlowRecord, cde_host: IpAddr) {
        self.flows += 1;
        self.bytes += r.bytes();
        self.seen.add(r.start, r.end);
        self.add_cde_host(cde_host);
    }

    fn add_cde_host(&mut self, h: IpAddr) {
        if !self.cde_hosts.contains(&h) && self.cde_hosts.try_push(h).is_err() {
            self.more_cde_hosts = true;
        }
    }
}
