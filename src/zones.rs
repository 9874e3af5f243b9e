//! Address → zone lookup: longest-prefix match over the zones' CIDRs, with
//! optional VLAN restriction. It runs once per endpoint of every finished flow.
//!
//! Prefixes are kept in one hash map per prefix length, longest first, so a
//! lookup costs one hash probe per distinct prefix length in the policy (a few
//! in practice) whatever the number of zones. A prefix may belong to several
//! zones only when their VLAN lists are disjoint (the same address plan reused
//! on separate VLANs); a zone whose VLANs do not include the flow's VLAN is
//! skipped and the next shorter prefix is tried. Zones with VLANs and no CIDRs
//! take every address seen on those VLANs that no prefix claims.

use std::net::IpAddr;

use hashbrown::HashMap;
use ipnet::IpNet;
use serde::Serialize;

/// Index of a zone in the policy (`Policy::zones`).
pub type ZoneId = u16;

/// PCI DSS scope of a zone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pci {
    /// Cardholder data environment.
    Cde,
    /// Connected to or able to affect the CDE.
    Connected,
    #[default]
    OutOfScope,
}

impl Pci {
    pub fn as_str(self) -> &'static str {
        match self {
            Pci::Cde => "cde",
            Pci::Connected => "connected",
            Pci::OutOfScope => "out_of_scope",
        }
    }
}

/// A named network zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Zone {
    pub name: String,
    pub cidrs: Vec<IpNet>,
    /// Empty: any VLAN (or none).
    pub vlans: Vec<u16>,
    pub pci: Pci,
    pub description: String,
    /// Created for `policy.unzoned`, not declared in the file.
    pub implicit: bool,
}

impl Zone {
    fn accepts_vlan(&self, vlan: Option<u16>) -> bool {
        self.vlans.is_empty() || vlan.is_some_and(|v| self.vlans.contains(&v))
    }
}

/// Why two zones cannot share a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixClash {
    pub prefix: IpNet,
    pub first: ZoneId,
    pub second: ZoneId,
}

/// Prefixes of one length.
#[derive(Debug, Default)]
struct Level<K> {
    len: u8,
    map: HashMap<K, Vec<ZoneId>>,
}

/// The lookup structure for a set of zones.
#[derive(Debug, Default)]
pub struct ZoneMap {
    v4: Vec<Level<u32>>,
    v6: Vec<Level<u128>>,
    vlan_only: HashMap<u16, ZoneId>,
    /// Zone of addresses no prefix claims.
    fallback: ZoneId,
}

fn mask4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - len))
    }
}

fn mask6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - len))
    }
}

fn insert<K: std::hash::Hash + Eq + Copy>(
    levels: &mut Vec<Level<K>>,
    len: u8,
    key: K,
    zone: ZoneId,
    zones: &[Zone],
    net: IpNet,
) -> Result<(), PrefixClash> {
    let pos = match levels.iter().position(|l| l.len == len) {
        Some(p) => p,
        None => {
            levels.push(Level {
                len,
                map: HashMap::new(),
            });
            levels.sort_by_key(|l| std::cmp::Reverse(l.len));
            levels.iter().position(|l| l.len == len).unwrap_or_default()
        }
    };
    let owners = levels[pos].map.entry(key).or_default();
    for &other in owners.iter() {
        let (a, b) = (&zones[usize::from(other)], &zones[usize::from(zone)]);
        let disjoint = !a.vlans.is_empty()
            && !b.vlans.is_empty()
            && a.vlans.iter().all(|v| !b.vlans.contains(v));
        if !disjoint {
            return Err(PrefixClash {
                prefix: net,
                first: other,
                second: zone,
            });
        }
    }
    if !owners.contains(&zone) {
        owners.push(zone);
    }
    Ok(())
}

impl ZoneMap {
    /// Index `zones`; addresses no zone claims belong to `fallback`.
    pub fn build(zones: &[Zone], fallback: ZoneId) -> Result<ZoneMap, PrefixClash> {
        let mut m = ZoneMap {
            fallback,
            ..ZoneMap::default()
        };
        for (i, z) in zones.iter().enumerate() {
            let id = ZoneId::try_from(i).unwrap_or(ZoneId::MAX);
            for net in &z.cidrs {
                match net.trunc() {
                    IpNet::V4(n) => {
                        let len = n.prefix_len();
                        let key = u32::from(n.network());
                        insert(&mut m.v4, len, key, id, zones, *net)?;
                    }
                    IpNet::V6(n) => {
                        let len = n.prefix_len();
                        let key = u128::from(n.network());
                        insert(&mut m.v6, len, key, id, zones, *net)?;
                    }
                }
            }
            if z.cidrs.is_empty() {
                for &v in &z.vlans {
                    m.vlan_only.entry(v).or_insert(id);
                }
            }
        }
        Ok(m)
    }

