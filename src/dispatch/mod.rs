//! Dispatch: decoded packets → per-worker batches over bounded channels.
//!
//! The worker for a packet is chosen from the hash of its canonical flow key, so
//! both directions of a flow (and ICMP errors about it, and its later IP
//! fragments) reach the same worker. Only batches cross threads; emptied
//! batches come back on a return channel and are reused, so the steady state
//! allocates nothing. Each packet carries its summary plus at most
//! `payload_prefix` bytes of transport payload, never the whole frame.
//!
//! Backpressure is explicit: reading a file, the reader waits for the worker
//! (nothing is lost; each wait is counted); capturing live, a full queue means
//! the batch is dropped and its packets are counted as dropped.

pub mod fragments;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use crate::decode::{Body, DecodeProblem, Decoded, Packet};
use crate::flow::FlowKey;
use fragments::FragmentPorts;

/// One packet in a batch.
#[derive(Clone, Copy, Debug)]
pub struct Item {
    pub packet: Packet,
    /// Hash of the packet's flow key (the worker's table reuses it).
    pub hash: u64,
    /// The payload prefix: `batch.payload[start..start + len]`.
    pub payload_start: u32,
    pub payload_len: u16,
}

/// What crosses from the reader to a worker.
#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Item>,
    pub payload: Vec<u8>,
    /// Packet time at the reader when the batch was sent (advances timeouts
    /// on workers that see little traffic).
    pub now_ns: i64,
}

impl Batch {
    pub fn payload_of(&self, item: &Item) -> &[u8] {
        let start = item.payload_start as usize;
        self.payload
            .get(start..start + usize::from(item.payload_len))
            .unwrap_or(&[])
    }

    fn clear(&mut self) {
        self.items.clear();
        self.payload.clear();
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
    pub payload_prefix: usize,
    pub backpressure: Backpressure,
    /// Remembered fragmented datagrams.
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
    /// Later fragments attributed to their flow.
    pub fragments_attributed: u64,
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

/// Which of `n` workers owns a flow hash. Mixes the hash again so the worker
/// choice is independent of the bits the flow table uses for buckets.
pub fn worker_of(hash: u64, n: usize) -> usize {
    let mixed = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(32) >> 32;
    ((mixed * n as u64) >> 32) as usize
}

impl Dispatcher {
    /// `senders[i]` feeds worker i; workers return emptied batches on `recycled`.
    pub fn new(
        senders: Vec<Sender<Batch>>,
        recycled: Receiver<Batch>,
        hasher: ahash::RandomState,
        cfg: DispatchConfig,
    ) -> Dispatcher {
        let pending = senders.iter().map(|_| Batch::default()).collect();
        Dispatcher {
            senders,
            recycled,
            pending,
            hasher,
            fragments: FragmentPorts::new(cfg.fragment_cap),
            cfg,
            now_ns: i64::MIN,
            last_tick_ns: i64::MIN,
            stats: DispatchStats::default(),
        }
    }

    /// Packet time of the newest packet seen.
    pub fn now_ns(&self) -> i64 {
        self.now_ns
    }

    /// Route one decoded packet. A later fragment whose first fragment was not
    /// seen cannot be attributed and is returned as a problem.
    pub fn push(&mut self, decoded: Decoded<'_>) -> Result<(), DecodeProblem> {
        let mut packet = decoded.packet;
        let key = match &mut packet.body {
            Body::Ip(ip) => {
                if let Some(frag) = ip.fragment {
                    if frag.offset == 0 {
                        self.fragments.remember(
                            ip.src,
                            ip.dst,
                            ip.proto,
                            frag.id,
                            (ip.src_port, ip.dst_port),
                            packet.ts_ns,
                        );
                    } else {
                        let ports = self
                            .fragments
                            .lookup(ip.src, ip.dst, ip.proto, frag.id, packet.ts_ns)
                            .ok_or(DecodeProblem::FragmentUnattributed)?;
                        (ip.src_port, ip.dst_port) = ports;
                        self.stats.fragments_attributed += 1;
                    }
                }
                match &ip.quoted {
                    Some(q) => FlowKey::of_quote(packet.vlans, q).0,
                    None => FlowKey::of_packet(packet.vlans, ip).0,
                }
            }
            Body::Arp(arp) => {
                // ARP is keyed by the address pair so one worker sees a pair's
                // requests and replies.
                let (a, b) = if arp.sender_ip <= arp.target_ip {
                    (arp.sender_ip, arp.target_ip)
                } else {
                    (arp.target_ip, arp.sender_ip)
                };
                FlowKey::new(
                    packet.vlans,
                    0,
                    crate::flow::Endpoint {
                        ip: a.into(),
                        port: 0,
                    },
                    crate::flow::Endpoint {
                        ip: b.into(),
                        port: 0,
                    },
                )
                .0
            }
        };
        let hash = key.hash_with(&self.hasher);
        let w = worker_of(hash, self.senders.len());
        self.now_ns = self.now_ns.max(packet.ts_ns);
        let batch = &mut self.pending[w];
        let take = decoded.payload.len().min(self.cfg.payload_prefix);
        let payload_start = batch.payload.len() as u32;
        batch.payload.extend_from_slice(&decoded.payload[..take]);
        batch.items.push(Item {
            packet,
            hash,
            payload_start,
            payload_len: take as u16,
        });
        self.stats.packets += 1;
        if batch.items.len() >= self.cfg.batch_size {
            self.send(w);
        }
        Ok(())
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
                payload: Vec::with_capacity(self.cfg.batch_size * self.cfg.payload_prefix),
                now_ns: 0,
            },
        };
        let mut batch = std::mem::replace(&mut self.pending[w], fresh);
        batch.now_ns = self.now_ns;
        let n = batch.items.len() as u64;
        self.stats.batches += 1;
        match self.cfg.backpressure {
            Backpressure::Wait => match self.senders[w].try_send(batch) {
                Ok(()) => {}
                Err(TrySendError::Full(batch)) => {
                    self.stats.waits += 1;
                    // A worker that has gone away has already reported its error.
                    let _ = self.senders[w].send(batch);
                }
                Err(TrySendError::Disconnected(_)) => {}
            },
            Backpressure::Drop => match self.senders[w].try_send(batch) {
                Ok(()) => {}
                Err(TrySendError::Full(mut batch) | TrySendError::Disconnected(mut batch)) => {
                    self.stats.dropped_packets += n;
                    batch.clear();
                    self.pending[w] = batch;
                }
            },
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
