//! `volume`: bytes or flows far outside the baseline for the hour. Three
//! judgements, each at most once per entity and hour:
//! - uploads to external hosts per host (exfiltration), against the host's
//!   learned hourly uploads (or a high fixed bar for hosts with no baseline);
//! - bytes a host sent per hour, against its learned hours;
//! - flows a zone opened per hour, against the same hour of the week (or,
//!   with fewer than `min_samples` weeks, the same hour of every day learned).
//!
//! A threshold is the largest of: median + `sigmas` × robust sigma (MAD),
//! `headroom` × the largest value learned, and a floor; robust statistics
//! keep one busy hour in the baseline from hiding the next.

use std::net::IpAddr;

use hashbrown::HashMap;
use serde_json::json;

use super::Ctx;
use super::Ends;
use super::event::{Detector, Finding, bytes_text};
use super::network::{NetId, Place};
use crate::baseline::dist::{Dist, robust_of};
use crate::baseline::model::HostBaseline;
use crate::baseline::model::{ZoneBaseline, hour_of_week};
use crate::flow::FlowRecord;
use crate::segmentation::Severity;

const HOUR_NS: i64 = 3_600_000_000_000;

#[derive(Debug, Default)]
struct HostHour {
    bytes_out: u64,
    external_bytes: u64,
    /// Bit 0: upload reported; bit 1: bytes sent reported.
    reported: u8,
}

#[derive(Debug, Default)]
struct ZoneHour {
    flows: u64,
    reported: bool,
}

#[derive(Debug, Default)]
pub struct Volume {
    /// Totals per entity and hour (flows arrive in each worker's order, so
    /// the previous hour stays open for late ones).
    hosts: HashMap<IpAddr, [(i64, HostHour); 2]>,
    zones: HashMap<(NetId, i64), ZoneHour>,
    last_sweep: i64,
}

impl Volume {
    /// Zone ids change with the policy: forget the zones' hours so far.
    pub fn forget_zones(&mut self) {
        self.zones.clear();
    }
}

/// A threshold and how it was set.
struct Bar {
    value: f64,
    median: f64,
    sigma: f64,
    max: f64,
    samples: u64,
}

fn bar_from(median: f64, sigma: f64, max: f64, samples: u64, floor: u64, cx: &Ctx<'_>) -> Bar {
    let v = &cx.settings.volume;
    Bar {
        value: (median + v.sigmas * sigma)
            .max(max * v.headroom)
            .max(floor as f64),
        median,
        sigma,
        max,
        samples,
    }
}

fn dist_bar(d: &Dist, floor: u64, cx: &Ctx<'_>) -> Option<Bar> {
    if d.count() < cx.settings.volume.min_samples {
        return None;
    }
    let r = d.robust()?;
    Some(bar_from(
        r.median,
        r.sigma,
        d.max() as f64,
        d.count(),
        floor,
        cx,
    ))
}

/// The zone's flows in this hour of the week, or in this hour of every day.
fn zone_bar(z: &ZoneBaseline, ts: i64, cx: &Ctx<'_>) -> Option<Bar> {
    let how = hour_of_week(ts);
    let mut samples: Vec<f64> = z
        .hours
        .iter()
        .filter(|s| usize::from(s.hour_of_week) == how)
        .flat_map(|s| s.flows.iter().map(|&f| f as f64))
        .collect();
    if (samples.len() as u64) < cx.settings.volume.min_samples {
        samples = z
            .hours
            .iter()
            .filter(|s| usize::from(s.hour_of_week) % 24 == how % 24)
            .flat_map(|s| s.flows.iter().map(|&f| f as f64))
            .collect();
    }
    if samples.is_empty() {
        return None;
    }
    let max = samples.iter().copied().fold(0.0, f64::max);
    let n = samples.len() as u64;
    let r = robust_of(&mut samples)?;
    Some(bar_from(
        r.median,
        r.sigma,
        max,
        n,
        cx.settings.volume.zone_floor_flows,
        cx,
    ))
}

fn bar_json(b: &Bar, unit: &str) -> serde_json::Value {
    json!({
        "threshold": b.value.round(),
        "median": b.median.round(),
        "robust_sigma": b.sigma.round(),
        "max_learned": b.max.round(),
        "samples": b.samples,
        "unit": unit,
    })
}

