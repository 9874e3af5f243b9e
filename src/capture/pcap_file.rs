//! Classic pcap files, read by segwatch itself rather than through libpcap.
//!
//! libpcap reads every record with two stdio `fread`s and copies the frame
//! into a buffer of its own; on a capture of 2 million frames that was most of
//! the reader thread's time. This reader fills one 4 MiB buffer per `read`,
//! parses the 16-byte record headers in place and hands out frames as slices
//! of that buffer. It accepts what libpcap accepts: both byte orders,
//! microsecond and nanosecond timestamps, the "modified" (Kuznetzov) format,
//! the FCS bits of the link-type field, and the lengths of pre-2.3 files that
//! were written swapped. A record claiming more than libpcap's largest frame
//! (256 KiB) is a corrupt file, and a record longer than the file's snapshot
//! length is cut to it, both as in libpcap; a file cut in the middle of a
//! record ends with a problem after the frames before it.
//!
//! Streaming: memory is the one buffer, whatever the file size; no `mmap`, so
//! a file truncated while being read cannot fault the process.

use std::fs::File;
use std::io::{ErrorKind, Read};

use super::Frame;
use crate::decode::LinkType;

/// Bytes asked of the kernel per read.
const BUFFER: usize = 4 << 20;
/// libpcap's `MAXIMUM_SNAPLEN`: no real frame is larger.
const MAX_RECORD: u32 = 262_144;
/// The file header.
const FILE_HEADER: usize = 24;

/// How a file's numbers are laid out.
#[derive(Clone, Copy, Debug)]
struct Format {
    big_endian: bool,
    nanos: bool,
    /// 16, or 24 in the modified format.
    record_header: usize,
    /// Files before version 2.3 may hold the two lengths swapped.
    swapped_lengths: bool,
}

impl Format {
    /// The format a magic number (as read, little-endian) announces.
    fn from_magic(magic: u32) -> Option<Format> {
        let (big_endian, nanos, modified) = match magic {
            0xa1b2_c3d4 => (false, false, false),
            0xa1b2_3c4d => (false, true, false),
            0xa1b2_cd34 => (false, false, true),
            0xd4c3_b2a1 => (true, false, false),
            0x4d3c_b2a1 => (true, true, false),
            0x34cd_b2a1 => (true, false, true),
            _ => return None,
        };
        Some(Format {
            big_endian,
            nanos,
            record_header: if modified { 24 } else { 16 },
            swapped_lengths: false,
        })
    }

    fn u32_at(self, b: &[u8], at: usize) -> u32 {
        let bytes = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        }
    }

    fn u16_at(self, b: &[u8], at: usize) -> u16 {
        let bytes = [b[at], b[at + 1]];
        if self.big_endian {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        }
    }
}

/// A classic pcap file being read.
pub struct PcapFile {
    file: File,
    buf: Vec<u8>,
    /// The first byte not yet handed out.
    start: usize,
    /// The end of the bytes read.
    end: usize,
    eof: bool,
    format: Format,
    link: LinkType,
    /// The file's snapshot length: longer records are cut to it, as libpcap does.
    snaplen: u32,
    consumed: u64,
}

