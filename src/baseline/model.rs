//! The baseline as stored: what normal looked like on one network, per zone
//! and per host. Maps keyed by addresses are hash maps in memory (detectors
//! look them up per flow) and sorted lists in the file (people read it and
//! diffs stay small).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use hashbrown::{HashMap, HashSet};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::dist::Dist;
use crate::decode::proto_name;

/// The `schema` field every baseline file carries.
pub const SCHEMA: &str = "segwatch-baseline";
/// The newest file version this build reads and the one it writes.
pub const VERSION: u32 = 1;
/// Hour-of-week slots (Monday 00:00 UTC is slot 0).
pub const HOURS_PER_WEEK: usize = 168;
/// Samples kept per hour-of-week slot: one per learned week, newest last.
pub const WEEKS_KEPT: usize = 12;

/// Nanoseconds since the epoch, stored as RFC 3339 UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::flow::record::rfc3339(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        let t = time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| D::Error::custom(format!("bad time {s:?}: {e}")))?;
        i64::try_from(t.unix_timestamp_nanos())
            .map(Timestamp)
            .map_err(|_| D::Error::custom(format!("time {s:?} is out of range")))
    }
}

/// A MAC address, stored as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut m {
            *b = parts
                .next()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| D::Error::custom(format!("bad MAC address {s:?}")))?;
        }
        if parts.next().is_some() {
            return Err(D::Error::custom(format!("bad MAC address {s:?}")));
        }
        Ok(Mac(m))
    }
}

/// An IP protocol, stored by name (`tcp`, `udp`, `ip-proto-N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Proto(pub u8);

impl Serialize for Proto {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&proto_name(self.0))
    }
}

impl<'de> Deserialize<'de> for Proto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Proto, D::Error> {
        let s = String::deserialize(d)?;
        proto_number(&s)
            .map(Proto)
            .ok_or_else(|| D::Error::custom(format!("unknown protocol {s:?}")))
    }
}

/// The number of a protocol name as [`proto_name`] writes it.
pub fn proto_number(name: &str) -> Option<u8> {
    if let Some(n) = name.strip_prefix("ip-proto-") {
        return n.parse().ok();
    }
    (0..=255u8).find(|&p| proto_name(p) == name && !proto_name(p).starts_with("ip-proto-"))
}

/// A host another host opened connections to, on one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub peer: IpAddr,
    pub proto: Proto,
    pub port: u16,
}

/// A service: protocol and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub proto: Proto,
    pub port: u16,
}

/// A zone another zone opened connections to, on one service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneEdge {
    pub to: String,
    pub proto: Proto,
    pub port: u16,
}

/// Normal behaviour of one internal host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostBaseline {
    pub zone: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Flows the host opened, and flows opened to it.
    pub flows_out: u64,
    pub flows_in: u64,
    /// Internal hosts it connected to, per service, with flow counts.
    #[serde(with = "counted", default, skip_serializing_if = "HashMap::is_empty")]
    pub peers: HashMap<Edge, u64>,
    /// The peer list reached its cap: the host talks to too many hosts for a
    /// new one to mean anything (new peers are judged per zone instead).
    #[serde(default, skip_serializing_if = "is_false")]
    pub peers_full: bool,
    /// Services it answered on (as the responder of a connection that worked).
    #[serde(with = "counted", default, skip_serializing_if = "HashMap::is_empty")]
    pub services: HashMap<Service, u64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub services_full: bool,
    /// Bytes it sent per hour it was active.
    #[serde(default, skip_serializing_if = "Dist::is_empty")]
    pub bytes_out_per_hour: Dist,
    /// Bytes it sent to external hosts per hour it did so.
    #[serde(default, skip_serializing_if = "Dist::is_empty")]
    pub external_bytes_per_hour: Dist,
    /// Per minute with failed attempts (unanswered or refused): the most
    /// distinct hosts on one service...
    #[serde(default, skip_serializing_if = "Dist::is_empty")]
    pub fanout_hosts: Dist,
    /// ...and the most distinct ports on one host.
    #[serde(default, skip_serializing_if = "Dist::is_empty")]
    pub fanout_ports: Dist,
}

/// Flows, packets and bytes of one hour-of-week slot, one sample per week.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HourSlot {
    pub hour_of_week: u8,
    pub flows: Vec<u64>,
    pub packets: Vec<u64>,
    pub bytes: Vec<u64>,
}

/// Normal behaviour of one zone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneBaseline {
    /// Hosts of the zone in the baseline.
    pub hosts: u64,
    /// Zones (and `external`) its hosts connected to, per service.
    #[serde(with = "counted")]
    pub edges: HashMap<ZoneEdge, u64>,
    /// External addresses its hosts connected to.
    #[serde(with = "sorted_set")]
    pub external: HashSet<IpAddr>,
    /// The external list reached its cap: the zone talks to too many
    /// external hosts for a new one to mean anything.
    pub external_full: bool,
    pub external_flows: u64,
    /// Bytes (both ways) per flow its hosts opened.
    #[serde(default, skip_serializing_if = "Dist::is_empty")]
    pub bytes_per_flow: Dist,
    /// Duration in milliseconds of the flows its hosts opened.
    #[serde(default, skip_serializing_if = "Dist::is_empty")]
    pub duration_ms: Dist,
    /// Traffic the zone's hosts opened, per hour of the week (UTC).
    pub hours: Vec<HourSlot>,
}

