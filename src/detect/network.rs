//! Where a host belongs, for baselines and detectors: its zone when the
//! policy declares zones, and whether it is inside the organisation.
//!
//! With zones: declared zones are internal; addresses in no zone fall into
//! the policy's implicit zone (`external`). Without zones: private, unique
//! local and link-local addresses form the zone `internal`, the rest
//! `external`, as ntopng's "local networks" default does.

use std::net::IpAddr;

use crate::policy::{Policy, SharedPolicy};
use crate::zones::Pci;

/// A zone, by index into [`Networks::names`].
pub type NetId = u16;

/// What the detectors need to know about one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub zone: NetId,
    pub internal: bool,
    pub cde: bool,
}

/// Address classification.
#[derive(Clone, Debug)]
pub struct Networks {
    policy: Option<SharedPolicy>,
    names: Vec<String>,
    places: Vec<Place>,
}

/// Zone name for internal addresses when the policy declares no zones.
pub const INTERNAL: &str = "internal";
/// Zone name for everything outside.
pub const EXTERNAL: &str = "external";

impl Networks {
    pub fn new(policy: Option<&SharedPolicy>) -> Networks {
        match policy.filter(|p| !p.is_empty()) {
            Some(p) => Networks::from_policy(p),
            None => Networks {
                policy: None,
                names: vec![INTERNAL.into(), EXTERNAL.into()],
                places: vec![
                    Place {
                        zone: 0,
                        internal: true,
                        cde: false,
                    },
                    Place {
                        zone: 1,
                        internal: false,
                        cde: false,
                    },
                ],
            },
        }
    }

    fn from_policy(p: &SharedPolicy) -> Networks {
        let policy: &Policy = p;
        let zones = &policy.zones;
        Networks {
            names: zones.iter().map(|z| z.name.clone()).collect(),
            places: zones
                .iter()
                .enumerate()
                .map(|(i, z)| Place {
                    zone: NetId::try_from(i).unwrap_or(NetId::MAX),
                    internal: !z.implicit,
                    cde: z.pci == Pci::Cde,
                })
                .collect(),
            policy: Some(p.clone()),
        }
    }

    /// Where an address is (the VLAN matters for VLAN-bound zones).
    pub fn place(&self, ip: IpAddr, vlan: Option<u16>) -> Place {
        match &self.policy {
            Some(p) => self.places[usize::from(p.zone_of(ip, vlan))],
            None => self.places[usize::from(!is_private(ip))],
        }
    }

    pub fn name(&self, id: NetId) -> &str {
        self.names.get(usize::from(id)).map_or("?", String::as_str)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn id_of(&self, name: &str) -> Option<NetId> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| NetId::try_from(i).ok())
    }

    pub fn is_internal(&self, id: NetId) -> bool {
        self.places.get(usize::from(id)).is_some_and(|p| p.internal)
    }

    pub fn is_cde(&self, id: NetId) -> bool {
        self.places.get(usize::from(id)).is_some_and(|p| p.cde)
    }
}

/// RFC 1918, RFC 6598 shared, loopback, link-local and IPv6 unique local.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s = a.segments()[0];
            a.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_internal_without_zones() {
        let n = Networks::new(None);
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        for s in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(n.place(ip(s), None).internal, "{s}");
        }
        for s in ["8.8.8.8", "203.0.113.5", "2001:db8::1", "100.128.0.1"] {
            let p = n.place(ip(s), None);
            assert!(!p.internal, "{s}");
            assert_eq!(n.name(p.zone), EXTERNAL);
        }
    }
}
