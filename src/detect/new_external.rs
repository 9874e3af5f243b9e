//! `new_external`: an internal host connects outside on a service its zone
//! never used outside, or (in zones that reached few external addresses
//! while learning) to an address its zone never reached. Zones that browse
//! the Internet are "open": a new web site there is not news.

use serde_json::json;

use super::event::{Detector, Finding, service_text};
use super::{Ctx, Ends};
use crate::baseline::learn::service_port;
use crate::flow::FlowRecord;
use crate::segmentation::Severity;

pub fn flow(cx: &Ctx<'_>, r: &FlowRecord, e: &Ends<'_>, out: &mut Vec<Finding>) {
    let (s, d) = (e.s, e.d);
    let Some(known) = cx.known else { return };
    if !r.outcome.connected() {
        return;
    }
    let port = service_port(r);
    let sz = cx.nets.name(s.zone);
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
