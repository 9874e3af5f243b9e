//! The policy part of the config file (`[[zone]]`, `[[rule]]`, `[policy]`):
//! raw TOML forms and their validation into a [`Policy`], with errors that
//! point at the line and warnings for rules and zones that look wrong but are
//! legal (shadowed rules, unused zones, missing justifications).

use std::net::IpAddr;
use std::ops::Range;

use hashbrown::{HashMap, HashSet};
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::{Action, Defaults, EventSettings, Policy, Rule, ZoneSet};
use crate::config::ConfigError;
use crate::decode::proto;
use crate::zones::{Pci, Zone, ZoneId};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawZone {
    name: Spanned<String>,
    #[serde(default)]
    cidrs: Vec<Spanned<String>>,
    #[serde(default)]
    vlans: Vec<Spanned<i64>>,
    pci: Option<Spanned<String>>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PortSpec {
    Number(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    name: Option<Spanned<String>>,
    from: Spanned<OneOrMany>,
    to: Spanned<OneOrMany>,
    proto: Option<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<PortSpec>>,
    #[serde(default)]
    from_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    to_hosts: Vec<Spanned<String>>,
    action: Option<Spanned<String>>,
    why: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    between_zones: Option<Spanned<String>>,
    within_zone: Option<Spanned<String>>,
    unzoned: Option<Spanned<String>>,
    link_local: Option<Spanned<String>>,
    dedup_window_secs: Option<Spanned<i64>>,
    max_events_per_source: Option<Spanned<i64>>,
}

/// The raw policy sections of a config file.
pub(crate) struct RawParts {
    pub zones: Vec<Spanned<RawZone>>,
    pub rules: Vec<Spanned<RawRule>>,
    pub policy: RawPolicy,
}

/// Makes a config error from (span, message, fix).
pub(crate) type MakeError<'a> = &'a dyn Fn(Option<Range<usize>>, String, &str) -> ConfigError;

/// Builds errors and line numbers for the file being loaded.
pub(crate) struct Locator<'a> {
    pub invalid: MakeError<'a>,
    pub line_of: &'a dyn Fn(usize) -> usize,
}

/// A legal but suspicious part of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

pub(crate) fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

fn action(
    v: &Option<Spanned<String>>,
    default: Action,
    loc: &Locator,
) -> Result<Action, ConfigError> {
    match v.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None => Ok(default),
        Some(("allow", _)) => Ok(Action::Allow),
        Some(("deny", _)) => Ok(Action::Deny),
        Some((other, span)) => Err((loc.invalid)(
            Some(span),
            format!("unknown action \"{other}\""),
            "use \"allow\" or \"deny\"",
        )),
    }
}

pub(crate) fn protocols(
    v: &Option<Spanned<String>>,
    loc: &Locator,
) -> Result<Vec<u8>, ConfigError> {
    let Some(s) = v else { return Ok(Vec::new()) };
    Ok(match s.get_ref().to_ascii_lowercase().as_str() {
        "any" => Vec::new(),
        "tcp" => vec![proto::TCP],
        "udp" => vec![proto::UDP],
        "icmp" => vec![proto::ICMP, proto::ICMPV6],
        "icmpv6" => vec![proto::ICMPV6],
        "gre" => vec![47],
        "esp" => vec![50],
        "sctp" => vec![132],
        other => match other.parse::<u8>() {
            Ok(n) => vec![n],
            Err(_) => {
                return Err((loc.invalid)(
                    Some(s.span()),
                    format!("unknown protocol \"{other}\""),
                    "use tcp, udp, icmp, icmpv6, any, or an IP protocol number (0-255)",
                ));
            }
        },
    })
}

pub(crate) fn port_range(p: &Spanned<PortSpec>, loc: &Locator) -> Result<(u16, u16), ConfigError> {
    let bad = |what: String| {
        (loc.invalid)(
            Some(p.span()),
            what,
            "write a port (\"443\" or 443) or an inclusive range (\"9000-9010\") between 1 and 65535",
        )
    };
    let num = |s: &str| s.trim().parse::<u16>().ok().filter(|&n| n > 0);
    match p.get_ref() {
        PortSpec::Number(n) => match u16::try_from(*n) {
            Ok(n) if n > 0 => Ok((n, n)),
            _ => Err(bad(format!("port {n} is out of range"))),
        },
        PortSpec::Text(s) => {
            let (lo, hi) = match s.split_once('-') {
                Some((a, b)) => (num(a), num(b)),
                None => (num(s), num(s)),
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
                (Some(_), Some(_)) => Err(bad(format!("port range \"{s}\" runs backwards"))),
                _ => Err(bad(format!("\"{s}\" is not a port or port range"))),
            }
        }
    }
}

