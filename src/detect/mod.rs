//! Anomaly detection on the flow-analysis thread: each detector looks at
//! every finished flow (and ARP packet), compares it with the learned
//! baseline where it needs one, and reports [`Finding`]s; this module drops
//! the allowlisted ones and those under the severity floor, suppresses
//! repeats within the suppression window, and turns the rest into
//! [`AnomalyEvent`]s.

pub mod arp;
pub mod beacon;
pub mod event;
pub mod fanout;
pub mod known;
pub mod network;
pub mod new_external;
pub mod new_peer;
pub mod new_service;
pub mod scan;
pub mod settings;
pub mod tcp_flags;
pub mod volume;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;

use hashbrown::HashMap;
use serde_json::json;

use crate::analysis::ArpFact;
use crate::baseline::learn::service_port;
use crate::baseline::model::Baseline;
use crate::flow::FlowRecord;
use crate::segmentation::Severity;
pub use event::{AnomalyEvent, Detector, Finding};
use known::Known;
use network::{Networks, Place};
use settings::{Allow, DetectSettings};

/// Where a flow's two ends are, and their baselines (looked up once).
pub struct Ends<'a> {
    pub s: Place,
    pub d: Place,
    pub src: Option<&'a crate::baseline::model::HostBaseline>,
    pub dst: Option<&'a crate::baseline::model::HostBaseline>,
}

/// What detectors see besides the flow.
pub struct Ctx<'a> {
    pub nets: &'a Networks,
    pub known: Option<&'a Known>,
    pub settings: &'a DetectSettings,
}

impl Ctx<'_> {
    /// A finding about one flow, with its addresses, service and zones.
    pub fn finding(
        &self,
        r: &FlowRecord,
        s: Place,
        d: Place,
        detector: Detector,
        severity: Severity,
        score: f64,
    ) -> Finding {
        let mut f = Finding::new(r.start, detector, severity, score);
        f.src_ip = Some(r.src_ip);
        f.dst_ip = Some(r.dst_ip);
        f.proto = Some(r.proto);
        f.dst_port = Some(service_port(r));
        f.src_zone = Some(self.nets.name(s.zone).to_string());
        f.dst_zone = Some(self.nets.name(d.zone).to_string());
        f
    }
}

/// Counts of what detection did, for the summary and the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetectStats {
    /// Events written, by detector and severity.
    pub events: BTreeMap<(Detector, Severity), u64>,
    /// Findings dropped by an `[[allow]]` entry (by its line).
    pub allowed: BTreeMap<usize, u64>,
    pub below_min_severity: u64,
    /// Repeats within the suppression window.
    pub suppressed: u64,
}

impl DetectStats {
    pub fn total(&self) -> u64 {
        self.events.values().sum()
    }
}

/// Sources, targets, pairs and suppression keys each detector tracks at
/// most, unless a memory ceiling sets fewer ([`Detectors::limit_memory`]).
pub const MAX_TRACKED: usize = 200_000;

/// Memory per tracked entity, all detectors together (measured: 150 MiB of
/// detector state under a flood of 300,000 random sources at 200,000).
pub const TRACKED_BYTES: usize = 800;

/// The detectors and their shared state.
pub struct Detectors {
    nets: Networks,
    known: Option<Known>,
    settings: DetectSettings,
    scan: scan::Scan,
    volume: volume::Volume,
    beacons: beacon::Beacons,
    arp: arp::Arp,
    tcp_flags: tcp_flags::TcpFlags,
    findings: Vec<Finding>,
    events: Vec<AnomalyEvent>,
    /// Finding key → packet time it was last written.
    written: HashMap<u64, i64>,
    hasher: ahash::RandomState,
    now: i64,
    /// Packet time every worker has reached ([`Detectors::set_watermark`]).
    watermark: i64,
    /// See [`MAX_TRACKED`].
    max_tracked: usize,
    pub stats: DetectStats,
}

impl Detectors {
    pub fn new(nets: Networks, settings: DetectSettings, baseline: Option<Baseline>) -> Detectors {
        Detectors {
            known: baseline.map(|b| Known::new(b, &nets)),
            nets,
            settings,
            scan: scan::Scan::default(),
            volume: volume::Volume::default(),
            beacons: beacon::Beacons::default(),
            arp: arp::Arp::default(),
            tcp_flags: tcp_flags::TcpFlags::default(),
            findings: Vec::new(),
            events: Vec::new(),
            written: HashMap::new(),
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
            now: i64::MIN,
            watermark: i64::MIN,
            max_tracked: MAX_TRACKED,
            stats: DetectStats::default(),
        }
    }

