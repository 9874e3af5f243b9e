//! Minimal capture-file writers (classic pcap with microsecond or nanosecond
//! timestamps, and pcapng) for synthetic captures. Frames longer than the
//! snaplen are cut, keeping their original length, as a real capture would.

use std::io::{self, Write};

/// Classic pcap or pcapng.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

/// Writer settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOptions {
    pub format: Format,
    /// Nanosecond timestamps (pcap magic 0xa1b23c4d; pcapng if_tsresol 9).
    pub nanos: bool,
    /// libpcap LINKTYPE_* value.
    pub linktype: u32,
    pub snaplen: u32,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            format: Format::Pcap,
            nanos: false,
            linktype: 1,
            snaplen: 262_144,
        }
    }
}

/// Writes frames to a capture file.
pub struct CaptureWriter<W: Write> {
    out: W,
    opts: FileOptions,
    interfaces: u32,
}

impl<W: Write> CaptureWriter<W> {
    pub fn new(mut out: W, opts: FileOptions) -> io::Result<CaptureWriter<W>> {
        match opts.format {
            Format::Pcap => {
                let magic: u32 = if opts.nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
                out.write_all(&magic.to_le_bytes())?;
                out.write_all(&2u16.to_le_bytes())?;
                out.write_all(&4u16.to_le_bytes())?;
                out.write_all(&0u32.to_le_bytes())?;
                out.write_all(&0u32.to_le_bytes())?;
                out.write_all(&opts.snaplen.to_le_bytes())?;
                out.write_all(&opts.linktype.to_le_bytes())?;
            }
            Format::PcapNg => {
                // Section header block.
                let mut shb = Vec::new();
                shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
                shb.extend_from_slice(&1u16.to_le_bytes());
                shb.extend_from_slice(&0u16.to_le_bytes());
                shb.extend_from_slice(&(-1i64).to_le_bytes());
                block(&mut out, 0x0a0d_0d0a, &shb)?;
                interface_block(&mut out, opts.linktype, opts.snaplen, opts.nanos)?;
            }
        }
        Ok(CaptureWriter {
            out,
            opts,
            interfaces: 1,
        })
    }

    /// pcapng only: describe another interface (its own link type and
    /// timestamp resolution); returns its id for [`CaptureWriter::write_on`].
    pub fn add_interface(&mut self, linktype: u32, nanos: bool) -> io::Result<u32> {
        interface_block(&mut self.out, linktype, self.opts.snaplen, nanos)?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// pcapng only: write a frame captured on interface `iface`, whose
    /// timestamps are in nanoseconds if `nanos`.
    pub fn write_on(
        &mut self,
        iface: u32,
        nanos: bool,
        ts_ns: i64,
        frame: &[u8],
    ) -> io::Result<()> {
        let cap = frame.len().min(self.opts.snaplen as usize);
        let units = if nanos { ts_ns } else { ts_ns.div_euclid(1000) } as u64;
        let mut epb = Vec::with_capacity(20 + cap + 3);
        epb.extend_from_slice(&iface.to_le_bytes());
        epb.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(units as u32).to_le_bytes());
        epb.extend_from_slice(&(cap as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&frame[..cap]);
        block(&mut self.out, 6, &epb)
    }

    /// Write one frame captured at `ts_ns` (nanoseconds since the epoch).
    pub fn write(&mut self, ts_ns: i64, frame: &[u8]) -> io::Result<()> {
        let cap = frame.len().min(self.opts.snaplen as usize);
        let data = &frame[..cap];
        let orig = frame.len() as u32;
        match self.opts.format {
            Format::Pcap => {
                let secs = ts_ns.div_euclid(1_000_000_000);
                let frac = ts_ns.rem_euclid(1_000_000_000);
                let frac = if self.opts.nanos { frac } else { frac / 1000 };
                self.out.write_all(&(secs as u32).to_le_bytes())?;
                self.out.write_all(&(frac as u32).to_le_bytes())?;
                self.out.write_all(&(cap as u32).to_le_bytes())?;
                self.out.write_all(&orig.to_le_bytes())?;
                self.out.write_all(data)
            }
            Format::PcapNg => self.write_on(0, self.opts.nanos, ts_ns, frame),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Interface description block, with if_tsresol = 9 when nanoseconds.
fn interface_block(
    out: &mut impl Write,
    linktype: u32,
    snaplen: u32,
    nanos: bool,
) -> io::Result<()> {
    let mut idb = Vec::new();
    idb.extend_from_slice(&(linktype as u16).to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&snaplen.to_le_bytes());
    if nanos {
        idb.extend_from_slice(&9u16.to_le_bytes());
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&[9, 0, 0, 0]);
        idb.extend_from_slice(&[0, 0, 0, 0]);
    }
    block(out, 1, &idb)
}

fn block(out: &mut impl Write, kind: u32, body: &[u8]) -> io::Result<()> {
    let pad = (4 - body.len() % 4) % 4;
    let total = (12 + body.len() + pad) as u32;
    out.write_all(&kind.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&[0u8; 3][..pad])?;
    out.write_all(&total.to_le_bytes())
}
