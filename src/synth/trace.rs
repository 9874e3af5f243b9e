//! A trace: timed frames, built from conversation helpers (a TCP session, a
//! refused connection, a UDP exchange, ...) and written as a capture file.

use std::io::{self, BufWriter};
use std::net::IpAddr;
use std::path::Path;

use super::frame::{L4, Spec};
use super::pcap_file::{CaptureWriter, FileOptions};
use crate::decode::tcp_flags::{ACK, FIN, PSH, RST, SYN};

/// Milliseconds in nanoseconds.
pub const MS: i64 = 1_000_000;

/// Timed frames.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub frames: Vec<(i64, Vec<u8>)>,
}

/// Endpoints of a conversation, client first.
#[derive(Clone, Copy, Debug)]
pub struct Conv {
    pub client: IpAddr,
    pub cport: u16,
    pub server: IpAddr,
    pub sport: u16,
    /// VLAN tags the conversation's frames carry.
    pub vlan: Option<u16>,
}

impl Conv {
    pub fn new(client: IpAddr, cport: u16, server: IpAddr, sport: u16) -> Conv {
        Conv {
            client,
            cport,
            server,
            sport,
            vlan: None,
        }
    }

    pub fn vlan(mut self, v: u16) -> Conv {
        self.vlan = Some(v);
        self
    }

    fn spec(&self, from_client: bool, l4: L4, payload: usize) -> Spec {
        let (s, d) = if from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        let mut spec = Spec::new(s, d, l4).payload(&vec![0x5a; payload]);
        if let Some(v) = self.vlan {
            spec = spec.vlans(&[v]);
        }
        spec
    }

    fn tcp(&self, from_client: bool, flags: u8, payload: usize) -> Vec<u8> {
        let (sport, dport) = if from_client {
            (self.cport, self.sport)
        } else {
            (self.sport, self.cport)
        };
        self.spec(
            from_client,
            L4::Tcp {
                sport,
                dport,
                flags,
                seq: 1000,
                ack: if flags & ACK != 0 { 2000 } else { 0 },
            },
            payload,
        )
        .frame()
    }

    fn udp(&self, from_client: bool, payload: usize) -> Vec<u8> {
        let (sport, dport) = if from_client {
            (self.cport, self.sport)
        } else {
            (self.sport, self.cport)
        };
        self.spec(from_client, L4::Udp { sport, dport }, payload)
            .frame()
    }
}

impl Trace {
    pub fn new() -> Trace {
        Trace::default()
    }

    pub fn push(&mut self, ts_ns: i64, frame: Vec<u8>) {
        self.frames.push((ts_ns, frame));
    }

    /// A complete TCP session: handshake, `req` bytes up, `resp` bytes down
    /// (in segments of at most 1400), FIN both ways. Returns the end time.
    pub fn tcp_session(&mut self, t: i64, c: &Conv, req: usize, resp: usize) -> i64 {
        let mut t = t;
        let step = MS;
        self.push(t, c.tcp(true, SYN, 0));
        t += step;
        self.push(t, c.tcp(false, SYN | ACK, 0));
        t += step;
        self.push(t, c.tcp(true, ACK, 0));
        for (from_client, total) in [(true, req), (false, resp)] {
            let mut left = total;
            while left > 0 {
                let n = left.min(1400);
                t += step;
                self.push(t, c.tcp(from_client, ACK | PSH, n));
                left -= n;
            }
        }
        t += step;
        self.push(t, c.tcp(true, FIN | ACK, 0));
        t += step;
        self.push(t, c.tcp(false, FIN | ACK, 0));
        t += step;
        self.push(t, c.tcp(true, ACK, 0));
        t
    }

