//! `tcp_flags`: TCP segments with flag combinations no conforming stack
//! sends (see [`crate::flow::state::impossible_tcp_flags`]): NULL, FIN and
//! Xmas scans, SYN+FIN and SYN+RST evasion probes. No baseline is needed:
//! these are abnormal on every network. A source is reported from its
//! `min_flows`-th such flow: scanners send hundreds, while a single odd
//! segment is more often a broken middlebox or a corrupted capture.

use std::net::IpAddr;

use hashbrown::HashMap;
use serde_json::json;

use super::Ctx;
use super::Ends;
use super::event::{Detector, Finding};
use super::network::Place;
use crate::decode::tcp_flags::{self, ACK, FIN, PSH, RST, SYN, URG};
use crate::flow::FlowRecord;
use crate::segmentation::Severity;

/// The usual name of a probe with these flags.
pub fn probe_name(f: u8) -> &'static str {
    let f = f & (FIN | SYN | RST | PSH | ACK | URG);
    match f {
        0 => "NULL",
        _ if f & (FIN | PSH | URG) == FIN | PSH | URG && f & ACK == 0 => "Xmas",
        FIN => "FIN",
        _ if f & (SYN | FIN) == SYN | FIN => "SYN+FIN",
        _ if f & (SYN | RST) == SYN | RST => "SYN+RST",
        _ => "flags without ACK",
    }
}

/// Odd-flag flows per source (cleared when it grows past its bound).
#[derive(Debug, Default)]
pub struct TcpFlags {
    count: HashMap<IpAddr, u32>,
}

const MAX_SOURCES: usize = 100_000;

impl TcpFlags {
    pub fn flow(&mut self, cx: &Ctx<'_>, r: &FlowRecord, e: &Ends<'_>, out: &mut Vec<Finding>) {
        let (s, d) = (e.s, e.d);
        let Some(odd) = r.odd_tcp_flags else { return };
        if self.count.len() >= MAX_SOURCES && !self.count.contains_key(&r.src_ip) {
            self.count.clear();
        }
        let n = self.count.entry(r.src_ip).or_default();
        *n += 1;
        if *n >= cx.settings.tcp_flags_min_flows {
            report(cx, r, s, d, odd.0, *n, out);
        }
    }
}

fn report(
    cx: &Ctx<'_>,
    r: &FlowRecord,
    s: Place,
    d: Place,
    odd: u8,
    seen: u32,
    out: &mut Vec<Finding>,
) {
    let odd = crate::flow::record::TcpFlags(odd);
    let name = probe_name(odd.0);
    let severity = if s.cde || d.cde {
        Severity::High
    } else {
        Severity::Medium
    };
    let mut f = cx.finding(r, s, d, Detector::TcpFlags, severity, 0.9);
    // One finding per source and target, whatever the port.
    f.dst_port = None;
    let letters = tcp_flags::letters(odd.0);
    f.explanation = format!(
        "{} sent {} a TCP segment with flags [{}] ({name} probe), which no normal TCP stack sends: a stealth port scan or firewall evasion.",
        r.src_ip,
        r.dst_ip,
        if letters.is_empty() { "none" } else { &letters }
    );
    f.observed = json!({"flags": letters, "probe": name, "dst_port": r.dst_port, "answered": r.packets_rev > 0, "odd_flows_from_source": seen});
    f.baseline = json!({"normal": "every segment after the first SYN carries ACK; SYN never goes with FIN or RST"});
    out.push(f);
}
