//! Frame → packet summary.
//!
//! Owns the interpretation of link, network and transport headers. A frame is
//! sliced once with etherparse's lax slicer (zero copy, never panics) and turned
//! into an owned [`Packet`]: the few fields flow tracking needs, small enough to
//! cross threads in batches. A frame cut short by snaplen is decoded as far as it
//! goes; a frame that cannot be attributed to any flow yields a [`DecodeProblem`]
//! that the caller counts.

use std::net::{IpAddr, Ipv4Addr};

use etherparse::{
    EtherType, Ethernet2Slice, IpNumber, LaxIpPayloadSlice, LaxIpSlice, SingleVlanSlice, TcpSlice,
    UdpSlice,
};

/// Link-layer header types segwatch decodes (libpcap `LINKTYPE_*` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113), "Linux cooked capture" v1.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276).
    LinuxSll2,
    /// LINKTYPE_RAW (101, also 12/14 on some systems) and LINKTYPE_IPV4/IPV6 (228/229).
    RawIp,
    /// LINKTYPE_NULL (0) and LINKTYPE_LOOP (108): a 4-byte address family.
    Null,
    /// Anything else; frames are counted as `unsupported_link_type`.
    Other(i32),
}

impl LinkType {
    /// Map a libpcap link-type number.
    pub fn from_dlt(dlt: i32) -> LinkType {
        match dlt {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            0 | 108 => LinkType::Null,
            other => LinkType::Other(other),
        }
    }
}

/// Why a frame could not be used. Each reason is a counter in the run summary
/// (and will be a metric label), so the set is closed and small.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeProblem {
    /// The capture's link type is not one segwatch decodes.
    UnsupportedLinkType,
    /// Shorter than its link-layer header.
    TruncatedLink,
    /// A link layer segwatch does not track (LLDP, STP, IPX, loopback, ...).
    UnsupportedEthertype,
    /// IP header cut short by the snaplen or the frame.
    TruncatedIp,
    /// IP header present but invalid (bad version, header length, total length).
    MalformedIp,
    /// Transport header too short to hold the ports.
    TruncatedTransport,
    /// A non-first IP fragment whose first fragment was not seen, so its ports
    /// (and therefore its flow) are unknown.
    FragmentUnattributed,
    /// ARP that is not Ethernet/IPv4 or is cut short.
    MalformedArp,
}

impl DecodeProblem {
    /// Every reason, in display order.
    pub const ALL: [DecodeProblem; 8] = [
        DecodeProblem::UnsupportedLinkType,
        DecodeProblem::TruncatedLink,
        DecodeProblem::UnsupportedEthertype,
        DecodeProblem::TruncatedIp,
        DecodeProblem::MalformedIp,
        DecodeProblem::TruncatedTransport,
        DecodeProblem::FragmentUnattributed,
        DecodeProblem::MalformedArp,
    ];

    /// Stable snake_case name used in summaries, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeProblem::UnsupportedLinkType => "unsupported_link_type",
            DecodeProblem::TruncatedLink => "truncated_link",
            DecodeProblem::UnsupportedEthertype => "unsupported_ethertype",
            DecodeProblem::TruncatedIp => "truncated_ip",
            DecodeProblem::MalformedIp => "malformed_ip",
            DecodeProblem::TruncatedTransport => "truncated_transport",
            DecodeProblem::FragmentUnattributed => "fragment_unattributed",
            DecodeProblem::MalformedArp => "malformed_arp",
        }
    }

    /// Index into a counter array of length `ALL.len()`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// VLAN tags of a frame: outer and (QinQ) inner id; `None` when untagged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vlans {
    pub outer: Option<u16>,
    pub inner: Option<u16>,
}

/// TCP flag bits as on the wire (byte 13 of the TCP header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// Flags as letters in Zeek/tcpdump order, e.g. `SAF`; empty when none.
    pub fn letters(flags: u8) -> String {
        const NAMES: [(u8, char); 8] = [
            (SYN, 'S'),
            (ACK, 'A'),
            (FIN, 'F'),
            (RST, 'R'),
            (PSH, 'P'),
            (URG, 'U'),
            (ECE, 'E'),
            (CWR, 'C'),
        ];
        NAMES
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|(_, c)| *c)
            .collect()
    }
}

