//! `scan`: one source reaching many hosts on one service in a minute
//! (horizontal: a sweep for, say, open SMB or SSH) or many ports on one host
//! (vertical: mapping what a machine runs), and ARP sweeps (asking for many
//! addresses). Attempts count as much as connections: most probes fail.
//!
//! A source is judged against its own learned fan-out (a monitoring server
//! that polls 200 hosts a minute is normal for it) and an absolute floor,
//! whichever is higher.

use std::net::{IpAddr, Ipv4Addr};

use hashbrown::{HashMap, HashSet};
use serde_json::json;

use super::Ctx;
use super::Ends;
use super::event::{Detector, Finding, service_text};
use super::fanout::Fanout;
use crate::analysis::ArpFact;
use crate::baseline::learn::service_port;
use crate::baseline::model::Mac;
use crate::flow::FlowRecord;
use crate::segmentation::Severity;

const MINUTE_NS: i64 = 60_000_000_000;

/// What normal is, for explanations.
fn normal(learned: Option<&crate::baseline::dist::Dist>, bar: usize, what: &str) -> String {
    match learned {
        Some(d) if d.count() > 0 => format!(
            "in the baseline it failed on at most {} {what} a minute (alert at {bar})",
            d.max()
        ),
        Some(_) => {
            format!("in the baseline it never failed to connect (alert at {bar} {what} a minute)")
        }
        None => format!("no baseline for this host: the alert floor is {bar} {what} a minute"),
    }
}

/// One target's current minute: distinct sources whose attempts failed.
struct FanIn {
    minute: i64,
    sources: HashSet<IpAddr>,
    reported: bool,
}

pub struct Scan {
    /// Targets tracked at once for fan-in (floods).
    max_targets: usize,
    fanout: Fanout,
    /// Failed attempts per target service (floods from many sources).
    fan_in: HashMap<(IpAddr, u8, u16), FanIn>,
    /// ARP requests per sender MAC in its current minute: targets asked for.
    arp: HashMap<[u8; 6], (i64, HashSet<Ipv4Addr>, bool)>,
}

impl Default for Scan {
    fn default() -> Self {
        Scan::new(super::MAX_TRACKED)
    }
}

impl Scan {
    /// Track at most `max` sources (scans) and `max` targets (floods).
    pub fn new(max: usize) -> Scan {
        Scan {
            max_targets: max,
            fanout: Fanout::new(4096, max),
            fan_in: HashMap::new(),
            arp: HashMap::new(),
        }
    }

    pub fn flow(&mut self, cx: &Ctx<'_>, r: &FlowRecord, e: &Ends<'_>, out: &mut Vec<Finding>) {
        let (s, d) = (e.s, e.d);
        // Probes mostly fail; a browser opening 40 connections for one page
        // succeeds. Only failed attempts count toward a scan.
        if r.outcome.connected() {
            return;
        }
        let port = service_port(r);
        let set = &cx.settings.scan;
        self.flood(cx, r, e, port, out);
        let Some(a) = self
            .fanout
            .add(r.src_ip, r.dst_ip, (r.proto, port), r.start, &mut |_, _| {})
        else {
            return;
        };
        let base = e.src;
        let learned = |d: Option<&crate::baseline::dist::Dist>| d.map_or(0, |d| d.max());
        let host_bar = set
            .min_hosts
            .max((learned(base.map(|b| &b.fanout_hosts)) as f64 * set.baseline_factor) as usize);
        let port_bar = set
            .min_ports
            .max((learned(base.map(|b| &b.fanout_ports)) as f64 * set.baseline_factor) as usize);
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let w = a.window;
        // A scan touching the CDE ranks higher.
        let severity = if s.cde || d.cde {
            Severity::High
        } else {
            Severity::Medium
        };
        if a.hosts_on_service >= host_bar && w.reported.insert((0, unspecified, r.proto, port)) {
            let targets = &w.hosts[&(r.proto, port)];
            let mut f = cx.finding(r, s, d, Detector::Scan, severity, 0.9);
            f.dst_ip = None;
            f.dst_zone = None;
            f.variant = 0;
            f.explanation = format!(
                "{} tried {} different hosts on {} within a minute without getting through, a sweep for that service; {}.",
                r.src_ip,
                targets.len(),
                service_text(r.proto, port),
                normal(base.map(|b| &b.fanout_hosts), host_bar, "hosts")
            );
            let mut sample: Vec<&IpAddr> = targets.iter().collect();
            sample.sort();
            sample.truncate(10);
            f.observed = json!({"kind": "horizontal", "distinct_hosts_per_minute": targets.len(), "sample_hosts": sample});
            f.baseline = json!({"max_hosts_per_minute": learned(base.map(|b| &b.fanout_hosts)), "threshold": host_bar});
            out.push(f);
        }
        if a.ports_on_host >= port_bar && w.reported.insert((1, r.dst_ip, 0, 0)) {
            let ports = &w.ports[&r.dst_ip];
            let mut f = cx.finding(r, s, d, Detector::Scan, severity, 0.9);
            f.proto = None;
            f.dst_port = None;
            f.variant = 1;
            let mut sample: Vec<u16> = ports.iter().map(|p| p.1).collect();
            sample.sort_unstable();
            sample.truncate(20);
            f.explanation = format!(
                "{} probed {} different ports on {} within a minute without getting through, mapping what it runs; {}.",
                r.src_ip,
                ports.len(),
                r.dst_ip,
                normal(base.map(|b| &b.fanout_ports), port_bar, "ports on one host")
            );
            f.observed = json!({"kind": "vertical", "distinct_ports_per_minute": ports.len(), "sample_ports": sample});
            f.baseline = json!({"max_ports_per_minute": learned(base.map(|b| &b.fanout_ports)), "threshold": port_bar});
            out.push(f);
        }
    }