    /// Fit the detectors' state into `bytes` (a share of the memory
    /// ceiling): fewer sources, targets, pairs and keys tracked.
    pub fn limit_memory(&mut self, bytes: u64) {
        let n = usize::try_from(bytes / TRACKED_BYTES as u64)
            .unwrap_or(usize::MAX)
            .clamp(1_000, MAX_TRACKED);
        self.max_tracked = n;
        self.shed();
    }

    /// Packet time that every worker has passed. Beacon series are judged
    /// against it rather than the latest flow end seen: one worker can run
    /// far ahead of another (its queue of a sparse capture can hold hours),
    /// and a series judged before a slower worker's flows arrived would
    /// depend on the worker count.
    pub fn set_watermark(&mut self, ns: i64) {
        self.watermark = self.watermark.max(ns);
    }

    /// The longest flow timeout: beacon series wait that long, plus a
    /// minute, for connections still in the workers' tables.
    pub fn set_flow_timeout(&mut self, ns: i64) {
        self.beacons
            .set_grace(ns.saturating_add(60 * 1_000_000_000));
    }

    /// Start comparing with a baseline (the end of live learning).
    pub fn set_baseline(&mut self, b: Baseline) {
        self.known = Some(Known::new(b, &self.nets));
    }

    /// A reload: new thresholds, allowlist and zones, and the baseline file
    /// read again (`None` keeps the one in use). Per-host state (scans,
    /// beacons, suppression) carries over; per-zone volume counts for the
    /// current hour start again when the zones changed.
    pub fn reload(&mut self, nets: Networks, settings: DetectSettings, baseline: Option<Baseline>) {
        let zones_changed = nets.names() != self.nets.names();
        self.nets = nets;
        self.settings = settings;
        if zones_changed {
            self.volume.forget_zones();
        }
        let base = baseline.or_else(|| self.known.take().map(|k| k.base));
        self.known = base.map(|b| Known::new(b, &self.nets));
    }

    /// Memory pressure: forget scan windows, beacon series and suppression
    /// keys (a finding may repeat; none is lost).
    pub fn shed(&mut self) {
        self.scan = scan::Scan::new(self.max_tracked);
        let grace = self.beacons.grace();
        self.beacons = beacon::Beacons::with_cap(self.max_tracked);
        self.beacons.set_grace(grace);
        self.tcp_flags = tcp_flags::TcpFlags::default();
        self.written.clear();
        self.written.shrink_to_fit();
    }

    pub fn has_baseline(&self) -> bool {
        self.known.is_some()
    }

    pub fn networks(&self) -> &Networks {
        &self.nets
    }

    /// Judge finished flows.
    pub fn flows(&mut self, chunk: &[FlowRecord]) {
        let cx = Ctx {
            nets: &self.nets,
            known: self.known.as_ref(),
            settings: &self.settings,
        };
        let on = |d| cx.settings.is_on(d);
        for r in chunk {
            let vlan = r.inner_vlan.or(r.vlan);
            let s = cx.nets.place(r.src_ip, vlan);
            let d = cx.nets.place(r.dst_ip, vlan);
            let e = Ends {
                s,
                d,
                src: cx
                    .known
                    .filter(|_| s.internal)
                    .and_then(|k| k.host(&r.src_ip)),
                dst: cx
                    .known
                    .filter(|_| d.internal)
                    .and_then(|k| k.host(&r.dst_ip)),
            };
            self.now = self.now.max(r.end);
            if cx.known.is_some() {
                new_peer::flow(&cx, r, &e, &mut self.findings);
                new_service::flow(&cx, r, &e, &mut self.findings);
                new_external::flow(&cx, r, &e, &mut self.findings);
                if on(Detector::Volume) {
                    self.volume.flow(&cx, r, &e, &mut self.findings);
                }
            }
            if on(Detector::Scan) {
                self.scan.flow(&cx, r, &e, &mut self.findings);
            }
            if on(Detector::TcpFlags) {
                self.tcp_flags.flow(&cx, r, &e, &mut self.findings);
            }
            if on(Detector::Beacon) && s.internal && (!d.internal || cx.settings.beacon.internal) {
                let now = self.watermark;
                beacon_flow(&cx, &mut self.beacons, r, (s, d, now), &mut self.findings);
            }
        }
        self.scan.sweep(self.now);
        self.release();
    }