/// IP protocol numbers segwatch treats specially.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// IP fragmentation facts of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// IPv4 identification or IPv6 fragment header identification.
    pub id: u32,
    /// Offset in 8-byte units; 0 for the first fragment.
    pub offset: u16,
    pub more: bool,
}

/// The transport tuple quoted inside an ICMP destination unreachable (the
/// packet that was refused). Only unreachables are quoted: they answer a flow
/// ("refused"); other ICMP errors (time exceeded from traceroute, packet too
/// big, redirects) are ICMP flows of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

/// An IP packet's summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// TCP/UDP ports; for ICMP echo the identifier on both sides, for other
    /// ICMP the type (src) and code (dst).
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    /// ICMP type and code, when ICMP or ICMPv6.
    pub icmp: Option<(u8, u8)>,
    /// Transport payload length as the IP/UDP headers state it (not what was captured).
    pub l4_payload_len: u32,
    pub fragment: Option<Fragment>,
    /// For ICMP errors: the flow the error is about.
    pub quoted: Option<Quoted>,
}

/// An ARP packet's summary (Ethernet/IPv4 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpPacket {
    pub operation: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

/// What a frame carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Ip(IpPacket),
    Arp(ArpPacket),
}

/// An owned summary of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Capture timestamp, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// Length of the frame on the wire (not the captured length).
    pub wire_len: u32,
    pub vlans: Vlans,
    pub body: Body,
}

/// A decoded frame: the summary plus a borrowed view of the transport payload
/// that was captured (possibly cut short).
#[derive(Debug)]
pub struct Decoded<'a> {
    pub packet: Packet,
    pub payload: &'a [u8],
}

/// Decode one captured frame.
pub fn decode(
    link: LinkType,
    data: &[u8],
    wire_len: u32,
    ts_ns: i64,
) -> Result<Decoded<'_>, DecodeProblem> {
    let mut vlans = Vlans::default();
    let (mut ether_type, mut rest) = match link {
        LinkType::Ethernet => {
            let eth = Ethernet2Slice::from_slice_without_fcs(data)
                .map_err(|_| DecodeProblem::TruncatedLink)?;
            (eth.ether_type(), eth.payload_slice())
        }
        LinkType::LinuxSll => {
            // 16-byte header; protocol (an EtherType for IP/ARP) in bytes 14..16.
            let proto = data.get(14..16).ok_or(DecodeProblem::TruncatedLink)?;
            (
                EtherType(u16::from_be_bytes([proto[0], proto[1]])),
                &data[16..],
            )
        }
        LinkType::LinuxSll2 => {
            // 20-byte header; protocol in bytes 0..2.
            if data.len() < 20 {
                return Err(DecodeProblem::TruncatedLink);
            }
            (
                EtherType(u16::from_be_bytes([data[0], data[1]])),
                &data[20..],
            )
        }
        LinkType::RawIp => return decode_ip(data, vlans, wire_len, ts_ns),
        LinkType::Null => {
            // Address family in host byte order of the capturing machine; IPv4 is
            // 2 everywhere, IPv6 is 10, 24, 28 or 30 depending on the OS.
            let fam = data.get(0..4).ok_or(DecodeProblem::TruncatedLink)?;
            let family = if fam[0] == 0 && fam[1] == 0 {
                fam[3]
            } else {
                fam[0]
            };
            return match family {
                2 | 10 | 24 | 28 | 30 => decode_ip(&data[4..], vlans, wire_len, ts_ns),
                _ => Err(DecodeProblem::UnsupportedEthertype),
            };
        }
        LinkType::Other(_) => return Err(DecodeProblem::UnsupportedLinkType),
    };
    // 802.1Q, 802.1ad and the pre-standard 0x9100 QinQ tag; outer first.
    let mut tags = 0;
    while matches!(
        ether_type,
        EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME
    ) {
        let tag = SingleVlanSlice::from_slice(rest).map_err(|_| DecodeProblem::TruncatedLink)?;
        let id = tag.vlan_identifier().value();
        match tags {
            0 => vlans.outer = Some(id),
            1 => vlans.inner = Some(id),
            _ => {}
        }
        tags += 1;
        if tags > 4 {
            return Err(DecodeProblem::UnsupportedEthertype);
        }
        ether_type = tag.ether_type();
        rest = tag.payload_slice();
    }
    match ether_type {
        EtherType::IPV4 | EtherType::IPV6 => {
            let version = rest.first().map(|b| b >> 4);
            let expected = if ether_type == EtherType::IPV4 { 4 } else { 6 };
            match version {
                None => Err(DecodeProblem::TruncatedIp),
                Some(v) if v != expected => Err(DecodeProblem::MalformedIp),
                Some(_) => decode_ip(rest, vlans, wire_len, ts_ns),
            }
        }
        EtherType::ARP => {
            let arp = etherparse::ArpPacketSlice::from_slice(rest)
                .ok()
                .and_then(|a| arp_summary(&a))
                .ok_or(DecodeProblem::MalformedArp)?;
            Ok(Decoded {
                packet: Packet {
                    ts_ns,
                    wire_len,
                    vlans,
                    body: Body::Arp(arp),
                },
                payload: &[],
            })
        }
        _ => Err(DecodeProblem::UnsupportedEthertype),
    }
}

