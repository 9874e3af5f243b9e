//! `new_service`: an internal host answers, on a TCP or UDP port below
//! `ephemeral_from`, a connection on a service it never offered while the
//! baseline was learned: a new application, or a backdoor.

use serde_json::json;

use super::event::{Detector, Finding, service_text};
use super::{Ctx, Ends};
use crate::baseline::learn::service_port;
use crate::baseline::model::{Proto, Service};
use crate::decode::proto;
use crate::flow::FlowRecord;
use crate::segmentation::Severity;

pub fn flow(cx: &Ctx<'_>, r: &FlowRecord, e: &Ends<'_>, out: &mut Vec<Finding>) {
    let (s, d) = (e.s, e.d);
    if cx.known.is_none() {
        return;
    }
    if !r.outcome.connected() {
        return;
    }
    let port = service_port(r);
    let dz = cx.nets.name(d.zone);
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
}
