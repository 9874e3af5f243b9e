//! Per-flow state and the rules that turn packets into a connection outcome.
//!
//! Counters are kept per key side (`lo`/`hi`); the initiator decides which side
//! is "forward" only when the record is produced. The initiator is the sender of
//! the first packet, except that a SYN without ACK always wins (and a first
//! packet that is a SYN+ACK names its receiver as initiator).

use serde::Serialize;

use super::key::{FlowKey, Side};
use crate::decode::{proto, tcp_flags};

/// How a connection turned out, judged from both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The initiator sent, nothing came back.
    Attempted,
    /// The responder (or a router on the way) refused: TCP RST before the
    /// connection was accepted, or ICMP destination unreachable.
    Rejected,
    /// The responder accepted and the connection was still open when the
    /// record was made: TCP SYN answered by SYN-ACK, handshake completed, or
    /// (any protocol) traffic both ways.
    Established,
    /// Accepted, then torn down: TCP FIN from both sides, or a RST after the
    /// SYN-ACK (including the initiator's RST that ends a half-open scan).
    Closed,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Attempted,
        Outcome::Rejected,
        Outcome::Established,
        Outcome::Closed,
    ];
    /// Position in [`Outcome::ALL`], for per-outcome counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The connection worked (the responder answered and accepted).
    pub fn connected(self) -> bool {
        matches!(self, Outcome::Established | Outcome::Closed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Attempted => "attempted",
            Outcome::Rejected => "rejected",
            Outcome::Established => "established",
            Outcome::Closed => "closed",
        }
    }
}

/// Timeout classes: each has one timeout, so each class's idle list is ordered
/// by last activity and its head is the next to expire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutClass {
    TcpHalfOpen = 0,
    TcpEstablished = 1,
    TcpClosed = 2,
    Udp = 3,
    Icmp = 4,
    Other = 5,
}

impl TimeoutClass {
    pub const COUNT: usize = 6;
}

// State bits.
const INIT_BY_SYN: u16 = 1 << 0;
const SYNACK: u16 = 1 << 1;
const HANDSHAKE: u16 = 1 << 2;
const DATA_LO: u16 = 1 << 3;
const DATA_HI: u16 = 1 << 4;
const REJECTED: u16 = 1 << 5;
const FIN_LO: u16 = 1 << 6;
const FIN_HI: u16 = 1 << 7;
const RST_AFTER_ACCEPT: u16 = 1 << 8;
const HAS_ICMP: u16 = 1 << 9;
const ODD_FLAGS: u16 = 1 << 10;

/// A TCP flag combination no conforming stack sends; scanners (NULL, FIN,
/// Xmas) and evasion tools do. Every segment but the first SYN carries ACK,
/// except a RST; SYN never goes with FIN or RST.
pub fn impossible_tcp_flags(f: u8) -> bool {
    use tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};
    let f = f & (FIN | SYN | RST | PSH | ACK | URG);
    f == 0
        || f & (SYN | FIN) == SYN | FIN
        || f & (SYN | RST) == SYN | RST
        || (f & ACK == 0 && f & (FIN | PSH | URG) != 0)
}

/// What the flow table needs to know about one packet of a flow.
#[derive(Clone, Copy, Debug)]
pub struct PacketFacts {
    pub ts_ns: i64,
    pub wire_len: u32,
    pub tcp_flags: u8,
    pub l4_payload_len: u32,
    pub icmp: Option<(u8, u8)>,
    /// This packet is an ICMP error about the flow, not part of it.
    pub icmp_error: Option<IcmpError>,
}

/// An ICMP destination unreachable attributed to the flow it quotes.
#[derive(Clone, Copy, Debug)]
pub struct IcmpError;

/// State of one flow.
#[derive(Clone, Debug)]
pub struct Flow {
    pub key: FlowKey,
    pub first_ns: i64,
    pub last_ns: i64,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// TCP flags seen from each side (OR of all packets).
    pub flags: [u8; 2],
    pub initiator: Side,
    bits: u16,
    /// ICMP type and code of the first ICMP message from the first sender.
    icmp: [u8; 2],
    /// The first impossible TCP flag combination seen (valid with `ODD_FLAGS`).
    odd_flags: u8,
}