fn decode_ip(
    data: &[u8],
    vlans: Vlans,
    wire_len: u32,
    ts_ns: i64,
) -> Result<Decoded<'_>, DecodeProblem> {
    use etherparse::err::ip::LaxHeaderSliceError;
    let (ip, _ext_problem) = LaxIpSlice::from_slice(data).map_err(|e| match e {
        LaxHeaderSliceError::Len(_) => DecodeProblem::TruncatedIp,
        LaxHeaderSliceError::Content(_) => DecodeProblem::MalformedIp,
    })?;
    let facts = match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            IpHeaderFacts {
                src: IpAddr::V4(h.source_addr()),
                dst: IpAddr::V4(h.destination_addr()),
                fragment: v4.is_payload_fragmented().then(|| Fragment {
                    id: u32::from(h.identification()),
                    offset: h.fragments_offset().value(),
                    more: h.more_fragments(),
                }),
                wire_payload: usize::from(h.total_len()).saturating_sub(h.slice().len()),
            }
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            let exts = v6.extensions();
            let fragment = exts
                .first_header()
                .and_then(|first| ipv6_fragment(first.0, exts.slice()));
            IpHeaderFacts {
                src: IpAddr::V6(h.source_addr()),
                dst: IpAddr::V6(h.destination_addr()),
                fragment: fragment.filter(|f| f.offset != 0 || f.more),
                wire_payload: usize::from(h.payload_length())
                    .saturating_sub(v6.extensions().slice().len()),
            }
        }
    };
    let (summary, payload) = transport(facts, ip.payload())?;
    Ok(Decoded {
        packet: Packet {
            ts_ns,
            wire_len,
            vlans,
            body: Body::Ip(summary),
        },
        payload,
    })
}

/// The last fragment header among the IPv6 extension headers etherparse
/// checked (`exts`, the first of type `first`). Walked here rather than with
/// etherparse's iterator: when a lax parse stopped at a bad header after good
/// ones, that iterator reads past the checked bytes (out of bounds).
fn ipv6_fragment(first: u8, exts: &[u8]) -> Option<Fragment> {
    let mut next = first;
    let mut rest = exts;
    let mut found = None;
    while let Some(&after) = rest.first() {
        let len = match next {
            // Hop-by-hop, routing, destination options: 8-octet units after the first 8.
            0 | 43 | 60 => rest.get(1).map(|&n| (usize::from(n) + 1) * 8),
            44 => rest.get(..8).map(|f| {
                found = Some(Fragment {
                    id: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
                    offset: u16::from_be_bytes([f[2], f[3]]) >> 3,
                    more: f[3] & 1 == 1,
                });
                8
            }),
            // Authentication: 4-octet units after the first 8.
            51 => rest.get(1).map(|&n| (usize::from(n) + 2) * 4),
            _ => None,
        };
        match len.and_then(|n| rest.get(n..)) {
            Some(r) => rest = r,
            None => break,
        }
        next = after;
    }
    found
}

