//! Dispatch: captured frames → per-worker batches over bounded channels.
//!
//! The reader thread does as little as it can per frame, because it also
//! carries libpcap's read: it copies the first `frame_prefix` bytes of the frame
//! (headers plus the start of the payload, never a whole jumbo frame) into the
//! batch of the worker that owns the frame's flow, and workers decode. With one
//! worker there is nothing to choose; with several, the reader slices the frame
//! to find its canonical flow key and picks the worker from the key's hash, so
//! both directions of a flow, ICMP errors about it and its later IP fragments
//! reach the same worker.
//!
//! Only batches cross threads; emptied batches come back on a return channel
//! and are reused, so the steady state allocates nothing. Backpressure is
//! explicit: reading a file, the reader waits for the worker (nothing is lost;
//! each wait is counted); capturing live, a full queue means the batch is
//! dropped and its packets are counted as dropped.

pub mod fragments;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use crate::capture::Frame;
use crate::decode::{Body, LinkType, decode};
use crate::flow::{Endpoint, FlowKey};
use fragments::FragmentPorts;

/// One frame in a batch: its metadata and where its bytes are in `Batch::data`.
#[derive(Clone, Copy, Debug)]
pub struct Item {
    pub ts_ns: i64,
    pub wire_len: u32,
    /// Bytes the capture held (before segwatch's own prefix cut).
    pub caplen: u32,
    pub link: LinkType,
    start: u32,
    len: u32,
}

/// What crosses from the reader to a worker.
#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Item>,
    pub data: Vec<u8>,
    /// Packet time at the reader when the batch was sent (advances timeouts
    /// on workers that see little traffic).
    pub now_ns: i64,
}

impl Batch {
    /// The copied bytes of a frame.
    pub fn bytes(&self, item: &Item) -> &[u8] {
        let start = item.start as usize;
        self.data
            .get(start..start + item.len as usize)
            .unwrap_or(&[])
    }

    fn clear(&mut self) {
        self.items.clear();
        self.data.clear();
    }
}

/// What to do when a worker's queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backpressure {
    /// Block until the worker catches up (capture files).
    Wait,
    /// Drop the batch and count its packets (live capture).
    Drop,
}

/// Dispatcher settings.
#[derive(Clone, Copy, Debug)]
pub struct DispatchConfig {
    pub batch_size: usize,
    /// Bytes of each frame copied for the workers.
    pub frame_prefix: usize,
    pub backpressure: Backpressure,
    /// Fragmented datagrams remembered for routing.
    pub fragment_cap: usize,
}

/// Dispatcher counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchStats {
    pub packets: u64,
    pub batches: u64,
    /// Times the reader had to wait for a full worker queue (files).
    pub waits: u64,
    /// Packets dropped because a worker queue was full (live).
    pub dropped_packets: u64,
}

/// The reader side of the worker channels.
pub struct Dispatcher {
    senders: Vec<Sender<Batch>>,
    recycled: Receiver<Batch>,
    pending: Vec<Batch>,
    hasher: ahash::RandomState,
    cfg: DispatchConfig,
    fragments: FragmentPorts,
    now_ns: i64,
    last_tick_ns: i64,
    pub stats: DispatchStats,
}

/// Which of `n` workers owns a flow hash (multiply-shift: uniform, no division).
pub fn worker_of(hash: u64, n: usize) -> usize {
    (((hash >> 32) * n as u64) >> 32) as usize
}

impl Dispatcher {
    /// `senders[i]` feeds worker i; workers return emptied batches on `recycled`.
    pub fn new(
        senders: Vec<Sender<Batch>>,
        recycled: Receiver<Batch>,
        cfg: DispatchConfig,
    ) -> Dispatcher {
        let pending = senders.iter().map(|_| Batch::default()).collect();
        Dispatcher {
            senders,
            recycled,
            pending,
            hasher: ahash::RandomState::new(),
            fragments: FragmentPorts::new(cfg.fragment_cap),
            cfg,
            now_ns: i64::MIN,
            last_tick_ns: i64::MIN,
            stats: DispatchStats::default(),
        }
    }

