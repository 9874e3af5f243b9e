//! The flow table's index: flow hash → slot number, by linear probing in one
//! array of 8-byte entries (slot number and 32 bits of the hash).
//!
//! Why not a general hash map: a packet's lookup should cost one cache miss
//! for the index and one for its slot, and a batch's lookups should overlap.
//! Each entry carries enough of the hash to find its home position and to
//! reject almost every other flow without reading its slot, so a lookup reads
//! one contiguous run of entries (usually one cache line), growing never
//! reads a slot, and removal shifts entries back instead of leaving
//! tombstones. The hash is keyed per process (`ahash::RandomState`), so
//! traffic cannot be crafted to collide.

/// An empty entry (no slot has this number: tables hold fewer than 2³² flows).
const EMPTY: u64 = u64::MAX;
/// Grow when more than this share of entries are used.
const MAX_LOAD_NUM: usize = 3;
const MAX_LOAD_DEN: usize = 4;

/// Slot numbers by hash.
pub struct Index {
    entries: Vec<u64>,
    mask: usize,
    len: usize,
}

fn entry(tag: u32, slot: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(slot)
}

fn tag_of(e: u64) -> u32 {
    (e >> 32) as u32
}

fn slot_of(e: u64) -> u32 {
    e as u32
}

/// The 32 bits of a hash kept in the entry; its low bits are the home position.
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl Index {
    /// An index sized for `flows` flows without growing.
    pub fn with_capacity(flows: usize) -> Index {
        let want = (flows.max(4) * MAX_LOAD_DEN).div_ceil(MAX_LOAD_NUM);
        let cap = want.next_power_of_two();
        Index {
            entries: vec![EMPTY; cap],
            mask: cap - 1,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by the index.
    pub fn bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<u64>()
    }

    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    /// The entry at `hash`'s home position: one load and no branch, so that a
    /// loop of these over a batch keeps many cache misses in flight.
    #[inline]
    pub fn home_entry(&self, hash: u64) -> u64 {
        self.entries[self.home(tag(hash))]
    }

    /// The first slot whose entry matches `hash`, without checking its key:
    /// a candidate to read ahead. Almost always the flow's slot, if tracked.
    /// `home` is [`Index::home_entry`] of the same hash, read earlier.
    #[inline]
    pub fn candidate(&self, hash: u64, home: u64) -> Option<u32> {
        let t = tag(hash);
        let mut i = self.home(t);
        let mut e = home;
        loop {
            if e == EMPTY {
                return None;
            }
            if tag_of(e) == t {
                return Some(slot_of(e));
            }
            i = (i + 1) & self.mask;
            e = self.entries[i];
        }
    }

    /// The slot of the flow with `hash` for which `is_it` says yes.
    #[inline]
    pub fn find(&self, hash: u64, mut is_it: impl FnMut(u32) -> bool) -> Option<u32> {
        self.position(hash, &mut is_it)
            .map(|i| slot_of(self.entries[i]))
    }

    fn position(&self, hash: u64, is_it: &mut impl FnMut(u32) -> bool) -> Option<usize> {
        let t = tag(hash);
        let mut i = self.home(t);
        loop {
            let e = self.entries[i];
            if e == EMPTY {
                return None;
            }
            if tag_of(e) == t && is_it(slot_of(e)) {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Add a slot (whose flow is not in the index yet) under `hash`.
    pub fn insert(&mut self, hash: u64, slot: u32) {
        if (self.len + 1) * MAX_LOAD_DEN > self.entries.len() * MAX_LOAD_NUM {
            self.grow();
        }
        self.place(entry(tag(hash), slot));
        self.len += 1;
    }

    fn place(&mut self, e: u64) {
        let mut i = self.home(tag_of(e));
        while self.entries[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.entries[i] = e;
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.entries.len() * 2];
        let old = std::mem::replace(&mut self.entries, doubled);
        self.mask = self.entries.len() - 1;
        for e in old.into_iter().filter(|&e| e != EMPTY) {
            self.place(e);
        }
    }

    /// Remove slot `slot`, filed under `hash`. Entries after it in its run
    /// move back where their probe allows, so no tombstone is left and
    /// lookups stay as short as at insertion.
    pub fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let Some(mut hole) = self.position(hash, &mut |s| s == slot) else {
            return false;
        };
        self.len -= 1;
        let mut i = hole;
        loop {
            i = (i + 1) & self.mask;
            let e = self.entries[i];
            if e == EMPTY {
                break;
            }
            // Move `e` into the hole unless its home lies cyclically in (hole, i].
            let home = self.home(tag_of(e));
            let stays = if hole <= i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !stays {
                self.entries[hole] = e;
                hole = i;
            }
        }
        self.entries[hole] = EMPTY;
        true
    }

    /// Forget every entry (keeping the memory).
    pub fn clear(&mut self) {
        self.entries.fill(EMPTY);
        self.len = 0;
    }

    /// Every slot in the index.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries
            .iter()
            .filter(|&&e| e != EMPTY)
            .map(|&e| slot_of(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A tiny deterministic generator (no dependency for tests).
    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn agrees_with_a_hash_map_through_inserts_and_removals() {
        // Hashes come from 1,024 tags, so many flows share a tag and a home;
        // runs wrap around the end and removals shift entries.
        let mut idx = Index::with_capacity(4);
        let mut model: HashMap<u32, u64> = HashMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let tags: Vec<u64> = (0..1024).map(|_| next(&mut x) >> 32).collect();
        let mut next_slot = 0u32;
        for round in 0..100_000 {
            let r = next(&mut x);
            if (!r.is_multiple_of(3) && model.len() < 3_000) || model.is_empty() {
                let hash = tags[(r >> 20) as usize % tags.len()] << 32 | (r & 0xffff);
                idx.insert(hash, next_slot);
                model.insert(next_slot, hash);
                next_slot += 1;
            } else {
                let victim = *model
                    .keys()
                    .nth((r as usize >> 8) % model.len())
                    .expect("some");
                let hash = model.remove(&victim).expect("present");
                assert!(idx.remove(hash, victim), "round {round}");
            }
            if round % 997 == 0 {
                for (&slot, &hash) in &model {
                    assert_eq!(idx.find(hash, |s| s == slot), Some(slot), "round {round}");
                }
                let mut all: Vec<u32> = idx.slots().collect();
                all.sort_unstable();
                let mut want: Vec<u32> = model.keys().copied().collect();
                want.sort_unstable();
                assert_eq!(all, want);
            }
            assert_eq!(idx.len(), model.len());
        }
    }

    #[test]
    fn missing_flows_are_not_found_and_candidates_are_first_matches() {
        let mut idx = Index::with_capacity(100);
        idx.insert(7 << 32, 1);
        idx.insert(7 << 32, 2);
        let candidate = |idx: &Index, h: u64| idx.candidate(h, idx.home_entry(h));
        assert_eq!(candidate(&idx, 7 << 32), Some(1));
        assert_eq!(idx.find(7 << 32, |s| s == 2), Some(2));
        assert_eq!(idx.find(8 << 32, |_| true), None);
        assert_eq!(candidate(&idx, 8 << 32), None);
        assert!(!idx.remove(7 << 32, 3));
        assert!(idx.remove(7 << 32, 1));
        assert_eq!(candidate(&idx, 7 << 32), Some(2));
    }

    #[test]
    fn grows_keeping_every_entry() {
        let mut idx = Index::with_capacity(1);
        let start = idx.bytes();
        for s in 0..10_000u32 {
            idx.insert(u64::from(s.wrapping_mul(2_654_435_761)) << 32, s);
        }
        assert!(idx.bytes() > start);
        // At most 4/3 entries per flow, rounded up to a power of two.
        assert!(idx.bytes() <= 16_384 * 8 * 2, "{}", idx.bytes());
        for s in 0..10_000u32 {
            let h = u64::from(s.wrapping_mul(2_654_435_761)) << 32;
            assert_eq!(idx.find(h, |x| x == s), Some(s));
        }
    }
}
