//! A worker: owns one flow table; decodes the frames of its batches and turns
//! them into flow state and, when flows end, flow records. Nothing here is
//! shared with other threads; finished records leave in chunks, at the end
//! of each batch, for the flow-analysis thread when one runs.

use std::time::Instant;

use crossbeam_channel::Sender;
use hdrhistogram::Histogram;

use crate::analysis::{ArpFact, Chunk};
use crate::decode::{Body, decode};
use crate::dispatch::Batch;
use crate::dispatch::fragments::FragmentPorts;
use crate::flow::TableStats;
use crate::flow::state::IcmpError;
use crate::flow::{EndReason, Flow, FlowKey, FlowRecord, FlowTable, PacketFacts, Timeouts};
use crate::metrics::WorkerMetrics;
use crate::summary::{FlowTotals, WorkerCounters};

/// Records are sent to the sink in chunks of this many.
const RECORD_CHUNK: usize = 512;

/// What a worker hands back when it stops.
#[derive(Debug)]
pub struct WorkerReport {
    pub counters: WorkerCounters,
    pub table: TableStats,
    pub totals: FlowTotals,
    /// Time to process one batch, in nanoseconds.
    pub batch_ns: Histogram<u64>,
}

/// A histogram of batch processing times: 1 µs to 100 s at 3 significant digits.
pub fn batch_histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// A decoded packet waiting for its flow update.
struct Prepared {
    key: FlowKey,
    side: crate::flow::Side,
    hash: u64,
    facts: PacketFacts,
    /// The index entry at the flow's home position.
    home: u64,
    slot: Option<u32>,
}

/// Where finished flows go: the worker's totals and, when attached, the
/// flow-analysis thread (in chunks, with the batch's ARP packets when
/// `arp` is set).
struct FinishedFlows {
    totals: FlowTotals,
    sink: Option<Sender<Chunk>>,
    chunk: Chunk,
    arp: bool,
    /// This worker's index, and its clock as the chunks tell it
    /// ([`Chunk::clock_ns`]): what it was when the last batch's flows had
    /// been expired, and what it was in the last chunk sent.
    worker: usize,
    clock_ns: i64,
    sent_clock_ns: i64,
}

impl FinishedFlows {
    fn finish(&mut self, flow: &Flow, reason: EndReason) {
        let record = FlowRecord::from_flow(flow, reason);
        self.totals.add(&record);
        if self.sink.is_some() {
            self.chunk.flows.push(record);
            if self.chunk.flows.len() >= RECORD_CHUNK {
                self.send();
            }
        }
    }

    fn send(&mut self) {
        if let Some(tx) = &self.sink {
            let full = std::mem::replace(
                &mut self.chunk,
                Chunk {
                    flows: Vec::with_capacity(RECORD_CHUNK),
                    arp: Vec::new(),
                    worker: self.worker,
                    clock_ns: i64::MIN,
                },
            );
            let full = Chunk {
                worker: self.worker,
                clock_ns: self.clock_ns,
                ..full
            };
            self.sent_clock_ns = self.clock_ns;
            // The sink only goes away on a write error it reports itself.
            let _ = tx.send(full);
        }
    }

    /// Hand over what is pending at the end of each batch (so live records
    /// and events are prompt), after expiry at `clock_ns`; with nothing
    /// pending, still once a second of packet time, so the analysis thread
    /// knows how far this worker has got.
    fn flush(&mut self, clock_ns: i64) {
        self.clock_ns = self.clock_ns.max(clock_ns);
        let news = !self.chunk.flows.is_empty() || !self.chunk.arp.is_empty();
        if news || self.clock_ns.saturating_sub(self.sent_clock_ns) >= 1_000_000_000 {
            self.send();
        }
    }
}

/// Per-worker flow tracking.
pub struct Worker {
    prepared: Vec<Prepared>,
    batch_ns: Histogram<u64>,
    table: FlowTable,
    fragments: FragmentPorts,
    counters: WorkerCounters,
    finished: FinishedFlows,
    now_ns: i64,
    /// Prometheus metrics, folded in once per batch; `live` adds the
    /// decision latency (packet timestamp to end of batch).
    metrics: Option<WorkerMetrics>,
    live: bool,
    /// The memory watchdog's counter, and the value last acted on.
    pressure: Option<(crate::memory::Pressure, u64)>,
}

impl Worker {
    pub fn new(
        max_flows: usize,
        timeouts: Timeouts,
        hasher: ahash::RandomState,
        records: Option<Sender<Chunk>>,
        arp: bool,
    ) -> Worker {
        Worker {
            prepared: Vec::new(),
            batch_ns: batch_histogram(),
            table: FlowTable::new(max_flows, timeouts, hasher),
            fragments: FragmentPorts::new(65_536),
            counters: WorkerCounters::default(),
            finished: FinishedFlows {
                totals: FlowTotals::default(),
                arp: arp && records.is_some(),
                sink: records,
                chunk: Chunk::default(),
                worker: 0,
                clock_ns: i64::MIN,
                sent_clock_ns: i64::MIN,
            },
            now_ns: i64::MIN,
            metrics: None,
            live: false,
            pressure: None,
        }
    }

    /// This worker's index among the pipeline's (named in its chunks).
    pub fn with_index(mut self, i: usize) -> Worker {
        self.finished.worker = i;
        self
    }