/// What the baseline was learned from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Learned {
    pub first_packet: Timestamp,
    pub last_packet: Timestamp,
    pub flows: u64,
    pub arp_packets: u64,
    /// Capture files or interfaces, in the order learned.
    pub sources: Vec<String>,
    /// Hosts dropped under the host cap (least recently seen first).
    pub hosts_evicted: u64,
    /// Present while live learning is not finished: this file is a
    /// checkpoint, and `run --learn-for` with it resumes where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfinished: Option<Unfinished>,
}

/// How far a checkpointed live learning run got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unfinished {
    /// Learning asked for (seconds of packet time).
    pub goal_secs: u64,
    /// Learned so far.
    pub done_secs: u64,
}

/// Caps that bound a baseline's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_hosts: usize,
    pub max_peers_per_host: usize,
    pub max_services_per_host: usize,
    pub max_external_per_zone: usize,
    pub max_macs_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_hosts: 20_000,
            max_peers_per_host: 256,
            max_services_per_host: 64,
            max_external_per_zone: 5_000,
            max_macs_per_ip: 4,
        }
    }
}

/// A pair that beaconed while the baseline was learned (normal periodic
/// traffic such as monitoring polls and update checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeaconKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    pub port: u16,
}

/// A learned baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub schema: String,
    pub version: u32,
    pub learned: Learned,
    pub limits: Limits,
    pub zones: BTreeMap<String, ZoneBaseline>,
    #[serde(with = "sorted_map")]
    pub hosts: HashMap<IpAddr, HostBaseline>,
    /// MAC addresses each IPv4 address was announced from in ARP.
    #[serde(with = "sorted_map")]
    pub arp: HashMap<Ipv4Addr, BTreeSet<Mac>>,
    pub beacons: BTreeSet<BeaconKey>,
}

impl Default for Baseline {
    fn default() -> Self {
        Baseline {
            schema: SCHEMA.into(),
            version: VERSION,
            learned: Learned::default(),
            limits: Limits::default(),
            zones: BTreeMap::new(),
            hosts: HashMap::new(),
            arp: HashMap::new(),
            beacons: BTreeSet::new(),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The hour-of-week slot of a time (Monday 00:00 UTC = 0; the epoch was a
/// Thursday).
pub fn hour_of_week(ns: i64) -> usize {
    let hours = ns.div_euclid(3_600_000_000_000);
    (hours + 72).rem_euclid(HOURS_PER_WEEK as i64) as usize
}

/// Maps with struct keys, stored as a sorted list of `{key fields..., flows}`.
mod counted {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Entry<K> {
        #[serde(flatten)]
        key: K,
        flows: u64,
    }

    pub fn serialize<K, S>(m: &HashMap<K, u64>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord + Clone,
        S: Serializer,
    {
        let mut v: Vec<Entry<K>> = m
            .iter()
            .map(|(k, &flows)| Entry {
                key: k.clone(),
                flows,
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v.serialize(s)
    }

    pub fn deserialize<'de, K, D>(d: D) -> Result<HashMap<K, u64>, D::Error>
    where
        K: Deserialize<'de> + Eq + std::hash::Hash,
        D: Deserializer<'de>,
    {
        let v: Vec<Entry<K>> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|e| (e.key, e.flows)).collect())
    }
}

/// Hash sets stored sorted.
mod sorted_set {
    use super::*;

    pub fn serialize<T, S>(set: &HashSet<T>, s: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize + Ord,
        S: Serializer,
    {
        let mut v: Vec<&T> = set.iter().collect();
        v.sort();
        v.serialize(s)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<HashSet<T>, D::Error>
    where
        T: Deserialize<'de> + Eq + std::hash::Hash,
        D: Deserializer<'de>,
    {
        Ok(Vec::<T>::deserialize(d)?.into_iter().collect())
    }
}

/// Hash maps stored as objects with sorted keys.
mod sorted_map {
    use super::*;

    pub fn serialize<K, V, S>(m: &HashMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord,
        V: Serialize,
        S: Serializer,
    {
        let sorted: BTreeMap<&K, &V> = m.iter().collect();
        sorted.serialize(s)
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + std::hash::Hash + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(BTreeMap::<K, V>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_of_week_starts_monday() {
        // 2026-03-02 was a Monday.
        let monday = 1_772_409_600i64 * 1_000_000_000;
        assert_eq!(hour_of_week(monday), 0);
        assert_eq!(hour_of_week(monday + 3_600_000_000_000 * 25), 25);
        assert_eq!(hour_of_week(monday - 1), 167);
    }

    #[test]
    fn protocol_names_round_trip() {
        for p in [1u8, 6, 17, 58, 99] {
            assert_eq!(proto_number(&proto_name(p)), Some(p));
        }
        assert_eq!(proto_number("nope"), None);
    }
}