    /// Many sources failing against one service within a minute: a flood
    /// (often from spoofed addresses), or a distributed scan of one host.
    fn flood(
        &mut self,
        cx: &Ctx<'_>,
        r: &FlowRecord,
        e: &Ends<'_>,
        port: u16,
        out: &mut Vec<Finding>,
    ) {
        let bar = cx.settings.scan.flood_sources;
        let minute = r.start.div_euclid(MINUTE_NS);
        let key = (r.dst_ip, r.proto, port);
        if !self.fan_in.contains_key(&key) && self.fan_in.len() >= self.max_targets {
            return;
        }
        let w = self.fan_in.entry(key).or_insert_with(|| FanIn {
            minute,
            sources: HashSet::new(),
            reported: false,
        });
        if minute > w.minute {
            w.minute = minute;
            w.sources.clear();
            w.reported = false;
        }
        if w.sources.len() < bar {
            w.sources.insert(r.src_ip);
        }
        if !w.reported && w.sources.len() >= bar {
            w.reported = true;
            let severity = if e.d.cde {
                Severity::High
            } else {
                Severity::Medium
            };
            let mut f = cx.finding(r, e.s, e.d, Detector::Scan, severity, 0.9);
            f.src_ip = None;
            f.src_zone = None;
            f.variant = 3;
            f.explanation = format!(
                "{} different sources failed to reach {} on {} within a minute: a flood (often from forged addresses) or a distributed scan; the target may be struggling to answer.",
                w.sources.len(),
                r.dst_ip,
                service_text(r.proto, port)
            );
            let mut sample: Vec<&IpAddr> = w.sources.iter().collect();
            sample.sort();
            sample.truncate(10);
            f.observed = json!({"kind": "flood", "distinct_sources_per_minute": w.sources.len(), "sample_sources": sample});
            f.baseline = json!({"threshold": bar});
            out.push(f);
        }
    }

    pub fn sweep(&mut self, now: i64) {
        self.fanout.sweep(now, &mut |_, _| {});
        let minute = now.div_euclid(MINUTE_NS);
        self.fan_in.retain(|_, w| w.minute + 2 > minute);
        self.arp.retain(|_, (m, _, _)| *m + 2 > minute);
    }

    /// ARP who-has for many addresses from one MAC in a minute.
    pub fn arp(&mut self, cx: &Ctx<'_>, fact: &ArpFact, out: &mut Vec<Finding>) {
        const REQUEST: u16 = 1;
        let a = &fact.arp;
        if a.operation != REQUEST || a.sender_ip == a.target_ip {
            return;
        }
        let minute = fact.ts_ns.div_euclid(MINUTE_NS);
        let e = self
            .arp
            .entry(a.sender_mac)
            .or_insert_with(|| (minute, HashSet::new(), false));
        if minute > e.0 {
            *e = (minute, HashSet::new(), false);
        }
        if e.1.len() <= cx.settings.scan.arp_targets {
            e.1.insert(a.target_ip);
        }
        if !e.2 && e.1.len() >= cx.settings.scan.arp_targets {
            e.2 = true;
            let mut f = Finding::new(fact.ts_ns, Detector::Scan, Severity::Medium, 0.85);
            let src = IpAddr::V4(a.sender_ip);
            f.src_ip = Some(src);
            f.src_zone = Some(cx.nets.name(cx.nets.place(src, fact.vlan).zone).to_string());
            f.variant = 2;
            f.explanation = format!(
                "{} ({}) asked ARP for {} different addresses within a minute: an ARP sweep maps every live machine on the segment.",
                a.sender_ip,
                Mac(a.sender_mac),
                e.1.len()
            );
            f.observed = json!({"kind": "arp_sweep", "sender_mac": Mac(a.sender_mac), "distinct_targets_per_minute": e.1.len()});
            f.baseline = json!({"threshold": cx.settings.scan.arp_targets});
            out.push(f);
        }
    }
}
