//! What `segwatch check-config` prints for a valid file: the warnings with
//! their lines, then the policy in short (zones, rules in the order they are
//! tried, defaults).

use std::path::Path;

use super::load::Warning;
use super::{Policy, ZoneSet};

/// What `check-config` prints for a valid file: warnings first, then what
/// the policy says in short.
pub fn explain(file: &Path, p: &Policy, warnings: &[Warning]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for w in warnings {
        let _ = writeln!(out, "{}:{}: warning: {}", file.display(), w.line, w.message);
    }
    let _ = writeln!(
        out,
        "{}: valid ({} warning{})",
        file.display(),
        warnings.len(),
        if warnings.len() == 1 { "" } else { "s" }
    );
    if p.is_empty() {
        let _ = writeln!(out, "  no zones: flows are tracked but not judged");
        return out;
    }
    let _ = writeln!(out, "  zones:");
    for z in &p.zones {
        let nets: Vec<String> = z.cidrs.iter().map(ToString::to_string).collect();
        let vlans: Vec<String> = z.vlans.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "    {:<16} {:<12} {}{}{}",
            z.name,
            z.pci.as_str(),
            if z.implicit {
                "(addresses in no zone)".to_string()
            } else {
                nets.join(" ")
            },
            if vlans.is_empty() { "" } else { " vlans " },
            vlans.join(",")
        );
    }
    let side = |s: &ZoneSet| match s {
        ZoneSet::Any => "any".to_string(),
        ZoneSet::Some(ids) => ids
            .iter()
            .map(|&i| p.zone(i).name.as_str())
            .collect::<Vec<_>>()
            .join("+"),
    };
    let _ = writeln!(out, "  rules (first match wins):");
    for r in &p.rules {
        let _ = writeln!(
            out,
            "    line {:<4} {:<5} {} -> {} {}  {}",
            r.line,
            format!("{:?}", r.action).to_lowercase(),
            side(&r.from),
            side(&r.to),
            r.describe_service(),
            r.name
        );
    }
    let d = &p.defaults;
    let _ = writeln!(
        out,
        "  otherwise: {} between zones, {} within a zone",
        format!("{:?}", d.between_zones).to_lowercase(),
        format!("{:?}", d.within_zone).to_lowercase()
    );
    out
}
