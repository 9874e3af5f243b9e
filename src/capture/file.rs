//! Capture files: classic pcap (microsecond or nanosecond) through
//! [`super::pcap_file`], pcapng through [`super::pcapng`] (per-interface link types and timestamp
//! resolutions). Several files are merged into one stream in timestamp order.
//!
//! A file that cannot be opened, or that ends in a truncated or corrupt record,
//! is reported as a problem; frames read before the problem are kept.

use std::io::Read;
use std::path::Path;

use super::pcap_file::PcapFile;
use super::pcapng::PcapNgFile;
use super::{CaptureError, Frame, FrameSource, Next};
use crate::decode::LinkType;

/// pcapng files start with a Section Header Block of this type.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

enum Reader {
    Pcap(PcapFile),
    PcapNg(PcapNgFile),
}

impl Reader {
    fn open(path: &Path) -> Result<Reader, String> {
        let mut magic = [0u8; 4];
        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let is_ng = file.read_exact(&mut magic).is_ok() && magic == PCAPNG_MAGIC;
        // Both readers start from the first byte.
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        if is_ng {
            PcapNgFile::open(file).map(Reader::PcapNg)
        } else {
            PcapFile::open(file).map(Reader::Pcap)
        }
    }

    /// The next frame, `Ok(None)` at the end of the file.
    fn next(&mut self) -> Result<Option<Frame<'_>>, String> {
        match self {
            Reader::Pcap(pcap) => pcap.next_frame(),
            Reader::PcapNg(ng) => ng.next_frame(),
        }
    }

    fn consumed(&self) -> u64 {
        match self {
            Reader::Pcap(pcap) => pcap.consumed(),
            Reader::PcapNg(ng) => ng.consumed(),
        }
    }
}

struct Pending {
    ts_ns: i64,
    wire_len: u32,
    link: LinkType,
    data: Vec<u8>,
}

struct InputFile {
    path: String,
    reader: Reader,
    /// Next frame, copied out of the reader's buffer (multi-file merge only).
    pending: Option<Pending>,
    frames: u64,
    /// Reached its end or an error; no longer read.
    done: bool,
    links: LinksSeen,
}

/// Which link types a file's frames had: a file none of whose frames could be
/// decoded is a problem of its own, so that the run does not pass for a clean
/// analysis of nothing.
#[derive(Default)]
struct LinksSeen {
    decodable: bool,
    /// The first link type seen that segwatch does not decode.
    unsupported: Option<i32>,
}

impl LinksSeen {
    fn note(&mut self, link: LinkType) {
        match link {
            LinkType::Other(dlt) => {
                self.unsupported.get_or_insert(dlt);
            }
            _ => self.decodable = true,
        }
    }

    /// The problem to report once the file is read, if any.
    fn problem(&self, path: &str, frames: u64) -> Option<String> {
        let dlt = self.unsupported.filter(|_| !self.decodable)?;
        // libpcap names most link types, but not the private-use USER0-15.
        let name = match (pcap::Linktype(dlt).get_name(), dlt) {
            (Ok(n), _) => format!(" ({n})"),
            (Err(_), 147..=162) => format!(" (USER{})", dlt - 147),
            (Err(_), _) => String::new(),
        };
        Some(format!(
            "{path}: link type {dlt}{name} is not one segwatch decodes (Ethernet, Linux SLL and SLL2, raw IP, BSD loopback); its {frames} frames were counted as unsupported_link_type, not analysed"
        ))
    }
}

/// Frames from one or more capture files.
pub struct FileSource {
    files: Vec<InputFile>,
    /// File whose pending frame was handed out last and must be refilled.
    refill: Option<usize>,
    problems: Vec<String>,
    total_bytes: u64,
}

/// Record why a file stopped early.
fn report_end(path: &str, frames: u64, why: &str, problems: &mut Vec<String>) {
    problems.push(format!(
        "{path}: {why} (after {frames} frames; the frames before were analysed)"
    ));
}

