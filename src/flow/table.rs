//! One worker's flow table: owned by one thread, never shared.
//!
//! Flows live in a slab (`Vec` of slots reused through a free list); a
//! `hashbrown::HashTable<u32>` maps keys to slot indices, so the index costs
//! about five bytes per flow on top of the slot. Every timeout class keeps an
//! intrusive doubly linked list of its flows in order of last activity, which
//! makes both timeout expiry (pop the heads whose deadline passed) and eviction
//! when the table is full (the least recently active head) O(1) per flow.
//! Hashing uses a per-process random key: the keys come from the wire, and an
//! attacker must not be able to force collisions.

use hashbrown::HashTable;

use super::key::{FlowKey, Side};
use super::record::EndReason;
use super::state::{Flow, PacketFacts, TimeoutClass};

const NIL: u32 = u32::MAX;

/// Timeouts per class, in nanoseconds of packet time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub ns: [i64; TimeoutClass::COUNT],
}

impl Timeouts {
    /// Defaults in seconds: half-open TCP 20, established TCP 300, closed or
    /// rejected TCP 10, UDP 60, ICMP 30, other 60.
    pub fn from_secs(
        tcp_half_open: u64,
        tcp_established: u64,
        tcp_closed: u64,
        udp: u64,
        icmp: u64,
        other: u64,
    ) -> Timeouts {
        let ns = |s: u64| (s.min(i64::MAX as u64 / 1_000_000_000) as i64) * 1_000_000_000;
        Timeouts {
            ns: [
                ns(tcp_half_open),
                ns(tcp_established),
                ns(tcp_closed),
                ns(udp),
                ns(icmp),
                ns(other),
            ],
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::from_secs(20, 300, 10, 60, 30, 60)
    }
}

/// Table counters, folded into the run summary and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub created: u64,
    pub expired: u64,
    pub evicted: u64,
    pub reused: u64,
    pub peak_active: u64,
}

struct Slot {
    flow: Flow,
    prev: u32,
    next: u32,
    class: u8,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

/// A bounded flow table.
pub struct FlowTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: ahash::RandomState,
    lists: [List; TimeoutClass::COUNT],
    timeouts: Timeouts,
    max_flows: usize,
    pub stats: TableStats,
}

