//! The canonical flow key: VLANs, protocol and the two endpoints in a fixed
//! order, so that A→B and B→A produce the same key. The same key drives the
//! dispatch hash (which worker owns the flow) and the worker's table lookup.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

use crate::decode::{IpPacket, Quoted, Vlans};

/// One side of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl Endpoint {
    /// Address bits and port: orders and hashes endpoints cheaply. Injective
    /// within an address family, and both ends of a flow share one family.
    #[inline]
    fn bits(&self) -> (u128, u16) {
        let ip = match self.ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        (ip, self.port)
    }
}

/// Canonical flow key; `lo` is the endpoint with the smaller
/// [`Endpoint::bits`], so both directions give the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub vlans: Vlans,
    pub proto: u8,
    pub lo: Endpoint,
    pub hi: Endpoint,
}

/// Which endpoint of a key sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Lo = 0,
    Hi = 1,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

impl FlowKey {
    /// Key of a packet from `src` to `dst`, and which side the sender is.
    #[inline]
    pub fn new(vlans: Vlans, proto: u8, src: Endpoint, dst: Endpoint) -> (FlowKey, Side) {
        if src.bits() <= dst.bits() {
            (
                FlowKey {
                    vlans,
                    proto,
                    lo: src,
                    hi: dst,
                },
                Side::Lo,
            )
        } else {
            (
                FlowKey {
                    vlans,
                    proto,
                    lo: dst,
                    hi: src,
                },
                Side::Hi,
            )
        }
    }

    /// Key of an IP packet's own flow.
    pub fn of_packet(vlans: Vlans, ip: &IpPacket) -> (FlowKey, Side) {
        FlowKey::new(
            vlans,
            ip.proto,
            Endpoint {
                ip: ip.src,
                port: ip.src_port,
            },
            Endpoint {
                ip: ip.dst,
                port: ip.dst_port,
            },
        )
    }

    /// Key of the flow an ICMP error quotes, and which side sent the quoted packet.
    pub fn of_quote(vlans: Vlans, q: &Quoted) -> (FlowKey, Side) {
        FlowKey::new(
            vlans,
            q.proto,
            Endpoint {
                ip: q.src,
                port: q.src_port,
            },
            Endpoint {
                ip: q.dst,
                port: q.dst_port,
            },
        )
    }

    /// Key of the flow an IP packet belongs to, and the side that sent it: an
    /// ICMP error belongs to the flow it quotes, sent by the quoted receiver's side.
    pub fn for_ip(vlans: Vlans, ip: &IpPacket) -> (FlowKey, Side) {
        match &ip.quoted {
            Some(q) => {
                let (key, quoted_sender) = FlowKey::of_quote(vlans, q);
                (key, quoted_sender.other())
            }
            None => FlowKey::of_packet(vlans, ip),
        }
    }

    pub fn endpoint(&self, side: Side) -> Endpoint {
        match side {
            Side::Lo => self.lo,
            Side::Hi => self.hi,
        }
    }

    /// Hash with the given hasher; symmetric because the key is canonical.
    pub fn hash_with<S: BuildHasher>(&self, state: &S) -> u64 {
        let mut h = state.build_hasher();
        self.hash(&mut h);
        std::hash::Hasher::finish(&h)
    }
}

impl Hash for FlowKey {
    /// Hashes fixed-width integers rather than the enum fields one by one.
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let (lo_ip, lo_port) = self.lo.bits();
        let (hi_ip, hi_port) = self.hi.bits();
        let vlan = |v: Option<u16>| v.map_or(0xffff, u64::from);
        h.write_u128(lo_ip);
        h.write_u128(hi_ip);
        h.write_u64(
            u64::from(lo_port)
                | u64::from(hi_port) << 16
                | vlan(self.vlans.outer) << 32
                | vlan(self.vlans.inner) << 48,
        );
        h.write_u8(self.proto);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_give_one_key() {
        let a = Endpoint {
            ip: IpAddr::from([10, 0, 0, 9]),
            port: 5000,
        };
        let b = Endpoint {
            ip: IpAddr::from([10, 0, 0, 1]),
            port: 80,
        };
        let (k1, s1) = FlowKey::new(Vlans::default(), 6, a, b);
        let (k2, s2) = FlowKey::new(Vlans::default(), 6, b, a);
        assert_eq!(k1, k2);
        assert_eq!(s1, s2.other());
        let rs = ahash::RandomState::with_seeds(1, 2, 3, 4);
        assert_eq!(k1.hash_with(&rs), k2.hash_with(&rs));
        assert_eq!(k1.endpoint(s1), a);
    }
}
