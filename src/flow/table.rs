//! One worker's flow table: owned by one thread, never shared.
//!
//! Flows live in a slab (`Vec` of slots reused through a free list); an
//! [`Index`] maps key hashes to slot numbers in 8-byte entries, 11 to 21 bytes
//! per flow at its load. Hashing uses a per-process random key: the keys come
//! from the wire, and an attacker must not be able to force collisions.
//!
//! Timeouts cost nothing per packet: each timeout class has a FIFO of
//! `(slot, generation, deadline)` entries, pushed when a flow is created. When
//! an entry's deadline passes, the flow is checked against its *current* class
//! and last activity: idle past its timeout, it ends; otherwise the entry is
//! pushed again with the flow's new deadline. A packet therefore touches only
//! its own slot (no list neighbours), and expiry is amortised O(1). When the
//! table is full, the least recently active flow among the queue heads is
//! evicted (heads are the flows that have waited longest since their last check).

use std::collections::VecDeque;

use super::index::Index;
use super::key::{FlowKey, Side};
use super::record::EndReason;
use super::state::{Flow, PacketFacts, TimeoutClass};

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

    fn of(&self, flow: &Flow) -> i64 {
        self.ns[flow.timeout_class() as usize]
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
    /// Bumped when the slot is freed, so stale queue entries are recognised.
    generation: u32,
    live: bool,
}

#[derive(Clone, Copy)]
struct Deadline {
    slot: u32,
    generation: u32,
    at_ns: i64,
}

/// A bounded flow table.
pub struct FlowTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: Index,
    hasher: ahash::RandomState,
    queues: [VecDeque<Deadline>; TimeoutClass::COUNT],
    timeouts: Timeouts,
    max_flows: usize,
    pub stats: TableStats,
}

