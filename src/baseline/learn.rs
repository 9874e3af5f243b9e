//! Learning a baseline from finished flows and ARP, on the flow-analysis
//! thread. Hours are closed by the end time of the flows that arrive (flows
//! are judged when they end, so their bytes count in the hour they ended).
//!
//! Bounds (the `[learn]` caps): past `max_hosts`, the tenth of hosts seen
//! least recently is dropped to make room; a host's peer or service list and
//! a zone's external list stop growing at their caps and are marked full,
//! which tells the detectors that "new" means nothing there.

use std::net::{IpAddr, Ipv4Addr};

use hashbrown::HashMap;

use super::model::{
    Baseline, BeaconKey, Edge, HostBaseline, HourSlot, Limits, Mac, Proto, Service, Timestamp,
    WEEKS_KEPT, ZoneBaseline, ZoneEdge, hour_of_week,
};
use crate::analysis::ArpFact;
use crate::decode::proto;
use crate::detect::beacon::{Beacons, PairKey, is_beacon};
use crate::detect::fanout::Fanout;
use crate::detect::network::{NetId, Networks, Place};
use crate::detect::settings::BeaconSettings;
use crate::flow::FlowRecord;

const HOUR_NS: i64 = 3_600_000_000_000;
/// An hour closes this long after it ends (packet time), for flows other
/// workers hand over late.
const HOUR_GRACE_NS: i64 = 300_000_000_000;

/// The service a flow used: ICMP flows carry their type where TCP and UDP
/// carry the responder's port.
pub fn service_port(r: &FlowRecord) -> u16 {
    if matches!(r.proto, proto::ICMP | proto::ICMPV6) {
        r.src_port
    } else {
        r.dst_port
    }
}

/// Per-host totals of the current hour.
#[derive(Clone, Copy, Debug, Default)]
struct HostHour {
    bytes_out: u64,
    external_bytes: u64,
}

/// Per-zone totals of the current hour.
#[derive(Clone, Copy, Debug, Default)]
struct ZoneHour {
    flows: u64,
    packets: u64,
    bytes: u64,
}

/// Builds a baseline.
#[derive(Clone)]
pub struct Learner {
    nets: Networks,
    limits: Limits,
    beacon: BeaconSettings,
    base: Baseline,
    /// Zone baselines by current zone id (names in `base.zones` are filled
    /// at the end; zones the policy no longer has stay in `base.zones`).
    zones: Vec<ZoneBaseline>,
    /// Hours still open for late flows (workers hand flows over in their own
    /// order): closed [`HOUR_GRACE_NS`] after they end, in order.
    open_hours: std::collections::BTreeMap<i64, Vec<ZoneHour>>,
    /// Hours before this are closed; a later flow for one counts in the
    /// oldest open hour.
    closed_before: i64,
    latest_end: i64,
    host_hour: HashMap<(IpAddr, i64), HostHour>,
    fanout: Fanout,
    beacons: Beacons,
}

impl Learner {
    /// Start learning; `extend` continues an existing baseline.
    pub fn new(
        nets: Networks,
        limits: Limits,
        beacon: BeaconSettings,
        extend: Option<Baseline>,
    ) -> Learner {
        let mut base = extend.unwrap_or_default();
        base.limits = limits;
        let zones = nets
            .names()
            .iter()
            .map(|n| base.zones.remove(n).unwrap_or_default())
            .collect();
        Learner {
            nets,
            limits,
            beacon,
            base,
            zones,
            open_hours: std::collections::BTreeMap::new(),
            closed_before: i64::MIN,
            latest_end: i64::MIN,
            host_hour: HashMap::new(),
            fanout: Fanout::new(4096, 200_000),
            beacons: Beacons::default(),
        }
    }

    /// Note where the traffic came from (a file, an interface).
    pub fn add_source(&mut self, source: String) {
        self.base.learned.sources.push(source);
    }

    pub fn flows(&self) -> u64 {
        self.base.learned.flows
    }

