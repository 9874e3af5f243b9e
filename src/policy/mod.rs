//! The segmentation policy: zones, rules and defaults, and the judgement of a
//! flow against them.
//!
//! A flow is judged by its initiator: the source zone is the initiator's, the
//! destination zone the responder's. The first rule in file order that matches
//! (zones, protocol, destination port, hosts) decides; with none, the default
//! for the pair applies (`within_zone` or `between_zones`). Rules are indexed
//! by zone pair, with separate lists for `any` on either side, so judging
//! costs a few short list scans whatever the size of the policy.

pub mod explain;
pub mod load;

use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap;
use ipnet::IpNet;
use serde::Serialize;

use crate::decode::proto;
use crate::flow::FlowRecord;
use crate::zones::{Zone, ZoneId, ZoneMap, is_link_local_traffic};

/// What a rule or default does with a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Deny,
}

/// Zones a rule applies to on one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneSet {
    Any,
    Some(Vec<ZoneId>),
}

impl ZoneSet {
    fn covers(&self, other: &ZoneSet) -> bool {
        match (self, other) {
            (ZoneSet::Any, _) => true,
            (ZoneSet::Some(_), ZoneSet::Any) => false,
            (ZoneSet::Some(a), ZoneSet::Some(b)) => b.iter().all(|z| a.contains(z)),
        }
    }
}

/// One rule of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The rule's `name`, or `rule-N` (1-based position in the file).
    pub name: String,
    /// Line in the config file where the rule starts.
    pub line: usize,
    pub from: ZoneSet,
    pub to: ZoneSet,
    /// IP protocol numbers; empty = any (`icmp` means ICMP and ICMPv6).
    pub protos: Vec<u8>,
    /// Inclusive destination port ranges; empty = any.
    pub ports: Vec<(u16, u16)>,
    pub from_hosts: Vec<IpNet>,
    pub to_hosts: Vec<IpNet>,
    pub action: Action,
    /// The business justification (PCI DSS 1.2.5).
    pub why: String,
}

impl Rule {
    fn matches(&self, r: &FlowRecord) -> bool {
        if !self.protos.is_empty() && !self.protos.contains(&r.proto) {
            return false;
        }
        if !self.ports.is_empty() {
            let has_ports = matches!(r.proto, proto::TCP | proto::UDP);
            if !has_ports
                || !self
                    .ports
                    .iter()
                    .any(|&(lo, hi)| (lo..=hi).contains(&r.dst_port))
            {
                return false;
            }
        }
        let within =
            |nets: &[IpNet], ip: IpAddr| nets.is_empty() || nets.iter().any(|n| n.contains(&ip));
        within(&self.from_hosts, r.src_ip) && within(&self.to_hosts, r.dst_ip)
    }

    /// Every flow this rule matches, `other` matches too (ignoring order).
    pub fn covered_by(&self, other: &Rule) -> bool {
        let ports_covered = other.ports.is_empty()
            || (!self.ports.is_empty()
                && self
                    .ports
                    .iter()
                    .all(|&(lo, hi)| other.ports.iter().any(|&(olo, ohi)| olo <= lo && hi <= ohi)));
        other.from.covers(&self.from)
            && other.to.covers(&self.to)
            && (other.protos.is_empty()
                || (!self.protos.is_empty()
                    && self.protos.iter().all(|p| other.protos.contains(p))))
            && ports_covered
            && other.from_hosts.is_empty()
            && other.to_hosts.is_empty()
    }