    /// Judge ARP packets.
    pub fn arp(&mut self, facts: &[ArpFact]) {
        let cx = Ctx {
            nets: &self.nets,
            known: self.known.as_ref(),
            settings: &self.settings,
        };
        for f in facts {
            self.now = self.now.max(f.ts_ns);
            if cx.settings.is_on(Detector::ArpSpoof) {
                self.arp.packet(&cx, f, &mut self.findings);
            }
            if cx.settings.is_on(Detector::Scan) {
                self.scan.arp(&cx, f, &mut self.findings);
            }
        }
        self.arp.sweep(self.now);
        self.release();
    }

    /// Live capture with a quiet wire: let time pass.
    pub fn advance_clock(&mut self, now: i64) {
        self.now = self.now.max(now);
        self.scan.sweep(self.now);
        self.arp.sweep(self.now);
    }

    /// End of the run: judge what waited for late flows (beacon series).
    pub fn finish(&mut self) {
        let cx = Ctx {
            nets: &self.nets,
            known: self.known.as_ref(),
            settings: &self.settings,
        };
        if cx.settings.is_on(Detector::Beacon) {
            let min = cx.settings.beacon.min_connections;
            for j in self.beacons.finish(min) {
                beacon_finding(&cx, &j, &mut self.findings);
            }
        }
        self.release();
    }

    /// Events ready to write.
    pub fn take(&mut self) -> Vec<AnomalyEvent> {
        std::mem::take(&mut self.events)
    }

    fn key(&self, f: &Finding) -> u64 {
        let mut h = self.hasher.build_hasher();
        (
            f.detector, f.src_ip, f.dst_ip, f.proto, f.dst_port, f.variant,
        )
            .hash(&mut h);
        f.src_zone.hash(&mut h);
        h.finish()
    }

    /// Allowlist, severity floor, suppression.
    fn release(&mut self) {
        let window = i64::try_from(self.settings.suppress_secs)
            .unwrap_or(i64::MAX / 2_000_000_000)
            .saturating_mul(1_000_000_000);
        for f in std::mem::take(&mut self.findings) {
            if let Some(a) = self.settings.allow.iter().find(|a| allows(a, &f)) {
                *self.stats.allowed.entry(a.line).or_default() += 1;
                continue;
            }
            if f.severity < self.settings.min_severity {
                self.stats.below_min_severity += 1;
                continue;
            }
            let key = self.key(&f);
            if let Some(&last) = self.written.get(&key)
                && f.ts_ns.saturating_sub(last) < window
            {
                self.stats.suppressed += 1;
                continue;
            }
            if self.written.len() >= self.max_tracked {
                let cutoff = self.now.saturating_sub(window);
                self.written.retain(|_, t| *t >= cutoff);
                if self.written.len() >= self.max_tracked {
                    self.written.clear();
                }
            }
            self.written.insert(key, f.ts_ns);
            *self
                .stats
                .events
                .entry((f.detector, f.severity))
                .or_default() += 1;
            self.events.push(f.into());
        }
    }
}

fn in_nets(nets: &[ipnet::IpNet], ip: Option<IpAddr>) -> bool {
    nets.is_empty() || ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
}

fn in_zones(zones: &[String], zone: &Option<String>) -> bool {
    zones.is_empty() || zone.as_ref().is_some_and(|z| zones.contains(z))
}

/// An allow entry matches when every field it gives matches.
fn allows(a: &Allow, f: &Finding) -> bool {
    (a.detectors.is_empty() || a.detectors.contains(&f.detector))
        && in_nets(&a.src, f.src_ip)
        && in_nets(&a.dst, f.dst_ip)
        && in_zones(&a.src_zones, &f.src_zone)
        && in_zones(&a.dst_zones, &f.dst_zone)
        && (a.protos.is_empty() || f.proto.is_some_and(|p| a.protos.contains(&p)))
        && (a.ports.is_empty()
            || f.dst_port
                .is_some_and(|p| a.ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&p))))
}

fn beacon_flow(
    cx: &Ctx<'_>,
    beacons: &mut beacon::Beacons,
    r: &FlowRecord,
    (s, d, now): (Place, Place, i64),
    out: &mut Vec<Finding>,
) {
    let b = &cx.settings.beacon;
    let port = service_port(r);
    if b.skip.contains(&(r.proto, port)) {
        return;
    }
    let key = beacon::PairKey {
        src: r.src_ip,
        dst: r.dst_ip,
        proto: r.proto,
        port,
    };
    let connected = r.outcome.connected();
    for j in beacons.add(
        key,
        (s, d),
        r.start,
        r.bytes_fwd,
        connected,
        b.min_connections,
        now,
    ) {
        beacon_finding(cx, &j, out);
    }
}

