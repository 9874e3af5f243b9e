//! Anomaly events: what a detector found, in words a generalist can act on
//! and with the numbers behind the judgement.
//!
//! JSON fields (one object per line, in the same file as segmentation
//! violations): `timestamp` (RFC 3339 UTC), `kind` (`anomaly`), `detector`,
//! `severity`, `score` (0 to 1: how far from normal), `src_ip`, `dst_ip`,
//! `proto`, `dst_port` (each null where it does not apply), `src_zone`,
//! `dst_zone`, `explanation` (one sentence), `observed` and `baseline`
//! (objects with the figures compared).

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use crate::flow::record::{proto_str, rfc3339};
use crate::segmentation::Severity;

/// The detectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    NewPeer,
    NewService,
    NewExternal,
    Volume,
    Scan,
    Beacon,
    TcpFlags,
    ArpSpoof,
}

impl Detector {
    pub const ALL: [Detector; 8] = [
        Detector::NewPeer,
        Detector::NewService,
        Detector::NewExternal,
        Detector::Volume,
        Detector::Scan,
        Detector::Beacon,
        Detector::TcpFlags,
        Detector::ArpSpoof,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Detector::NewPeer => "new_peer",
            Detector::NewService => "new_service",
            Detector::NewExternal => "new_external",
            Detector::Volume => "volume",
            Detector::Scan => "scan",
            Detector::Beacon => "beacon",
            Detector::TcpFlags => "tcp_flags",
            Detector::ArpSpoof => "arp_spoof",
        }
    }

    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Detectors that compare with a learned baseline (the others also run
    /// without one).
    pub fn needs_baseline(self) -> bool {
        matches!(
            self,
            Detector::NewPeer | Detector::NewService | Detector::NewExternal | Detector::Volume
        )
    }
}

/// What a detector reports, before allowlists, severity floor and
/// suppression.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub ts_ns: i64,
    pub detector: Detector,
    pub severity: Severity,
    pub score: f64,
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    pub proto: Option<u8>,
    pub dst_port: Option<u16>,
    pub src_zone: Option<String>,
    pub dst_zone: Option<String>,
    /// Tells repeats apart beyond the addresses (the scan kind, the hour).
    pub variant: u64,
    pub explanation: String,
    pub observed: Value,
    pub baseline: Value,
}

impl Finding {
    pub fn new(ts_ns: i64, detector: Detector, severity: Severity, score: f64) -> Finding {
        Finding {
            ts_ns,
            detector,
            severity,
            score,
            src_ip: None,
            dst_ip: None,
            proto: None,
            dst_port: None,
            src_zone: None,
            dst_zone: None,
            variant: 0,
            explanation: String::new(),
            observed: Value::Null,
            baseline: Value::Null,
        }
    }
}

/// An anomaly as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnomalyEvent {
    #[serde(serialize_with = "rfc3339")]
    pub timestamp: i64,
    pub kind: &'static str,
    pub detector: Detector,
    pub severity: Severity,
    pub score: f64,
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    #[serde(serialize_with = "opt_proto")]
    pub proto: Option<u8>,
    pub dst_port: Option<u16>,
    pub src_zone: Option<String>,
    pub dst_zone: Option<String>,
    pub explanation: String,
    pub observed: Value,
    pub baseline: Value,
}

fn opt_proto<S: serde::Serializer>(p: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => proto_str(p, s),
        None => s.serialize_none(),
    }
}

impl From<Finding> for AnomalyEvent {
    fn from(f: Finding) -> AnomalyEvent {
        AnomalyEvent {
            timestamp: f.ts_ns,
            kind: "anomaly",
            detector: f.detector,
            severity: f.severity,
            score: (f.score.clamp(0.0, 1.0) * 100.0).round() / 100.0,
            src_ip: f.src_ip,
            dst_ip: f.dst_ip,
            proto: f.proto,
            dst_port: f.dst_port,
            src_zone: f.src_zone,
            dst_zone: f.dst_zone,
            explanation: f.explanation,
            observed: f.observed,
            baseline: f.baseline,
        }
    }
}

/// Human sizes for explanations ("1.5 MB").
pub fn bytes_text(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `tcp/443`, `icmp/8`.
pub fn service_text(proto: u8, port: u16) -> String {
    format!("{}/{port}", crate::decode::proto_name(proto))
}
