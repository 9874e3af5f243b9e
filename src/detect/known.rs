//! A loaded baseline, indexed for the detectors: zone-level facts keyed by
//! the current policy's zone ids (zones the policy no longer has are
//! ignored), host-level facts by address.

use std::net::IpAddr;

use hashbrown::HashSet;

use super::beacon::PairKey;
use super::network::{NetId, Networks};
use crate::baseline::model::{Baseline, HostBaseline, ZoneBaseline};

pub struct Known {
    pub base: Baseline,
    /// By current zone id.
    zones: Vec<Option<ZoneBaseline>>,
    /// (from zone, to zone, proto, port) seen connecting.
    zone_edges: HashSet<(NetId, NetId, u8, u16)>,
    beacons: HashSet<PairKey>,
}

impl Known {
    pub fn new(base: Baseline, nets: &Networks) -> Known {
        let mut zone_edges = HashSet::new();
        let mut zones = Vec::with_capacity(nets.names().len());
        for (i, name) in nets.names().iter().enumerate() {
            let z = base.zones.get(name).cloned();
            if let Some(z) = &z {
                let from = NetId::try_from(i).unwrap_or(NetId::MAX);
                for e in z.edges.keys() {
                    if let Some(to) = nets.id_of(&e.to) {
                        zone_edges.insert((from, to, e.proto.0, e.port));
                    }
                }
            }
            zones.push(z);
        }
        let beacons = base
            .beacons
            .iter()
            .map(|b| PairKey {
                src: b.src,
                dst: b.dst,
                proto: b.proto.0,
                port: b.port,
            })
            .collect();
        Known {
            base,
            zones,
            zone_edges,
            beacons,
        }
    }

    pub fn host(&self, ip: &IpAddr) -> Option<&HostBaseline> {
        self.base.hosts.get(ip)
    }

    pub fn zone(&self, id: NetId) -> Option<&ZoneBaseline> {
        self.zones.get(usize::from(id)).and_then(Option::as_ref)
    }

    pub fn zone_edge(&self, from: NetId, to: NetId, proto: u8, port: u16) -> bool {
        self.zone_edges.contains(&(from, to, proto, port))
    }

    pub fn beacon(&self, k: &PairKey) -> bool {
        self.beacons.contains(k)
    }
}