fn hosts(v: &[Spanned<String>], loc: &Locator) -> Result<Vec<IpNet>, ConfigError> {
    v.iter()
        .map(|h| {
            parse_net(h.get_ref()).ok_or_else(|| {
                (loc.invalid)(
                    Some(h.span()),
                    format!("\"{}\" is not an IP address or CIDR", h.get_ref()),
                    "write an address (10.20.0.10, 2001:db8::10) or a prefix (10.20.0.0/28)",
                )
            })
        })
        .collect()
}

/// Validate the policy sections; warnings are returned beside the policy.
pub(crate) fn build(raw: RawParts, loc: &Locator) -> Result<(Policy, Vec<Warning>), ConfigError> {
    let mut warnings = Vec::new();
    let mut zones: Vec<Zone> = Vec::new();
    let mut zone_lines = Vec::new();
    let mut zone_index: HashMap<String, usize> = HashMap::new();
    for z in &raw.zones {
        let line = (loc.line_of)(z.span().start);
        let z = z.get_ref();
        let name = z.name.get_ref().trim().to_string();
        let name_ok = !name.is_empty()
            && name != "any"
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return Err((loc.invalid)(
                Some(z.name.span()),
                format!("zone name \"{name}\" is not usable"),
                "use letters, digits, '_', '-' or '.', and not the reserved word \"any\"",
            ));
        }
        if let Some(&i) = zone_index.get(&name) {
            return Err((loc.invalid)(
                Some(z.name.span()),
                format!(
                    "zone \"{name}\" is declared twice (first on line {})",
                    zone_lines[i]
                ),
                "give each zone a distinct name, or merge the two declarations",
            ));
        }
        let mut cidrs = Vec::new();
        for c in &z.cidrs {
            let Some(net) = parse_net(c.get_ref()) else {
                return Err((loc.invalid)(
                    Some(c.span()),
                    format!("\"{}\" is not a CIDR prefix", c.get_ref()),
                    "write a prefix such as 10.20.0.0/24 or 2001:db8:20::/48 (or a single address)",
                ));
            };
            if net.trunc() != net {
                warnings.push(Warning {
                    line: (loc.line_of)(c.span().start),
                    message: format!(
                        "zone \"{name}\": {net} has host bits set; it means {}",
                        net.trunc()
                    ),
                });
            }
            cidrs.push(net.trunc());
        }
        let mut vlans = Vec::new();
        for v in &z.vlans {
            match u16::try_from(*v.get_ref()) {
                Ok(n) if (1..=4094).contains(&n) => vlans.push(n),
                _ => {
                    return Err((loc.invalid)(
                        Some(v.span()),
                        format!("VLAN {} is out of range", v.get_ref()),
                        "use VLAN IDs from 1 to 4094",
                    ));
                }
            }
        }
        if cidrs.is_empty() && vlans.is_empty() {
            return Err((loc.invalid)(
                Some(z.name.span()),
                format!("zone \"{name}\" has neither cidrs nor vlans, so nothing belongs to it"),
                "add cidrs = [\"10.0.0.0/24\"] (and optionally vlans = [10])",
            ));
        }
        let pci = match z.pci.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
            None | Some(("out_of_scope", _)) => Pci::OutOfScope,
            Some(("cde", _)) => Pci::Cde,
            Some(("connected", _)) => Pci::Connected,
            Some((other, span)) => {
                return Err((loc.invalid)(
                    Some(span),
                    format!("unknown PCI scope \"{other}\""),
                    "use \"cde\", \"connected\" or \"out_of_scope\"",
                ));
            }
        };
        zone_index.insert(name.clone(), zones.len());
        zones.push(Zone {
            name,
            cidrs,
            vlans,
            pci,
            description: z.description.clone().unwrap_or_default(),
            implicit: false,
        });
        zone_lines.push(line);
    }

    let p = &raw.policy;
    let unzoned_name = p
        .unzoned
        .as_ref()
        .map_or("external".to_string(), |s| s.get_ref().trim().to_string());
    if unzoned_name.is_empty() || unzoned_name == "any" {
        return Err((loc.invalid)(
            p.unzoned.as_ref().map(|s| s.span()),
            format!("policy.unzoned = \"{unzoned_name}\" is not a usable zone name"),
            "name a zone, for example unzoned = \"external\"",
        ));
    }
    let unzoned = match zone_index.get(&unzoned_name) {
        Some(&i) => i,
        None => {
            zones.push(Zone {
                name: unzoned_name.clone(),
                cidrs: Vec::new(),
                vlans: Vec::new(),
                pci: Pci::OutOfScope,
                description: "addresses in no declared zone".into(),
                implicit: true,
            });
            zone_lines.push(0);
            zone_index.insert(unzoned_name.clone(), zones.len() - 1);
            zones.len() - 1
        }
    };
    let zone_id = |i: usize| ZoneId::try_from(i).unwrap_or(ZoneId::MAX);
    if zones.len() > usize::from(ZoneId::MAX) {
        return Err((loc.invalid)(
            None,
            format!("{} zones is more than segwatch supports", zones.len()),
            "use at most 65,534 zones",
        ));
    }
    let link_local = match p
        .link_local
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        None | Some(("ignore", _)) => false,
        Some(("judge", _)) => true,
        Some((other, span)) => {
            return Err((loc.invalid)(
                Some(span),
                format!("policy.link_local = \"{other}\" is not known"),
                "use \"ignore\" (default: broadcast, multicast and link-local traffic is not judged) or \"judge\"",
            ));
        }
    };
    let ranged = |v: &Option<Spanned<i64>>, name: &str, lo: i64, hi: i64, default: i64| match v {
        None => Ok(default),
        Some(s) if (lo..=hi).contains(s.get_ref()) => Ok(*s.get_ref()),
        Some(s) => Err((loc.invalid)(
            Some(s.span()),
            format!("{name} = {} is out of range", s.get_ref()),
            &format!("use a value from {lo} to {hi}"),
        )),
    };
    let defaults = Defaults {
        between_zones: action(&p.between_zones, Action::Deny, loc)?,
        within_zone: action(&p.within_zone, Action::Allow, loc)?,
        unzoned: zone_id(unzoned),
        judge_link_local: link_local,
    };
    let events = EventSettings {
        dedup_window_ns: ranged(
            &p.dedup_window_secs,
            "policy.dedup_window_secs",
            1,
            86_400,
            300,
        )? * 1_000_000_000,
        max_events_per_source: ranged(
            &p.max_events_per_source,
            "policy.max_events_per_source",
            1,
            100_000,
            5,
        )? as usize,
    };

    let mut rules = Vec::new();
    let mut rule_names: HashSet<String> = HashSet::new();
    let mut mentioned = vec![false; zones.len()];
    for (n, r) in raw.rules.iter().enumerate() {
        let line = (loc.line_of)(r.span().start);
        let r = r.get_ref();
        let mut side = |v: &Spanned<OneOrMany>| -> Result<ZoneSet, ConfigError> {
            let names: Vec<&str> = match v.get_ref() {
                OneOrMany::One(s) => vec![s.as_str()],
                OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
            };
            if names.is_empty() {
                return Err((loc.invalid)(
                    Some(v.span()),
                    "an empty zone list matches nothing".into(),
                    "name at least one zone, or \"any\"",
                ));
            }
            if names.contains(&"any") {
                return Ok(ZoneSet::Any);
            }
            let mut ids = Vec::new();
            for name in names {
                let Some(&i) = zone_index.get(name) else {
                    let known: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
                    return Err((loc.invalid)(
                        Some(v.span()),
                        format!("unknown zone \"{name}\" in rule"),
                        &format!(
                            "declare it with [[zone]], or use one of: {}, any",
                            known.join(", ")
                        ),
                    ));
                };
                mentioned[i] = true;
                ids.push(zone_id(i));
            }
            Ok(ZoneSet::Some(ids))
        };
        let from = side(&r.from)?;
        let to = side(&r.to)?;
        let protos = protocols(&r.proto, loc)?;
        let ports = r
            .ports
            .iter()
            .map(|p| port_range(p, loc))
            .collect::<Result<Vec<_>, _>>()?;
        if !ports.is_empty() && !protos.iter().all(|&p| p == proto::TCP || p == proto::UDP) {
            return Err((loc.invalid)(
                r.proto.as_ref().map(|s| s.span()).or(Some(r.from.span())),
                "ports are given but the protocol has none".into(),
                "set proto = \"tcp\" or \"udp\" (or \"any\"), or remove ports",
            ));
        }
        let action = action(&r.action, Action::Allow, loc)?;
        let why = r.why.clone().unwrap_or_default().trim().to_string();
        let name = r.name.as_ref().map_or(format!("rule-{}", n + 1), |s| {
            s.get_ref().trim().to_string()
        });
        if !rule_names.insert(name.clone()) {
            return Err((loc.invalid)(
                r.name.as_ref().map(|s| s.span()),
                format!("rule name \"{name}\" is used twice"),
                "give each rule a distinct name",
            ));
        }
        let rule = Rule {
            name,
            line,
            from,
            to,
            protos,
            ports,
            from_hosts: hosts(&r.from_hosts, loc)?,
            to_hosts: hosts(&r.to_hosts, loc)?,
            action,
            why,
        };
        if rule.action == Action::Allow && rule.why.is_empty() {
            warnings.push(Warning {
                line,
                message: format!(
                    "rule \"{}\" allows traffic without a `why`: PCI DSS 1.2.5 asks for a business justification of every allowed service",
                    rule.name
                ),
            });
        }
        if let Some(earlier) = rules.iter().find(|o: &&Rule| rule.covered_by(o)) {
            warnings.push(Warning {
                line,
                message: format!(
                    "rule \"{}\" can never match: rule \"{}\" (line {}) comes first and matches every flow it would",
                    rule.name, earlier.name, earlier.line
                ),
            });
        }
        for (hosts_of, side, label) in [
            (&rule.to_hosts, &rule.to, "to_hosts"),
            (&rule.from_hosts, &rule.from, "from_hosts"),
        ] {
            let ZoneSet::Some(ids) = side else { continue };
            for h in hosts_of {
                let inside = ids.iter().any(|&z| {
                    let zone = &zones[usize::from(z)];
                    zone.cidrs.is_empty()
                        || zone.cidrs.iter().any(|c| c.contains(h) || h.contains(c))
                });
                if !inside {
                    warnings.push(Warning {
                        line,
                        message: format!(
                            "rule \"{}\" can never match {label} {h}: it lies outside the rule's zones",
                            rule.name
                        ),
                    });
                }
            }
        }
        rules.push(rule);
    }
    for (i, z) in zones.iter().enumerate() {
        if !mentioned[i] && !z.implicit {
            warnings.push(Warning {
                line: zone_lines[i],
                message: format!(
                    "zone \"{}\" is in no rule: all its traffic to and from other zones follows the default ({:?})",
                    z.name, defaults.between_zones
                )
                .replace("Deny", "deny")
                .replace("Allow", "allow"),
            });
        }
    }
    let policy = Policy::new(zones, rules, defaults, events).map_err(|clash| {
        let line = zone_lines[usize::from(clash.second)];
        (loc.invalid)(
            raw.zones
                .get(usize::from(clash.second))
                .map(|z| z.get_ref().name.span()),
            format!(
                "prefix {} is claimed by zone \"{}\" (line {}) and zone \"{}\" (line {line})",
                clash.prefix,
                raw.zones
                    .get(usize::from(clash.first))
                    .map_or("?".to_string(), |z| z.get_ref().name.get_ref().clone()),
                zone_lines[usize::from(clash.first)],
                raw.zones
                    .get(usize::from(clash.second))
                    .map_or("?".to_string(), |z| z.get_ref().name.get_ref().clone()),
            ),
            "put each prefix in one zone (a more specific prefix inside another zone's is fine), or give both zones disjoint vlans",
        )
    })?;
    warnings.sort_by_key(|w| w.line);
    Ok((policy, warnings))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const ZONES: &str = "[[zone]]\nname = \"cde\"\ncidrs = [\"10.20.0.0/24\"]\npci = \"cde\"\n[[zone]]\nname = \"dmz\"\ncidrs = [\"10.30.0.0/24\"]\n";

    fn err(extra: &str) -> String {
        Config::parse(&format!("{ZONES}{extra}"), Path::new("p.toml"))
            .map(|_| ())
            .expect_err("should fail")
            .to_string()
    }

    fn warnings(extra: &str) -> Vec<(usize, String)> {
        Config::parse(&format!("{ZONES}{extra}"), Path::new("p.toml"))
            .expect("valid")
            .warnings
            .into_iter()
            .map(|w| (w.line, w.message))
            .collect()
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let e = err("[[rule]]\nfrom = \"dmz\"\nto = \"cdee\"\n");
        assert!(e.starts_with("p.toml:10:6:"), "{e}");
        assert!(
            e.contains("unknown zone \"cdee\"") && e.contains("cde, dmz, external, any"),
            "{e}"
        );
        let e = err("[[zone]]\nname = \"lab\"\ncidrs = [\"10.20.0.300/24\"]\n");
        assert!(
            e.starts_with("p.toml:10:10:") && e.contains("not a CIDR"),
            "{e}"
        );
        let e = err(
            "[[rule]]\nfrom = \"dmz\"\nto = \"cde\"\nproto = \"tcp\"\nports = [\"9010-9000\"]\n",
        );
        assert!(
            e.starts_with("p.toml:12:") && e.contains("backwards"),
            "{e}"
        );
        let e = err("[[rule]]\nfrom = \"dmz\"\nto = \"cde\"\nproto = \"icmp\"\nports = [1]\n");
        assert!(e.contains("protocol has none"), "{e}");
        let e = err("[[zone]]\nname = \"lab\"\ncidrs = [\"10.20.0.0/24\"]\n");
        assert!(e.starts_with("p.toml:9:8:"), "{e}");
        assert!(
            e.contains("claimed by zone \"cde\" (line 1) and zone \"lab\" (line 8)"),
            "{e}"
        );
        let e = err("[[zone]]\nname = \"dmz\"\ncidrs = [\"10.1.0.0/24\"]\n");
        assert!(e.contains("declared twice (first on line 5)"), "{e}");
        let e = err("[policy]\nbetween_zones = \"block\"\n");
        assert!(
            e.starts_with("p.toml:9:17:") && e.contains("\"allow\" or \"deny\""),
            "{e}"
        );
        let e = err("[[zone]]\nname = \"v\"\nvlans = [5000]\n");
        assert!(e.contains("VLAN 5000"), "{e}");
    }

    #[test]
    fn warnings_explain_suspicious_rules() {
        let w = warnings(
            "[[rule]]\nfrom = \"dmz\"\nto = \"cde\"\nproto = \"tcp\"\nwhy = \"api\"\n\
             [[rule]]\nfrom = \"dmz\"\nto = \"cde\"\nproto = \"tcp\"\nports = [443]\nwhy = \"x\"\n\
             [[rule]]\nfrom = \"dmz\"\nto = \"cde\"\nto_hosts = [\"10.99.0.1\"]\n",
        );
        let text: Vec<&str> = w.iter().map(|(_, m)| m.as_str()).collect();
        assert!(
            w.iter()
                .any(|(l, m)| *l == 13 && m.contains("can never match: rule \"rule-1\" (line 8)")),
            "{text:?}"
        );
        assert!(
            w.iter()
                .any(|(l, m)| *l == 19 && m.contains("without a `why`")),
            "{text:?}"
        );
        assert!(
            w.iter()
                .any(|(l, m)| *l == 19 && m.contains("10.99.0.1/32: it lies outside")),
            "{text:?}"
        );
        let w = warnings("");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].1.contains("zone \"cde\" is in no rule"), "{w:?}");
    }

    #[test]
    fn defaults_and_unzoned() {
        let c = Config::parse(
            &format!("{ZONES}[policy]\nunzoned = \"internet\"\nwithin_zone = \"deny\"\ndedup_window_secs = 60\n"),
            Path::new("p.toml"),
        )
        .expect("valid");
        let p = &c.policy;
        assert_eq!(p.zones.len(), 3);
        assert_eq!(p.zone(p.defaults.unzoned).name, "internet");
        assert!(p.zone(p.defaults.unzoned).implicit);
        assert_eq!(p.events.dedup_window_ns, 60_000_000_000);
        assert_eq!(p.defaults.within_zone, super::Action::Deny);
        assert!(!p.is_empty());
        assert!(
            Config::parse("", Path::new("e.toml"))
                .expect("valid")
                .policy
                .is_empty()
        );
    }
}