    /// Packet time of the newest frame seen.
    /// Batches waiting in each worker's queue.
    pub fn queue_depths(&self) -> impl Iterator<Item = usize> + '_ {
        self.senders.iter().map(Sender::len)
    }

    pub fn now_ns(&self) -> i64 {
        self.now_ns
    }

    /// Move packet time forward without a packet (live capture on a quiet
    /// interface). Only ever forward, and only once a first packet set the clock.
    pub fn advance_clock(&mut self, now_ns: i64) {
        if self.now_ns != i64::MIN {
            self.now_ns = self.now_ns.max(now_ns);
        }
    }

    /// Queue one frame for its worker.
    pub fn push(&mut self, frame: &Frame<'_>) {
        let w = if self.senders.len() == 1 {
            0
        } else {
            self.route(frame)
        };
        self.now_ns = self.now_ns.max(frame.ts_ns);
        let batch = &mut self.pending[w];
        let take = frame.data.len().min(self.cfg.frame_prefix);
        let start = batch.data.len() as u32;
        batch.data.extend_from_slice(&frame.data[..take]);
        batch.items.push(Item {
            ts_ns: frame.ts_ns,
            wire_len: frame.wire_len,
            caplen: frame.data.len() as u32,
            link: frame.link,
            start,
            len: take as u32,
        });
        self.stats.packets += 1;
        if batch.items.len() >= self.cfg.batch_size {
            self.send(w);
        }
    }

    /// The worker owning a frame's flow. Frames that do not decode go to
    /// worker 0, which decodes them again and counts the problem.
    fn route(&mut self, frame: &Frame<'_>) -> usize {
        let Ok(d) = decode(frame.link, frame.data, frame.wire_len, frame.ts_ns) else {
            return 0;
        };
        let mut packet = d.packet;
        let key = match &mut packet.body {
            Body::Ip(ip) => {
                if self.fragments.attribute(ip, packet.ts_ns).is_err() {
                    return 0;
                }
                FlowKey::for_ip(packet.vlans, ip).0
            }
            Body::Arp(arp) => {
                // Keyed by the address pair: one worker sees a pair's requests and replies.
                let ep = |ip: std::net::Ipv4Addr| Endpoint {
                    ip: ip.into(),
                    port: 0,
                };
                FlowKey::new(packet.vlans, 0, ep(arp.sender_ip), ep(arp.target_ip)).0
            }
        };
        worker_of(key.hash_with(&self.hasher), self.senders.len())
    }

    /// Send every non-empty pending batch (live capture: bounds latency).
    pub fn flush(&mut self) {
        for w in 0..self.pending.len() {
            if !self.pending[w].items.is_empty() {
                self.send(w);
            }
        }
    }

    /// Once per second of packet time, send every pending batch, even empty
    /// ones, so that every worker's clock advances and idle flows expire.
    pub fn tick(&mut self) {
        if self.now_ns.saturating_sub(self.last_tick_ns) >= 1_000_000_000 {
            self.last_tick_ns = self.now_ns;
            for w in 0..self.pending.len() {
                self.send(w);
            }
        }
    }

    fn send(&mut self, w: usize) {
        let fresh = match self.recycled.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Batch {
                items: Vec::with_capacity(self.cfg.batch_size),
                data: Vec::with_capacity(self.cfg.batch_size * self.cfg.frame_prefix.min(512)),
                now_ns: 0,
            },
        };
        let mut batch = std::mem::replace(&mut self.pending[w], fresh);
        batch.now_ns = self.now_ns;
        let n = batch.items.len() as u64;
        self.stats.batches += 1;
        match (self.cfg.backpressure, self.senders[w].try_send(batch)) {
            (_, Ok(())) => {}
            (Backpressure::Wait, Err(TrySendError::Full(batch))) => {
                self.stats.waits += 1;
                // A worker that has gone away has already reported its failure.
                let _ = self.senders[w].send(batch);
            }
            (Backpressure::Wait, Err(TrySendError::Disconnected(_))) => {}
            (
                Backpressure::Drop,
                Err(TrySendError::Full(mut batch) | TrySendError::Disconnected(mut batch)),
            ) => {
                self.stats.dropped_packets += n;
                batch.clear();
                self.pending[w] = batch;
            }
        }
    }

    /// Flush everything and close the channels; workers then drain and stop.
    pub fn finish(mut self) -> DispatchStats {
        self.flush();
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_choice_is_spread_and_in_range() {
        let mut counts = [0usize; 3];
        let rs = ahash::RandomState::with_seeds(9, 8, 7, 6);
        for i in 0u32..30_000 {
            let h = std::hash::BuildHasher::hash_one(&rs, i);
            counts[worker_of(h, 3)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
