//! A worker: owns one flow table and turns batches of packets into flow state
//! and, when flows end, flow records. Nothing here is shared with other threads;
//! finished records leave in chunks over a channel when a record sink is attached.

use crossbeam_channel::Sender;

use crate::decode::Body;
use crate::dispatch::Batch;
use crate::flow::state::IcmpError;
use crate::flow::{EndReason, Flow, FlowKey, FlowRecord, FlowTable, PacketFacts, Timeouts};
use crate::summary::{FlowTotals, WorkerCounters};
use crate::flow::TableStats;

/// Records are sent to the sink in chunks of this many.
const RECORD_CHUNK: usize = 512;

/// What a worker hands back when it stops.
#[derive(Debug, Default)]
pub struct WorkerReport {
    pub counters: WorkerCounters,
    pub table: TableStats,
    pub totals: FlowTotals,
}

/// Per-worker flow tracking.
pub struct Worker {
    table: FlowTable,
    counters: WorkerCounters,
    totals: FlowTotals,
    records: Option<Sender<Vec<FlowRecord>>>,
    chunk: Vec<FlowRecord>,
    now_ns: i64,
}

impl Worker {
    pub fn new(
        max_flows: usize,
        timeouts: Timeouts,
        hasher: ahash::RandomState,
        records: Option<Sender<Vec<FlowRecord>>>,
    ) -> Worker {
        Worker {
            table: FlowTable::new(max_flows, timeouts, hasher),
            counters: WorkerCounters::default(),
            totals: FlowTotals::default(),
            records,
            chunk: Vec::new(),
            now_ns: i64::MIN,
        }
    }

    /// Process one batch, then expire flows idle at the batch's packet time.
    pub fn process(&mut self, batch: &Batch) {
        let Worker {
            table,
            counters,
            totals,
            records,
            chunk,
            ..
        } = self;
        let mut emit = |flow: &Flow, reason: EndReason| {
            finish_flow(flow, reason, totals, records, chunk);
        };
        for item in &batch.items {
            let p = &item.packet;
            counters.packets += 1;
            let ip = match &p.body {
                Body::Ip(ip) => ip,
                Body::Arp(_) => {
                    counters.arp_packets += 1;
                    continue;
                }
            };
            let (key, side, icmp_error) = match &ip.quoted {
                Some(q) => {
                    let (key, quoted_sender) = FlowKey::of_quote(p.vlans, q);
                    counters.icmp_errors_attributed += 1;
                    let err = IcmpError {
                        unreachable: q.unreachable,
                    };
                    (key, quoted_sender.other(), Some(err))
                }
                None => {
                    let (key, side) = FlowKey::of_packet(p.vlans, ip);
                    (key, side, None)
                }
            };
            let facts = PacketFacts {
                ts_ns: p.ts_ns,
                wire_len: p.wire_len,
                tcp_flags: ip.tcp_flags,
                l4_payload_len: ip.l4_payload_len,
                icmp: if icmp_error.is_some() { None } else { ip.icmp },
                icmp_error,
            };
            table.packet(item.hash, &key, side, &facts, &mut emit);
        }
        self.now_ns = self.now_ns.max(batch.now_ns);
        let now = self.now_ns;
        let Worker {
            table,
            totals,
            records,
            chunk,
            ..
        } = self;
        table.expire(now, &mut |flow, reason| {
            finish_flow(flow, reason, totals, records, chunk)
        });
    }

    /// Flows currently tracked.
    pub fn active_flows(&self) -> usize {
        self.table.len()
    }

    /// End of capture: finish every flow and report.
    pub fn finish(mut self) -> WorkerReport {
        let Worker {
            table,
            totals,
            records,
            chunk,
            ..
        } = &mut self;
        table.drain(&mut |flow, reason| finish_flow(flow, reason, totals, records, chunk));
        if let Some(tx) = &self.records
            && !self.chunk.is_empty()
        {
            let _ = tx.send(std::mem::take(&mut self.chunk));
        }
        WorkerReport {
            counters: self.counters,
            table: self.table.stats,
            totals: self.totals,
        }
    }
}

fn finish_flow(
    flow: &Flow,
    reason: EndReason,
    totals: &mut FlowTotals,
    records: &Option<Sender<Vec<FlowRecord>>>,
    chunk: &mut Vec<FlowRecord>,
) {
    let record = FlowRecord::from_flow(flow, reason);
    totals.add(&record);
    if let Some(tx) = records {
        chunk.push(record);
        if chunk.len() >= RECORD_CHUNK {
            // The sink only goes away on a write error it reports itself.
            let _ = tx.send(std::mem::replace(chunk, Vec::with_capacity(RECORD_CHUNK)));
        }
    }
}
