//! `new_peer`: an internal host connects to an internal host, on a service,
//! for the first time. Ranked by how unusual that is for the zone: a first
//! connection between two zones on a service, or a new peer in the CDE, is
//! reported; a host using a server its zone-mates use every day is not.
//! Only connections that worked count (failed attempts are the scan
//! detector's and the segmentation policy's business).

use serde_json::json;

use super::event::{Detector, Finding, service_text};
use super::{Ctx, Ends};
use crate::baseline::learn::service_port;
use crate::baseline::model::{Edge, Proto};
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
}