    /// The zone of `ip` seen on `vlan` (the innermost tag).
    pub fn lookup(&self, zones: &[Zone], ip: IpAddr, vlan: Option<u16>) -> ZoneId {
        let found = match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().find_map(|l| {
                    let owners = l.map.get(&mask4(a, l.len))?;
                    pick(owners, zones, vlan)
                })
            }
            IpAddr::V6(a) => {
                // IPv4-mapped addresses are judged as the IPv4 address.
                if let Some(v4) = a.to_ipv4_mapped() {
                    return self.lookup(zones, IpAddr::V4(v4), vlan);
                }
                let a = u128::from(a);
                self.v6.iter().find_map(|l| {
                    let owners = l.map.get(&mask6(a, l.len))?;
                    pick(owners, zones, vlan)
                })
            }
        };
        found
            .or_else(|| vlan.and_then(|v| self.vlan_only.get(&v).copied()))
            .unwrap_or(self.fallback)
    }
}

fn pick(owners: &[ZoneId], zones: &[Zone], vlan: Option<u16>) -> Option<ZoneId> {
    owners
        .iter()
        .copied()
        .find(|&z| zones[usize::from(z)].accepts_vlan(vlan))
}

/// Traffic that stays on one link and cannot cross a router: broadcast,
/// multicast, link-local and unspecified addresses (DHCP, ARP-like discovery,
/// mDNS, router advertisements). Not judged by default.
pub fn is_link_local_traffic(src: IpAddr, dst: IpAddr) -> bool {
    let local = |ip: IpAddr| match ip {
        IpAddr::V4(a) => {
            a.is_broadcast() || a.is_multicast() || a.is_link_local() || a.is_unspecified()
        }
        IpAddr::V6(a) => {
            a.is_multicast() || a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    local(src) || local(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str, cidrs: &[&str], vlans: &[u16]) -> Zone {
        Zone {
            name: name.into(),
            cidrs: cidrs.iter().filter_map(|c| c.parse().ok()).collect(),
            vlans: vlans.to_vec(),
            pci: Pci::OutOfScope,
            description: String::new(),
            implicit: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn longest_prefix_wins_and_fallback_applies() {
        let zones = vec![
            zone("corp", &["10.0.0.0/8", "2001:db8::/32"], &[]),
            zone("cde", &["10.20.0.0/24", "2001:db8:20::/48"], &[]),
            zone("api", &["10.20.0.10/32"], &[]),
            zone("external", &[], &[]),
        ];
        let m = ZoneMap::build(&zones, 3).expect("no clash");
        assert_eq!(m.lookup(&zones, ip("10.1.2.3"), None), 0);
        assert_eq!(m.lookup(&zones, ip("10.20.0.11"), None), 1);
        assert_eq!(m.lookup(&zones, ip("10.20.0.10"), None), 2);
        assert_eq!(m.lookup(&zones, ip("192.0.2.1"), None), 3);
        assert_eq!(m.lookup(&zones, ip("2001:db8:20::5"), None), 1);
        assert_eq!(m.lookup(&zones, ip("2001:db8:21::5"), None), 0);
        assert_eq!(m.lookup(&zones, ip("::ffff:10.20.0.10"), None), 2);
    }

    #[test]
    fn vlans_restrict_and_fall_back_to_shorter_prefix() {
        let zones = vec![
            zone("lan", &["10.0.0.0/8"], &[]),
            zone("cde", &["10.20.0.0/24"], &[20]),
            zone("lab", &["10.20.0.0/24"], &[99]),
            zone("guest", &[], &[30]),
            zone("external", &[], &[]),
        ];
        let m = ZoneMap::build(&zones, 4).expect("disjoint vlans may share");
        assert_eq!(m.lookup(&zones, ip("10.20.0.5"), Some(20)), 1);
        assert_eq!(m.lookup(&zones, ip("10.20.0.5"), Some(99)), 2);
        assert_eq!(m.lookup(&zones, ip("10.20.0.5"), None), 0);
        assert_eq!(m.lookup(&zones, ip("192.168.7.7"), Some(30)), 3);
        assert_eq!(m.lookup(&zones, ip("10.9.9.9"), Some(30)), 0);
    }

    #[test]
    fn same_prefix_in_two_zones_is_a_clash() {
        let zones = vec![
            zone("a", &["10.1.0.0/16"], &[]),
            zone("b", &["10.1.0.0/16"], &[5]),
        ];
        let e = ZoneMap::build(&zones, 0).expect_err("clash");
        assert_eq!((e.first, e.second), (0, 1));
        // Host bits are ignored: 10.1.2.3/16 is 10.1.0.0/16.
        let zones = vec![
            zone("a", &["10.1.0.0/16"], &[]),
            zone("b", &["10.1.2.3/16"], &[]),
        ];
        assert!(ZoneMap::build(&zones, 0).is_err());
    }

    #[test]
    fn link_local_traffic() {
        assert!(is_link_local_traffic(ip("0.0.0.0"), ip("255.255.255.255")));
        assert!(is_link_local_traffic(ip("10.1.1.1"), ip("224.0.0.251")));
        assert!(is_link_local_traffic(ip("fe80::1"), ip("ff02::1")));
        assert!(!is_link_local_traffic(ip("10.1.1.1"), ip("10.2.2.2")));
    }
}

#[cfg(test)]
mod differential {
    //! The hashed longest-prefix match against a naive scan of every zone.
    use proptest::prelude::*;

    use super::*;

    /// The answer by brute force: the longest prefix whose zone accepts the
    /// VLAN, then VLAN-only zones, then the fallback.
    fn naive(zones: &[Zone], ip: IpAddr, vlan: Option<u16>, fallback: ZoneId) -> ZoneId {
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mut best: Option<(u8, ZoneId)> = None;
        for (i, z) in zones.iter().enumerate() {
            if !z.accepts_vlan(vlan) {
                continue;
            }
            for n in &z.cidrs {
                if n.contains(&ip) && best.is_none_or(|(len, _)| n.prefix_len() > len) {
                    best = Some((n.prefix_len(), i as ZoneId));
                }
            }
        }
        best.map(|(_, z)| z)
            .or_else(|| {
                zones
                    .iter()
                    .position(|z| z.cidrs.is_empty() && vlan.is_some_and(|v| z.vlans.contains(&v)))
                    .map(|i| i as ZoneId)
            })
            .unwrap_or(fallback)
    }

    fn zone_strategy() -> impl Strategy<Value = Zone> {
        // Prefixes inside 10.0.0.0/8 so that they overlap often.
        let net = (any::<u32>(), 8u8..=32).prop_map(|(a, len)| {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (a & 0x00ff_ffff));
            IpNet::V4(ipnet::Ipv4Net::new(addr, len).unwrap_or_default().trunc())
        });
        (
            proptest::collection::vec(net, 0..4),
            proptest::collection::vec(1u16..=4, 0..2),
        )
            .prop_map(|(cidrs, vlans)| Zone {
                name: String::new(),
                vlans: if cidrs.is_empty() && vlans.is_empty() {
                    vec![1]
                } else {
                    vlans
                },
                cidrs,
                pci: Pci::OutOfScope,
                description: String::new(),
                implicit: false,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn hashed_lookup_matches_naive_scan(
            zones in proptest::collection::vec(zone_strategy(), 1..12),
            probes in proptest::collection::vec((any::<u32>(), proptest::option::of(1u16..=4)), 64),
        ) {
            let mut zones = zones;
            zones.push(Zone {
                name: "external".into(),
                cidrs: Vec::new(),
                vlans: Vec::new(),
                pci: Pci::OutOfScope,
                description: String::new(),
                implicit: true,
            });
            let fallback = (zones.len() - 1) as ZoneId;
            // Clashing sets are rejected at load time; only compare valid ones.
            let Ok(map) = ZoneMap::build(&zones, fallback) else { return Ok(()) };
            // Several VLAN-only zones on one VLAN: the first declared wins.
            for (a, vlan) in probes {
                let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | (a & 0x00ff_ffff)));
                prop_assert_eq!(map.lookup(&zones, ip, vlan), naive(&zones, ip, vlan, fallback), "{} {:?}", ip, vlan);
            }
        }
    }
}
