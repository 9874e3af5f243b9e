//! Detection settings from the config file: `[detect]` (output floor,
//! suppression), one table per detector (`[detect.scan]`, ...) to switch it
//! off or tune it, `[[allow]]` entries that silence known-good behaviour,
//! and `[learn]` caps on baseline size. Every option is documented in
//! `configs/segwatch.example.toml`.

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::event::Detector;
use crate::baseline::model::Limits;
use crate::config::ConfigError;
use crate::policy::load::{Locator, PortSpec, parse_net, port_range, protocols};
use crate::segmentation::Severity;

/// Per-detector switches and thresholds.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectSettings {
    /// Detection runs at all (`[detect] enabled`).
    pub enabled: bool,
    /// The baseline to compare with (`[detect] baseline`, relative to the
    /// config file); `--baseline` overrides it.
    pub baseline: Option<std::path::PathBuf>,
    pub min_severity: Severity,
    /// A repeat of the same finding (detector, hosts, service) within this
    /// many seconds of packet time is counted, not written again.
    pub suppress_secs: u64,
    pub on: [bool; Detector::ALL.len()],
    pub novelty: NoveltySettings,
    pub volume: VolumeSettings,
    pub scan: ScanSettings,
    pub beacon: BeaconSettings,
    pub arp: ArpSettings,
    /// Odd-flag flows from one source before it is reported.
    pub tcp_flags_min_flows: u32,
    pub allow: Vec<Allow>,
    pub limits: Limits,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NoveltySettings {
    /// Ports from here up are client ports, not services (`new_service`).
    pub ephemeral_from: u16,
    /// A zone that reached more external destinations than this while
    /// learning browses the Internet: a new destination there is normal.
    pub open_zone_destinations: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VolumeSettings {
    /// Thresholds sit this many robust standard deviations over the median.
    pub sigmas: f64,
    /// ...and at least this many times the largest value learned.
    pub headroom: f64,
    /// Hours (or hour samples) a baseline needs before it is trusted.
    pub min_samples: u64,
    /// Uploads to external hosts below this per hour are never reported.
    pub upload_floor_bytes: u64,
    /// A host with no baseline is reported above this upload per hour.
    pub unknown_host_upload_bytes: u64,
    /// A host's bytes sent per hour below this are never reported.
    pub host_floor_bytes: u64,
    /// A zone's flows per hour below this are never reported.
    pub zone_floor_flows: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScanSettings {
    /// Distinct hosts on one service in a minute that make a horizontal scan.
    pub min_hosts: usize,
    /// Distinct ports on one host in a minute that make a vertical scan.
    pub min_ports: usize,
    /// And at least this many times the source's own learned fan-out.
    pub baseline_factor: f64,
    /// Distinct addresses asked for in ARP in a minute that make a sweep.
    pub arp_targets: usize,
    /// Distinct sources failing against one service in a minute that make
    /// a flood.
    pub flood_sources: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BeaconSettings {
    pub min_connections: usize,
    pub min_score: f64,
    pub min_interval_secs: f64,
    /// Also judge connections to internal hosts (off: monitoring polls).
    pub internal: bool,
    /// Services never judged (NTP polls are periodic by design).
    pub skip: Vec<(u8, u16)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ArpSettings {
    /// Gratuitous ARP from one MAC per minute that make a storm.
    pub gratuitous_per_minute: usize,
}

/// Known-good behaviour: findings that match every field given are dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct Allow {
    pub detectors: Vec<Detector>,
    pub src: Vec<IpNet>,
    pub dst: Vec<IpNet>,
    pub src_zones: Vec<String>,
    pub dst_zones: Vec<String>,
    pub protos: Vec<u8>,
    pub ports: Vec<(u16, u16)>,
    pub why: String,
    pub line: usize,
}

impl Default for DetectSettings {
    fn default() -> Self {
        DetectSettings {
            enabled: true,
            baseline: None,
            min_severity: Severity::Low,
            suppress_secs: 3600,
            on: [true; Detector::ALL.len()],
            novelty: NoveltySettings {
                ephemeral_from: 32_768,
                open_zone_destinations: 50,
            },
            volume: VolumeSettings {
                sigmas: 8.0,
                headroom: 2.0,
                min_samples: 6,
                upload_floor_bytes: 20_000_000,
                unknown_host_upload_bytes: 1_000_000_000,
                host_floor_bytes: 200_000_000,
                zone_floor_flows: 2_000,
            },
            scan: ScanSettings {
                min_hosts: 32,
                min_ports: 32,
                baseline_factor: 3.0,
                arp_targets: 64,
                flood_sources: 500,
            },
            beacon: BeaconSettings {
                min_connections: 10,
                min_score: 0.85,
                min_interval_secs: 1.0,
                internal: false,
                skip: vec![(crate::decode::proto::UDP, 123)],
            },
            arp: ArpSettings {
                gratuitous_per_minute: 30,
            },
            tcp_flags_min_flows: 3,
            allow: Vec::new(),
            limits: Limits::default(),
        }
    }
}

impl DetectSettings {
    pub fn is_on(&self, d: Detector) -> bool {
        self.enabled && self.on[d as usize]
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDetect {
    enabled: Option<bool>,
    baseline: Option<String>,
    min_severity: Option<Spanned<String>>,
    suppress_secs: Option<Spanned<i64>>,
    new_peer: Option<RawSwitch>,
    new_service: Option<RawNewService>,
    new_external: Option<RawNewExternal>,
    volume: Option<RawVolume>,
    scan: Option<RawScan>,
    beacon: Option<RawBeacon>,
    tcp_flags: Option<RawTcpFlags>,
    arp_spoof: Option<RawArp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcpFlags {
    enabled: Option<bool>,
    min_flows: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwitch {
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewService {
    enabled: Option<bool>,
    ephemeral_from: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewExternal {
    enabled: Option<bool>,
    open_zone_destinations: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    enabled: Option<bool>,
    sigmas: Option<Spanned<f64>>,
    headroom: Option<Spanned<f64>>,
    min_samples: Option<Spanned<i64>>,
    upload_floor_bytes: Option<Spanned<i64>>,
    unknown_host_upload_bytes: Option<Spanned<i64>>,
    host_floor_bytes: Option<Spanned<i64>>,
    zone_floor_flows: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScan {
    enabled: Option<bool>,
    min_hosts: Option<Spanned<i64>>,
    min_ports: Option<Spanned<i64>>,
    baseline_factor: Option<Spanned<f64>>,
    arp_targets: Option<Spanned<i64>>,
    flood_sources: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBeacon {
    enabled: Option<bool>,
    min_connections: Option<Spanned<i64>>,
    min_score: Option<Spanned<f64>>,
    min_interval_secs: Option<Spanned<f64>>,
    internal: Option<bool>,
    skip: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArp {
    enabled: Option<bool>,
    gratuitous_per_minute: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAllow {
    #[serde(default)]
    detectors: Vec<Spanned<String>>,
    #[serde(default)]
    src: Vec<Spanned<String>>,
    #[serde(default)]
    dst: Vec<Spanned<String>>,
    #[serde(default)]
    src_zones: Vec<String>,
    #[serde(default)]
    dst_zones: Vec<String>,
    proto: Option<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<PortSpec>>,
    why: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLearn {
    max_hosts: Option<Spanned<i64>>,
    max_peers_per_host: Option<Spanned<i64>>,
    max_services_per_host: Option<Spanned<i64>>,
    max_external_per_zone: Option<Spanned<i64>>,
}

fn int(
    v: &Option<Spanned<i64>>,
    name: &str,
    lo: i64,
    hi: i64,
    default: i64,
    loc: &Locator,
) -> Result<i64, ConfigError> {
    crate::config::in_range(v, name, (lo, hi), default, loc.invalid)
}

fn float(
    v: &Option<Spanned<f64>>,
    name: &str,
    lo: f64,
    hi: f64,
    default: f64,
    loc: &Locator,
) -> Result<f64, ConfigError> {
    crate::config::in_range(v, name, (lo, hi), default, loc.invalid)
}

fn severity(v: &Spanned<String>, loc: &Locator) -> Result<Severity, ConfigError> {
    Severity::ALL
        .into_iter()
        .find(|s| s.as_str() == v.get_ref())
        .ok_or_else(|| {
            (loc.invalid)(
                Some(v.span()),
                format!("unknown severity \"{}\"", v.get_ref()),
                "use \"low\", \"medium\", \"high\" or \"critical\"",
            )
        })
}

/// Validate `[detect]`, `[[allow]]` and `[learn]`.
pub(crate) fn build(
    raw: RawDetect,
    allow: Vec<Spanned<RawAllow>>,
    learn: RawLearn,
    loc: &Locator,
) -> Result<DetectSettings, ConfigError> {
    let d = DetectSettings::default();
    let mut s = DetectSettings {
        enabled: raw.enabled.unwrap_or(true),
        baseline: raw.baseline.as_ref().map(std::path::PathBuf::from),
        min_severity: match &raw.min_severity {
            Some(v) => severity(v, loc)?,
            None => d.min_severity,
        },
        suppress_secs: int(
            &raw.suppress_secs,
            "detect.suppress_secs",
            0,
            30 * 86_400,
            d.suppress_secs as i64,
            loc,
        )? as u64,
        ..d.clone()
    };
    let mut set = |det: Detector, enabled: Option<bool>| {
        if let Some(e) = enabled {
            s.on[det as usize] = e;
        }
    };
    set(
        Detector::NewPeer,
        raw.new_peer.as_ref().and_then(|r| r.enabled),
    );
    set(
        Detector::NewService,
        raw.new_service.as_ref().and_then(|r| r.enabled),
    );
    set(
        Detector::NewExternal,
        raw.new_external.as_ref().and_then(|r| r.enabled),
    );
    set(
        Detector::Volume,
        raw.volume.as_ref().and_then(|r| r.enabled),
    );
    set(Detector::Scan, raw.scan.as_ref().and_then(|r| r.enabled));
    set(
        Detector::Beacon,
        raw.beacon.as_ref().and_then(|r| r.enabled),
    );
    set(
        Detector::TcpFlags,
        raw.tcp_flags.as_ref().and_then(|r| r.enabled),
    );
    set(
        Detector::ArpSpoof,
        raw.arp_spoof.as_ref().and_then(|r| r.enabled),
    );

    if let Some(r) = &raw.new_service {
        s.novelty.ephemeral_from = int(
            &r.ephemeral_from,
            "detect.new_service.ephemeral_from",
            1,
            65_535,
            i64::from(d.novelty.ephemeral_from),
            loc,
        )? as u16;
    }
    if let Some(r) = &raw.new_external {
        s.novelty.open_zone_destinations = int(
            &r.open_zone_destinations,
            "detect.new_external.open_zone_destinations",
            0,
            1_000_000,
            d.novelty.open_zone_destinations as i64,
            loc,
        )? as usize;
    }
    if let Some(r) = &raw.volume {
        let v = &d.volume;
        let big = i64::MAX / 2;
        s.volume = VolumeSettings {
            sigmas: float(
                &r.sigmas,
                "detect.volume.sigmas",
                1.0,
                1000.0,
                v.sigmas,
                loc,
            )?,
            headroom: float(
                &r.headroom,
                "detect.volume.headroom",
                1.0,
                1000.0,
                v.headroom,
                loc,
            )?,
            min_samples: int(
                &r.min_samples,
                "detect.volume.min_samples",
                1,
                10_000,
                v.min_samples as i64,
                loc,
            )? as u64,
            upload_floor_bytes: int(
                &r.upload_floor_bytes,
                "detect.volume.upload_floor_bytes",
                0,
                big,
                v.upload_floor_bytes as i64,
                loc,
            )? as u64,
            unknown_host_upload_bytes: int(
                &r.unknown_host_upload_bytes,
                "detect.volume.unknown_host_upload_bytes",
                0,
                big,
                v.unknown_host_upload_bytes as i64,
                loc,
            )? as u64,
            host_floor_bytes: int(
                &r.host_floor_bytes,
                "detect.volume.host_floor_bytes",
                0,
                big,
                v.host_floor_bytes as i64,
                loc,
            )? as u64,
            zone_floor_flows: int(
                &r.zone_floor_flows,
                "detect.volume.zone_floor_flows",
                0,
                big,
                v.zone_floor_flows as i64,
                loc,
            )? as u64,
        };
    }
    if let Some(r) = &raw.scan {
        let v = &d.scan;
        s.scan = ScanSettings {
            min_hosts: int(
                &r.min_hosts,
                "detect.scan.min_hosts",
                2,
                65_536,
                v.min_hosts as i64,
                loc,
            )? as usize,
            min_ports: int(
                &r.min_ports,
                "detect.scan.min_ports",
                2,
                65_536,
                v.min_ports as i64,
                loc,
            )? as usize,
            baseline_factor: float(
                &r.baseline_factor,
                "detect.scan.baseline_factor",
                1.0,
                1000.0,
                v.baseline_factor,
                loc,
            )?,
            arp_targets: int(
                &r.arp_targets,
                "detect.scan.arp_targets",
                2,
                65_536,
                v.arp_targets as i64,
                loc,
            )? as usize,
            flood_sources: int(
                &r.flood_sources,
                "detect.scan.flood_sources",
                2,
                1_000_000,
                v.flood_sources as i64,
                loc,
            )? as usize,
        };
    }
    if let Some(r) = &raw.beacon {
        let v = &d.beacon;
        let mut skip = v.skip.clone();
        if let Some(list) = &r.skip {
            skip.clear();
            for item in list {
                skip.push(service(item, loc)?);
            }
        }
        s.beacon = BeaconSettings {
            min_connections: int(
                &r.min_connections,
                "detect.beacon.min_connections",
                4,
                10_000,
                v.min_connections as i64,
                loc,
            )? as usize,
            min_score: float(
                &r.min_score,
                "detect.beacon.min_score",
                0.0,
                1.0,
                v.min_score,
                loc,
            )?,
            min_interval_secs: float(
                &r.min_interval_secs,
                "detect.beacon.min_interval_secs",
                0.0,
                86_400.0,
                v.min_interval_secs,
                loc,
            )?,
            internal: r.internal.unwrap_or(v.internal),
            skip,
        };
    }
    if let Some(r) = &raw.tcp_flags {
        s.tcp_flags_min_flows = int(
            &r.min_flows,
            "detect.tcp_flags.min_flows",
            1,
            1_000_000,
            i64::from(d.tcp_flags_min_flows),
            loc,
        )? as u32;
    }
    if let Some(r) = &raw.arp_spoof {
        s.arp.gratuitous_per_minute = int(
            &r.gratuitous_per_minute,
            "detect.arp_spoof.gratuitous_per_minute",
            1,
            1_000_000,
            d.arp.gratuitous_per_minute as i64,
            loc,
        )? as usize;
    }
    for a in allow {
        s.allow.push(allow_entry(a, loc)?);
    }
    let l = &d.limits;
    s.limits = Limits {
        max_hosts: int(
            &learn.max_hosts,
            "learn.max_hosts",
            1,
            10_000_000,
            l.max_hosts as i64,
            loc,
        )? as usize,
        max_peers_per_host: int(
            &learn.max_peers_per_host,
            "learn.max_peers_per_host",
            1,
            100_000,
            l.max_peers_per_host as i64,
            loc,
        )? as usize,
        max_services_per_host: int(
            &learn.max_services_per_host,
            "learn.max_services_per_host",
            1,
            65_536,
            l.max_services_per_host as i64,
            loc,
        )? as usize,
        max_external_per_zone: int(
            &learn.max_external_per_zone,
            "learn.max_external_per_zone",
            1,
            10_000_000,
            l.max_external_per_zone as i64,
            loc,
        )? as usize,
        max_macs_per_ip: l.max_macs_per_ip,
    };
    Ok(s)
}

/// `tcp/443` or `udp/123`.
fn service(v: &Spanned<String>, loc: &Locator) -> Result<(u8, u16), ConfigError> {
    let bad = || {
        (loc.invalid)(
            Some(v.span()),
            format!("\"{}\" is not a service", v.get_ref()),
            "write protocol/port, for example \"udp/123\"",
        )
    };
    let (p, port) = v.get_ref().split_once('/').ok_or_else(bad)?;
    let proto = crate::baseline::model::proto_number(&p.to_ascii_lowercase()).ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    Ok((proto, port))
}

fn allow_entry(a: Spanned<RawAllow>, loc: &Locator) -> Result<Allow, ConfigError> {
    let span = a.span();
    let line = (loc.line_of)(span.start);
    let a = a.into_inner();
    let why = match a.why {
        Some(w) if !w.trim().is_empty() => w,
        _ => {
            return Err((loc.invalid)(
                Some(span),
                "an [[allow]] entry has no `why`".into(),
                "say why this behaviour is normal, for example why = \"backup server copies every night\"",
            ));
        }
    };
    let mut detectors = Vec::new();
    for d in &a.detectors {
        detectors.push(Detector::from_name(d.get_ref()).ok_or_else(|| {
            (loc.invalid)(
                Some(d.span()),
                format!("unknown detector \"{}\"", d.get_ref()),
                "use new_peer, new_service, new_external, volume, scan, beacon, tcp_flags or arp_spoof",
            )
        })?);
    }
    let nets = |v: &[Spanned<String>]| -> Result<Vec<IpNet>, ConfigError> {
        v.iter()
            .map(|h| {
                parse_net(h.get_ref()).ok_or_else(|| {
                    (loc.invalid)(
                        Some(h.span()),
                        format!("\"{}\" is not an address or network", h.get_ref()),
                        "write an address (10.0.0.5) or a network in CIDR form (10.0.0.0/24)",
                    )
                })
            })
            .collect()
    };
    let mut ports = Vec::new();
    for p in &a.ports {
        ports.push(port_range(p, loc)?);
    }
    if a.detectors.is_empty()
        && a.src.is_empty()
        && a.dst.is_empty()
        && a.src_zones.is_empty()
        && a.dst_zones.is_empty()
    {
        return Err((loc.invalid)(
            Some(span),
            "this [[allow]] entry would silence every finding".into(),
            "name the detectors, hosts or zones it is about",
        ));
    }
    Ok(Allow {
        detectors,
        src: nets(&a.src)?,
        dst: nets(&a.dst)?,
        src_zones: a.src_zones,
        dst_zones: a.dst_zones,
        protos: protocols(&a.proto, loc)?,
        ports,
        why,
        line,
    })
}

/// What `check-config` says about detection.
pub fn explain(s: &DetectSettings) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("  anomaly detection:\n");
    if !s.enabled {
        out.push_str("    off ([detect] enabled = false)\n");
        return out;
    }
    let on: Vec<&str> = Detector::ALL
        .iter()
        .filter(|d| s.is_on(**d))
        .map(|d| d.as_str())
        .collect();
    let off: Vec<&str> = Detector::ALL
        .iter()
        .filter(|d| !s.is_on(**d))
        .map(|d| d.as_str())
        .collect();
    let _ = writeln!(out, "    detectors on: {}", on.join(", "));
    if !off.is_empty() {
        let _ = writeln!(out, "    detectors off: {}", off.join(", "));
    }
    let _ = writeln!(
        out,
        "    baseline: {}",
        s.baseline.as_ref().map_or(
            "none (only scan, beacon, tcp_flags, arp_spoof judge without one)".to_string(),
            |b| b.display().to_string()
        )
    );
    let _ = writeln!(
        out,
        "    written from severity {}, repeats suppressed for {} s",
        s.min_severity.as_str(),
        s.suppress_secs
    );
    for a in &s.allow {
        let dets: Vec<&str> = a.detectors.iter().map(|d| d.as_str()).collect();
        let _ = writeln!(
            out,
            "    allow (line {}) {}: {}",
            a.line,
            if dets.is_empty() {
                "all detectors".to_string()
            } else {
                dets.join("+")
            },
            a.why
        );
    }
    out
}
