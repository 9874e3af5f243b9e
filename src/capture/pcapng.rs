//! pcapng files, read with `pcap-parser` rather than libpcap: libpcap refuses
//! a file whose interfaces have different link types (common when captures
//! from several interfaces are merged), and pcapng carries a link type and a
//! timestamp resolution per interface, which this reader honours per packet.
//!
//! Streaming: memory is one buffer, whatever the file size. A truncated or
//! corrupt block ends the file with a problem; the frames before it are kept.

use std::fs::File;

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError, PcapNGReader};

use super::Frame;
use crate::decode::LinkType;

/// Buffer for one read; a block larger than this is treated as corrupt.
const BUFFER: usize = 4 << 20;

/// What one interface description says.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Seconds added to every timestamp.
    offset_secs: i64,
}

/// What the block at the front of the buffer is, without borrowing it.
enum Front {
    Packet,
    Section(usize),
    Interface(usize, Interface),
    Other(usize),
    End,
    NeedMore,
    Broken(String),
}

/// A pcapng file being read.
pub struct PcapNgFile {
    reader: PcapNGReader<File>,
    interfaces: Vec<Interface>,
    /// Bytes of the block handed out last, consumed on the next call.
    pending_consume: usize,
    /// Timestamp of the last packet (Simple Packet Blocks carry none).
    last_ts_ns: i64,
}

impl PcapNgFile {
    pub fn open(file: File) -> Result<PcapNgFile, String> {
        let reader = PcapNGReader::new(BUFFER, file).map_err(|e| format!("{e:?}"))?;
        Ok(PcapNgFile {
            reader,
            interfaces: Vec::new(),
            pending_consume: 0,
            last_ts_ns: 0,
        })
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.reader.consumed() as u64
    }

    /// The next frame, `Ok(None)` at the end, or why the file cannot go on.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, String> {
        if self.pending_consume > 0 {
            self.reader.consume(self.pending_consume);
            self.pending_consume = 0;
        }
        // Handle non-packet blocks until a packet is at the front. Two passes
        // (classify, then borrow the packet) keep the borrow checker content.
        let mut refills_without_progress = 0;
        loop {
            match self.classify() {
                Front::Packet => break,
                Front::Section(n) => {
                    self.interfaces.clear();
                    self.reader.consume(n);
                }
                Front::Interface(n, i) => {
                    self.interfaces.push(i);
                    self.reader.consume(n);
                }
                Front::Other(n) => self.reader.consume(n),
                Front::End => return Ok(None),
                Front::NeedMore => {
                    refills_without_progress += 1;
                    if refills_without_progress > 2 {
                        return Err("truncated pcapng block at the end of the file".into());
                    }
                    self.reader
                        .refill()
                        .map_err(|e| format!("read error: {e:?}"))?;
                    continue;
                }
                Front::Broken(why) => return Err(why),
            }
            refills_without_progress = 0;
        }
        let interfaces = &self.interfaces;
        let last_ts = &mut self.last_ts_ns;
        match self.reader.next() {
            Ok((n, PcapBlockOwned::NG(Block::EnhancedPacket(epb)))) => {
                self.pending_consume = n;
                let iface = interfaces.get(epb.if_id as usize).copied().ok_or_else(|| {
                    format!(
                        "packet refers to interface {} that was never described",
                        epb.if_id
                    )
                })?;
                let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let ts_ns = to_ns(ts, iface);
                *last_ts = ts_ns;
                let cap = (epb.caplen as usize).min(epb.data.len());
                Ok(Some(Frame {
                    ts_ns,
                    wire_len: epb.origlen,
                    data: &epb.data[..cap],
                    link: iface.link,
                }))
            }
            Ok((n, PcapBlockOwned::NG(Block::SimplePacket(spb)))) => {
                self.pending_consume = n;
                let iface = interfaces
                    .first()
                    .copied()
                    .ok_or("simple packet block before any interface description")?;
                Ok(Some(Frame {
                    ts_ns: *last_ts,
                    wire_len: spb.origlen,
                    data: spb.data,
                    link: iface.link,
                }))
            }
            Ok(_) | Err(_) => Err("pcapng block changed while being read".into()),
        }
    }

    fn classify(&mut self) -> Front {
        match self.reader.next() {
            Ok((n, PcapBlockOwned::NG(block))) => match block {
                Block::EnhancedPacket(_) | Block::SimplePacket(_) => Front::Packet,
                Block::SectionHeader(_) => Front::Section(n),
                Block::InterfaceDescription(idb) => Front::Interface(
                    n,
                    Interface {
                        link: LinkType::from_dlt(idb.linktype.0),
                        units_per_sec: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                        offset_secs: idb.ts_offset(),
                    },
                ),
                _ => Front::Other(n),
            },
            Ok((n, _)) => Front::Other(n),
            Err(PcapError::Eof) => Front::End,
            Err(PcapError::Incomplete(_)) => Front::NeedMore,
            Err(PcapError::UnexpectedEof) => {
                Front::Broken("truncated pcapng block at the end of the file".into())
            }
            Err(PcapError::BufferTooSmall) => Front::Broken(format!(
                "pcapng block larger than {} MiB: corrupt file",
                BUFFER >> 20
            )),
            Err(e) => Front::Broken(format!("corrupt pcapng block: {e:?}")),
        }
    }
}

/// Nanoseconds since the epoch from a pcapng timestamp.
fn to_ns(ts: u64, iface: Interface) -> i64 {
    let units = iface.units_per_sec;
    let secs = (ts / units) as i64 + iface.offset_secs;
    let frac = ts % units;
    let frac_ns = (u128::from(frac) * 1_000_000_000 / u128::from(units)) as i64;
    secs.saturating_mul(1_000_000_000).saturating_add(frac_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_any_resolution() {
        let us = Interface {
            link: LinkType::Ethernet,
            units_per_sec: 1_000_000,
            offset_secs: 0,
        };
        assert_eq!(to_ns(1_500_000, us), 1_500_000_000);
        let ns = Interface {
            units_per_sec: 1_000_000_000,
            ..us
        };
        assert_eq!(
            to_ns(1_700_000_000_123_456_789, ns),
            1_700_000_000_123_456_789
        );
        let pow2 = Interface {
            units_per_sec: 1 << 10,
            offset_secs: 100,
            ..us
        };
        assert_eq!(to_ns(1024 + 512, pow2), 101_500_000_000);
    }
}
