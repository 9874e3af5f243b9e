//! Capture sources: live interfaces through libpcap; capture files through
//! segwatch's own reader (pcap) or pcap-parser (pcapng).
//!
//! A source yields frames with nanosecond timestamps and their link type; it
//! never panics on bad input. Problems with a file (corrupt header, truncated
//! record) end that file, are reported, and what was read before is kept. A
//! live interface that goes down or away is reopened ([`live`]).

pub mod file;
pub mod interface;
pub mod live;
pub mod pcap_file;
pub mod pcapng;

use thiserror::Error;

use crate::decode::LinkType;

pub use file::FileSource;
pub use live::{CaptureHealth, LiveOptions, LiveSource};

/// One captured frame, borrowed from the source until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub ts_ns: i64,
    /// On-the-wire length (may exceed `data.len()` when cut by snaplen).
    pub wire_len: u32,
    pub data: &'a [u8],
    pub link: LinkType,
}

/// What a source has next.
pub enum Next<'a> {
    Frame(Frame<'a>),
    /// Live capture: nothing arrived within the read timeout.
    Idle,
    /// Live capture: nothing was buffered, but frames are ready now; call
    /// again.
    Again,
    /// No more frames.
    End,
}

/// Capture statistics libpcap reports for live captures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub received: u64,
    pub kernel_dropped: u64,
    pub interface_dropped: u64,
}

/// A source of frames.
pub trait FrameSource {
    fn next_frame(&mut self) -> Next<'_>;
    /// True for live capture (drop rather than wait when workers fall behind).
    fn is_live(&self) -> bool;
    /// The run is stopping. True: the source hands out what it still holds
    /// (briefly) and then ends with [`Next::End`]; false (the default): stop
    /// reading now.
    fn stop(&mut self) -> bool {
        false
    }
    /// Drops reported by the kernel and interface (live only).
    fn stats(&mut self) -> CaptureStats {
        CaptureStats::default()
    }
    /// Live capture: the interface, whether capturing on it now, and how
    /// often it was interrupted and reopened.
    fn health(&self) -> Option<(&str, CaptureHealth)> {
        None
    }
    /// Problems met so far (one readable line each).
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
    /// Approximate bytes consumed and total (for a progress bar).
    fn progress(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Errors opening a capture.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error(
        "cannot open capture file {path}: {reason}. Check that it exists, is readable, and is a pcap or pcapng file"
    )]
    OpenFile { path: String, reason: String },
    #[error("cannot open interface {interface}: {reason}. {hint}")]
    OpenInterface {
        interface: String,
        reason: String,
        hint: &'static str,
    },
    #[error(
        "invalid capture filter {filter:?}: {reason}. Use tcpdump filter syntax (see pcap-filter(7))"
    )]
    Filter { filter: String, reason: String },
}

/// Nanoseconds since the epoch from a libpcap header read with nanosecond
/// precision (`tv_usec` then holds nanoseconds).
#[allow(clippy::useless_conversion)] // time_t is i32 on some targets
pub(crate) fn header_ts_ns(h: &pcap::PacketHeader) -> i64 {
    i64::from(h.ts.tv_sec)
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(h.ts.tv_usec))
}