impl Flow {
    /// A new flow from its first packet sent by `side`.
    pub fn new(key: FlowKey, side: Side, p: &PacketFacts) -> Flow {
        let mut initiator = side;
        if p.icmp_error.is_some() {
            // Created from an ICMP error: the quoted sender is the initiator and
            // this error came from the other side.
            initiator = side.other();
        } else if key.proto == proto::TCP
            && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK
        {
            initiator = side.other();
        }
        let mut f = Flow {
            key,
            first_ns: p.ts_ns,
            last_ns: p.ts_ns,
            packets: [0; 2],
            bytes: [0; 2],
            flags: [0; 2],
            initiator,
            bits: 0,
            icmp: [0; 2],
            odd_flags: 0,
        };
        if let Some((t, c)) = p.icmp {
            f.icmp = [t, c];
            f.bits |= HAS_ICMP;
        }
        f.update(side, p);
        f
    }

    /// Account one packet sent by `side`.
    pub fn update(&mut self, side: Side, p: &PacketFacts) {
        let s = side.index();
        self.packets[s] += 1;
        self.bytes[s] += u64::from(p.wire_len);
        self.first_ns = self.first_ns.min(p.ts_ns);
        self.last_ns = self.last_ns.max(p.ts_ns);
        if p.icmp_error.is_some() {
            if !self.accepted() {
                self.bits |= REJECTED;
            }
            return;
        }
        if p.l4_payload_len > 0 {
            self.bits |= if side == Side::Lo { DATA_LO } else { DATA_HI };
        }
        if self.key.proto != proto::TCP {
            return;
        }
        let f = p.tcp_flags;
        self.flags[s] |= f;
        if self.bits & ODD_FLAGS == 0 && impossible_tcp_flags(f) {
            self.bits |= ODD_FLAGS;
            self.odd_flags = f;
        }
        let syn = f & tcp_flags::SYN != 0;
        let ack = f & tcp_flags::ACK != 0;
        if syn && !ack && self.bits & INIT_BY_SYN == 0 {
            self.initiator = side;
            self.bits |= INIT_BY_SYN;
        }
        let from_responder = side != self.initiator;
        if syn && ack && from_responder {
            self.bits |= SYNACK;
        }
        if ack && !syn && !from_responder && self.bits & SYNACK != 0 {
            self.bits |= HANDSHAKE;
        }
        if f & tcp_flags::FIN != 0 {
            self.bits |= if side == Side::Lo { FIN_LO } else { FIN_HI };
        }
        if f & tcp_flags::RST != 0 {
            if self.accepted() {
                self.bits |= RST_AFTER_ACCEPT;
            } else if from_responder {
                self.bits |= REJECTED;
            }
        }
    }

    /// The responder accepted the connection (see [`Outcome::Established`]).
    fn accepted(&self) -> bool {
        self.bits & (SYNACK | HANDSHAKE) != 0
            || self.bits & (DATA_LO | DATA_HI) == DATA_LO | DATA_HI
    }

    fn both_ways(&self) -> bool {
        self.packets[0] > 0 && self.packets[1] > 0
    }

    pub fn outcome(&self) -> Outcome {
        let torn_down =
            self.bits & (FIN_LO | FIN_HI) == FIN_LO | FIN_HI || self.bits & RST_AFTER_ACCEPT != 0;
        if self.key.proto == proto::TCP && self.accepted() {
            return if torn_down {
                Outcome::Closed
            } else {
                Outcome::Established
            };
        }
        if self.bits & REJECTED != 0 {
            Outcome::Rejected
        } else if self.both_ways() {
            Outcome::Established
        } else {
            Outcome::Attempted
        }
    }

    /// The TCP three-way handshake was seen to complete.
    pub fn handshake_completed(&self) -> bool {
        self.bits & HANDSHAKE != 0
    }

    /// The first impossible TCP flag combination the flow carried.
    pub fn odd_tcp_flags(&self) -> Option<u8> {
        (self.bits & ODD_FLAGS != 0).then_some(self.odd_flags)
    }

    /// ICMP type and code of the first message, for ICMP flows.
    pub fn icmp_type_code(&self) -> Option<(u8, u8)> {
        (self.bits & HAS_ICMP != 0).then_some((self.icmp[0], self.icmp[1]))
    }

    pub fn timeout_class(&self) -> TimeoutClass {
        match self.key.proto {
            proto::TCP => match self.outcome() {
                Outcome::Closed | Outcome::Rejected => TimeoutClass::TcpClosed,
                Outcome::Established => TimeoutClass::TcpEstablished,
                Outcome::Attempted => TimeoutClass::TcpHalfOpen,
            },
            proto::UDP => TimeoutClass::Udp,
            proto::ICMP | proto::ICMPV6 => TimeoutClass::Icmp,
            _ => TimeoutClass::Other,
        }
    }

