//! `segwatch baseline show`: a baseline summarised for people.

use std::fmt::Write as _;

use super::dist::Dist;
use super::model::Baseline;
use crate::detect::event::{bytes_text, service_text};
use crate::flow::record::format_rfc3339;

fn dist_line(d: &Dist, bytes: bool) -> String {
    if d.count() == 0 {
        return "none".into();
    }
    let f = |v: u64| {
        if bytes {
            bytes_text(v as f64)
        } else {
            v.to_string()
        }
    };
    format!(
        "median {}, p99 {}, max {} ({} samples)",
        f(d.quantile(0.5)),
        f(d.quantile(0.99)),
        f(d.max()),
        d.count()
    )
}

/// The text `baseline show` prints; `hosts` limits the host list.
pub fn render(b: &Baseline, hosts: usize) -> String {
    let mut s = String::new();
    let l = &b.learned;
    // Saturating here and below: a hand-edited file may hold any numbers.
    let span = l.last_packet.0.saturating_sub(l.first_packet.0) as f64 / 3.6e12;
    let _ = writeln!(s, "baseline (schema {} version {})", b.schema, b.version);
    let _ = writeln!(
        s,
        "  learned      {} to {} ({span:.1} hours), {} flows, {} ARP packets",
        format_rfc3339(l.first_packet.0),
        format_rfc3339(l.last_packet.0),
        l.flows,
        l.arp_packets
    );
    if let Some(u) = l.unfinished {
        let _ = writeln!(
            s,
            "  UNFINISHED   a live-learning checkpoint: {} s of {} s learned; `run --learn-for` with this file resumes it",
            u.done_secs, u.goal_secs
        );
    }
    if !l.sources.is_empty() {
        let _ = writeln!(s, "  from         {}", l.sources.join(", "));
    }
    let _ = writeln!(
        s,
        "  size         {} hosts ({} evicted at the cap of {}), {} zones, {} ARP bindings, {} known periodic pairs",
        b.hosts.len(),
        l.hosts_evicted,
        b.limits.max_hosts,
        b.zones.len(),
        b.arp.len(),
        b.beacons.len()
    );
    let _ = writeln!(s, "zones");
    for (name, z) in &b.zones {
        let flows = z
            .hours
            .iter()
            .filter_map(|h| h.flows.last())
            .fold(0u64, |n, f| n.saturating_add(*f));
        let _ = writeln!(
            s,
            "  {name:<14} {} hosts, {} zone-to-zone services, {} external destinations{} ({} flows), {} hour-of-week slots ({flows} flows in the latest week)",
            z.hosts,
            z.edges.len(),
            z.external.len(),
            if z.external_full {
                " (cap reached)"
            } else {
                ""
            },
            z.external_flows,
            z.hours.len(),
        );
        if z.bytes_per_flow.count() > 0 {
            let _ = writeln!(
                s,
                "      bytes per flow {}; duration {} ms median, {} ms p99",
                dist_line(&z.bytes_per_flow, true),
                z.duration_ms.quantile(0.5),
                z.duration_ms.quantile(0.99)
            );
        }
        let mut edges: Vec<_> = z.edges.iter().collect();
        edges.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (e, n) in edges.iter().take(8) {
            let _ = writeln!(
                s,
                "      -> {:<10} {:<10} {n} flows",
                e.to,
                service_text(e.proto.0, e.port)
            );
        }
    }
    let _ = writeln!(s, "hosts (busiest {hosts})");
    let mut list: Vec<_> = b.hosts.iter().collect();
    list.sort_by(|a, b| {
        (b.1.flows_out.saturating_add(b.1.flows_in))
            .cmp(&a.1.flows_out.saturating_add(a.1.flows_in))
            .then(a.0.cmp(b.0))
    });
    for (ip, h) in list.into_iter().take(hosts) {
        let mut services: Vec<_> = h.services.keys().collect();
        services.sort();
        let services: Vec<String> = services
            .iter()
            .take(8)
            .map(|v| service_text(v.proto.0, v.port))
            .collect();
        let _ = writeln!(
            s,
            "  {ip:<16} {:<10} {} flows out, {} in; {} peers{}; offers {}",
            h.zone,
            h.flows_out,
            h.flows_in,
            h.peers.len(),
            if h.peers_full { " (cap reached)" } else { "" },
            if services.is_empty() {
                "nothing".to_string()
            } else {
                services.join(" ")
            },
        );
        let _ = writeln!(
            s,
            "      sent per hour      {}",
            dist_line(&h.bytes_out_per_hour, true)
        );
        let _ = writeln!(
            s,
            "      uploads per hour   {}",
            dist_line(&h.external_bytes_per_hour, true)
        );
        let _ = writeln!(
            s,
            "      fan-out per minute {} hosts / {} ports at most",
            h.fanout_hosts.max(),
            h.fanout_ports.max()
        );
    }
    s
}
