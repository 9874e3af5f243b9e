//! Live capture on an interface (a SPAN port or mirror) through libpcap.
//!
//! A capture outlives its interface: when the interface goes down, loses its
//! carrier, vanishes or is re-created, or a read fails, the source says so
//! (log, [`CaptureHealth`] for the metrics), keeps answering `Idle` so the
//! pipeline goes on expiring flows and still sees a stop request, and reopens
//! the interface by name (same options and filter) with a backoff from 0.5 s
//! doubling to 30 s; a cheap look every read timeout (100 ms) tries at once
//! when the interface comes back, so recovery does not wait out the backoff. libpcap's statistics start again with each handle;
//! [`LiveSource::stats`] adds up those of the closed ones.
//!
//! In block mode (`immediate = false`) the kernel hands packets over in
//! blocks, and a block is only readable once full or once the read timeout
//! retires it. So a handle is never dropped at once: when the interface
//! fails, and when the run stops, the source goes on reading for one read
//! timeout (plus a margin) and only then lets the handle go, so the frames
//! of the last, unfinished block are analysed rather than lost.

use std::time::{Duration, Instant};

use pcap::{Active, Capture, Precision};

use super::interface::{self, InterfaceState};
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
            immediate: false,
            timeout_ms: 100,
        }
    }
}

/// First wait before reopening an interface; it doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often a quiet capture checks that its interface is still there and up.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Past the read timeout, how long to wait for the kernel to retire the last block.
const DRAIN_MARGIN: Duration = Duration::from_millis(50);
/// Between reads of a handle being drained.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// Whether the capture is running, and how often it was interrupted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureHealth {
    /// Capturing on an interface that is up with a carrier.
    pub up: bool,
    /// Times the capture stopped receiving: interface down, gone, re-created
    /// or without carrier, or a read error.
    pub interruptions: u64,
    /// Times the interface was opened again after an interruption.
    pub reopens: u64,
}

/// An open handle.
struct Handle {
    cap: Capture<Active>,
    link: LinkType,
    /// The interface's index when opened (0: unknown).
    ifindex: u32,
}

/// Frames from a live interface.
pub struct LiveSource {
    opts: LiveOptions,
    /// `None` while the interface is down or gone.
    handle: Option<Handle>,
    /// How long to wait for a packet before reporting the interface idle.
    wait: Duration,
    /// The last read found nothing buffered.
    drained: bool,
    /// A read failed (closed on the next call).
    failed: Option<String>,
    health: CaptureHealth,
    next_check: Instant,
    /// When to try to reopen, and the wait after that.
    retry_at: Instant,
    retry_delay: Duration,
    down_since: Option<Instant>,
    /// While down: a socket to ask about the interface, and whether it
    /// looked usable at the last look.
    probe: Option<rustix::fd::OwnedFd>,
    was_usable: bool,
    /// The carrier was lost while capturing (logged when it comes back).
    carrier_lost: bool,
    /// Statistics of the handles closed so far, and of the current one.
    closed_stats: CaptureStats,
    handle_stats: CaptureStats,
    /// The handle is being drained before it is dropped ([module docs](self)).
    draining: Option<Drain>,
    /// The run is stopping: the source ends once drained.
    stopping: bool,
}

/// A handle on its way out: read until `until`, then drop it.
#[derive(Clone, Copy, Debug)]
struct Drain {
    until: Instant,
    /// Reopen at once afterwards (the interface was re-created).
    retry_now: bool,
}

impl Drain {
    /// A read gave nothing: in block mode wait for the kernel to retire its
    /// last block, until the deadline; otherwise the handle is done.
    fn nothing_read(&mut self, block_mode: bool) -> Next<'static> {
        let now = Instant::now();
        if block_mode && self.until > now {
            std::thread::sleep(DRAIN_POLL.min(self.until - now));
            Next::Idle
        } else {
            self.until = now;
            Next::Again
        }
    }
}

/// Open a handle with every option applied.
fn open_handle(opts: &LiveOptions) -> Result<Handle, CaptureError> {
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
    // Non-blocking reads plus our own poll: libpcap's read timeout does not
    // fire on Linux while no packet arrives at all, which would leave a
    // silent interface blocking forever (no idle expiry, no reaction to
    // SIGTERM).
    let cap = cap.setnonblock().map_err(open_err)?;
    let link = LinkType::from_dlt(cap.get_datalink().0);
    let ifindex = interface::index(&cap, &opts.interface).unwrap_or(0);
    Ok(Handle { cap, link, ifindex })
}

fn add(a: CaptureStats, b: CaptureStats) -> CaptureStats {
    CaptureStats {
        received: a.received + b.received,
        kernel_dropped: a.kernel_dropped + b.kernel_dropped,
        interface_dropped: a.interface_dropped + b.interface_dropped,
    }
}