    /// Zones, protocol and ports in a short readable form (for reports).
    pub fn describe_service(&self) -> String {
        let proto = match self.protos.as_slice() {
            [] => "any".to_string(),
            [proto::ICMP, proto::ICMPV6] => "icmp".to_string(),
            ps => ps
                .iter()
                .map(|&p| crate::decode::proto_name(p).into_owned())
                .collect::<Vec<_>>()
                .join("+"),
        };
        if self.ports.is_empty() {
            proto
        } else {
            let ports: Vec<String> = self
                .ports
                .iter()
                .map(|&(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect();
            format!("{proto}/{}", ports.join(","))
        }
    }
}

/// How flows that no rule matches, and special traffic, are treated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub between_zones: Action,
    pub within_zone: Action,
    /// Zone of addresses in no declared zone.
    pub unzoned: ZoneId,
    /// Judge broadcast, multicast and link-local traffic too.
    pub judge_link_local: bool,
}

/// Settings of violation events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSettings {
    /// Repeats of one (src, dst, proto, port, outcome) within this window are
    /// one event with a count.
    pub dedup_window_ns: i64,
    /// Past this many distinct events from one source into one zone in a
    /// window, the rest are folded into one summary event (port scans).
    pub max_events_per_source: usize,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            dedup_window_ns: 300 * 1_000_000_000,
            max_events_per_source: 5,
        }
    }
}

/// The verdict on one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub src_zone: ZoneId,
    pub dst_zone: ZoneId,
    pub action: Action,
    /// The rule that decided, or `None` for the default.
    pub rule: Option<u32>,
}

/// A validated policy, ready to judge flows.
#[derive(Debug)]
pub struct Policy {
    pub zones: Vec<Zone>,
    pub rules: Vec<Rule>,
    pub defaults: Defaults,
    pub events: EventSettings,
    map: ZoneMap,
    pair: HashMap<(ZoneId, ZoneId), Vec<u32>>,
    from_any: HashMap<ZoneId, Vec<u32>>,
    to_any: HashMap<ZoneId, Vec<u32>>,
    any_any: Vec<u32>,
}

/// Two policies are the same when what was declared is (the indexes
/// follow from it).
impl PartialEq for Policy {
    fn eq(&self, other: &Policy) -> bool {
        self.zones == other.zones
            && self.rules == other.rules
            && self.defaults == other.defaults
            && self.events == other.events
    }
}

/// A shared, read-only policy.
pub type SharedPolicy = Arc<Policy>;

impl Default for Policy {
    /// No zones: every address is in the implicit `external` zone and
    /// nothing is judged.
    fn default() -> Self {
        let external = Zone {
            name: "external".into(),
            cidrs: Vec::new(),
            vlans: Vec::new(),
            pci: crate::zones::Pci::OutOfScope,
            description: "addresses in no declared zone".into(),
            implicit: true,
        };
        let defaults = Defaults {
            between_zones: Action::Deny,
            within_zone: Action::Allow,
            unzoned: 0,
            judge_link_local: false,
        };
        Policy::new(
            vec![external],
            Vec::new(),
            defaults,
            EventSettings::default(),
        )
        .unwrap_or_else(|_| unreachable!("one zone without prefixes cannot clash"))
    }
}

