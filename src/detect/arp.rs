//! `arp_spoof`: an IPv4 address announced from a MAC other than the one it
//! is bound to (how machine-in-the-middle attacks start: the attacker tells
//! a victim that the gateway's address is at its own MAC), and storms of
//! gratuitous ARP.
//!
//! Bindings come from the baseline; any other MAC for a learned address is
//! reported. For addresses the baseline does not know (or without one), a
//! new MAC alone may be a new DHCP lease or a replaced machine, so it is
//! reported only when it looks like impersonation: the new MAC already
//! speaks for another address of its own, or the first MAC claims the
//! address again afterwards (two machines answering for one address).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use hashbrown::HashMap;
use serde_json::json;

use super::Ctx;
use super::event::{Detector, Finding};
use crate::analysis::ArpFact;
use crate::baseline::model::Mac;
use crate::segmentation::Severity;

const MINUTE_NS: i64 = 60_000_000_000;
/// Addresses whose run-time bindings are kept.
const MAX_BINDINGS: usize = 100_000;

/// An address's bindings in this run.
struct Seen {
    first: Mac,
    current: Mac,
    reported: BTreeSet<Mac>,
}

#[derive(Default)]
pub struct Arp {
    /// Bindings seen in this run, and MACs already reported, per address.
    seen: HashMap<Ipv4Addr, Seen>,
    /// The first address each MAC spoke for.
    own: HashMap<[u8; 6], Ipv4Addr>,
    /// Gratuitous ARP per MAC in its current minute.
    gratuitous: HashMap<[u8; 6], (i64, usize, bool)>,
}

impl Arp {
    pub fn packet(&mut self, cx: &Ctx<'_>, fact: &ArpFact, out: &mut Vec<Finding>) {
        let a = &fact.arp;
        if a.sender_ip == Ipv4Addr::UNSPECIFIED {
            return;
        }
        let mac = Mac(a.sender_mac);
        let learned = cx.known.and_then(|k| k.base.arp.get(&a.sender_ip));
        let ip = IpAddr::V4(a.sender_ip);
        let zone = cx.nets.name(cx.nets.place(ip, fact.vlan).zone).to_string();
        if self.own.len() < MAX_BINDINGS {
            self.own.entry(a.sender_mac).or_insert(a.sender_ip);
        }
        if !self.seen.contains_key(&a.sender_ip) && self.seen.len() >= MAX_BINDINGS {
            return;
        }
        let entry = self.seen.entry(a.sender_ip).or_insert_with(|| Seen {
            first: mac,
            current: mac,
            reported: BTreeSet::new(),
        });
        let previous = entry.current;
        entry.current = mac;
        let variant =
            |m: Mac| u64::from_be_bytes([0, 0, m.0[0], m.0[1], m.0[2], m.0[3], m.0[4], m.0[5]]);
        match learned {
            Some(macs) if !macs.contains(&mac) => {
                if entry.reported.insert(mac) {
                    let mut f = Finding::new(fact.ts_ns, Detector::ArpSpoof, Severity::High, 0.95);
                    f.src_ip = Some(ip);
                    f.src_zone = Some(zone.clone());
                    f.variant = variant(mac);
                    let known: Vec<String> = macs.iter().map(Mac::to_string).collect();
                    f.explanation = format!(
                        "{} is being announced from MAC {mac}, but the baseline knows it only at {}: another machine claims its address, the first step of ARP cache poisoning (machine-in-the-middle).",
                        a.sender_ip,
                        known.join(", ")
                    );
                    f.observed =
                        json!({"mac": mac, "operation": a.operation, "target_ip": a.target_ip});
                    f.baseline = json!({"macs": known});
                    out.push(f);
                }
            }
            Some(_) => {}
            None => {
                let owner_of_other = self
                    .own
                    .get(&a.sender_mac)
                    .copied()
                    .filter(|o| *o != a.sender_ip);
                // The first MAC back after another took over: both claim it.
                let flapping = mac == entry.first && previous != mac;
                let suspect = if flapping { previous } else { mac };
                if mac != previous
                    && (owner_of_other.is_some() || flapping)
                    && entry.reported.insert(suspect)
                {
                    let first = entry.first;
                    let why = match owner_of_other {
                        Some(o) => format!(
                            "MAC {mac} already speaks for {o}, and now claims {} too",
                            a.sender_ip
                        ),
                        None => format!("MACs {first} and {previous} both claim it, in turn"),
                    };
                    let mut f =
                        Finding::new(fact.ts_ns, Detector::ArpSpoof, Severity::Medium, 0.75);
                    f.src_ip = Some(ip);
                    f.src_zone = Some(zone.clone());
                    f.variant = variant(suspect);
                    f.explanation = format!(
                        "{} is claimed by more than one machine: {why}. This is how ARP cache poisoning (machine-in-the-middle) looks.",
                        a.sender_ip
                    );
                    f.observed = json!({"mac": mac, "operation": a.operation, "target_ip": a.target_ip, "mac_speaks_for": owner_of_other});
                    f.baseline = json!({"first_mac_this_run": first, "learned": false});
                    out.push(f);
                }
            }
        }
        // Gratuitous: an announcement of the sender's own address.
        if a.sender_ip == a.target_ip {
            let minute = fact.ts_ns.div_euclid(MINUTE_NS);
            let g = self
                .gratuitous
                .entry(a.sender_mac)
                .or_insert((minute, 0, false));
            if minute > g.0 {
                *g = (minute, 0, false);
            }
            g.1 += 1;
            let limit = cx.settings.arp.gratuitous_per_minute;
            if !g.2 && g.1 > limit {
                g.2 = true;
                let mut f = Finding::new(fact.ts_ns, Detector::ArpSpoof, Severity::Medium, 0.8);
                f.src_ip = Some(ip);
                f.src_zone = Some(zone);
                f.variant = 1;
                f.explanation = format!(
                    "MAC {mac} sent more than {limit} gratuitous ARP announcements within a minute: a storm like this keeps poisoned ARP caches poisoned, or floods the segment."
                );
                f.observed = json!({"mac": mac, "gratuitous_per_minute": g.1});
                f.baseline = json!({"threshold": limit});
                out.push(f);
            }
        }
    }

    pub fn sweep(&mut self, now: i64) {
        let minute = now.div_euclid(MINUTE_NS);
        self.gratuitous.retain(|_, g| g.0 + 2 > minute);
    }
}