impl FileSource {
    /// Open every file. Files that cannot be opened are reported as problems;
    /// it is an error only when none can be opened.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<FileSource, CaptureError> {
        let mut files = Vec::new();
        let mut problems = Vec::new();
        let mut total_bytes = 0;
        let mut first_error = None;
        for p in paths {
            let path = p.as_ref().display().to_string();
            match Reader::open(p.as_ref()) {
                Ok(reader) => {
                    total_bytes += std::fs::metadata(p.as_ref()).map_or(0, |m| m.len());
                    files.push(InputFile {
                        path,
                        reader,
                        pending: None,
                        frames: 0,
                        done: false,
                        links: LinksSeen::default(),
                    });
                }
                Err(reason) => {
                    let err = CaptureError::OpenFile {
                        path: path.clone(),
                        reason,
                    };
                    problems.push(err.to_string());
                    first_error.get_or_insert(err);
                }
            }
        }
        if files.is_empty() {
            return Err(first_error.unwrap_or(CaptureError::OpenFile {
                path: String::new(),
                reason: "no capture file given".into(),
            }));
        }
        let mut src = FileSource {
            files,
            refill: None,
            problems,
            total_bytes,
        };
        if src.files.len() > 1 {
            for i in 0..src.files.len() {
                src.fill(i);
            }
        }
        Ok(src)
    }

    /// Read the next frame of file `i` into its pending slot.
    fn fill(&mut self, i: usize) {
        let f = &mut self.files[i];
        let mut buf = f.pending.take().map(|p| p.data).unwrap_or_default();
        if f.done {
            return;
        }
        match f.reader.next() {
            Ok(Some(frame)) => {
                buf.clear();
                buf.extend_from_slice(frame.data);
                let (ts_ns, wire_len, link) = (frame.ts_ns, frame.wire_len, frame.link);
                f.frames += 1;
                f.links.note(link);
                f.pending = Some(Pending {
                    ts_ns,
                    wire_len,
                    link,
                    data: buf,
                });
            }
            Ok(None) => {
                f.done = true;
                self.problems.extend(f.links.problem(&f.path, f.frames));
            }
            Err(why) => {
                f.done = true;
                report_end(&f.path, f.frames, &why, &mut self.problems);
                self.problems.extend(f.links.problem(&f.path, f.frames));
            }
        }
    }
}

impl FrameSource for FileSource {
    fn next_frame(&mut self) -> Next<'_> {
        if self.files.len() == 1 {
            // One file: hand out the reader's buffer directly, no copy.
            let f = &mut self.files[0];
            if f.done {
                return Next::End;
            }
            return match f.reader.next() {
                Ok(Some(frame)) => {
                    f.frames += 1;
                    f.links.note(frame.link);
                    Next::Frame(frame)
                }
                Ok(None) => {
                    f.done = true;
                    self.problems.extend(f.links.problem(&f.path, f.frames));
                    Next::End
                }
                Err(why) => {
                    f.done = true;
                    report_end(&f.path, f.frames, &why, &mut self.problems);
                    self.problems.extend(f.links.problem(&f.path, f.frames));
                    Next::End
                }
            };
        }
        if let Some(i) = self.refill.take() {
            self.fill(i);
        }
        let mut best: Option<(usize, i64)> = None;
        for (i, f) in self.files.iter().enumerate() {
            if let Some(p) = &f.pending
                && best.is_none_or(|(_, t)| p.ts_ns < t)
            {
                best = Some((i, p.ts_ns));
            }
        }
        let Some((i, _)) = best else {
            return Next::End;
        };
        self.refill = Some(i);
        match &self.files[i].pending {
            Some(p) => Next::Frame(Frame {
                ts_ns: p.ts_ns,
                wire_len: p.wire_len,
                data: &p.data,
                link: p.link,
            }),
            None => Next::End,
        }
    }

    fn is_live(&self) -> bool {
        false
    }

    fn problems(&self) -> Vec<String> {
        self.problems.clone()
    }

    fn progress(&self) -> Option<(u64, u64)> {
        let done = self.files.iter().map(|f| f.reader.consumed()).sum();
        Some((done, self.total_bytes.max(done)))
    }
}
