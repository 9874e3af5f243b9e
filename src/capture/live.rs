//! Live capture on an interface (a SPAN port or mirror) through libpcap.

use pcap::{Active, Capture, Precision};

use super::{CaptureError, CaptureStats, Frame, FrameSource, Next, header_ts_ns};
use crate::decode::LinkType;

/// How to open an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveOptions {
    pub interface: String,
    pub promiscuous: bool,
    /// Bytes captured per frame; headers need far less than a full frame.
    pub snaplen: i32,
    /// Kernel ring buffer size in bytes (absorbs bursts while workers catch up).
    pub buffer_bytes: i32,
    /// BPF filter in tcpdump syntax; empty = everything.
    pub filter: String,
    /// Deliver packets as they arrive instead of in kernel-buffer batches.
    pub immediate: bool,
    /// Read timeout: how long a read waits before reporting idle (milliseconds).
    pub timeout_ms: i32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            interface: String::new(),
            promiscuous: true,
            snaplen: 262_144,
            buffer_bytes: 64 << 20,
            filter: String::new(),
            immediate: true,
            timeout_ms: 100,
        }
    }
}

/// Frames from a live interface.
pub struct LiveSource {
    cap: Capture<Active>,
    /// How long to wait for a packet before reporting the interface idle.
    wait: std::time::Duration,
    /// The last read found nothing buffered.
    drained: bool,
    link: LinkType,
    interface: String,
    problems: Vec<String>,
}

impl LiveSource {
    pub fn open(opts: &LiveOptions) -> Result<LiveSource, CaptureError> {
        let open_err = |e: pcap::Error| {
            let reason = e.to_string();
            let hint = if reason.contains("ermission") || reason.contains("not permitted") {
                "Run as root or give the binary CAP_NET_RAW and CAP_NET_ADMIN (setcap cap_net_raw,cap_net_admin+eip)"
            } else if reason.contains("No such device") || reason.contains("doesn't exist") {
                "List interfaces with `ip link` and pass one with --interface"
            } else {
                "Check the interface name and that it is up"
            };
            CaptureError::OpenInterface {
                interface: opts.interface.clone(),
                reason,
                hint,
            }
        };
        let mut cap = Capture::from_device(opts.interface.as_str())
            .map_err(open_err)?
            .promisc(opts.promiscuous)
            .snaplen(opts.snaplen)
            .buffer_size(opts.buffer_bytes)
            .immediate_mode(opts.immediate)
            .timeout(opts.timeout_ms)
            .precision(Precision::Nano)
            .open()
            .map_err(open_err)?;
        if !opts.filter.is_empty() {
            cap.filter(&opts.filter, true)
                .map_err(|e| CaptureError::Filter {
                    filter: opts.filter.clone(),
                    reason: e.to_string(),
                })?;
        }
        // Non-blocking reads plus our own poll: libpcap's read timeout does
        // not fire on Linux while no packet arrives at all, which would leave
        // a silent interface blocking forever (no idle expiry, no reaction
        // to SIGTERM).
        let cap = cap.setnonblock().map_err(open_err)?;
        let link = LinkType::from_dlt(cap.get_datalink().0);
        Ok(LiveSource {
            wait: std::time::Duration::from_millis(u64::from(
                opts.timeout_ms.max(1).unsigned_abs(),
            )),
            drained: false,
            cap,
            link,
            interface: opts.interface.clone(),
            problems: Vec::new(),
        })
    }
}

impl FrameSource for LiveSource {
    fn next_frame(&mut self) -> Next<'_> {
        if self.drained {
            self.drained = false;
            let mut fds = [rustix::event::PollFd::new(
                &self.cap,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec::try_from(self.wait).ok();
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(n) if n > 0 => {}
                // Timed out, or interrupted by a signal: let the caller do
                // its idle work and look at its stop flag.
                _ => return Next::Idle,
            }
        }
        match self.cap.next_packet() {
            Ok(pkt) => Next::Frame(Frame {
                ts_ns: header_ts_ns(pkt.header),
                wire_len: pkt.header.len,
                data: pkt.data,
                link: self.link,
            }),
            // Nothing buffered: the next call waits for more.
            Err(pcap::Error::TimeoutExpired) => {
                self.drained = true;
                Next::Again
            }
            Err(e) => {
                self.problems
                    .push(format!("capture on {} stopped: {e}", self.interface));
                Next::End
            }
        }
    }

    fn is_live(&self) -> bool {
        true
    }

    fn stats(&mut self) -> CaptureStats {
        match self.cap.stats() {
            Ok(s) => CaptureStats {
                received: u64::from(s.received),
                kernel_dropped: u64::from(s.dropped),
                interface_dropped: u64::from(s.if_dropped),
            },
            Err(_) => CaptureStats::default(),
        }
    }

    fn problems(&self) -> Vec<String> {
        self.problems.clone()
    }
}
