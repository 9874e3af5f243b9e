//! The bundled sample: five minutes of a small office network with a card
//! payment environment, and a few things worth reporting.
//!
//! Networks (all inside the capture file; nothing is sent anywhere):
//! - corp laptops 10.10.1.0/24 and 2001:db8:10:1::/64, servers 10.10.2.0/24
//!   (DNS 10.10.2.53, file server 10.10.2.10, monitoring 10.10.2.5);
//! - DMZ web shop 10.30.0.80; CDE on VLAN 20: payment API 10.20.0.10:8443 and
//!   its database 10.20.0.20:5432; guest Wi-Fi on VLAN 30, 10.40.0.0/24;
//! - the Internet: 203.0.113.0/24, 198.51.100.0/24, 2001:db8:ffff::/48.
//!
//! Worth reporting: laptop 10.10.1.23 reaches the CDE database (established);
//! 10.10.1.31 is blocked (unanswered SYNs) and refused (RST) at the CDE;
//! 10.10.1.66 scans the file server's ports 1-1024 and probes SNMP (ICMP port
//! unreachable); 10.10.1.17 beacons to 198.51.100.77:443 every 25 s;
//! 10.10.1.29 uploads 600 kB to 203.0.113.200; a guest tries the file server.

use std::net::IpAddr;

use super::SplitMix;
use super::frame::{L4, Spec, arp, mac_of};
use super::trace::{Conv, MS, Trace};
use crate::decode::tcp_flags::{ACK, RST, SYN};