impl Volume {
    pub fn flow(&mut self, cx: &Ctx<'_>, r: &FlowRecord, e: &Ends<'_>, out: &mut Vec<Finding>) {
        let (s, d) = (e.s, e.d);
        let hour = r.end.div_euclid(HOUR_NS);
        if s.internal {
            self.host(
                cx,
                r,
                (r.src_ip, s, e.src),
                r.bytes_fwd,
                !d.internal,
                hour,
                out,
            );
            let z = self.zones.entry((s.zone, hour)).or_default();
            z.flows += 1;
            if !z.reported
                && let Some(zb) = cx.known.and_then(|k| k.zone(s.zone))
                && let Some(bar) = zone_bar(zb, r.end, cx)
                && z.flows as f64 > bar.value
            {
                z.reported = true;
                let name = cx.nets.name(s.zone);
                let mut f = Finding::new(r.end, Detector::Volume, Severity::Medium, 0.8);
                f.src_zone = Some(name.to_string());
                f.variant = hour as u64;
                f.explanation = format!(
                    "Hosts in {name} have opened {} flows so far this hour, past the alert threshold of {:.0}; at this hour they normally open {:.0} (at most {:.0} in the baseline).",
                    z.flows, bar.value, bar.median, bar.max
                );
                f.observed = json!({"what": "zone_flows_per_hour", "flows": z.flows, "hour_of_week": hour_of_week(r.end)});
                f.baseline = bar_json(&bar, "flows");
                out.push(f);
            }
        }
        if d.internal {
            self.host(
                cx,
                r,
                (r.dst_ip, d, e.dst),
                r.bytes_rev,
                !s.internal,
                hour,
                out,
            );
        }
        if hour > self.last_sweep {
            self.last_sweep = hour;
            self.hosts
                .retain(|_, slots| slots[0].0.max(slots[1].0) + 1 >= hour);
            self.zones.retain(|(_, h), _| *h + 1 >= hour);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn host(
        &mut self,
        cx: &Ctx<'_>,
        r: &FlowRecord,
        (ip, place, base): (IpAddr, Place, Option<&HostBaseline>),
        sent: u64,
        external: bool,
        hour: i64,
        out: &mut Vec<Finding>,
    ) {
        if sent == 0 {
            return;
        }
        // One slot per hour parity: this hour and the one before stay open
        // for flows handed over late.
        let slots = self.hosts.entry(ip).or_default();
        let slot = &mut slots[(hour & 1) as usize];
        if slot.0 != hour {
            *slot = (hour, HostHour::default());
        }
        let h = &mut slot.1;
        h.bytes_out += sent;
        if external {
            h.external_bytes += sent;
        }
        let v = &cx.settings.volume;
        let zone = cx.nets.name(place.zone);
        if h.reported & 1 == 0 && h.external_bytes as f64 > v.upload_floor_bytes as f64 {
            let bar = match base
                .and_then(|b| dist_bar(&b.external_bytes_per_hour, v.upload_floor_bytes, cx))
            {
                Some(b) => Some(b),
                // No (or too little) history: only very large uploads.
                None if v.unknown_host_upload_bytes > 0 => Some(Bar {
                    value: v.unknown_host_upload_bytes as f64,
                    median: 0.0,
                    sigma: 0.0,
                    max: base.map_or(0.0, |b| b.external_bytes_per_hour.max() as f64),
                    samples: base.map_or(0, |b| b.external_bytes_per_hour.count()),
                }),
                None => None,
            };
            if let Some(bar) = bar.filter(|b| h.external_bytes as f64 > b.value) {
                h.reported |= 1;
                let ratio = h.external_bytes as f64 / bar.value;
                let severity = if place.cde || ratio >= 10.0 {
                    Severity::High
                } else {
                    Severity::Medium
                };
                let mut f = Finding::new(
                    r.end,
                    Detector::Volume,
                    severity,
                    (0.7 + ratio / 100.0).min(1.0),
                );
                f.src_ip = Some(ip);
                f.dst_ip = Some(if ip == r.src_ip { r.dst_ip } else { r.src_ip });
                f.proto = Some(r.proto);
                f.src_zone = Some(zone.to_string());
                f.variant = (hour as u64) << 1;
                f.explanation = if bar.samples >= v.min_samples {
                    format!(
                        "{ip} ({zone}) has sent {} to external hosts so far this hour; it normally uploads {} in an hour (at most {} in the baseline). Large uploads are how stolen data leaves.",
                        bytes_text(h.external_bytes as f64),
                        bytes_text(bar.median),
                        bytes_text(bar.max)
                    )
                } else {
                    format!(
                        "{ip} ({zone}) has sent {} to external hosts so far this hour, with no upload history in the baseline to explain it. Large uploads are how stolen data leaves.",
                        bytes_text(h.external_bytes as f64)
                    )
                };
                f.observed = json!({"what": "external_upload_per_hour", "bytes": h.external_bytes, "last_destination": f.dst_ip});
                f.baseline = bar_json(&bar, "bytes");
                out.push(f);
            }
        }
        if h.reported & 2 == 0
            && h.bytes_out > v.host_floor_bytes
            && let Some(b) = base
            && let Some(bar) = dist_bar(&b.bytes_out_per_hour, v.host_floor_bytes, cx)
            && h.bytes_out as f64 > bar.value
        {
            h.reported |= 2;
            let mut f = Finding::new(r.end, Detector::Volume, Severity::Low, 0.6);
            f.src_ip = Some(ip);
            f.src_zone = Some(zone.to_string());
            f.variant = ((hour as u64) << 1) | 1;
            f.explanation = format!(
                "{ip} ({zone}) has sent {} so far this hour; it normally sends {} in an hour (at most {} in the baseline).",
                bytes_text(h.bytes_out as f64),
                bytes_text(bar.median),
                bytes_text(bar.max)
            );
            f.observed = json!({"what": "bytes_sent_per_hour", "bytes": h.bytes_out});
            f.baseline = bar_json(&bar, "bytes");
            out.push(f);
        }
    }
}