    pub fn first_packet(&self) -> Option<i64> {
        (self.base.learned.first_packet.0 != 0).then_some(self.base.learned.first_packet.0)
    }

    fn host(&mut self, ip: IpAddr, zone: NetId, ts: i64) -> Option<&mut HostBaseline> {
        if !self.base.hosts.contains_key(&ip) {
            if self.base.hosts.len() >= self.limits.max_hosts {
                self.evict_hosts();
            }
            let h = HostBaseline {
                zone: self.nets.name(zone).to_string(),
                first_seen: Timestamp(ts),
                ..HostBaseline::default()
            };
            self.base.hosts.insert(ip, h);
        }
        let h = self.base.hosts.get_mut(&ip)?;
        h.last_seen = h.last_seen.max(Timestamp(ts));
        Some(h)
    }

    /// Drop the tenth of hosts seen least recently.
    /// Memory pressure: evict the least recently seen tenth of hosts, as at
    /// the host cap.
    pub fn shed(&mut self) {
        self.evict_hosts();
    }

    fn evict_hosts(&mut self) {
        let mut seen: Vec<Timestamp> = self.base.hosts.values().map(|h| h.last_seen).collect();
        let n = (seen.len() / 10).max(1);
        seen.select_nth_unstable(n - 1);
        let cutoff = seen[n - 1];
        let before = self.base.hosts.len();
        let mut dropped = 0;
        self.base.hosts.retain(|_, h| {
            if dropped < n && h.last_seen <= cutoff {
                dropped += 1;
                false
            } else {
                true
            }
        });
        self.base.learned.hosts_evicted += (before - self.base.hosts.len()) as u64;
    }

    /// Learn from finished flows.
    pub fn flows_done(&mut self, chunk: &[FlowRecord]) {
        for r in chunk {
            let vlan = r.inner_vlan.or(r.vlan);
            let s = self.nets.place(r.src_ip, vlan);
            let d = self.nets.place(r.dst_ip, vlan);
            self.flow(r, s, d);
            self.advance_hour(r.end);
        }
    }

    fn flow(&mut self, r: &FlowRecord, s: Place, d: Place) {
        let l = &mut self.base.learned;
        if l.first_packet.0 == 0 || r.start < l.first_packet.0 {
            l.first_packet = Timestamp(r.start);
        }
        l.last_packet = l.last_packet.max(Timestamp(r.end));
        l.flows += 1;
        let hour = r.end.div_euclid(HOUR_NS).max(self.closed_before);
        let zones = self.zones.len();

        let port = service_port(r);
        let connected = r.outcome.connected();
        let limits = self.limits;
        if s.internal {
            let zh = &mut self
                .open_hours
                .entry(hour)
                .or_insert_with(|| vec![ZoneHour::default(); zones])[usize::from(s.zone)];
            zh.flows += 1;
            zh.packets += r.packets();
            zh.bytes += r.bytes();
            let hh = self.host_hour.entry((r.src_ip, hour)).or_default();
            hh.bytes_out += r.bytes_fwd;
            if !d.internal {
                hh.external_bytes += r.bytes_fwd;
            }
            if let Some(h) = self.host(r.src_ip, s.zone, r.end) {
                h.flows_out += 1;
                if connected && d.internal {
                    let e = Edge {
                        peer: r.dst_ip,
                        proto: Proto(r.proto),
                        port,
                    };
                    if let Some(n) = h.peers.get_mut(&e) {
                        *n += 1;
                    } else if h.peers.len() < limits.max_peers_per_host {
                        h.peers.insert(e, 1);
                    } else {
                        h.peers_full = true;
                    }
                }
            }
            let z = &mut self.zones[usize::from(s.zone)];
            z.bytes_per_flow.record(r.bytes());
            z.duration_ms
                .record(u64::try_from((r.end - r.start) / 1_000_000).unwrap_or(0));
            if connected {
                let e = ZoneEdge {
                    to: self.nets.name(d.zone).to_string(),
                    proto: Proto(r.proto),
                    port,
                };
                *z.edges.entry(e).or_default() += 1;
            }
            if !d.internal && connected {
                z.external_flows += 1;
                if z.external.len() < limits.max_external_per_zone {
                    z.external.insert(r.dst_ip);
                } else if !z.external.contains(&r.dst_ip) {
                    z.external_full = true;
                }
            }
            // Failed attempts only, as the scan detector counts them.
            if !connected {
                let hosts = &mut self.base.hosts;
                self.fanout.add(
                    r.src_ip,
                    r.dst_ip,
                    (r.proto, port),
                    r.start,
                    &mut |src, m| record_fanout(hosts, src, m),
                );
            }
            let beacon_worthy = !d.internal || self.beacon.internal;
            if beacon_worthy {
                let key = PairKey {
                    src: r.src_ip,
                    dst: r.dst_ip,
                    proto: r.proto,
                    port,
                };
                // Learning only keeps the series; nothing is judged here.
                self.beacons.add(
                    key,
                    (s, d),
                    r.start,
                    r.bytes_fwd,
                    connected,
                    usize::MAX,
                    r.end,
                );
            }
        }
        if d.internal {
            let hh = self.host_hour.entry((r.dst_ip, hour)).or_default();
            hh.bytes_out += r.bytes_rev;
            if !s.internal {
                hh.external_bytes += r.bytes_rev;
            }
            if let Some(h) = self.host(r.dst_ip, d.zone, r.end) {
                h.flows_in += 1;
                if connected {
                    let svc = Service {
                        proto: Proto(r.proto),
                        port,
                    };
                    if let Some(n) = h.services.get_mut(&svc) {
                        *n += 1;
                    } else if h.services.len() < limits.max_services_per_host {
                        h.services.insert(svc, 1);
                    } else {
                        h.services_full = true;
                    }
                }
            }
        }
    }