/// 2026-03-02T09:00:00Z.
pub const START_NS: i64 = 1_772_442_000 * 1_000_000_000;
const SEC: i64 = 1_000 * MS;
const DURATION: i64 = 300 * SEC;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Build the office trace (deterministic).
pub fn office_trace() -> Trace {
    let mut t = Trace::new();
    let mut rng = SplitMix(2026);
    let dns = ip("10.10.2.53");
    let files = ip("10.10.2.10");
    let sites: Vec<IpAddr> = (1..=20)
        .map(|i| IpAddr::from([203, 0, 113, i * 10]))
        .collect();
    let mut port = 49_152u16;
    let mut next_port = || {
        port = if port >= 65_000 { 49_152 } else { port + 1 };
        port
    };

    // Laptops: DNS, HTTPS, file shares.
    for host in 11..=40u8 {
        let laptop = IpAddr::from([10, 10, 1, host]);
        let mut at = START_NS + (rng.next() % 5_000) as i64 * MS;
        while at < START_NS + DURATION {
            let site = sites[(rng.next() % sites.len() as u64) as usize];
            t.udp_exchange(at, &Conv::new(laptop, next_port(), dns, 53), 40, 120);
            let c = Conv::new(laptop, next_port(), site, 443);
            let resp = 800 + (rng.next() % 5_000) as usize;
            t.tcp_session(at + 5 * MS, &c, 600, resp);
            if rng.next().is_multiple_of(4) {
                let c = Conv::new(laptop, next_port(), files, 445);
                t.tcp_session(at + 50 * MS, &c, 2_000, 6_000);
            }
            at += (8 + rng.next() % 25) as i64 * SEC;
        }
    }

    // IPv6 browsing and a ping from a few laptops.
    for host in 1..=5u16 {
        let laptop: IpAddr = ip(&format!("2001:db8:10:1::{host:x}"));
        let site = ip("2001:db8:ffff::443");
        for _ in 0..10 {
            // At random moments, as people browse (a steady rhythm would
            // make a beacon).
            let at = START_NS + (i64::from(host) * 1_000 + (rng.next() % 280_000) as i64) * MS;
            t.tcp_session(at, &Conv::new(laptop, next_port(), site, 443), 500, 9_000);
        }
        t.ping(START_NS + 7 * SEC, laptop, site, host, 1);
    }

    // Shop → payment API (allowed), API → database inside the CDE.
    let shop = ip("10.30.0.80");
    let api = ip("10.20.0.10");
    let db = ip("10.20.0.20");
    let mut at = START_NS + SEC;
    while at < START_NS + DURATION {
        t.tcp_session(
            at,
            &Conv::new(shop, next_port(), api, 8443).vlan(20),
            900,
            700,
        );
        t.tcp_session(
            at + 20 * MS,
            &Conv::new(api, next_port(), db, 5432).vlan(20),
            300,
            1_500,
        );
        at += (2 + rng.next() % 4) as i64 * SEC;
    }

    // A laptop reaches the CDE database: an established segmentation breach.
    let rogue = ip("10.10.1.23");
    t.tcp_session(
        START_NS + 61 * SEC,
        &Conv::new(rogue, 51_000, db, 5432).vlan(20),
        400,
        60_000,
    );
    // Blocked and refused attempts into the CDE.
    let probing = ip("10.10.1.31");
    t.tcp_unanswered(
        START_NS + 90 * SEC,
        &Conv::new(probing, 51_100, db, 22).vlan(20),
        3,
    );
    t.tcp_refused(
        START_NS + 95 * SEC,
        &Conv::new(probing, 51_101, api, 3389).vlan(20),
    );

    // Port scan of the file server from a compromised laptop.
    let scanner = ip("10.10.1.66");
    let open = [22u16, 80, 445];
    for p in 1..=1024u16 {
        let c = Conv::new(scanner, 40_000, files, p);
        let at = START_NS + 120 * SEC + i64::from(p) * 2 * MS;
        t.tcp_segment(at, &c, true, SYN, 0);
        if open.contains(&p) {
            t.tcp_segment(at + MS / 2, &c, false, SYN | ACK, 0);
            t.tcp_segment(at + MS, &c, true, RST, 0);
        } else {
            t.tcp_segment(at + MS / 2, &c, false, RST | ACK, 0);
        }
    }
    t.udp_unreachable(
        START_NS + 125 * SEC,
        &Conv::new(scanner, 40_001, files, 161),
    );

    // Beacon: small session every 25 s.
    let implant = ip("10.10.1.17");
    let c2 = ip("198.51.100.77");
    for k in 0..11 {
        let c = Conv::new(implant, 52_000 + k as u16, c2, 443);
        t.tcp_session(START_NS + (30 + k * 25) * SEC, &c, 220, 180);
    }

    // A large upload to an external host.
    let uploader = ip("10.10.1.29");
    t.tcp_session(
        START_NS + 200 * SEC,
        &Conv::new(uploader, 53_000, ip("203.0.113.200"), 443),
        600_000,
        2_000,
    );

    // Guest Wi-Fi: browsing, and one attempt at the file server.
    for g in 10..=14u8 {
        let guest = IpAddr::from([10, 40, 0, g]);
        for k in 0..8 {
            let site = sites[(rng.next() % sites.len() as u64) as usize];
            let c = Conv::new(guest, next_port(), site, 443).vlan(30);
            t.tcp_session(START_NS + (k * 35 + i64::from(g)) * SEC, &c, 500, 5_000);
        }
    }
    t.tcp_unanswered(
        START_NS + 150 * SEC,
        &Conv::new(IpAddr::from([10, 40, 0, 12]), 54_000, files, 445).vlan(30),
        2,
    );

    // A fragmented DNS answer (large EDNS response).
    let frag_client = ip("10.10.1.12");
    let mut big = Spec::new(
        dns,
        frag_client,
        L4::Udp {
            sport: 53,
            dport: 55_555,
        },
    )
    .payload(&[0x33; 3_000]);
    big.ip_id = 0x4242;
    t.udp_oneway(
        START_NS + 33 * SEC,
        &Conv::new(frag_client, 55_555, dns, 53),
        60,
    );
    for (i, f) in big.ipv4_fragments(1_480).into_iter().enumerate() {
        t.push(START_NS + 33 * SEC + MS + i as i64 * 10_000, f);
    }

    // Monitoring pings, ARP for the gateway.
    let monitor = ip("10.10.2.5");
    for k in 0..30u16 {
        let target = IpAddr::from([10, 10, 1, 11 + (k % 30) as u8]);
        t.ping(START_NS + i64::from(k) * 10 * SEC, monitor, target, 0x77, k);
    }
    let gw = [10, 10, 1, 1];
    let gw_mac = mac_of(IpAddr::from(gw));
    for k in 0..60u8 {
        let asker = [10, 10, 1, 11 + (k % 30)];
        let asker_mac = mac_of(IpAddr::from(asker));
        let at = START_NS + i64::from(k) * 5 * SEC + 300 * MS;
        t.push(at, arp(1, asker_mac, asker, [0; 6], gw));
        t.push(at + MS, arp(2, gw_mac, gw, asker_mac, asker));
    }
    t
}