fn handle_stats(h: &mut Handle) -> Option<CaptureStats> {
    h.cap.stats().ok().map(|s| CaptureStats {
        received: u64::from(s.received),
        kernel_dropped: u64::from(s.dropped),
        interface_dropped: u64::from(s.if_dropped),
    })
}

impl LiveSource {
    /// Open the interface; failing here is an error (a wrong name, missing
    /// privileges), unlike losing it later.
    pub fn open(opts: &LiveOptions) -> Result<LiveSource, CaptureError> {
        let handle = open_handle(opts)?;
        let now = Instant::now();
        let mut src = LiveSource {
            opts: opts.clone(),
            wait: Duration::from_millis(u64::from(opts.timeout_ms.max(1).unsigned_abs())),
            drained: false,
            failed: None,
            health: CaptureHealth {
                up: true,
                ..CaptureHealth::default()
            },
            next_check: now,
            retry_at: now,
            retry_delay: RETRY_FIRST,
            down_since: None,
            probe: None,
            was_usable: false,
            carrier_lost: false,
            closed_stats: CaptureStats::default(),
            handle_stats: CaptureStats::default(),
            draining: None,
            stopping: false,
            handle: Some(handle),
        };
        // A carrier still coming up is not an interruption.
        if let Some(h) = &src.handle {
            src.health.up =
                interface::state(&h.cap, &src.opts.interface, h.ifindex) == InterfaceState::Up;
        }
        Ok(src)
    }

    /// The interface captured on.
    pub fn interface(&self) -> &str {
        &self.opts.interface
    }

    /// Stop capturing on the handle: count the interruption now, drop the
    /// handle once drained ([`LiveSource::release`]), then reopen it after
    /// [`RETRY_FIRST`] (at once with `retry_now`).
    fn close(&mut self, why: &str, retry_now: bool) {
        if self.handle.is_none() || self.draining.is_some() {
            return;
        }
        if self.health.up {
            self.health.interruptions += 1;
        }
        self.health.up = false;
        self.down_since.get_or_insert_with(Instant::now);
        self.drained = false;
        self.was_usable = false;
        self.carrier_lost = false;
        tracing::warn!(
            interface = %self.opts.interface,
            "capture interrupted: {why}; reopening it by name (first retry in {RETRY_FIRST:?}, then backing off to {RETRY_MAX:?})"
        );
        self.start_drain(retry_now);
    }

    /// Read what the handle still holds before dropping it: in block mode
    /// until the kernel has retired its last block; in immediate mode until
    /// nothing is buffered. Either way for one read timeout at most.
    fn start_drain(&mut self, retry_now: bool) {
        self.draining = Some(Drain {
            until: Instant::now() + self.wait + DRAIN_MARGIN,
            retry_now,
        });
    }

    /// Drop the handle (drained), keeping its statistics.
    fn release(&mut self) {
        let Some(drain) = self.draining.take() else {
            return;
        };
        let Some(mut h) = self.handle.take() else {
            return;
        };
        if let Some(s) = handle_stats(&mut h) {
            self.handle_stats = s;
        }
        self.closed_stats = add(self.closed_stats, self.handle_stats);
        self.handle_stats = CaptureStats::default();
        let now = Instant::now();
        self.retry_at = if drain.retry_now {
            now
        } else {
            now + RETRY_FIRST
        };
        self.retry_delay = RETRY_FIRST * 2;
    }

    /// Look at the interface; false when the handle was closed.
    fn check(&mut self) -> bool {
        self.next_check = Instant::now() + CHECK_EVERY;
        let Some(h) = &self.handle else {
            return false;
        };
        match interface::state(&h.cap, &self.opts.interface, h.ifindex) {
            InterfaceState::Gone => self.close("the interface is gone", false),
            // A new interface under the name is there already.
            InterfaceState::Replaced => self.close("the interface was re-created", true),
            InterfaceState::AdminDown => self.close("the interface was set down", false),
            InterfaceState::NoCarrier => {
                // The handle works again once the carrier is back.
                if self.health.up {
                    self.health.interruptions += 1;
                    self.carrier_lost = true;
                    tracing::warn!(interface = %self.opts.interface, "capture interrupted: the interface has no carrier");
                }
                self.health.up = false;
            }
            InterfaceState::Up => {
                // (A carrier that was still coming up after an open is not news.)
                if std::mem::take(&mut self.carrier_lost) {
                    tracing::warn!(interface = %self.opts.interface, "capture receiving again: the carrier is back");
                }
                self.health.up = true;
            }
        }
        self.handle.is_some() && self.draining.is_none()
    }

