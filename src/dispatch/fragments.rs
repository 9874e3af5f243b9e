//! Ports of fragmented datagrams, remembered from their first fragment so that
//! later fragments (which carry no transport header) are attributed to the same
//! flow and dispatched to the same worker.
//!
//! Bounded: at most `cap` datagrams are remembered; the oldest is forgotten
//! first, and an entry older than [`MAX_AGE_NS`] of packet time is ignored (a
//! fragment spray cannot grow memory, and a reused IP ID does not inherit ports).

use std::collections::VecDeque;
use std::net::IpAddr;

use hashbrown::HashMap;

use crate::decode::{DecodeProblem, IpPacket};

/// Reassembly lifetime: Linux's `ipfrag_time` default.
pub const MAX_AGE_NS: i64 = 30_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct DatagramId {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

#[derive(Clone, Copy)]
struct Ports {
    src: u16,
    dst: u16,
    ts_ns: i64,
}

/// The datagram-to-ports table.
pub struct FragmentPorts {
    map: HashMap<DatagramId, Ports, ahash::RandomState>,
    order: VecDeque<DatagramId>,
    cap: usize,
}

impl FragmentPorts {
    pub fn new(cap: usize) -> FragmentPorts {
        FragmentPorts {
            map: HashMap::with_hasher(ahash::RandomState::new()),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Remember the ports of a first fragment.
    pub fn remember(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        id: u32,
        ports: (u16, u16),
        ts_ns: i64,
    ) {
        let key = DatagramId {
            src,
            dst,
            proto,
            id,
        };
        let value = Ports {
            src: ports.0,
            dst: ports.1,
            ts_ns,
        };
        if self.map.insert(key, value).is_none() {
            if self.order.len() >= self.cap
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
            self.order.push_back(key);
        }
    }

    /// Ports of the datagram a later fragment belongs to, if its first fragment was seen.
    pub fn lookup(
        &self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        id: u32,
        ts_ns: i64,
    ) -> Option<(u16, u16)> {
        let key = DatagramId {
            src,
            dst,
            proto,
            id,
        };
        self.map
            .get(&key)
            .filter(|p| (ts_ns - p.ts_ns).abs() <= MAX_AGE_NS)
            .map(|p| (p.src, p.dst))
    }

    /// Give a fragment its flow's ports: a first fragment is remembered, a
    /// later one gets the ports of its first. Returns whether `ip` was a later
    /// fragment that was attributed.
    pub fn attribute(&mut self, ip: &mut IpPacket, ts_ns: i64) -> Result<bool, DecodeProblem> {
        let Some(frag) = ip.fragment else {
            return Ok(false);
        };
        if frag.offset == 0 {
            self.remember(
                ip.src,
                ip.dst,
                ip.proto,
                frag.id,
                (ip.src_port, ip.dst_port),
                ts_ns,
            );
            return Ok(false);
        }
        let ports = self
            .lookup(ip.src, ip.dst, ip.proto, frag.id, ts_ns)
            .ok_or(DecodeProblem::FragmentUnattributed)?;
        (ip.src_port, ip.dst_port) = ports;
        Ok(true)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_aged() {
        let a: IpAddr = [198, 18, 0, 1].into();
        let b: IpAddr = [198, 18, 0, 2].into();
        let mut t = FragmentPorts::new(2);
        t.remember(a, b, 17, 1, (53, 4000), 0);
        t.remember(a, b, 17, 2, (53, 4001), 0);
        t.remember(a, b, 17, 3, (53, 4002), 0);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(a, b, 17, 1, 0), None);
        assert_eq!(t.lookup(a, b, 17, 3, 1), Some((53, 4002)));
        assert_eq!(t.lookup(a, b, 17, 3, MAX_AGE_NS + 1), None);
    }
}
