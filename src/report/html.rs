//! The report as one self-contained HTML page: inline CSS, no scripts, no
//! external resources, readable on screen and printed. Elements carry
//! `id`s and `data-*` attributes so the page can be checked in a browser.

use std::fmt::Write;

use super::{PciReport, Verdict};
use crate::zones::Pci;

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map_or("—".to_string(), esc)
}

fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24; margin: 2em auto; max-width: 78em; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
.meta { color: #57606a; }
table { border-collapse: collapse; margin: .6em 0; width: 100%; }
th, td { border: 1px solid #d0d7de; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.findings { border: 2px solid #57606a; border-radius: 6px; padding: .5em 1.2em; background: #f6f8fa; }
.findings li { margin: .25em 0; }
.matrix td, .matrix th { text-align: center; min-width: 5.5em; }
.matrix th.row { text-align: right; }
.v-violated { background: #cf222e; color: #fff; font-weight: bold; }
.v-allowed { background: #dafbe1; }
.v-isolated { background: #ddf4ff; }
.v-not-observed { background: #fff; color: #8c959f; }
.sev { display: inline-block; padding: 0 .45em; border-radius: 3px; font-weight: bold; font-size: .9em; }
.sev-critical { background: #cf222e; color: #fff; }
.sev-high { background: #fb8500; color: #fff; }
.sev-medium { background: #ffd33d; }
.sev-low { background: #eaeef2; }
.unseen { color: #cf222e; font-weight: bold; }
.never { background: #fff8c5; }
.note { border-left: 4px solid #fb8500; padding: .3em .8em; background: #fff8f0; }
.legend span { padding: .1em .6em; margin-right: .6em; border: 1px solid #d0d7de; }
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
@media print { body { margin: 0; max-width: none; font-size: 11px; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
"#;

/// Render the report.
pub fn render(r: &PciReport) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&r.title)
    );
    let c = &r.capture;
    let _ = writeln!(
        h,
        "<h1>{}</h1><p class=\"meta\">Capture window {} to {} · policy {} · {}</p>",
        esc(&r.title),
        opt(&c.start),
        opt(&c.end),
        opt(&r.policy_file),
        esc(&r.generated_by)
    );
    findings(&mut h, r);
    coverage(&mut h, r);
    matrix(&mut h, r);
    connected(&mut h, r);
    violations(&mut h, r);
    rules(&mut h, r);
    requirements(&mut h, r);
    h.push_str("</body></html>\n");
    h
}

fn findings(h: &mut String, r: &PciReport) {
    h.push_str("<section id=\"findings\" class=\"findings\"><h2>Findings</h2><ul>");
    if r.findings.is_empty() {
        h.push_str("<li>Nothing to report.</li>");
    }
    for f in &r.findings {
        let _ = write!(h, "<li>{}</li>", esc(f));
    }
    h.push_str("</ul></section>\n");
}

fn coverage(h: &mut String, r: &PciReport) {
    let c = &r.capture;
    let _ = write!(
        h,
        "<section id=\"coverage\"><h2>Capture and coverage</h2><table>\
         <tr><th>Packets</th><td class=\"n\">{}</td><th>Flows</th><td class=\"n\">{}</td></tr>\
         <tr><th>Flows judged</th><td class=\"n\">{}</td><th>Not judged (broadcast, multicast, link-local)</th><td class=\"n\">{}</td></tr>\
         <tr><th>Capture loss</th><td colspan=\"3\">{}</td></tr></table>",
        num(c.packets),
        num(c.flows),
        num(c.flows_judged),
        num(c.flows_not_judged),
        match &c.capture_loss {
            Some(l) => format!(
                "kernel {}, interface {}, segwatch queues {}",
                num(l.kernel_dropped),
                num(l.interface_dropped),
                num(l.segwatch_dropped)
            ),
            None => "not known for capture files".into(),
        }
    );
    for p in &c.input_problems {
        let _ = write!(h, "<p class=\"note\">Input problem: {}</p>", esc(p));
    }
    h.push_str(
        "<table id=\"zones\"><tr><th>Zone</th><th>PCI scope</th><th>Networks</th><th>Observed</th>\
         <th>Flows out</th><th>Flows in</th><th>First seen</th><th>Last seen</th></tr>",
    );
    for z in &r.zones {
        let mut nets = z.cidrs.join(", ");
        if !z.vlans.is_empty() {
            let v: Vec<String> = z.vlans.iter().map(ToString::to_string).collect();
            let _ = write!(nets, " (VLAN {})", v.join(", "));
        }
        if nets.is_empty() {
            nets = "addresses in no other zone".into();
        }
        let _ = write!(
            h,
            "<tr data-zone=\"{}\" data-observed=\"{}\"><td><b>{}</b><br><span class=\"meta\">{}</span></td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&z.name),
            z.observed,
            esc(&z.name),
            esc(&z.description),
            z.pci.as_str(),
            esc(&nets),
            if z.observed {
                "yes".to_string()
            } else {
                "<span class=\"unseen\">NO: not covered by the mirror?</span>".to_string()
            },
            num(z.flows_out),
            num(z.flows_in),
            opt(&z.first_seen),
            opt(&z.last_seen)
        );
    }
    h.push_str("</table></section>\n");
}

fn class(v: Verdict) -> &'static str {
    match v {
        Verdict::Violated => "v-violated",
        Verdict::Allowed => "v-allowed",
        Verdict::Isolated => "v-isolated",
        Verdict::NotObserved => "v-not-observed",
    }
}

fn matrix(h: &mut String, r: &PciReport) {
    h.push_str(
        "<section id=\"matrix\"><h2>Zone-to-zone matrix</h2>\
         <p>Rows are the zone that opened the connection, columns the zone it went to. \
         <b>violated</b>: connections the policy denies got through; <b>allowed</b>: only allowed flows got through; \
         <b>isolated</b>: only denied attempts, all dropped or refused; <b>not observed</b>: no traffic.</p>\
         <p class=\"legend\"><span class=\"v-violated\">violated</span><span class=\"v-allowed\">allowed</span>\
         <span class=\"v-isolated\">isolated</span><span class=\"v-not-observed\">not observed</span></p>",
    );
    if r.matrix_complete {
        h.push_str("<table class=\"matrix\"><tr><th>from \\ to</th>");
        for z in &r.zones {
            let _ = write!(h, "<th>{}</th>", esc(&z.name));
        }
        h.push_str("</tr>");
        for from in &r.zones {
            let _ = write!(h, "<tr><th class=\"row\">{}</th>", esc(&from.name));
            for to in &r.zones {
                let Some(p) = r
                    .matrix
                    .iter()
                    .find(|p| p.from == from.name && p.to == to.name)
                else {
                    h.push_str("<td>?</td>");
                    continue;
                };
                let detail = if p.flows == 0 {
                    "—".to_string()
                } else {
                    format!("{} flows<br>{} denied", num(p.flows), num(p.denied_flows))
                };
                let _ = write!(
                    h,
                    "<td class=\"{}\" data-from=\"{}\" data-to=\"{}\" data-verdict=\"{}\" title=\"{} → {}: {}\">{}<br><small>{}</small></td>",
                    class(p.verdict),
                    esc(&p.from),
                    esc(&p.to),
                    p.verdict.as_str(),
                    esc(&p.from),
                    esc(&p.to),
                    p.verdict.as_str(),
                    p.verdict.as_str(),
                    detail
                );
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    h.push_str(
        "<table id=\"pairs\"><tr><th>From</th><th>To</th><th>Verdict</th><th>Flows</th><th>Attempted</th>\
         <th>Rejected</th><th>Established</th><th>Closed</th><th>Denied</th><th>Allowed by</th></tr>",
    );
    for p in r.matrix.iter().filter(|p| p.flows > 0) {
        let by: Vec<String> = p
            .allowed_by
            .iter()
            .map(|rc| format!("{} ({})", esc(&rc.rule), num(rc.flows)))
            .collect();
        let o = &p.by_outcome;
        let _ = write!(
            h,
            "<tr data-from=\"{}\" data-to=\"{}\" data-verdict=\"{}\"><td>{}</td><td>{}</td><td class=\"{}\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&p.from),
            esc(&p.to),
            p.verdict.as_str(),
            esc(&p.from),
            esc(&p.to),
            class(p.verdict),
            p.verdict.as_str(),
            num(p.flows),
            num(o.attempted),
            num(o.rejected),
            num(o.established),
            num(o.closed),
            num(p.denied_flows),
            by.join(", ")
        );
    }
    h.push_str("</table></section>\n");
}

fn connected(h: &mut String, r: &PciReport) {
    let cde: Vec<&str> = r
        .zones
        .iter()
        .filter(|z| z.pci == Pci::Cde)
        .map(|z| z.name.as_str())
        .collect();
    let _ = write!(
        h,
        "<section id=\"connected\"><h2>Systems connected to the CDE</h2>\
         <p>Every host outside the CDE ({}) that completed a connection with it, in either direction. \
         These systems are in PCI DSS scope as connected-to systems (12.5.2).</p>\
         <table><tr><th>Host</th><th>Zone</th><th>Direction</th><th>Service</th><th>Allowed by</th>\
         <th>Justification</th><th>CDE hosts</th><th>Flows</th><th>First seen</th><th>Last seen</th></tr>",
        esc(&cde.join(", "))
    );
    for s in &r.connected_systems {
        for (i, svc) in s.services.iter().enumerate() {
            let host = if i == 0 {
                format!("<b>{}</b>", s.host)
            } else {
                String::new()
            };
            let mut hosts: Vec<String> = svc.cde_hosts.iter().map(ToString::to_string).collect();
            if svc.more_cde_hosts {
                hosts.push("and more".into());
            }
            let _ = write!(
                h,
                "<tr data-host=\"{}\" data-allowed=\"{}\"><td>{host}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                s.host,
                svc.allowed,
                esc(&s.zone),
                if svc.direction == "to_cde" {
                    "into the CDE"
                } else {
                    "from the CDE"
                },
                esc(&svc.proto),
                svc.port.map_or(String::new(), |p| format!("/{p}")),
                if svc.allowed {
                    esc(&svc.rule)
                } else {
                    "<span class=\"sev sev-critical\">DENIED</span>".to_string()
                },
                esc(&svc.why),
                hosts.join(", "),
                num(svc.flows),
                opt(&svc.first_seen),
                opt(&svc.last_seen)
            );
        }
    }
    if r.connected_systems.is_empty() {
        h.push_str("<tr><td colspan=\"10\">None observed.</td></tr>");
    }
    h.push_str("</table>");
    if r.connected_not_listed > 0 {
        let _ = write!(
            h,
            "<p class=\"note\">{} further entries were not listed (table full).</p>",
            num(r.connected_not_listed)
        );
    }
    h.push_str("</section>\n");
}

fn violations(h: &mut String, r: &PciReport) {
    let sev: Vec<String> = r
        .violations_by_severity
        .iter()
        .map(|(k, v)| format!("{} {k}", num(*v)))
        .collect();
    let _ = write!(
        h,
        "<section id=\"violations\"><h2>Violations</h2><p>Flows the policy denies, deduplicated: {}.</p>\
         <table><tr><th>Severity</th><th>First seen</th><th>Source</th><th>Destination</th><th>Service</th>\
         <th>Outcome</th><th>Count</th><th>Explanation</th></tr>",
        sev.join(", ")
    );
    for v in &r.violations {
        let dst = match (v.dst_ip, v.dst_port) {
            (Some(ip), _) => ip.to_string(),
            (None, _) => format!("{} hosts", v.distinct_dst_hosts.unwrap_or(0)),
        };
        let service = match (&v.ports, v.dst_port) {
            (Some(ports), _) => {
                format!("{}/{}", crate::decode::proto_name(v.proto), ports.join(","))
            }
            (None, Some(p)) => format!("{}/{p}", crate::decode::proto_name(v.proto)),
            (None, None) => crate::decode::proto_name(v.proto).into_owned(),
        };
        let _ = write!(
            h,
            "<tr data-severity=\"{}\" data-src=\"{}\" data-outcome=\"{}\"><td><span class=\"sev sev-{}\">{}</span></td>\
             <td>{}</td><td>{}<br><span class=\"meta\">{}</span></td><td>{}<br><span class=\"meta\">{}</span></td>\
             <td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            v.severity.as_str(),
            v.src_ip,
            v.outcome.as_str(),
            v.severity.as_str(),
            v.severity.as_str(),
            crate::flow::record::format_rfc3339(v.first_seen),
            v.src_ip,
            esc(&v.src_zone),
            esc(&dst),
            esc(&v.dst_zone),
            esc(&service),
            v.outcome.as_str(),
            num(v.count),
            esc(&v.explanation)
        );
    }
    if r.violations.is_empty() {
        h.push_str("<tr><td colspan=\"8\">None observed.</td></tr>");
    }
    h.push_str("</table>");
    if r.violations_not_listed > 0 {
        let _ = write!(
            h,
            "<p class=\"note\">{} further events are in the event file but not listed here.</p>",
            num(r.violations_not_listed)
        );
    }
    h.push_str("</section>\n");
}

fn rules(h: &mut String, r: &PciReport) {
    h.push_str(
        "<section id=\"rules\"><h2>Rule usage</h2><p>Each rule of the policy, the flows it decided, and its business justification (1.2.5). \
         Rules never hit during the capture are highlighted: candidates for removal in the review of 1.2.7.</p>\
         <table><tr><th>Rule</th><th>Line</th><th>Action</th><th>From</th><th>To</th><th>Service</th><th>Justification</th>\
         <th>Flows</th><th>First seen</th><th>Last seen</th></tr>",
    );
    for u in &r.rules {
        let _ = write!(
            h,
            "<tr data-rule=\"{}\" data-flows=\"{}\"{}><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&u.name),
            u.flows,
            if u.flows == 0 { " class=\"never\"" } else { "" },
            esc(&u.name),
            u.line,
            format!("{:?}", u.action).to_lowercase(),
            esc(&u.from),
            esc(&u.to),
            esc(&u.service),
            if u.why.is_empty() {
                "<span class=\"unseen\">missing</span>".to_string()
            } else {
                esc(&u.why)
            },
            if u.flows == 0 {
                "never hit".to_string()
            } else {
                num(u.flows)
            },
            opt(&u.first_seen),
            opt(&u.last_seen)
        );
    }
    h.push_str("</table></section>\n");
}

fn requirements(h: &mut String, r: &PciReport) {
    h.push_str(
        "<section id=\"requirements\"><h2>PCI DSS v4.0 requirements supported</h2><table>\
         <tr><th>Requirement</th><th>What it asks</th><th>Evidence in this report</th><th>Sections</th></tr>",
    );
    for q in &r.requirements {
        let links: Vec<String> = q
            .sections
            .iter()
            .map(|s| format!("<a href=\"#{s}\">{s}</a>"))
            .collect();
        let _ = write!(
            h,
            "<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            q.id,
            esc(q.requirement),
            esc(q.evidence),
            links.join(" ")
        );
    }
    h.push_str("</table>");
    for l in &r.limitations {
        let _ = write!(h, "<p class=\"note\">{}</p>", esc(l));
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(num(1234567), "1,234,567");
        assert_eq!(num(12), "12");
    }
}