    /// Interface down or gone: wait for the next attempt (at most one read
    /// timeout, so the caller keeps doing its idle work), then try.
    fn retry(&mut self) -> Next<'_> {
        let now = Instant::now();
        if now < self.retry_at {
            std::thread::sleep(self.wait.min(self.retry_at - now));
            if self.probe.is_none() {
                self.probe = rustix::net::socket(
                    rustix::net::AddressFamily::INET,
                    rustix::net::SocketType::DGRAM,
                    None,
                )
                .ok();
            }
            let usable = self
                .probe
                .as_ref()
                .is_some_and(|p| interface::usable(p, &self.opts.interface));
            let came_back = usable && !self.was_usable;
            self.was_usable = usable;
            if !came_back && Instant::now() < self.retry_at {
                return Next::Idle;
            }
        }
        let now = Instant::now();
        match open_handle(&self.opts) {
            Ok(h) => {
                let down = self
                    .down_since
                    .take()
                    .map_or(0.0, |t| t.elapsed().as_secs_f64());
                tracing::warn!(
                    interface = %self.opts.interface,
                    "capture reopened after {down:.1} s"
                );
                // Without a carrier yet it stays down, but that is not a new
                // interruption; anything worse is found by the next check.
                self.health.up =
                    interface::state(&h.cap, &self.opts.interface, h.ifindex) == InterfaceState::Up;
                self.health.reopens += 1;
                self.next_check = Instant::now() + CHECK_EVERY;
                self.handle = Some(h);
                self.retry_delay = RETRY_FIRST;
                self.probe = None;
                Next::Again
            }
            Err(e) => {
                tracing::debug!(interface = %self.opts.interface, "reopening failed: {e}");
                self.retry_at = now + self.retry_delay;
                self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
                Next::Idle
            }
        }
    }
}

impl FrameSource for LiveSource {
    fn next_frame(&mut self) -> Next<'_> {
        if let Some(why) = self.failed.take() {
            self.close(&format!("reading failed: {why}"), false);
        }
        if self.draining.is_some_and(|d| Instant::now() >= d.until) {
            self.release();
        }
        if self.handle.is_none() {
            if self.stopping {
                return Next::End;
            }
            return self.retry();
        }
        if self.draining.is_some() {
            // Read on without waiting for the socket (it may be in error).
        } else if self.drained {
            self.drained = false;
            let (ready, trouble) = match &self.handle {
                Some(h) => {
                    let mut fds = [rustix::event::PollFd::new(
                        &h.cap,
                        rustix::event::PollFlags::IN,
                    )];
                    let timeout = rustix::event::Timespec::try_from(self.wait).ok();
                    match rustix::event::poll(&mut fds, timeout.as_ref()) {
                        Ok(n) if n > 0 => (
                            true,
                            fds[0].revents().intersects(
                                rustix::event::PollFlags::ERR
                                    | rustix::event::PollFlags::HUP
                                    | rustix::event::PollFlags::NVAL,
                            ),
                        ),
                        // Timed out, or interrupted by a signal.
                        _ => (false, false),
                    }
                }
                None => (false, false),
            };
            // An error on the socket is how the kernel says the interface
            // went down or away; a quiet interface is looked at now and then,
            // and every read timeout while it has no carrier.
            let due = Instant::now() >= self.next_check || !self.health.up;
            if (trouble || (!ready && due)) && !self.check() {
                return Next::Idle;
            }
            if !ready {
                // Let the caller do its idle work and look at its stop flag.
                return Next::Idle;
            }
        }
        let Some(h) = self.handle.as_mut() else {
            return Next::Idle;
        };
        match h.cap.next_packet() {
            Ok(pkt) => {
                // Frames arriving prove the interface works again (unless
                // they are the last of a handle being drained).
                if self.draining.is_none() {
                    self.health.up = true;
                }
                Next::Frame(Frame {
                    ts_ns: header_ts_ns(pkt.header),
                    wire_len: pkt.header.len,
                    data: pkt.data,
                    link: h.link,
                })
            }
            // Nothing buffered: the next call waits for more.
            Err(pcap::Error::TimeoutExpired) => match &mut self.draining {
                Some(d) => d.nothing_read(!self.opts.immediate),
                None => {
                    self.drained = true;
                    Next::Again
                }
            },
            Err(e) => match &mut self.draining {
                // The socket reports the interface's failure again, but the
                // kernel still retires the last block: wait for it.
                Some(d) => {
                    tracing::debug!(interface = %self.opts.interface, "draining: {e}");
                    d.nothing_read(!self.opts.immediate)
                }
                None => {
                    self.failed = Some(e.to_string());
                    Next::Idle
                }
            },
        }
    }

    fn stop(&mut self) -> bool {
        self.stopping = true;
        if self.draining.is_none() && self.handle.is_some() {
            self.start_drain(false);
        }
        true
    }

    fn is_live(&self) -> bool {
        true
    }

    fn stats(&mut self) -> CaptureStats {
        if let Some(s) = self.handle.as_mut().and_then(handle_stats) {
            self.handle_stats = s;
        }
        add(self.closed_stats, self.handle_stats)
    }

    fn health(&self) -> Option<(&str, CaptureHealth)> {
        Some((&self.opts.interface, self.health))
    }
}