    /// A pure SYN on a flow that was torn down starts a new connection on the
    /// same ports (port reuse).
    pub fn reused_by(&self, p: &PacketFacts) -> bool {
        self.key.proto == proto::TCP
            && p.icmp_error.is_none()
            && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
            && matches!(self.outcome(), Outcome::Closed | Outcome::Rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Vlans;
    use crate::flow::key::Endpoint;
    use tcp_flags::*;

    #[test]
    fn impossible_flag_combinations() {
        for odd in [
            0,
            FIN,
            FIN | PSH | URG,
            SYN | FIN,
            SYN | RST,
            PSH,
            SYN | FIN | PSH | URG,
        ] {
            assert!(impossible_tcp_flags(odd), "{odd:#x}");
        }
        for fine in [
            SYN,
            SYN | ACK,
            ACK,
            FIN | ACK,
            RST,
            RST | ACK,
            PSH | ACK,
            SYN | ECE | CWR,
        ] {
            assert!(!impossible_tcp_flags(fine), "{fine:#x}");
        }
    }

    fn key() -> (FlowKey, Side) {
        FlowKey::new(
            Vlans::default(),
            proto::TCP,
            Endpoint {
                ip: [10, 0, 0, 9].into(),
                port: 50000,
            },
            Endpoint {
                ip: [10, 0, 0, 1].into(),
                port: 22,
            },
        )
    }

    fn tcp(ts: i64, flags: u8, len: u32) -> PacketFacts {
        PacketFacts {
            ts_ns: ts,
            wire_len: 60 + len,
            tcp_flags: flags,
            l4_payload_len: len,
            icmp: None,
            icmp_error: None,
        }
    }

    fn run(seq: &[(bool, u8, u32)]) -> Flow {
        let (k, client) = key();
        let side = |from_client: bool| if from_client { client } else { client.other() };
        let mut f = Flow::new(k, side(seq[0].0), &tcp(0, seq[0].1, seq[0].2));
        for (i, (c, fl, len)) in seq.iter().enumerate().skip(1) {
            f.update(side(*c), &tcp(i as i64, *fl, *len));
        }
        f
    }

    #[test]
    fn outcomes() {
        assert_eq!(run(&[(true, SYN, 0)]).outcome(), Outcome::Attempted);
        assert_eq!(
            run(&[(true, SYN, 0), (true, SYN, 0)]).outcome(),
            Outcome::Attempted
        );
        assert_eq!(
            run(&[(true, SYN, 0), (false, RST | ACK, 0)]).outcome(),
            Outcome::Rejected
        );
        let est = run(&[(true, SYN, 0), (false, SYN | ACK, 0), (true, ACK, 0)]);
        assert_eq!(est.outcome(), Outcome::Established);
        assert!(est.handshake_completed());
        let half_open = run(&[(true, SYN, 0), (false, SYN | ACK, 0), (true, RST, 0)]);
        assert_eq!(half_open.outcome(), Outcome::Closed);
        assert!(!half_open.handshake_completed());
        let closed = run(&[
            (true, SYN, 0),
            (false, SYN | ACK, 0),
            (true, ACK, 0),
            (true, ACK | PSH, 100),
            (false, ACK | FIN, 0),
            (true, ACK | FIN, 0),
        ]);
        assert_eq!(closed.outcome(), Outcome::Closed);
        assert_eq!(closed.timeout_class(), TimeoutClass::TcpClosed);
    }

    #[test]
    fn syn_without_ack_names_the_initiator() {
        let (_, client) = key();
        // Capture starts with the server's SYN-ACK.
        let f = run(&[(false, SYN | ACK, 0), (true, ACK, 0)]);
        assert_eq!(f.initiator, client);
        // Mid-stream data from the server first, then a client SYN (new attempt).
        let f = run(&[(false, ACK, 10), (true, SYN, 0)]);
        assert_eq!(f.initiator, client);
    }

    #[test]
    fn midstream_data_both_ways_is_established() {
        let f = run(&[(true, ACK | PSH, 10), (false, ACK | PSH, 10)]);
        assert_eq!(f.outcome(), Outcome::Established);
    }

    #[test]
    fn icmp_unreachable_rejects() {
        let (k, client) = key();
        let mut f = Flow::new(k, client, &tcp(0, SYN, 0));
        let mut err = tcp(1, 0, 0);
        err.icmp_error = Some(IcmpError);
        f.update(client.other(), &err);
        assert_eq!(f.outcome(), Outcome::Rejected);
        assert_eq!(f.packets, [1, 1]);
    }
}
