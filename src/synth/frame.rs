//! Build frames byte by byte with correct lengths and checksums, including
//! frames no stack would send (impossible TCP flags, fragments, garbage), for
//! tests, benchmarks and the bundled sample.

use std::net::IpAddr;

use etherparse::checksum::Sum16BitWords;

use crate::decode::proto;

/// Transport layer of a synthetic packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6 (chosen by the address family): type, code and the
    /// four "rest of header" bytes (identifier and sequence for echo).
    Icmp {
        kind: u8,
        code: u8,
        rest: [u8; 4],
    },
    /// Any other IP protocol, payload only.
    Other(u8),
}

/// A synthetic packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// 802.1Q tags, outermost first (two = QinQ, outer tagged 0x88a8).
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub payload: Vec<u8>,
    /// IPv4 identification (also the fragment id).
    pub ip_id: u16,
}

impl Spec {
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Spec {
        Spec {
            src_mac: mac_of(src),
            dst_mac: mac_of(dst),
            vlans: Vec::new(),
            src,
            dst,
            l4,
            payload: Vec::new(),
            ip_id: 0,
        }
    }

    pub fn payload(mut self, p: &[u8]) -> Spec {
        self.payload = p.to_vec();
        self
    }

    pub fn vlans(mut self, v: &[u16]) -> Spec {
        self.vlans = v.to_vec();
        self
    }

    /// The IP datagram (header + transport + payload).
    pub fn ip_datagram(&self) -> Vec<u8> {
        let l4 = self.transport_bytes();
        let (proto, _) = self.l4_proto();
        ip_header(self.src, self.dst, proto, l4.len(), self.ip_id, 0, false)
            .into_iter()
            .chain(l4)
            .collect()
    }

    /// The whole Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let ip = self.ip_datagram();
        self.ethernet(&ip)
    }

    /// The datagram split into IPv4 fragments, the first carrying
    /// `first_len` bytes (rounded down to a multiple of 8) of the IP payload.
    pub fn ipv4_fragments(&self, first_len: usize) -> Vec<Vec<u8>> {
        let l4 = self.transport_bytes();
        let (proto, _) = self.l4_proto();
        let cut = (first_len / 8 * 8).clamp(8, l4.len().max(8));
        let mut out = Vec::new();
        let mut off = 0;
        while off < l4.len() {
            let end = (off + cut).min(l4.len());
            let more = end < l4.len();
            let mut ip = ip_header(
                self.src,
                self.dst,
                proto,
                end - off,
                self.ip_id,
                (off / 8) as u16,
                more,
            );
            ip.extend_from_slice(&l4[off..end]);
            out.push(self.ethernet(&ip));
            off = end;
        }
        out
    }

    fn ethernet(&self, ip: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(ip.len() + 22);
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        for (i, id) in self.vlans.iter().enumerate() {
            let tpid: u16 = if i == 0 && self.vlans.len() > 1 {
                0x88a8
            } else {
                0x8100
            };
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(id & 0x0fff).to_be_bytes());
        }
        let ether_type: u16 = if self.src.is_ipv4() { 0x0800 } else { 0x86dd };
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    fn l4_proto(&self) -> (u8, usize) {
        match &self.l4 {
            L4::Tcp { .. } => (proto::TCP, 20),
            L4::Udp { .. } => (proto::UDP, 8),
            L4::Icmp { .. } if self.src.is_ipv4() => (proto::ICMP, 8),
            L4::Icmp { .. } => (proto::ICMPV6, 8),
            L4::Other(p) => (*p, 0),
        }
    }

    fn transport_bytes(&self) -> Vec<u8> {
        let (proto, _) = self.l4_proto();
        let mut t = Vec::with_capacity(20 + self.payload.len());
        match &self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
                seq,
                ack,
            } => {
                t.extend_from_slice(&sport.to_be_bytes());
                t.extend_from_slice(&dport.to_be_bytes());
                t.extend_from_slice(&seq.to_be_bytes());
                t.extend_from_slice(&ack.to_be_bytes());
                t.push(5 << 4);
                t.push(*flags);
                t.extend_from_slice(&64240u16.to_be_bytes());
                t.extend_from_slice(&[0, 0, 0, 0]);
            }
            L4::Udp { sport, dport } => {
                t.extend_from_slice(&sport.to_be_bytes());
                t.extend_from_slice(&dport.to_be_bytes());
                t.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                t.extend_from_slice(&[0, 0]);
            }
            L4::Icmp { kind, code, rest } => {
                t.extend_from_slice(&[*kind, *code, 0, 0]);
                t.extend_from_slice(rest);
            }
            L4::Other(_) => {}
        }
        t.extend_from_slice(&self.payload);
        let csum_at = match proto {
            proto::TCP => Some(16),
            proto::UDP => Some(6),
            proto::ICMP | proto::ICMPV6 => Some(2),
            _ => None,
        };
        if let Some(at) = csum_at {
            let mut sum = Sum16BitWords::new();
            if proto != proto::ICMP {
                sum = pseudo_header(sum, self.src, self.dst, proto, t.len());
            }
            let c = sum.add_slice(&t).to_ones_complement_with_no_zero();
            t[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        t
    }
}

fn pseudo_header(
    mut sum: Sum16BitWords,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    len: usize,
) -> Sum16BitWords {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum = sum.add_4bytes(s.octets()).add_4bytes(d.octets());
            sum.add_2bytes([0, proto])
                .add_2bytes((len as u16).to_be_bytes())
        }
        (s, d) => {
            sum = sum.add_16bytes(v6_octets(s)).add_16bytes(v6_octets(d));
            sum.add_4bytes((len as u32).to_be_bytes())
                .add_4bytes([0, 0, 0, proto])
        }
    }
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

fn ip_header(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload_len: usize,
    id: u16,
    frag_offset: u16,
    more: bool,
) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((20 + payload_len) as u16).to_be_bytes());
            h.extend_from_slice(&id.to_be_bytes());
            let frag = (frag_offset & 0x1fff) | if more { 0x2000 } else { 0 };
            h.extend_from_slice(&frag.to_be_bytes());
            h.extend_from_slice(&[64, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = Sum16BitWords::new().add_slice(&h).ones_complement();
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        }
        (s, d) => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(payload_len as u16).to_be_bytes());
            h.extend_from_slice(&[proto, 64]);
            h.extend_from_slice(&v6_octets(s));
            h.extend_from_slice(&v6_octets(d));
            h
        }
    }
}

/// A stable, locally administered MAC derived from an address.
pub fn mac_of(ip: IpAddr) -> [u8; 6] {
    let o = v6_octets(ip);
    [0x02, 0x53, o[12], o[13], o[14], o[15]]
}

/// An ARP frame (Ethernet/IPv4): `op` 1 = request, 2 = reply.
pub fn arp(
    op: u16,
    sender_mac: [u8; 6],
    sender_ip: [u8; 4],
    target_mac: [u8; 6],
    target_ip: [u8; 4],
) -> Vec<u8> {
    let dst = if op == 1 { [0xff; 6] } else { target_mac };
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender_ip);
    f.extend_from_slice(&target_mac);
    f.extend_from_slice(&target_ip);
    f
}