impl Policy {
    /// Index zones and rules. Zone prefixes must not clash (checked by the
    /// loader, which reports the line).
    pub fn new(
        zones: Vec<Zone>,
        rules: Vec<Rule>,
        defaults: Defaults,
        events: EventSettings,
    ) -> Result<Policy, crate::zones::PrefixClash> {
        let map = ZoneMap::build(&zones, defaults.unzoned)?;
        let mut p = Policy {
            zones,
            rules,
            defaults,
            events,
            map,
            pair: HashMap::new(),
            from_any: HashMap::new(),
            to_any: HashMap::new(),
            any_any: Vec::new(),
        };
        for (i, r) in p.rules.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match (&r.from, &r.to) {
                (ZoneSet::Any, ZoneSet::Any) => p.any_any.push(i),
                (ZoneSet::Any, ZoneSet::Some(to)) => {
                    for &t in to {
                        p.from_any.entry(t).or_default().push(i);
                    }
                }
                (ZoneSet::Some(from), ZoneSet::Any) => {
                    for &f in from {
                        p.to_any.entry(f).or_default().push(i);
                    }
                }
                (ZoneSet::Some(from), ZoneSet::Some(to)) => {
                    for &f in from {
                        for &t in to {
                            let list = p.pair.entry((f, t)).or_default();
                            if !list.contains(&i) {
                                list.push(i);
                            }
                        }
                    }
                }
            }
        }
        Ok(p)
    }

    /// A policy with no zones: nothing is judged.
    pub fn is_empty(&self) -> bool {
        self.zones.iter().all(|z| z.implicit)
    }

    /// The zone of an address seen on a VLAN.
    pub fn zone_of(&self, ip: IpAddr, vlan: Option<u16>) -> ZoneId {
        self.map.lookup(&self.zones, ip, vlan)
    }

    pub fn zone(&self, id: ZoneId) -> &Zone {
        &self.zones[usize::from(id)]
    }

    /// Judge a finished flow; `None` for link-local traffic when not judged.
    pub fn judge(&self, r: &FlowRecord) -> Option<Judgement> {
        self.zones_of(r).map(|(s, d)| self.decide(r, s, d))
    }

    /// The (source, destination) zones of a flow, or `None` for link-local
    /// traffic when it is not judged. Split from [`Policy::decide`] so a
    /// batch of flows can have all its lookups done first: their cache
    /// misses then overlap.
    pub fn zones_of(&self, r: &FlowRecord) -> Option<(ZoneId, ZoneId)> {
        if !self.defaults.judge_link_local && is_link_local_traffic(r.src_ip, r.dst_ip) {
            return None;
        }
        // The innermost tag names the customer network on QinQ links.
        let vlan = r.inner_vlan.or(r.vlan);
        Some((self.zone_of(r.src_ip, vlan), self.zone_of(r.dst_ip, vlan)))
    }

    /// The verdict on a flow whose zones are known.
    pub fn decide<'a>(&'a self, r: &FlowRecord, src_zone: ZoneId, dst_zone: ZoneId) -> Judgement {
        // Skip probing maps that are empty (common: few `any` rules).
        let probe = |m: &'a HashMap<ZoneId, Vec<u32>>, z: ZoneId| {
            if m.is_empty() { None } else { m.get(&z) }
        };
        let lists = [
            self.pair.get(&(src_zone, dst_zone)),
            probe(&self.from_any, dst_zone),
            probe(&self.to_any, src_zone),
            Some(&self.any_any),
        ];
        let rule = lists
            .into_iter()
            .flatten()
            .filter_map(|list| {
                list.iter()
                    .copied()
                    .find(|&i| self.rules[i as usize].matches(r))
            })
            .min();
        let action = match rule {
            Some(i) => self.rules[i as usize].action,
            None if src_zone == dst_zone => self.defaults.within_zone,
            None => self.defaults.between_zones,
        };
        Judgement {
            src_zone,
            dst_zone,
            action,
            rule,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::flow::{EndReason, Outcome};

    pub(crate) fn flow(src: &str, dst: &str, proto: u8, dport: u16) -> FlowRecord {
        let ip = |s: &str| s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        FlowRecord {
            start: 0,
            end: 0,
            proto,
            src_ip: ip(src),
            src_port: 40000,
            dst_ip: ip(dst),
            dst_port: dport,
            vlan: None,
            inner_vlan: None,
            packets_fwd: 1,
            packets_rev: 1,
            bytes_fwd: 60,
            bytes_rev: 60,
            outcome: Outcome::Established,
            tcp_flags_fwd: None,
            tcp_flags_rev: None,
            odd_tcp_flags: None,
            handshake: None,
            end_reason: EndReason::EndOfCapture,
        }
    }

    fn policy(text: &str) -> SharedPolicy {
        Config::parse(text, Path::new("p.toml"))
            .expect("valid policy")
            .policy
    }

    const SHOP: &str = r#"
[[zone]]
name = "cde"
cidrs = ["10.20.0.0/24", "2001:db8:20::/48"]
pci = "cde"
[[zone]]
name = "dmz"
cidrs = ["10.30.0.0/24"]
[[zone]]
name = "corp"
cidrs = ["10.10.0.0/16"]
[[rule]]
name = "shop-to-api"
from = "dmz"
to = "cde"
proto = "tcp"
ports = ["8443", "9000-9010"]
to_hosts = ["10.20.0.10"]
why = "payment API"
[[rule]]
from = "corp"
to = "external"
why = "browsing"
[[rule]]
from = "any"
to = "cde"
proto = "icmp"
action = "deny"
why = "no pings into the CDE"
[[rule]]
from = "any"
to = "any"
proto = "udp"
ports = [53]
why = "DNS anywhere"
"#;

    #[test]
    fn first_matching_rule_decides() {
        let p = policy(SHOP);
        let j = p
            .judge(&flow("10.30.0.80", "10.20.0.10", proto::TCP, 8443))
            .expect("judged");
        assert_eq!((j.action, j.rule), (Action::Allow, Some(0)));
        assert_eq!(p.zone(j.src_zone).name, "dmz");
        assert_eq!(p.zone(j.dst_zone).name, "cde");
        let j = p
            .judge(&flow("10.30.0.80", "10.20.0.10", proto::TCP, 9005))
            .expect("judged");
        assert_eq!(j.rule, Some(0));
        // Wrong host, wrong port, wrong protocol: the default denies.
        for f in [
            flow("10.30.0.80", "10.20.0.20", proto::TCP, 8443),
            flow("10.30.0.80", "10.20.0.10", proto::TCP, 22),
            flow("10.30.0.80", "10.20.0.10", proto::UDP, 8443),
        ] {
            let j = p.judge(&f).expect("judged");
            assert_eq!((j.action, j.rule), (Action::Deny, None), "{f:?}");
        }
        let j = p
            .judge(&flow("10.10.1.5", "203.0.113.9", proto::TCP, 443))
            .expect("judged");
        assert_eq!((j.action, j.rule), (Action::Allow, Some(1)));
        assert_eq!(p.zone(j.dst_zone).name, "external");
        let j = p
            .judge(&flow("10.10.1.5", "10.20.0.9", proto::ICMP, 8))
            .expect("judged");
        assert_eq!((j.action, j.rule), (Action::Deny, Some(2)));
        let j = p
            .judge(&flow("10.20.0.9", "10.10.2.53", proto::UDP, 53))
            .expect("judged");
        assert_eq!((j.action, j.rule), (Action::Allow, Some(3)));
        // Within a zone the default allows.
        let j = p
            .judge(&flow("10.10.1.5", "10.10.9.9", proto::TCP, 22))
            .expect("judged");
        assert_eq!((j.action, j.rule), (Action::Allow, None));
        // IPv6 zones.
        let j = p
            .judge(&flow("2001:db8:99::1", "2001:db8:20::10", proto::TCP, 443))
            .expect("judged");
        assert_eq!(p.zone(j.src_zone).name, "external");
        assert_eq!(p.zone(j.dst_zone).name, "cde");
        assert_eq!(j.action, Action::Deny);
    }

    #[test]
    fn link_local_is_not_judged_by_default() {
        let p = policy(SHOP);
        assert!(
            p.judge(&flow("0.0.0.0", "255.255.255.255", proto::UDP, 67))
                .is_none()
        );
        let p = policy(&format!("{SHOP}\n[policy]\nlink_local = \"judge\"\n"));
        assert!(
            p.judge(&flow("0.0.0.0", "255.255.255.255", proto::UDP, 67))
                .is_some()
        );
    }

    #[test]
    fn coverage() {
        let p = policy(SHOP);
        // The DNS rule is not covered by anything; the shop rule is covered
        // by nothing either (it is narrower than any other).
        assert!(!p.rules[0].covered_by(&p.rules[1]));
        assert!(!p.rules[3].covered_by(&p.rules[0]));
        assert_eq!(p.rules[0].describe_service(), "tcp/8443,9000-9010");
    }
}