fn arp_summary(arp: &etherparse::ArpPacketSlice<'_>) -> Option<ArpPacket> {
    let mac = |s: &[u8]| <[u8; 6]>::try_from(s).ok();
    let ip = |s: &[u8]| <[u8; 4]>::try_from(s).ok().map(Ipv4Addr::from);
    Some(ArpPacket {
        operation: arp.operation().0,
        sender_mac: mac(arp.sender_hw_addr())?,
        sender_ip: ip(arp.sender_protocol_addr())?,
        target_mac: mac(arp.target_hw_addr())?,
        target_ip: ip(arp.target_protocol_addr())?,
    })
}

struct IpHeaderFacts {
    src: IpAddr,
    dst: IpAddr,
    fragment: Option<Fragment>,
    /// IP payload length per the IP header(s), i.e. on the wire.
    wire_payload: usize,
}

/// Ports, flags and lengths from the transport header. The header is sliced
/// with etherparse; when it is cut short (snaplen) or invalid, the ports are
/// still read from the captured prefix (they are its first four bytes).
fn transport<'a>(
    ip: IpHeaderFacts,
    payload: &LaxIpPayloadSlice<'a>,
) -> Result<(IpPacket, &'a [u8]), DecodeProblem> {
    let proto = payload.ip_number.0;
    let raw = payload.payload;
    let mut s = IpPacket {
        src: ip.src,
        dst: ip.dst,
        proto,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        icmp: None,
        l4_payload_len: ip.wire_payload as u32,
        fragment: ip.fragment,
        quoted: None,
    };
    if ip.fragment.is_some_and(|f| f.offset != 0) {
        // Ports live in the first fragment; the dispatcher and worker attribute this one.
        return Ok((s, raw));
    }
    let ports = |raw: &[u8]| -> Result<(u16, u16), DecodeProblem> {
        let p = raw.get(0..4).ok_or(DecodeProblem::TruncatedTransport)?;
        Ok((
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ))
    };
    let body = match proto {
        proto::TCP => match TcpSlice::from_slice(raw) {
            Ok(tcp) => {
                (s.src_port, s.dst_port) = (tcp.source_port(), tcp.destination_port());
                s.tcp_flags = raw[13];
                s.l4_payload_len = ip.wire_payload.saturating_sub(tcp.header_slice().len()) as u32;
                tcp.payload()
            }
            Err(_) => {
                (s.src_port, s.dst_port) = ports(raw)?;
                s.tcp_flags = raw.get(13).copied().unwrap_or(0);
                let header = raw.get(12).map_or(20, |b| usize::from(b >> 4) * 4);
                s.l4_payload_len = ip.wire_payload.saturating_sub(header) as u32;
                raw.get(header..).unwrap_or(&[])
            }
        },
        proto::UDP => {
            (s.src_port, s.dst_port) = ports(raw)?;
            s.l4_payload_len = match UdpSlice::from_slice_lax(raw) {
                Ok(udp) => u32::from(udp.length()).saturating_sub(8),
                Err(_) => ip.wire_payload.saturating_sub(8) as u32,
            };
            raw.get(8..).unwrap_or(&[])
        }
        proto::ICMP | proto::ICMPV6 => {
            let tc = raw.get(0..2).ok_or(DecodeProblem::TruncatedTransport)?;
            let (t, c) = (tc[0], tc[1]);
            let rest: [u8; 4] = raw
                .get(4..8)
                .and_then(|r| r.try_into().ok())
                .unwrap_or([0; 4]);
            let v4 = proto == proto::ICMP;
            let queries: &[u8] = if v4 {
                &[8, 0, 13, 14, 15, 16]
            } else {
                &[128, 129]
            };
            icmp_ports(&mut s, t, c, rest, queries);
            s.l4_payload_len = ip.wire_payload.saturating_sub(8) as u32;
            let body = raw.get(8..).unwrap_or(&[]);
            // ICMPv4 3 except code 4 ("fragmentation needed", path MTU
            // discovery, not a refusal); ICMPv6 1.
            let unreachable = if v4 { t == 3 && c != 4 } else { t == 1 };
            if unreachable {
                s.quoted = quote(body);
            }
            body
        }
        _ => raw,
    };
    Ok((s, body))
}

/// ICMP key ports: query/reply types pair up through their identifier; every
/// other message is keyed by type (src) and code (dst).
fn icmp_ports(s: &mut IpPacket, t: u8, c: u8, rest: [u8; 4], query_types: &[u8]) {
    s.icmp = Some((t, c));
    if query_types.contains(&t) {
        let id = u16::from_be_bytes([rest[0], rest[1]]);
        s.src_port = id;
        s.dst_port = id;
    } else {
        s.src_port = u16::from(t);
        s.dst_port = u16::from(c);
    }
}