impl FlowTable {
    /// A table holding at most `max_flows` flows (at least 1). `hasher` must be
    /// the one the dispatcher hashes keys with: the table reuses those hashes.
    pub fn new(max_flows: usize, timeouts: Timeouts, hasher: ahash::RandomState) -> FlowTable {
        let max_flows = max_flows.max(1);
        // Start small; grow with use (memory follows load, not the cap).
        let initial = max_flows.min(4096);
        FlowTable {
            slots: Vec::with_capacity(initial),
            free: Vec::new(),
            index: HashTable::with_capacity(initial),
            hasher,
            lists: [List {
                head: NIL,
                tail: NIL,
            }; TimeoutClass::COUNT],
            timeouts,
            max_flows,
            stats: TableStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// Hash of a key with this table's hasher.
    pub fn hash(&self, key: &FlowKey) -> u64 {
        key.hash_with(&self.hasher)
    }

    /// Account a packet sent by `side` of `key` (`hash` = [`FlowTable::hash`]
    /// of the key); flows that end because of it (timed out, reused, evicted to
    /// make room) are passed to `emit`.
    pub fn packet(
        &mut self,
        hash: u64,
        key: &FlowKey,
        side: Side,
        p: &PacketFacts,
        emit: &mut impl FnMut(&Flow, EndReason),
    ) {
        let slots = &self.slots;
        if let Some(&idx) = self.index.find(hash, |&i| slots[i as usize].flow.key == *key) {
            let flow = &self.slots[idx as usize].flow;
            let deadline = flow.last_ns + self.timeouts.ns[flow.timeout_class() as usize];
            let reason = if p.ts_ns > deadline {
                Some(EndReason::Timeout)
            } else if flow.reused_by(p) {
                Some(EndReason::Reused)
            } else {
                None
            };
            match reason {
                None => {
                    let slot = &mut self.slots[idx as usize];
                    slot.flow.update(side, p);
                    let class = slot.flow.timeout_class() as u8;
                    self.unlink(idx);
                    self.link_tail(idx, class);
                    return;
                }
                Some(r) => {
                    if r == EndReason::Timeout {
                        self.stats.expired += 1;
                    } else {
                        self.stats.reused += 1;
                    }
                    self.remove(idx, hash, r, emit);
                }
            }
        }
        if self.index.len() >= self.max_flows {
            self.evict_oldest(emit);
        }
        let flow = Flow::new(*key, side, p);
        let class = flow.timeout_class() as u8;
        let slot = Slot {
            flow,
            prev: NIL,
            next: NIL,
            class,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, idx, |&i| {
            slots[i as usize].flow.key.hash_with(hasher)
        });
        self.link_tail(idx, class);
        self.stats.created += 1;
        self.stats.peak_active = self.stats.peak_active.max(self.index.len() as u64);
    }

    /// Expire every flow idle past its timeout at packet time `now_ns`.
    pub fn expire(&mut self, now_ns: i64, emit: &mut impl FnMut(&Flow, EndReason)) {
        for class in 0..TimeoutClass::COUNT {
            let timeout = self.timeouts.ns[class];
            loop {
                let head = self.lists[class].head;
                if head == NIL {
                    break;
                }
                let flow = &self.slots[head as usize].flow;
                if flow.last_ns.saturating_add(timeout) >= now_ns {
                    break;
                }
                let hash = flow.key.hash_with(&self.hasher);
                self.stats.expired += 1;
                self.remove(head, hash, EndReason::Timeout, emit);
            }
        }
    }

    /// Finish every flow (end of capture), oldest first per class.
    pub fn drain(&mut self, emit: &mut impl FnMut(&Flow, EndReason)) {
        for class in 0..TimeoutClass::COUNT {
            while self.lists[class].head != NIL {
                let head = self.lists[class].head;
                let hash = self.slots[head as usize].flow.key.hash_with(&self.hasher);
                self.remove(head, hash, EndReason::EndOfCapture, emit);
            }
        }
    }

    /// Visit every active flow (for reports and tests).
    pub fn for_each(&self, mut f: impl FnMut(&Flow)) {
        for &i in self.index.iter() {
            f(&self.slots[i as usize].flow);
        }
    }

    fn evict_oldest(&mut self, emit: &mut impl FnMut(&Flow, EndReason)) {
        let mut victim = NIL;
        let mut oldest = i64::MAX;
        for list in &self.lists {
            if list.head != NIL {
                let last = self.slots[list.head as usize].flow.last_ns;
                if last < oldest {
                    oldest = last;
                    victim = list.head;
                }
            }
        }
        if victim != NIL {
            let hash = self.slots[victim as usize].flow.key.hash_with(&self.hasher);
            self.stats.evicted += 1;
            self.remove(victim, hash, EndReason::Evicted, emit);
        }
    }

    fn remove(
        &mut self,
        idx: u32,
        hash: u64,
        reason: EndReason,
        emit: &mut impl FnMut(&Flow, EndReason),
    ) {
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.unlink(idx);
        emit(&self.slots[idx as usize].flow, reason);
        self.free.push(idx);
    }

    fn link_tail(&mut self, idx: u32, class: u8) {
        let list = &mut self.lists[class as usize];
        let old_tail = list.tail;
        list.tail = idx;
        if old_tail == NIL {
            list.head = idx;
        }
        let slot = &mut self.slots[idx as usize];
        slot.class = class;
        slot.prev = old_tail;
        slot.next = NIL;
        if old_tail != NIL {
            self.slots[old_tail as usize].next = idx;
        }
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next, class) = {
            let s = &self.slots[idx as usize];
            (s.prev, s.next, s.class as usize)
        };
        if prev == NIL {
            self.lists[class].head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[class].tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let s = &mut self.slots[idx as usize];
        s.prev = NIL;
        s.next = NIL;
    }

    /// Bytes of memory held per slot and per index bucket (for capacity
    /// planning and the memory figures in the README).
    pub fn slot_size() -> usize {
        std::mem::size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Vlans, proto, tcp_flags};
    use crate::flow::key::Endpoint;

    fn key(n: u32, port: u16) -> (FlowKey, Side) {
        FlowKey::new(
            Vlans::default(),
            proto::TCP,
            Endpoint {
                ip: std::net::Ipv4Addr::from(n).into(),
                port,
            },
            Endpoint {
                ip: [198, 18, 0, 1].into(),
                port: 80,
            },
        )
    }

    fn syn(ts_s: i64) -> PacketFacts {
        PacketFacts {
            ts_ns: ts_s * 1_000_000_000,
            wire_len: 60,
            tcp_flags: tcp_flags::SYN,
            l4_payload_len: 0,
            icmp: None,
            icmp_error: None,
        }
    }

    #[test]
    fn cap_evicts_oldest_idle_first() {
        let mut t = FlowTable::new(3, Timeouts::default(), ahash::RandomState::new());
        let mut out = Vec::new();
        let mut emit = |f: &Flow, r| out.push((f.key.lo.port.max(f.key.hi.port), r));
        for (i, ts) in [(1, 0), (2, 1), (3, 2)] {
            let (k, s) = key(i, 1000 + i as u16);
            t.packet(t.hash(&k), &k, s, &syn(ts), &mut emit);
        }
        // Flow 1 becomes active again; flow 2 is now the oldest idle.
        let (k1, s1) = key(1, 1001);
        t.packet(t.hash(&k1), &k1, s1, &syn(3), &mut emit);
        let (k4, s4) = key(4, 1004);
        t.packet(t.hash(&k4), &k4, s4, &syn(4), &mut emit);
        assert_eq!(out, vec![(1002, EndReason::Evicted)]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.stats.evicted, 1);
    }

    #[test]
    fn half_open_times_out_on_packet_time() {
        let mut t = FlowTable::new(100, Timeouts::default(), ahash::RandomState::new());
        let mut out = 0;
        let (k, s) = key(1, 1001);
        t.packet(t.hash(&k), &k, s, &syn(0), &mut |_, _| out += 1);
        t.expire(19_000_000_000, &mut |_, _| out += 1);
        assert_eq!(out, 0);
        t.expire(21_000_000_000, &mut |_, _| out += 1);
        assert_eq!(out, 1);
        assert!(t.is_empty());
    }

    #[test]
    fn late_packet_after_timeout_starts_a_new_flow() {
        let mut t = FlowTable::new(100, Timeouts::default(), ahash::RandomState::new());
        let mut out = Vec::new();
        let mut emit = |_: &Flow, r| out.push(r);
        let (k, s) = key(1, 1001);
        t.packet(t.hash(&k), &k, s, &syn(0), &mut emit);
        t.packet(t.hash(&k), &k, s, &syn(100), &mut emit);
        assert_eq!(out, vec![EndReason::Timeout]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats.created, 2);
    }

    #[test]
    fn slot_is_small() {
        assert!(FlowTable::slot_size() <= 160, "{}", FlowTable::slot_size());
    }
}