    /// Close the hours that ended [`HOUR_GRACE_NS`] before the latest flow.
    fn advance_hour(&mut self, end: i64) {
        self.latest_end = self.latest_end.max(end);
        while let Some((&h, _)) = self.open_hours.first_key_value() {
            if (h + 1) * HOUR_NS + HOUR_GRACE_NS > self.latest_end {
                break;
            }
            if let Some(totals) = self.open_hours.remove(&h) {
                self.close_hour(h, totals);
            }
            self.closed_before = h + 1;
        }
        let hosts = &mut self.base.hosts;
        self.fanout
            .sweep(end, &mut |src, m| record_fanout(hosts, src, m));
    }

    /// Fold the hour's totals into the distributions. Every zone gets a sample
    /// (zero when it was quiet): the hour was observed, since a flow ended in it.
    fn close_hour(&mut self, hour: i64, mut totals_by_zone: Vec<ZoneHour>) {
        let how = hour_of_week(hour * HOUR_NS);
        let nets = &self.nets;
        for (i, (z, totals)) in self
            .zones
            .iter_mut()
            .zip(totals_by_zone.iter_mut())
            .enumerate()
        {
            if !nets.is_internal(NetId::try_from(i).unwrap_or(NetId::MAX)) {
                continue;
            }
            let slot = match z
                .hours
                .iter()
                .position(|s| usize::from(s.hour_of_week) == how)
            {
                Some(i) => &mut z.hours[i],
                None => {
                    z.hours.push(HourSlot {
                        hour_of_week: how as u8,
                        ..HourSlot::default()
                    });
                    let last = z.hours.len() - 1;
                    &mut z.hours[last]
                }
            };
            for (v, x) in [
                (&mut slot.flows, totals.flows),
                (&mut slot.packets, totals.packets),
                (&mut slot.bytes, totals.bytes),
            ] {
                v.push(x);
                if v.len() > WEEKS_KEPT {
                    v.remove(0);
                }
            }
            *totals = ZoneHour::default();
        }
        // A pair quiet for a day is not beaconing.
        self.beacons.forget_before((hour - 24) * HOUR_NS);
        let hosts = &mut self.base.hosts;
        self.host_hour.retain(|(ip, h), hh| {
            if *h > hour {
                return true;
            }
            record_host_hour(hosts, ip, hh);
            false
        });
    }