    /// Shed flows when the memory watchdog says so ([`crate::memory`]).
    pub fn with_pressure(mut self, p: crate::memory::Pressure) -> Worker {
        self.pressure = Some((p, 0));
        self
    }

    /// Export this worker's counters to Prometheus.
    pub fn with_metrics(mut self, metrics: WorkerMetrics, live: bool) -> Worker {
        self.metrics = Some(metrics);
        self.live = live;
        self
    }

    /// Process one batch, then expire flows idle at the batch's packet time.
    ///
    /// Three passes: decode every frame, look every flow up, then update. The
    /// lookups of a batch are independent, so their cache misses overlap
    /// instead of stalling one packet at a time.
    pub fn process(&mut self, batch: &Batch) {
        let started = Instant::now();
        if let Some((p, seen)) = &mut self.pressure
            && crate::memory::pressed(p, seen)
        {
            let finished = &mut self.finished;
            let n = self
                .table
                .shed(&mut |flow, reason| finished.finish(flow, reason));
            tracing::debug!(flows = n, "memory pressure: flows evicted");
        }
        let Worker {
            prepared,
            table,
            fragments,
            counters,
            finished,
            ..
        } = self;
        prepared.clear();
        for item in &batch.items {
            let decoded = match decode(item.link, batch.bytes(item), item.wire_len, item.ts_ns) {
                Ok(d) => d,
                Err(problem) => {
                    counters.count_problem(problem);
                    continue;
                }
            };
            let mut p = decoded.packet;
            let ip = match &mut p.body {
                Body::Ip(ip) => ip,
                Body::Arp(arp) => {
                    counters.packets += 1;
                    counters.arp_packets += 1;
                    if finished.arp {
                        finished.chunk.arp.push(ArpFact {
                            ts_ns: p.ts_ns,
                            vlan: p.vlans.inner.or(p.vlans.outer),
                            arp: *arp,
                        });
                    }
                    continue;
                }
            };
            match fragments.attribute(ip, p.ts_ns) {
                Ok(later) => counters.fragments_attributed += u64::from(later),
                Err(problem) => {
                    counters.count_problem(problem);
                    continue;
                }
            }
            counters.packets += 1;
            if item.caplen < item.wire_len {
                counters.truncated_frames += 1;
            }
            let (key, side) = FlowKey::for_ip(p.vlans, ip);
            let icmp_error = ip.quoted.map(|_| {
                counters.icmp_errors_attributed += 1;
                IcmpError
            });
            let facts = PacketFacts {
                ts_ns: p.ts_ns,
                wire_len: p.wire_len,
                tcp_flags: ip.tcp_flags,
                l4_payload_len: ip.l4_payload_len,
                icmp: if icmp_error.is_some() { None } else { ip.icmp },
                icmp_error,
            };
            prepared.push(Prepared {
                hash: table.hash(&key),
                key,
                side,
                facts,
                home: 0,
                slot: None,
            });
        }
        // Lookups in steps over the whole batch ([`FlowTable::home_entry`]).
        for p in prepared.iter_mut() {
            p.home = table.home_entry(p.hash);
        }
        for p in prepared.iter_mut() {
            p.slot = table.candidate(p.hash, p.home);
        }
        let touched = prepared
            .iter()
            .fold(0u64, |acc, p| acc.wrapping_add(table.touch(p.slot)));
        std::hint::black_box(touched);
        for p in prepared.iter_mut() {
            p.slot = table.confirm(p.slot, &p.key);
        }
        let mut emit = |flow: &Flow, reason| finished.finish(flow, reason);
        for p in prepared.iter() {
            table.packet_hinted(p.slot, p.hash, &p.key, p.side, &p.facts, &mut emit);
        }
        self.now_ns = self.now_ns.max(batch.now_ns);
        let finished = &mut self.finished;
        self.table.expire(self.now_ns, &mut |flow, reason| {
            finished.finish(flow, reason)
        });
        self.finished.flush(self.now_ns);
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if !batch.items.is_empty() {
            self.batch_ns.saturating_record(ns);
        }
        if let Some(m) = &mut self.metrics {
            if !batch.items.is_empty() {
                m.batch_time.record(ns);
                if self.live
                    && let Some(oldest) = batch.items.iter().map(|i| i.ts_ns).min()
                {
                    let lag = crate::pipeline::wall_clock_ns().saturating_sub(oldest);
                    m.decision_latency.record(u64::try_from(lag).unwrap_or(0));
                }
            }
            m.fold(&self.counters, &self.table.stats, self.table.len(), ns);
        }
    }

    /// Flows currently tracked.
    pub fn active_flows(&self) -> usize {
        self.table.len()
    }

    /// End of capture: finish every flow and report.
    pub fn finish(mut self) -> WorkerReport {
        self.finished.totals.expect_flows(self.table.len());
        let finished = &mut self.finished;
        self.table.drain(self.now_ns, &mut |flow, reason| {
            finished.finish(flow, reason)
        });
        // Every flow is out: nothing this worker sends can be older.
        self.finished.flush(i64::MAX);
        if let Some(m) = &mut self.metrics {
            m.fold(&self.counters, &self.table.stats, self.table.len(), 0);
            m.batch_time.publish();
            m.decision_latency.publish();
        }
        WorkerReport {
            counters: self.counters,
            table: self.table.stats,
            totals: self.finished.totals,
            batch_ns: self.batch_ns,
        }
    }
}