/// Parse the IP header and first transport bytes quoted in an ICMP error.
fn quote(data: &[u8]) -> Option<Quoted> {
    let (ip, _) = etherparse::LaxIpSlice::from_slice(data).ok()?;
    let payload = ip.payload();
    let proto = payload.ip_number;
    let raw = payload.payload;
    let (src_port, dst_port) = match proto {
        IpNumber::TCP | IpNumber::UDP => {
            let p = raw.get(0..4)?;
            (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            )
        }
        IpNumber::ICMP | IpNumber::IPV6_ICMP => {
            let p = raw.get(0..8)?;
            let query = if proto == IpNumber::ICMP {
                matches!(p[0], 8 | 0 | 13 | 14 | 15 | 16)
            } else {
                matches!(p[0], 128 | 129)
            };
            if query {
                let id = u16::from_be_bytes([p[4], p[5]]);
                (id, id)
            } else {
                (u16::from(p[0]), u16::from(p[1]))
            }
        }
        _ => (0, 0),
    };
    Some(Quoted {
        src: ip.source_addr(),
        dst: ip.destination_addr(),
        proto: proto.0,
        src_port,
        dst_port,
    })
}

/// Short protocol name used in flow records and summaries.
pub fn proto_name(proto: u8) -> std::borrow::Cow<'static, str> {
    use std::borrow::Cow;
    Cow::Borrowed(match proto {
        proto::ICMP => "icmp",
        2 => "igmp",
        proto::TCP => "tcp",
        proto::UDP => "udp",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        proto::ICMPV6 => "icmpv6",
        89 => "ospf",
        103 => "pim",
        112 => "vrrp",
        132 => "sctp",
        other => return Cow::Owned(format!("ip-proto-{other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn eth_tcp(flags_syn: bool, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 443, 1, 1000);
        let b = if flags_syn { b.syn() } else { b.ack(5) };
        let mut out = Vec::new();
        b.write(&mut out, payload).expect("write");
        out
    }

    #[test]
    fn tcp_syn_over_ethernet() {
        let f = eth_tcp(true, &[]);
        let d = decode(LinkType::Ethernet, &f, f.len() as u32, 7).expect("decodes");
        let Body::Ip(ip) = d.packet.body else {
            panic!("not ip")
        };
        assert_eq!(ip.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!((ip.src_port, ip.dst_port), (40000, 443));
        assert_eq!(ip.tcp_flags, tcp_flags::SYN);
        assert_eq!(ip.proto, proto::TCP);
    }

    #[test]
    fn snaplen_cut_keeps_ports_and_wire_payload_length() {
        let f = eth_tcp(false, &[0u8; 1000]);
        let cut = &f[..14 + 20 + 14];
        let d = decode(LinkType::Ethernet, cut, f.len() as u32, 0).expect("decodes");
        let Body::Ip(ip) = d.packet.body else {
            panic!("not ip")
        };
        assert_eq!((ip.src_port, ip.dst_port), (40000, 443));
        assert_eq!(ip.tcp_flags, tcp_flags::ACK);
        assert_eq!(ip.l4_payload_len, 1000);
        assert_eq!(d.packet.wire_len as usize, f.len());
    }

    #[test]
    fn too_short_for_ports_is_counted() {
        let f = eth_tcp(true, &[]);
        let cut = &f[..14 + 20 + 2];
        assert_eq!(
            decode(LinkType::Ethernet, cut, f.len() as u32, 0).map(|d| d.packet),
            Err(DecodeProblem::TruncatedTransport)
        );
    }

    #[test]
    fn garbage_and_short_frames_are_problems_not_panics() {
        assert_eq!(
            decode(LinkType::Ethernet, &[1, 2, 3], 3, 0).map(|d| d.packet),
            Err(DecodeProblem::TruncatedLink)
        );
        let mut lldp = vec![0u8; 60];
        lldp[12] = 0x88;
        lldp[13] = 0xcc;
        assert_eq!(
            decode(LinkType::Ethernet, &lldp, 60, 0).map(|d| d.packet),
            Err(DecodeProblem::UnsupportedEthertype)
        );
        let mut bad_ip = vec![0u8; 60];
        bad_ip[12] = 0x08;
        bad_ip[14] = 0x41; // version 4, IHL 1
        assert_eq!(
            decode(LinkType::Ethernet, &bad_ip, 60, 0).map(|d| d.packet),
            Err(DecodeProblem::MalformedIp)
        );
        assert_eq!(
            decode(LinkType::Other(147), &bad_ip, 60, 0).map(|d| d.packet),
            Err(DecodeProblem::UnsupportedLinkType)
        );
    }

    /// An IPv6 packet (2001:db8::1 → ::2) whose first header after the
    /// fixed one is `next`, followed by `rest`.
    fn ipv6_with(next: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        for last in [1, 2] {
            p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            p.extend_from_slice(&[0; 11]);
            p.push(last);
        }
        p.extend_from_slice(rest);
        p
    }

    #[test]
    fn ipv6_fragment_header_after_other_extensions() {
        // Destination options (8 bytes), then a fragment header (offset 10,
        // more fragments, id 77) before UDP data.
        let rest = [
            44,
            0,
            1,
            4,
            0,
            0,
            0,
            0,
            17,
            0,
            0,
            (10 << 3) | 1,
            0,
            0,
            0,
            77,
            1,
            2,
        ];
        let p = ipv6_with(60, &rest);
        let d = decode(LinkType::RawIp, &p, p.len() as u32, 0).expect("decodes");
        let Body::Ip(ip) = d.packet.body else {
            panic!("not IP: {:?}", d.packet.body);
        };
        assert_eq!(
            ip.fragment,
            Some(Fragment {
                id: 77,
                offset: 10,
                more: true
            })
        );
        assert_eq!(ip.proto, 17);
    }

    #[test]
    fn ipv6_extension_chain_ending_in_a_bad_header_is_read_in_bounds() {
        // Found by fuzzing: a fragment header followed by a hop-by-hop header
        // (allowed only first) or by a cut-short routing header made
        // etherparse's extension iterator read past the checked headers.
        for after in [0u8, 43] {
            let rest = [after, 0, 0, 1, 0, 0, 0, 9, 17];
            let p = ipv6_with(44, &rest);
            let d = decode(LinkType::RawIp, &p, p.len() as u32, 0).map(|d| d.packet.body);
            let Ok(Body::Ip(ip)) = d else {
                panic!("{after}: {d:?}");
            };
            // The fragment header before the bad one still counts.
            assert_eq!(ip.fragment.map(|f| f.id), Some(9), "{after}");
        }
    }

    #[test]
    fn linux_sll_and_sll2_and_raw() {
        let eth = eth_tcp(true, &[]);
        let ip = &eth[14..];
        let mut sll = vec![0u8; 16];
        sll[14] = 0x08;
        sll.extend_from_slice(ip);
        let mut sll2 = vec![0u8; 20];
        sll2[0] = 0x08;
        sll2.extend_from_slice(ip);
        for (link, frame) in [
            (LinkType::LinuxSll, &sll[..]),
            (LinkType::LinuxSll2, &sll2[..]),
            (LinkType::RawIp, ip),
        ] {
            let d = decode(link, frame, frame.len() as u32, 0).expect("decodes");
            assert!(
                matches!(d.packet.body, Body::Ip(ip) if ip.dst_port == 443),
                "{link:?}"
            );
        }
    }

    #[test]
    fn icmp_unreachable_quotes_the_udp_flow() {
        let probe = {
            let mut v = Vec::new();
            PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(5555, 161)
                .write(&mut v, &[])
                .expect("write");
            v
        };
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut frame, &probe)
            .expect("write");
        let d = decode(LinkType::Ethernet, &frame, frame.len() as u32, 0).expect("decodes");
        let Body::Ip(ip) = d.packet.body else {
            panic!("not ip")
        };
        let q = ip.quoted.expect("quote");
        assert_eq!(q.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!((q.proto, q.src_port, q.dst_port), (proto::UDP, 5555, 161));
    }

    #[test]
    fn tcp_flag_letters() {
        assert_eq!(tcp_flags::letters(tcp_flags::SYN | tcp_flags::ACK), "SA");
        assert_eq!(tcp_flags::letters(0), "");
    }
}