    /// A handshake that completes and then stays open (no FIN).
    pub fn tcp_open(&mut self, t: i64, c: &Conv, req: usize, resp: usize) -> i64 {
        self.push(t, c.tcp(true, SYN, 0));
        self.push(t + MS, c.tcp(false, SYN | ACK, 0));
        self.push(t + 2 * MS, c.tcp(true, ACK, 0));
        self.push(t + 3 * MS, c.tcp(true, ACK | PSH, req));
        self.push(t + 4 * MS, c.tcp(false, ACK | PSH, resp));
        t + 4 * MS
    }

    /// SYN answered by RST (closed port).
    pub fn tcp_refused(&mut self, t: i64, c: &Conv) -> i64 {
        self.push(t, c.tcp(true, SYN, 0));
        self.push(t + MS, c.tcp(false, RST | ACK, 0));
        t + MS
    }

    /// SYN sent `tries` times (1 s apart), never answered (dropped by a firewall).
    pub fn tcp_unanswered(&mut self, t: i64, c: &Conv, tries: u32) -> i64 {
        for i in 0..tries {
            self.push(t + i64::from(i) * 1000 * MS, c.tcp(true, SYN, 0));
        }
        t + i64::from(tries.saturating_sub(1)) * 1000 * MS
    }

    /// A raw TCP segment with arbitrary flags (scans, oddities).
    pub fn tcp_segment(&mut self, t: i64, c: &Conv, from_client: bool, flags: u8, payload: usize) {
        self.push(t, c.tcp(from_client, flags, payload));
    }

    /// UDP request and reply.
    pub fn udp_exchange(&mut self, t: i64, c: &Conv, req: usize, resp: usize) -> i64 {
        self.push(t, c.udp(true, req));
        self.push(t + MS, c.udp(false, resp));
        t + MS
    }

    /// UDP datagram from the client only.
    pub fn udp_oneway(&mut self, t: i64, c: &Conv, len: usize) {
        self.push(t, c.udp(true, len));
    }

    /// UDP request answered by ICMP port unreachable from the server.
    pub fn udp_unreachable(&mut self, t: i64, c: &Conv) -> i64 {
        let probe = c.spec(
            true,
            L4::Udp {
                sport: c.cport,
                dport: c.sport,
            },
            0,
        );
        self.push(t, probe.frame());
        let quote = probe.ip_datagram();
        let mut err = Spec::new(
            c.server,
            c.client,
            L4::Icmp {
                kind: if c.client.is_ipv4() { 3 } else { 1 },
                code: if c.client.is_ipv4() { 3 } else { 4 },
                rest: [0; 4],
            },
        )
        .payload(&quote[..quote.len().min(48)]);
        if let Some(v) = c.vlan {
            err = err.vlans(&[v]);
        }
        self.push(t + MS, err.frame());
        t + MS
    }

    /// ICMP echo request and reply with the given identifier.
    pub fn ping(&mut self, t: i64, from: IpAddr, to: IpAddr, id: u16, seq: u16) -> i64 {
        let (req, rep) = if from.is_ipv4() { (8, 0) } else { (128, 129) };
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&id.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        self.push(
            t,
            Spec::new(
                from,
                to,
                L4::Icmp {
                    kind: req,
                    code: 0,
                    rest,
                },
            )
            .payload(&[0x61; 56])
            .frame(),
        );
        self.push(
            t + MS,
            Spec::new(
                to,
                from,
                L4::Icmp {
                    kind: rep,
                    code: 0,
                    rest,
                },
            )
            .payload(&[0x61; 56])
            .frame(),
        );
        t + MS
    }

    /// Sort by time (stable, so equal timestamps keep their order).
    pub fn sort(&mut self) {
        self.frames.sort_by_key(|(t, _)| *t);
    }

    /// Write the trace (sorted) to `path`.
    pub fn write(&mut self, path: &Path, opts: FileOptions) -> io::Result<()> {
        self.sort();
        let file = std::fs::File::create(path)?;
        let mut w = CaptureWriter::new(BufWriter::new(file), opts)?;
        for (t, f) in &self.frames {
            w.write(*t, f)?;
        }
        std::io::Write::flush(&mut w.into_inner())
    }
}