    /// Learn IP-to-MAC bindings.
    pub fn arp(&mut self, facts: &[ArpFact]) {
        for f in facts {
            self.base.learned.arp_packets += 1;
            let ip = f.arp.sender_ip;
            if ip == Ipv4Addr::UNSPECIFIED {
                continue;
            }
            let full = self.base.arp.len() >= self.limits.max_hosts * 2;
            if full && !self.base.arp.contains_key(&ip) {
                continue;
            }
            let macs = self.base.arp.entry(ip).or_default();
            if macs.len() < self.limits.max_macs_per_ip {
                macs.insert(Mac(f.arp.sender_mac));
            }
        }
    }

    fn beacons_from(&mut self, beacons: &Beacons) {
        let b = &self.beacon;
        for (k, s) in beacons.scores(b.min_connections) {
            if is_beacon(&s, b.min_score, b.min_interval_secs) {
                self.base.beacons.insert(BeaconKey {
                    src: k.src,
                    dst: k.dst,
                    proto: Proto(k.proto),
                    port: k.port,
                });
            }
        }
    }

    /// Finish: close the last hour and minute, and name the zones.
    /// The baseline as it would be if learning ended now (for periodic
    /// checkpoints); learning goes on undisturbed.
    pub fn snapshot(&self) -> Baseline {
        self.clone().finish()
    }

    pub fn finish(mut self) -> Baseline {
        let beacons = std::mem::take(&mut self.beacons);
        self.beacons_from(&beacons);
        let hosts = &mut self.base.hosts;
        self.fanout
            .drain(&mut |src, m| record_fanout(hosts, src, m));
        self.finish_inner()
    }

    fn finish_inner(mut self) -> Baseline {
        // The last hour is partial: its hosts' totals count (a host active
        // only then has nothing else), the zones' do not (a partial hour
        // would pull the hour-of-week profile down).
        // Complete hours still open close normally; the last is partial.
        let last = self.open_hours.last_key_value().map(|(h, _)| *h);
        let complete: Vec<i64> = self
            .open_hours
            .keys()
            .copied()
            .filter(|h| Some(*h) != last)
            .collect();
        for h in complete {
            if let Some(totals) = self.open_hours.remove(&h) {
                self.close_hour(h, totals);
            }
        }
        for ((ip, _), hh) in self.host_hour.drain() {
            record_host_hour(&mut self.base.hosts, &ip, &hh);
        }
        let mut counts = vec![0u64; self.zones.len()];
        for h in self.base.hosts.values() {
            if let Some(id) = self.nets.id_of(&h.zone) {
                counts[usize::from(id)] += 1;
            }
        }
        for (i, mut z) in self.zones.into_iter().enumerate() {
            z.hosts = counts[i];
            z.hours.sort_by_key(|s| s.hour_of_week);
            let id = NetId::try_from(i).unwrap_or(NetId::MAX);
            let empty = z.hosts == 0 && z.edges.is_empty() && z.hours.is_empty();
            if !empty {
                self.base.zones.insert(self.nets.name(id).to_string(), z);
            }
        }
        self.base
    }
}

fn record_host_hour(hosts: &mut HashMap<IpAddr, HostBaseline>, ip: &IpAddr, hh: &HostHour) {
    if let Some(h) = hosts.get_mut(ip) {
        if hh.bytes_out > 0 {
            h.bytes_out_per_hour.record(hh.bytes_out);
        }
        if hh.external_bytes > 0 {
            h.external_bytes_per_hour.record(hh.external_bytes);
        }
    }
}

fn record_fanout(hosts: &mut HashMap<IpAddr, HostBaseline>, src: IpAddr, (h, p): (usize, usize)) {
    if let Some(b) = hosts.get_mut(&src) {
        b.fanout_hosts.record(h as u64);
        b.fanout_ports.record(p as u64);
    }
}