/// A finding for a judged series, when it is a beacon the baseline does
/// not already know.
fn beacon_finding(cx: &Ctx<'_>, j: &beacon::Judged, out: &mut Vec<Finding>) {
    let b = &cx.settings.beacon;
    let (score, key, (s, d)) = (&j.score, &j.key, j.places);
    if !beacon::is_beacon(score, b.min_score, b.min_interval_secs) {
        return;
    }
    if cx.known.is_some_and(|k| k.beacon(key)) {
        return;
    }
    let severity = if s.cde {
        Severity::High
    } else {
        Severity::Medium
    };
    let mut f = Finding::new(j.at, Detector::Beacon, severity, score.score);
    f.src_ip = Some(key.src);
    f.dst_ip = Some(key.dst);
    f.proto = Some(key.proto);
    f.dst_port = Some(key.port);
    f.src_zone = Some(cx.nets.name(s.zone).to_string());
    f.dst_zone = Some(cx.nets.name(d.zone).to_string());
    f.explanation = format!(
        "{} connects to {} on {} every {} s (±{:.1} s) with requests of about {} bytes, {} times so far: regular check-ins like this are how malware talks to its controller.",
        key.src,
        key.dst,
        event::service_text(key.proto, key.port),
        if score.median_interval_secs < 10.0 {
            format!("{:.1}", score.median_interval_secs)
        } else {
            format!("{:.0}", score.median_interval_secs)
        },
        score.interval_mad_secs,
        score.median_bytes.round(),
        score.connections
    );
    f.observed = json!({
        "connections": score.connections,
        "median_interval_secs": (score.median_interval_secs * 100.0).round() / 100.0,
        "interval_mad_secs": (score.interval_mad_secs * 100.0).round() / 100.0,
        "interval_skew": (score.interval_skew * 100.0).round() / 100.0,
        "median_bytes": score.median_bytes,
        "bytes_mad": score.bytes_mad,
        "connected_ratio": (score.connected_ratio * 100.0).round() / 100.0,
        "span_secs": score.span_secs.round(),
    });
    f.baseline = json!({
        "known_periodic_pair": false,
        "baseline_loaded": cx.known.is_some(),
        "min_score": b.min_score,
    });
    out.push(f);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Outcome;
    use crate::flow::record::EndReason;

    /// A refused TCP attempt from `src` to 10.0.0.9:`port` at second `t`.
    fn probe(src: [u8; 4], port: u16, t: i64) -> FlowRecord {
        FlowRecord {
            start: t * 1_000_000_000,
            end: t * 1_000_000_000 + 1_000,
            proto: 6,
            src_ip: IpAddr::from(src),
            src_port: 40_000,
            dst_ip: IpAddr::from([10, 0, 0, 9]),
            dst_port: port,
            vlan: None,
            inner_vlan: None,
            packets_fwd: 1,
            packets_rev: 1,
            bytes_fwd: 60,
            bytes_rev: 60,
            outcome: Outcome::Rejected,
            tcp_flags_fwd: None,
            tcp_flags_rev: None,
            odd_tcp_flags: None,
            handshake: None,
            end_reason: EndReason::Timeout,
        }
    }

    fn scan(d: &mut Detectors, src: [u8; 4], t: i64) -> usize {
        let flows: Vec<FlowRecord> = (0..40).map(|p| probe(src, 1000 + p, t)).collect();
        d.flows(&flows);
        d.take().len()
    }

    #[test]
    fn reload_swaps_allowlist_and_thresholds_and_keeps_state() {
        let mut d = Detectors::new(Networks::new(None), DetectSettings::default(), None);
        assert_eq!(scan(&mut d, [10, 0, 0, 1], 0), 1, "a 40-port scan");
        let mut s = DetectSettings::default();
        s.allow.push(Allow {
            detectors: vec![Detector::Scan],
            src: vec!["10.0.0.2/32".parse().expect("net")],
            dst: Vec::new(),
            src_zones: Vec::new(),
            dst_zones: Vec::new(),
            protos: Vec::new(),
            ports: Vec::new(),
            why: "vulnerability scanner".into(),
            line: 7,
        });
        d.reload(Networks::new(None), s.clone(), None);
        assert_eq!(scan(&mut d, [10, 0, 0, 2], 10), 0, "allowed after reload");
        assert_eq!(d.stats.allowed.get(&7), Some(&1));
        // State carried over: the first scanner is still suppressed.
        assert_eq!(scan(&mut d, [10, 0, 0, 1], 20), 0);
        s.scan.min_ports = 100;
        d.reload(Networks::new(None), s, None);
        assert_eq!(scan(&mut d, [10, 0, 0, 3], 30), 0, "under the new bar");
    }
}
