//! Capture files (pcap and pcapng, microsecond or nanosecond) read through
//! libpcap. Several files are merged into one stream in timestamp order.
//!
//! A file that cannot be opened, or that ends in a truncated or corrupt record,
//! is reported as a problem; frames read before the problem are kept.

use pcap::{Capture, Offline, Precision};

use super::{CaptureError, Frame, FrameSource, Next, header_ts_ns};
use crate::decode::LinkType;

struct Pending {
    ts_ns: i64,
    wire_len: u32,
    data: Vec<u8>,
}

struct InputFile {
    path: String,
    cap: Option<Capture<Offline>>,
    link: LinkType,
    /// Next frame, copied out of libpcap's buffer (multi-file merge only).
    pending: Option<Pending>,
    /// Bytes consumed, approximately (record headers + captured data).
    consumed: u64,
    frames: u64,
    /// Reached its end or an error; `cap` is no longer read.
    done: bool,
}

/// Frames from one or more capture files.
pub struct FileSource {
    files: Vec<InputFile>,
    /// File whose pending frame was handed out last and must be refilled.
    refill: Option<usize>,
    problems: Vec<String>,
    total_bytes: u64,
}

impl FileSource {
    /// Open every file. Files that cannot be opened are reported as problems;
    /// it is an error only when none can be opened.
    pub fn open<P: AsRef<std::path::Path>>(paths: &[P]) -> Result<FileSource, CaptureError> {
        let mut files = Vec::new();
        let mut problems = Vec::new();
        let mut total_bytes = 0;
        let mut first_error = None;
        for p in paths {
            let path = p.as_ref().display().to_string();
            match Capture::from_file_with_precision(p.as_ref(), Precision::Nano) {
                Ok(cap) => {
                    total_bytes += std::fs::metadata(p.as_ref()).map_or(0, |m| m.len());
                    let link = LinkType::from_dlt(cap.get_datalink().0);
                    files.push(InputFile {
                        path,
                        cap: Some(cap),
                        link,
                        pending: None,
                        consumed: 24,
                        frames: 0,
                        done: false,
                    });
                }
                Err(e) => {
                    let err = CaptureError::OpenFile {
                        path: path.clone(),
                        reason: e.to_string(),
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
        let Some(cap) = f.cap.as_mut().filter(|_| !f.done) else {
            f.pending = None;
            return;
        };
        match cap.next_packet() {
            Ok(pkt) => {
                let ts_ns = header_ts_ns(pkt.header);
                let wire_len = pkt.header.len;
                f.consumed += 16 + pkt.data.len() as u64;
                f.frames += 1;
                let mut buf = f.pending.take().map(|p| p.data).unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(pkt.data);
                f.pending = Some(Pending {
                    ts_ns,
                    wire_len,
                    data: buf,
                });
            }
            Err(e) => {
                f.done = true;
                report_end(&f.path, f.frames, e, &mut self.problems);
                f.pending = None;
            }
        }
    }
}

/// Record why a file ended, unless it simply reached its end.
fn report_end(path: &str, frames: u64, e: pcap::Error, problems: &mut Vec<String>) {
    if !matches!(e, pcap::Error::NoMorePackets) {
        problems.push(format!(
            "{path}: {e} (after {frames} frames; the frames before were analysed)"
        ));
    }
}

impl FrameSource for FileSource {
    fn next_frame(&mut self) -> Next<'_> {
        if self.files.len() == 1 {
            // One file: hand out libpcap's buffer directly, no copy.
            let f = &mut self.files[0];
            if f.done {
                return Next::End;
            }
            let Some(cap) = f.cap.as_mut() else {
                return Next::End;
            };
            return match cap.next_packet() {
                Ok(pkt) => {
                    f.consumed += 16 + pkt.data.len() as u64;
                    f.frames += 1;
                    Next::Frame(Frame {
                        ts_ns: header_ts_ns(pkt.header),
                        wire_len: pkt.header.len,
                        data: pkt.data,
                        link: f.link,
                    })
                }
                Err(e) => {
                    f.done = true;
                    report_end(&f.path, f.frames, e, &mut self.problems);
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
        let f = &self.files[i];
        match &f.pending {
            Some(p) => Next::Frame(Frame {
                ts_ns: p.ts_ns,
                wire_len: p.wire_len,
                data: &p.data,
                link: f.link,
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
        let done = self.files.iter().map(|f| f.consumed).sum();
        Some((done, self.total_bytes.max(done)))
    }
}