impl PcapFile {
    /// Read and check the file header; the error says why the file is not a
    /// pcap file segwatch can read.
    pub fn open(file: File) -> Result<PcapFile, String> {
        let mut f = PcapFile {
            file,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            eof: false,
            format: Format {
                big_endian: false,
                nanos: false,
                record_header: 16,
                swapped_lengths: false,
            },
            link: LinkType::Ethernet,
            snaplen: MAX_RECORD,
            consumed: 0,
        };
        if !f.fill(FILE_HEADER)? {
            return Err(format!(
                "{} bytes: too short for a pcap file header",
                f.end - f.start
            ));
        }
        let h = &f.buf[..FILE_HEADER];
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let mut format = Format::from_magic(magic)
            .ok_or_else(|| format!("unknown file format (magic number {magic:#010x})"))?;
        let (major, minor) = (format.u16_at(h, 4), format.u16_at(h, 6));
        if major != 2 {
            return Err(format!("unsupported pcap version {major}.{minor}"));
        }
        format.swapped_lengths = minor < 3;
        // The top six bits hold FCS information, not the link type.
        let linktype = format.u32_at(h, 20) & 0x03ff_ffff;
        f.format = format;
        f.snaplen = match format.u32_at(h, 16) {
            0 => MAX_RECORD,
            n => n.min(MAX_RECORD),
        };
        f.link = LinkType::from_dlt(linktype as i32);
        f.start = FILE_HEADER;
        f.consumed = FILE_HEADER as u64;
        Ok(f)
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The next frame, `Ok(None)` at the end, or why the file cannot go on.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, String> {
        let fmt = self.format;
        let header = fmt.record_header;
        if !self.fill(header)? {
            return match self.end - self.start {
                0 => Ok(None),
                n => Err(format!(
                    "truncated record header at the end of the file ({n} of {header} bytes)"
                )),
            };
        }
        let h = &self.buf[self.start..self.start + header];
        let (sec, frac) = (fmt.u32_at(h, 0), fmt.u32_at(h, 4));
        let (mut caplen, mut wire_len) = (fmt.u32_at(h, 8), fmt.u32_at(h, 12));
        if fmt.swapped_lengths && caplen > wire_len {
            std::mem::swap(&mut caplen, &mut wire_len);
        }
        if caplen > MAX_RECORD {
            return Err(format!(
                "corrupt record: captured length {caplen} bytes, larger than any frame ({MAX_RECORD})"
            ));
        }
        let need = header + caplen as usize;
        if !self.fill(need)? {
            return Err(format!(
                "truncated record at the end of the file ({} of {need} bytes)",
                self.end - self.start
            ));
        }
        // Seconds are unsigned (past 2038); the fraction is signed, as
        // libpcap reads it, so that an invalid one gives libpcap's time.
        let frac = i64::from(frac as i32);
        let frac_ns = if fmt.nanos { frac } else { frac * 1_000 };
        let kept = caplen.min(self.snaplen) as usize;
        let data = &self.buf[self.start + header..self.start + header + kept];
        self.start += need;
        self.consumed += need as u64;
        Ok(Some(Frame {
            ts_ns: i64::from(sec) * 1_000_000_000 + frac_ns,
            wire_len,
            data,
            link: self.link,
        }))
    }

    /// Make `n` bytes available from `start` (`n` ≤ the buffer); false when
    /// the file ends first.
    fn fill(&mut self, n: usize) -> Result<bool, String> {
        while self.end - self.start < n {
            if self.eof {
                return Ok(false);
            }
            if self.start > 0 {
                // Move the unread bytes (less than one record) to the front,
                // so that the read fills the rest of the buffer.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read error: {e}")),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A pcap file in the given byte order and magic, with frames of the given
    /// sizes; returns its bytes.
    fn file(magic: u32, big: bool, minor: u16, records: &[(u32, u32, u32, u32)]) -> Vec<u8> {
        let w32 = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w16 = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut b = Vec::new();
        b.extend(w32(magic));
        b.extend(w16(2));
        b.extend(w16(minor));
        b.extend([0; 8]);
        b.extend(w32(MAX_RECORD));
        b.extend(w32(1 | 0x1000_0000)); // Ethernet, with FCS bits set
        for &(sec, frac, caplen, len) in records {
            b.extend(w32(sec));
            b.extend(w32(frac));
            b.extend(w32(caplen));
            b.extend(w32(len));
            b.extend(std::iter::repeat_n(0xab, caplen.min(len) as usize));
        }
        b
    }

    /// (timestamp, wire length, bytes captured, link type) of a frame.
    type Seen = (i64, u32, usize, LinkType);

    fn read_all(bytes: &[u8]) -> (Vec<Seen>, Option<String>) {
        let mut tmp = tempfile::NamedTempFile::new().expect("temp file");
        tmp.write_all(bytes).expect("write");
        let mut f = PcapFile::open(tmp.reopen().expect("reopen")).expect("open");
        let mut out = Vec::new();
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => out.push((fr.ts_ns, fr.wire_len, fr.data.len(), fr.link)),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn both_byte_orders_and_resolutions() {
        let recs = [(10, 5, 60, 60), (11, 999_999, 40, 1500)];
        for (magic, big, nanos) in [
            (0xa1b2_c3d4, false, false),
            (0xa1b2_c3d4, true, false),
            (0xa1b2_3c4d, false, true),
            (0xa1b2_3c4d, true, true),
        ] {
            let (frames, problem) = read_all(&file(magic, big, 4, &recs));
            let unit = if nanos { 1 } else { 1_000 };
            assert_eq!(problem, None);
            assert_eq!(
                frames,
                vec![
                    (10_000_000_000 + 5 * unit, 60, 60, LinkType::Ethernet),
                    (
                        11_000_000_000 + 999_999 * unit,
                        1500,
                        40,
                        LinkType::Ethernet
                    ),
                ],
                "magic {magic:#x} big-endian {big}"
            );
        }
    }

    #[test]
    fn records_longer_than_the_snapshot_length_are_cut_to_it() {
        let mut bytes = file(0xa1b2_c3d4, false, 4, &[(1, 0, 100, 100), (2, 0, 60, 60)]);
        bytes[16..20].copy_from_slice(&64u32.to_le_bytes());
        let (frames, problem) = read_all(&bytes);
        assert_eq!(problem, None);
        assert_eq!((frames[0].1, frames[0].2), (100, 64));
        assert_eq!((frames[1].1, frames[1].2), (60, 60));
    }

    #[test]
    fn old_files_with_swapped_lengths_are_put_right() {
        let (frames, _) = read_all(&file(0xa1b2_c3d4, false, 2, &[(1, 0, 1514, 60)]));
        assert_eq!(frames[0].1, 1514);
        assert_eq!(frames[0].2, 60);
    }

    #[test]
    fn a_cut_record_keeps_the_frames_before_it() {
        let bytes = file(0xa1b2_c3d4, false, 4, &[(1, 0, 60, 60), (2, 0, 60, 60)]);
        let (frames, problem) = read_all(&bytes[..bytes.len() - 10]);
        assert_eq!(frames.len(), 1);
        assert!(problem.is_some_and(|p| p.contains("truncated record")));
        let (frames, problem) = read_all(&bytes[..bytes.len() - 70]);
        assert_eq!(frames.len(), 1);
        assert!(problem.is_some_and(|p| p.contains("truncated record header")));
    }

    #[test]
    fn an_impossible_length_is_a_corrupt_file() {
        let mut bytes = file(0xa1b2_c3d4, false, 4, &[(1, 0, 60, 60), (2, 0, 60, 60)]);
        let second = FILE_HEADER + 16 + 60;
        bytes[second + 8..second + 12].copy_from_slice(&0x0010_0000u32.to_le_bytes());
        let (frames, problem) = read_all(&bytes);
        assert_eq!(frames.len(), 1);
        assert!(problem.is_some_and(|p| p.contains("corrupt record")));
    }

    #[test]
    fn records_spanning_many_buffers() {
        // 3 buffers' worth of maximum-size frames: every refill path runs.
        let n = 3 * BUFFER / MAX_RECORD as usize + 1;
        let recs: Vec<_> = (0..n as u32)
            .map(|i| (i, 0, MAX_RECORD - i, MAX_RECORD))
            .collect();
        let (frames, problem) = read_all(&file(0xa1b2_c3d4, false, 4, &recs));
        assert_eq!(problem, None);
        assert_eq!(frames.len(), n);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.2, (MAX_RECORD - i as u32) as usize);
        }
    }

    #[test]
    fn not_a_pcap_file() {
        let mut tmp = tempfile::NamedTempFile::new().expect("temp file");
        tmp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let err = PcapFile::open(tmp.reopen().expect("reopen"))
            .err()
            .expect("refused");
        assert!(err.contains("unknown file format"), "{err}");
        let mut tmp = tempfile::NamedTempFile::new().expect("temp file");
        tmp.write_all(&0xa1b2_c3d4u32.to_le_bytes()).expect("write");
        let err = PcapFile::open(tmp.reopen().expect("reopen"))
            .err()
            .expect("refused");
        assert!(err.contains("too short"), "{err}");
    }
}
