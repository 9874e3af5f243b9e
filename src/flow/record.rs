//! Finished flows as records: the unit detectors consume and `--flows` writes.
//!
//! JSON form (one object per line; later tooling relies on these names):
//! `start`, `end` (RFC 3339 UTC, nanosecond precision), `proto` (`tcp`, `udp`,
//! `icmp`, `icmpv6`, ... or `ip-proto-N`), `src_ip`, `src_port`, `dst_ip`,
//! `dst_port` (src = initiator; for ICMP the ports are the initiator's first
//! ICMP type and code), `vlan` (outer tag or null), `inner_vlan` (QinQ only),
//! `packets_fwd`, `packets_rev`, `bytes_fwd`, `bytes_rev` (bytes = frame length
//! on the wire; fwd = sent by the initiator), `outcome`, `tcp_flags_fwd`,
//! `tcp_flags_rev` (TCP only, letters `SAFRPUEC`), `odd_tcp_flags` (the first
//! impossible flag combination, such as a NULL or Xmas probe; only when seen),
//! `handshake` (TCP only) and `end_reason`.

use std::net::IpAddr;

use serde::{Serialize, Serializer};

use super::state::{Flow, Outcome};
use crate::decode::{proto, proto_name, tcp_flags};

/// Why a flow record was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Idle longer than its protocol's timeout (packet time).
    Timeout,
    /// A new connection reused the ports of a torn-down one.
    Reused,
    /// The flow table was full; the oldest idle flow made room.
    Evicted,
    /// The capture ended (file read to the end, or live capture stopped).
    EndOfCapture,
}

/// A finished flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    #[serde(serialize_with = "rfc3339")]
    pub start: i64,
    #[serde(serialize_with = "rfc3339")]
    pub end: i64,
    #[serde(serialize_with = "proto_str")]
    pub proto: u8,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub vlan: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner_vlan: Option<u16>,
    pub packets_fwd: u64,
    pub packets_rev: u64,
    pub bytes_fwd: u64,
    pub bytes_rev: u64,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags_fwd: Option<TcpFlags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags_rev: Option<TcpFlags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub odd_tcp_flags: Option<TcpFlags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<bool>,
    pub end_reason: EndReason,
}

/// TCP flags, serialized as letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl Serialize for TcpFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&tcp_flags::letters(self.0))
    }
}

impl FlowRecord {
    pub fn from_flow(flow: &Flow, end_reason: EndReason) -> FlowRecord {
        let fwd = flow.initiator;
        let rev = fwd.other();
        let src = flow.key.endpoint(fwd);
        let dst = flow.key.endpoint(rev);
        let (src_port, dst_port) = match flow.icmp_type_code() {
            Some((t, c)) => (u16::from(t), u16::from(c)),
            None => (src.port, dst.port),
        };
        let tcp = flow.key.proto == proto::TCP;
        FlowRecord {
            start: flow.first_ns,
            end: flow.last_ns,
            proto: flow.key.proto,
            src_ip: src.ip,
            src_port,
            dst_ip: dst.ip,
            dst_port,
            vlan: flow.key.vlans.outer,
            inner_vlan: flow.key.vlans.inner,
            packets_fwd: flow.packets[fwd.index()],
            packets_rev: flow.packets[rev.index()],
            bytes_fwd: flow.bytes[fwd.index()],
            bytes_rev: flow.bytes[rev.index()],
            outcome: flow.outcome(),
            tcp_flags_fwd: tcp.then_some(TcpFlags(flow.flags[fwd.index()])),
            tcp_flags_rev: tcp.then_some(TcpFlags(flow.flags[rev.index()])),
            odd_tcp_flags: flow.odd_tcp_flags().map(TcpFlags),
            handshake: tcp.then_some(flow.handshake_completed()),
            end_reason,
        }
    }

    /// Bytes both ways.
    pub fn bytes(&self) -> u64 {
        self.bytes_fwd + self.bytes_rev
    }

    /// Packets both ways.
    pub fn packets(&self) -> u64 {
        self.packets_fwd + self.packets_rev
    }
}

/// Format nanoseconds since the epoch as RFC 3339 UTC (`2024-01-01T00:00:00.123456789Z`).
pub fn format_rfc3339(ns: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) else {
        return ns.to_string();
    };
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| ns.to_string())
}

/// Serialize nanoseconds as RFC 3339 (for `serialize_with`).
pub(crate) fn rfc3339<S: Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*ns))
}

/// Serialize an IP protocol number by name (for `serialize_with`).
pub(crate) fn proto_str<S: Serializer>(p: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&proto_name(*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_utc_with_fraction() {
        assert_eq!(
            format_rfc3339(1_700_000_000_123_000_000),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