impl FlowTable {
    /// A table holding at most `max_flows` flows (at least 1), hashing keys
    /// with `hasher`.
    pub fn new(max_flows: usize, timeouts: Timeouts, hasher: ahash::RandomState) -> FlowTable {
        let max_flows = max_flows.max(1);
        // Start small; grow with use (memory follows load, not the cap).
        let initial = max_flows.min(4096);
        FlowTable {
            slots: Vec::with_capacity(initial),
            free: Vec::new(),
            index: Index::with_capacity(initial),
            hasher,
            queues: Default::default(),
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
        self.packet_hinted(None, hash, key, side, p, emit);
    }

    /// The slot of a key's flow, if tracked.
    pub fn lookup(&self, hash: u64, key: &FlowKey) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash, |i| slots[i as usize].flow.key == *key)
    }

    /// Looking a batch up in steps, each over the whole batch, keeps its
    /// cache misses in flight together instead of stalling packet by packet:
    /// [`FlowTable::home_entry`] (the index line), [`FlowTable::candidate`],
    /// [`FlowTable::touch`] (the slot lines), [`FlowTable::confirm`], then
    /// the update. The first and third steps are loads without branches,
    /// which is what lets the CPU run ahead (safe Rust has no prefetch).
    pub fn home_entry(&self, hash: u64) -> u64 {
        self.index.home_entry(hash)
    }

    /// The slot a flow with `hash` probably has, from the index alone.
    pub fn candidate(&self, hash: u64, home_entry: u64) -> Option<u32> {
        self.index.candidate(hash, home_entry)
    }

    /// Read the start and the end of a candidate slot (slot 0 when none),
    /// the cache lines the update needs; the value means nothing.
    pub fn touch(&self, candidate: Option<u32>) -> u64 {
        let slot = self.slots.get(candidate.unwrap_or(0) as usize);
        slot.map_or(0, |s| s.flow.first_ns as u64 ^ s.flow.bytes[1])
    }

    /// A [`FlowTable::candidate`] if it holds `key`'s flow (reading the slot).
    pub fn confirm(&self, candidate: Option<u32>, key: &FlowKey) -> Option<u32> {
        candidate.filter(|&i| {
            let slot = &self.slots[i as usize];
            slot.live && slot.flow.key == *key
        })
    }

    /// [`FlowTable::packet`] with the result of an earlier [`FlowTable::lookup`];
    /// the hint is checked (the batch may have changed the table since).
    pub fn packet_hinted(
        &mut self,
        hint: Option<u32>,
        hash: u64,
        key: &FlowKey,
        side: Side,
        p: &PacketFacts,
        emit: &mut impl FnMut(&Flow, EndReason),
    ) {
        let found = hint
            .filter(|&i| {
                let slot = &self.slots[i as usize];
                slot.live && slot.flow.key == *key
            })
            .or_else(|| self.lookup(hash, key));
        if let Some(idx) = found {
            let flow = &mut self.slots[idx as usize].flow;
            let reason = if p.ts_ns > flow.last_ns + self.timeouts.of(flow) {
                EndReason::Timeout
            } else if flow.reused_by(p) {
                EndReason::Reused
            } else {
                flow.update(side, p);
                return;
            };
            if reason == EndReason::Timeout {
                self.stats.expired += 1;
            } else {
                self.stats.reused += 1;
            }
            self.remove(idx, hash, reason, emit);
        }
        if self.index.len() >= self.max_flows {
            self.evict_oldest(emit);
        }
        let flow = Flow::new(*key, side, p);
        let deadline = flow.last_ns + self.timeouts.of(&flow);
        let class = flow.timeout_class() as usize;
        let idx = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.flow = flow;
                slot.live = true;
                i
            }
            None => {
                self.slots.push(Slot {
                    flow,
                    generation: 0,
                    live: true,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(hash, idx);
        self.queues[class].push_back(Deadline {
            slot: idx,
            generation: self.slots[idx as usize].generation,
            at_ns: deadline,
        });
        self.stats.created += 1;
        self.stats.peak_active = self.stats.peak_active.max(self.index.len() as u64);
    }

    /// Expire every flow idle past its timeout at packet time `now_ns`.
    pub fn expire(&mut self, now_ns: i64, emit: &mut impl FnMut(&Flow, EndReason)) {
        for class in 0..TimeoutClass::COUNT {
            while let Some(d) = self.queues[class].front().copied() {
                if d.at_ns >= now_ns {
                    break;
                }
                self.queues[class].pop_front();
                let slot = &self.slots[d.slot as usize];
                if !slot.live || slot.generation != d.generation {
                    continue;
                }
                let flow = &slot.flow;
                let deadline = flow.last_ns.saturating_add(self.timeouts.of(flow));
                if deadline < now_ns {
                    let hash = flow.key.hash_with(&self.hasher);
                    self.stats.expired += 1;
                    self.remove(d.slot, hash, EndReason::Timeout, emit);
                } else {
                    // Active since, or moved to another class: check again later.
                    let class_now = flow.timeout_class() as usize;
                    self.queues[class_now].push_back(Deadline {
                        at_ns: deadline,
                        ..d
                    });
                }
            }
        }
    }

    /// Finish every flow (end of capture at packet time `now_ns`), in slot
    /// order (memory order, the cheapest walk). Flows already idle past their
    /// timeout end as timed out, whether or not a sweep reached them.
    /// The table is empty afterwards; the index is emptied in one go rather
    /// than flow by flow.
    pub fn drain(&mut self, now_ns: i64, emit: &mut impl FnMut(&Flow, EndReason)) {
        for slot in self.slots.iter_mut().filter(|s| s.live) {
            let flow = &slot.flow;
            let reason = if flow.last_ns.saturating_add(self.timeouts.of(flow)) < now_ns {
                self.stats.expired += 1;
                EndReason::Timeout
            } else {
                EndReason::EndOfCapture
            };
            emit(flow, reason);
            slot.live = false;
            slot.generation = slot.generation.wrapping_add(1);
        }
        self.free = (0..self.slots.len() as u32).rev().collect();
        self.index.clear();
        for q in &mut self.queues {
            q.clear();
        }
    }

    /// Visit every active flow (for reports and tests).
    pub fn for_each(&self, mut f: impl FnMut(&Flow)) {
        for i in self.index.slots() {
            f(&self.slots[i as usize].flow);
        }
    }

    /// Memory pressure: evict the least recently active flows down to three
    /// quarters of those tracked, and keep that as the cap from now on.
    /// Returns how many were evicted (counted in `evicted` too).
    pub fn shed(&mut self, emit: &mut impl FnMut(&Flow, EndReason)) -> u64 {
        let target = (self.len() * 3 / 4).max(1);
        let mut n = 0;
        while self.len() > target {
            let before = self.len();
            self.evict_oldest(emit);
            if self.len() == before {
                break;
            }
            n += 1;
        }
        self.max_flows = self.max_flows.min(target);
        n
    }

    /// Evict the least recently active flow among the queue heads. Heads whose
    /// flow is live but was active since they were queued are re-queued first
    /// (a few at most), so a busy flow is not evicted for an idle one.
    fn evict_oldest(&mut self, emit: &mut impl FnMut(&Flow, EndReason)) {
        for attempt in 0..16 {
            let mut best: Option<(usize, i64)> = None;
            for (class, q) in self.queues.iter_mut().enumerate() {
                // Drop stale heads.
                while let Some(d) = q.front() {
                    let slot = &self.slots[d.slot as usize];
                    if slot.live && slot.generation == d.generation {
                        break;
                    }
                    q.pop_front();
                }
                if let Some(d) = q.front() {
                    let last = self.slots[d.slot as usize].flow.last_ns;
                    if best.is_none_or(|(_, b)| last < b) {
                        best = Some((class, last));
                    }
                }
            }
            let Some((class, _)) = best else {
                return;
            };
            let Some(d) = self.queues[class].pop_front() else {
                return;
            };
            let flow = &self.slots[d.slot as usize].flow;
            let deadline = flow.last_ns + self.timeouts.of(flow);
            if deadline > d.at_ns && attempt < 15 {
                let class_now = flow.timeout_class() as usize;
                self.queues[class_now].push_back(Deadline {
                    at_ns: deadline,
                    ..d
                });
                continue;
            }
            let hash = flow.key.hash_with(&self.hasher);
            self.stats.evicted += 1;
            self.remove(d.slot, hash, EndReason::Evicted, emit);
            return;
        }
    }

    fn remove(
        &mut self,
        idx: u32,
        hash: u64,
        reason: EndReason,
        emit: &mut impl FnMut(&Flow, EndReason),
    ) {
        self.index.remove(hash, idx);
        let slot = &mut self.slots[idx as usize];
        slot.live = false;
        slot.generation = slot.generation.wrapping_add(1);
        emit(&slot.flow, reason);
        self.free.push(idx);
    }

    /// Bytes per slot (for capacity planning and the memory figures in the README).
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
    fn shedding_keeps_the_newest_three_quarters_and_lowers_the_cap() {
        let mut t = FlowTable::new(100, Timeouts::default(), ahash::RandomState::new());
        let mut out = Vec::new();
        let mut emit = |f: &Flow, r| out.push((f.key.lo.port.max(f.key.hi.port), r));
        for i in 0..8u32 {
            let (k, s) = key(i, 1000 + i as u16);
            t.packet(t.hash(&k), &k, s, &syn(i64::from(i)), &mut emit);
        }
        assert_eq!(t.shed(&mut emit), 2);
        assert_eq!(t.len(), 6);
        // The cap is now 6: a new flow evicts the oldest left.
        let (k, s) = key(99, 2000);
        t.packet(t.hash(&k), &k, s, &syn(20), &mut emit);
        assert_eq!(t.len(), 6);
        // The least recently active went first, as evictions.
        assert_eq!(
            out,
            vec![
                (1000, EndReason::Evicted),
                (1001, EndReason::Evicted),
                (1002, EndReason::Evicted)
            ]
        );
        assert_eq!(t.stats.evicted, 3);
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
        eprintln!("flow slot: {} bytes", FlowTable::slot_size());
        assert!(FlowTable::slot_size() <= 160, "{}", FlowTable::slot_size());
    }
}
