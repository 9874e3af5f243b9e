//! `new_peer`, `new_service`, `new_external`: connections the baseline never
//! saw. Only connections that worked count (failed attempts are the scan
//! detector's and the segmentation policy's business), and findings are
//! ranked by how unusual the novelty is for the zone: a first connection
//! between two zones on a service, or anything new in the CDE, outranks a
//! host using a server its zone-mates use every day (not reported).

use serde_json::json;

use super::Ctx;
use super::Ends;
use super::event::{Detector, Finding, service_text};
use crate::baseline::learn::service_port;
use crate::baseline::model::{Edge, Proto, Service};
use crate::decode::proto;
use crate::flow::FlowRecord;
use crate::segmentation::Severity;

pub fn flow(cx: &Ctx<'_>, r: &FlowRecord, e: &Ends<'_>, out: &mut Vec<Finding>) {
    let (s, d) = (e.s, e.d);
    let Some(known) = cx.known else { return };
    if !r.outcome.connected() {
        return;
    }
    let port = service_port(r);
    let (sz, dz) = (cx.nets.name(s.zone), cx.nets.name(d.zone));
    if s.internal && d.internal && cx.settings.is_on(Detector::NewPeer) {
        let zone_known = known.zone_edge(s.zone, d.zone, r.proto, port);
        let host = e.src;
        let host_knows = host.is_some_and(|h| {
            h.peers.contains_key(&Edge {
                peer: r.dst_ip,
                proto: Proto(r.proto),
                port,
            })
        });
        let cde = s.cde || d.cde;
        // Zone-known and host-new is reported only where it matters (CDE).
        let report = !host_knows && (!zone_known || (cde && host.is_some_and(|h| !h.peers_full)));
        if report {
            let svc = service_text(r.proto, port);
            let (severity, score, why) = if !zone_known {
                (
                    if cde {
                        Severity::High
                    } else {
                        Severity::Medium
                    },
                    if cde { 0.95 } else { 0.8 },
                    format!(
                        "no host in {sz} connected to {dz} on {svc} while the baseline was learned"
                    ),
                )
            } else {
                (
                    Severity::Medium,
                    0.6,
                    format!("hosts in {sz} use {dz} on {svc}, but this host never did"),
                )
            };
            let mut f = cx.finding(r, s, d, Detector::NewPeer, severity, score);
            f.explanation = format!(
                "{} ({sz}) connected to {} ({dz}) on {svc} for the first time: {why}.",
                r.src_ip, r.dst_ip
            );
            f.observed = json!({"flows": 1, "bytes": r.bytes(), "outcome": r.outcome.as_str()});
            f.baseline = json!({
                "zone_pair_used_service": zone_known,
                "host_known": host.is_some(),
                "host_peers": host.map_or(0, |h| h.peers.len()),
            });
            out.push(f);
        }
    }
    if d.internal
        && cx.settings.is_on(Detector::NewService)
        && port < cx.settings.novelty.ephemeral_from
        && !matches!(r.proto, proto::ICMP | proto::ICMPV6)
        && let Some(h) = e.dst
        && !h.services_full
        && !h.services.contains_key(&Service {
            proto: Proto(r.proto),
            port,
        })
    {
        let svc = service_text(r.proto, port);
        let (severity, score) = if d.cde {
            (Severity::High, 0.9)
        } else if port < 1024 || h.services.is_empty() {
            (Severity::Medium, 0.75)
        } else {
            (Severity::Low, 0.5)
        };
        let mut f = cx.finding(r, s, d, Detector::NewService, severity, score);
        let offered: Vec<String> = {
            let mut v: Vec<_> = h.services.keys().collect();
            v.sort();
            v.iter()
                .take(10)
                .map(|s| service_text(s.proto.0, s.port))
                .collect()
        };
        f.explanation = format!(
            "{} ({dz}) answered on {svc}, a service it never offered in the baseline (it offered {}); a new service can be a new application, or a backdoor.",
            r.dst_ip,
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            }
        );
        f.observed = json!({"client": r.src_ip, "bytes": r.bytes()});
        f.baseline = json!({"services": offered, "flows_in": h.flows_in});
        out.push(f);
    }
    if s.internal && !d.internal && cx.settings.is_on(Detector::NewExternal) {
        let Some(z) = known.zone(s.zone) else { return };
        let service_known = known.zone_edge(s.zone, d.zone, r.proto, port);
        let open = z.external_full || z.external.len() > cx.settings.novelty.open_zone_destinations;
        let dest_known = z.external.contains(&r.dst_ip);
        if service_known && (open || dest_known) {
            return;
        }
        let svc = service_text(r.proto, port);
        let (severity, score, why) = if !service_known {
            (
                if s.cde {
                    Severity::High
                } else {
                    Severity::Medium
                },
                0.85,
                format!("no host in {sz} used {svc} to the outside while the baseline was learned"),
            )
        } else {
            (
                if s.cde {
                    Severity::High
                } else {
                    Severity::Medium
                },
                0.7,
                format!(
                    "hosts in {sz} talked to only {} external addresses while the baseline was learned, not this one",
                    z.external.len()
                ),
            )
        };
        let mut f = cx.finding(r, s, d, Detector::NewExternal, severity, score);
        f.explanation = format!(
            "{} ({sz}) connected to external host {} on {svc}: {why}.",
            r.src_ip, r.dst_ip
        );
        f.observed = json!({"bytes_sent": r.bytes_fwd, "bytes_received": r.bytes_rev});
        f.baseline = json!({
            "zone_external_destinations": z.external.len(),
            "zone_external_flows": z.external_flows,
            "zone_used_service": service_known,
        });
        out.push(f);
    }
}
