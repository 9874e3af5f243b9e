//! The anomaly scenario: a small office network learned over two quiet days
//! (Monday and Tuesday), then two hours of Wednesday morning with the same
//! normal traffic plus one injected case of every detector's kind. Tests
//! assert each injection is found, and that the same morning without them
//! raises nothing; `segwatch generate scenario` writes it for the README's
//! walk-through.
//!
//! Hosts (zones as in [`CONFIG`]): laptops 10.10.1.11-30 (corp), DNS
//! 10.10.2.53, file server 10.10.2.10, jump host 10.10.2.22, monitoring
//! 10.10.2.5 (servers), web shop 10.30.0.80 (dmz), payment API 10.20.0.10 and
//! database 10.20.0.20 on VLAN 20 (cde), gateway 10.10.1.1; 200 web sites in
//! 203.0.113.0/24 and 198.51.100.0/24.

use std::net::IpAddr;

use super::SplitMix;
use super::frame::{arp, mac_of};
use super::pcap_file::FileOptions;
use super::trace::{Conv, MS, Trace};
use crate::decode::tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};
use std::io;
use std::path::Path;

const SEC: i64 = 1_000 * MS;
const HOUR: i64 = 3_600 * SEC;
/// Monday 2026-03-02 00:00 UTC: learning starts.
pub const LEARN_START: i64 = 1_772_409_600 * SEC;
/// Learning covers two days.
pub const LEARN_END: i64 = LEARN_START + 48 * HOUR;
/// Wednesday 10:00 UTC: detection starts; it lasts two hours.
pub const DETECT_START: i64 = LEARN_END + 10 * HOUR;
pub const DETECT_END: i64 = DETECT_START + 2 * HOUR;

/// The scenario's sensor configuration: zones, and an upload floor low
/// enough for a 5 MB upload (the default, 20 MB, would need a larger file).
pub const CONFIG: &str = r#"# segwatch anomaly scenario (written by `segwatch generate scenario`)
[[zone]]
name = "corp"
cidrs = ["10.10.1.0/24"]

[[zone]]
name = "servers"
cidrs = ["10.10.2.0/24"]

[[zone]]
name = "dmz"
cidrs = ["10.30.0.0/24"]

[[zone]]
name = "cde"
cidrs = ["10.20.0.0/24"]
vlans = [20]
pci = "cde"

[policy]
between_zones = "allow"

[detect.volume]
upload_floor_bytes = 2_000_000
"#;

/// Who did what in the detection period, for tests and the README.
pub const INJECTED: &[(&str, &str, &str)] = &[
    (
        "new_peer",
        "10.10.1.23",
        "a laptop reaches the CDE database (tcp/5432)",
    ),
    (
        "new_service",
        "10.10.1.12",
        "the file server answers SSH (tcp/22) for the first time",
    ),
    (
        "new_external",
        "10.10.2.10",
        "the file server talks HTTPS to an unknown Internet host",
    ),
    (
        "volume",
        "10.10.1.29",
        "a laptop uploads 5 MB to an external host",
    ),
    (
        "volume",
        "corp",
        "the corp zone opens 4,000 extra DNS flows in 20 minutes",
    ),
    (
        "scan",
        "10.10.1.66",
        "vertical scan: ports 1-1024 of the file server",
    ),
    (
        "scan",
        "10.10.1.70",
        "horizontal scan: tcp/3389 on 254 addresses, and an ARP sweep",
    ),
    (
        "beacon",
        "10.10.1.17",
        "check-ins to 198.51.100.77:443 every 60 s",
    ),
    ("tcp_flags", "10.10.1.67", "NULL, Xmas and SYN+FIN probes"),
    (
        "arp_spoof",
        "10.10.1.1",
        "another MAC claims the gateway's address, 40 times in a minute",
    ),
];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn v4(ip: IpAddr) -> [u8; 4] {
    match ip {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => [0; 4],
    }
}

struct Ports(u16);

impl Ports {
    fn next(&mut self) -> u16 {
        self.0 = if self.0 >= 65_000 { 49_152 } else { self.0 + 1 };
        self.0
    }
}

/// Exponential gap with the given mean (a Poisson process: no rhythm).
fn gap(rng: &mut SplitMix, mean: i64) -> i64 {
    let u = ((rng.next() >> 11) as f64 / (1u64 << 53) as f64).max(1e-12);
    ((-u.ln()) * mean as f64) as i64 + SEC
}

fn daytime(t: i64) -> bool {
    let hour = (t.div_euclid(HOUR)).rem_euclid(24);
    (8..18).contains(&hour)
}

/// Normal traffic in [from, to).
pub fn benign(t: &mut Trace, from: i64, to: i64, seed: u64) {
    let mut rng = SplitMix(seed);
    let mut ports = Ports(49_152);
    let dns = ip("10.10.2.53");
    let files = ip("10.10.2.10");
    let jump = ip("10.10.2.22");
    let sites: Vec<IpAddr> = (0..200u32)
        .map(|i| {
            let net = if i < 100 {
                [203, 0, 113]
            } else {
                [198, 51, 100]
            };
            IpAddr::from([net[0], net[1], net[2], (i % 100 + 100) as u8])
        })
        .collect();

    for host in 11..=30u8 {
        let laptop = IpAddr::from([10, 10, 1, host]);
        let mut at = from + (rng.next() % 600) as i64 * SEC;
        while at < to {
            let site = sites[(rng.next() % sites.len() as u64) as usize];
            t.udp_exchange(
                at,
                &Conv::new(laptop, ports.next(), dns, 53),
                40 + (rng.next() % 20) as usize,
                120,
            );
            let req = 300 + (rng.next() % 1_200) as usize;
            let resp = 1_000 + (rng.next() % 20_000) as usize;
            t.tcp_session(
                at + 5 * MS,
                &Conv::new(laptop, ports.next(), site, 443),
                req,
                resp,
            );
            if rng.next().is_multiple_of(4) {
                t.tcp_session(
                    at + 80 * MS,
                    &Conv::new(laptop, ports.next(), files, 445),
                    2_000,
                    6_000,
                );
            }
            if host <= 15 && rng.next().is_multiple_of(20) {
                t.tcp_session(
                    at + 150 * MS,
                    &Conv::new(laptop, ports.next(), jump, 22),
                    3_000,
                    8_000,
                );
            }
            at += gap(
                &mut rng,
                if daytime(at) {
                    6 * 60 * SEC
                } else {
                    40 * 60 * SEC
                },
            );
        }
        // The laptop asks for the gateway now and then.
        let gw = [10, 10, 1, 1];
        let mut at = from + (rng.next() % 900) as i64 * SEC;
        while at < to {
            let me = [10, 10, 1, host];
            t.push(at, arp(1, mac_of(laptop), me, [0; 6], gw));
            t.push(
                at + MS,
                arp(2, mac_of(IpAddr::from(gw)), gw, mac_of(laptop), me),
            );
            at += gap(&mut rng, 15 * 60 * SEC);
        }
    }

    // Monitoring pings every laptop every five minutes.
    let monitor = ip("10.10.2.5");
    for host in 11..=30u8 {
        let target = IpAddr::from([10, 10, 1, host]);
        let mut at = from + i64::from(host) * 7 * SEC;
        let mut seq = 0u16;
        while at < to {
            t.ping(at, monitor, target, 0x77, seq);
            seq = seq.wrapping_add(1);
            at += 300 * SEC;
        }
    }

    // The shop calls the payment API, which queries its database.
    let (shop, api, db) = (ip("10.30.0.80"), ip("10.20.0.10"), ip("10.20.0.20"));
    let mut at = from + 3 * SEC;
    while at < to {
        t.tcp_session(
            at,
            &Conv::new(shop, ports.next(), api, 8443).vlan(20),
            900,
            700,
        );
        t.tcp_session(
            at + 20 * MS,
            &Conv::new(api, ports.next(), db, 5432).vlan(20),
            300,
            1_500,
        );
        at += gap(&mut rng, if daytime(at) { 30 * SEC } else { 120 * SEC });
    }

    // The DNS server forwards to two resolvers.
    let resolvers = [ip("198.51.100.53"), ip("198.51.100.54")];
    let mut at = from + 11 * SEC;
    while at < to {
        let r = resolvers[(rng.next() % 2) as usize];
        t.udp_exchange(at, &Conv::new(dns, ports.next(), r, 53), 60, 200);
        at += gap(&mut rng, 120 * SEC);
    }

    // A laptop's updater checks in every five minutes: periodic, and normal.
    let updater = ip("10.10.1.15");
    let update_server = ip("203.0.113.99");
    let mut at = from + 17 * SEC;
    while at < to {
        t.tcp_session(
            at,
            &Conv::new(updater, ports.next(), update_server, 443),
            410,
            900,
        );
        at += 300 * SEC + (rng.next() % 2_000) as i64 * MS;
    }
}

/// One case of every detector's kind, from `at` on (two hours).
pub fn attacks(t: &mut Trace, at: i64) {
    let mut ports = Ports(20_000);
    let files = ip("10.10.2.10");

    // new_peer: a laptop reaches the CDE database.
    t.tcp_session(
        at + 5 * 60 * SEC,
        &Conv::new(ip("10.10.1.23"), 51_000, ip("10.20.0.20"), 5432).vlan(20),
        400,
        60_000,
    );

    // new_service: the file server answers SSH (corp hosts use SSH, on the jump host).
    t.tcp_session(
        at + 7 * 60 * SEC,
        &Conv::new(ip("10.10.1.12"), 51_010, files, 22),
        2_000,
        4_000,
    );

    // new_external: the file server talks to the Internet on HTTPS.
    t.tcp_session(
        at + 9 * 60 * SEC,
        &Conv::new(files, 51_020, ip("198.51.100.66"), 443),
        800,
        4_000,
    );

    // volume: a 5 MB upload.
    t.tcp_session(
        at + 20 * 60 * SEC,
        &Conv::new(ip("10.10.1.29"), 51_030, ip("203.0.113.200"), 443),
        5_000_000,
        2_000,
    );

    // volume (zone): 4,000 DNS queries in 20 minutes.
    let noisy = ip("10.10.1.19");
    let dns = ip("10.10.2.53");
    for k in 0..4_000i64 {
        t.udp_exchange(
            at + 30 * 60 * SEC + k * 300 * MS,
            &Conv::new(noisy, ports.next(), dns, 53),
            60,
            120,
        );
    }

    // scan (vertical): ports 1-1024 of the file server; only SMB is open.
    let scanner = ip("10.10.1.66");
    for p in 1..=1024u16 {
        let c = Conv::new(scanner, 40_000, files, p);
        let t0 = at + 40 * 60 * SEC + i64::from(p) * 20 * MS;
        t.tcp_segment(t0, &c, true, SYN, 0);
        if p == 445 {
            t.tcp_segment(t0 + MS / 2, &c, false, SYN | ACK, 0);
            t.tcp_segment(t0 + MS, &c, true, RST, 0);
        } else {
            t.tcp_segment(t0 + MS / 2, &c, false, RST | ACK, 0);
        }
    }

    // scan (horizontal): tcp/3389 across the /24, unanswered; and an ARP sweep.
    let sweeper = ip("10.10.1.70");
    for h in 1..=254u8 {
        let target = IpAddr::from([10, 10, 1, h]);
        let t0 = at + 50 * 60 * SEC + i64::from(h) * 100 * MS;
        t.tcp_segment(t0, &Conv::new(sweeper, 41_000, target, 3389), true, SYN, 0);
        t.push(
            t0 + 30 * SEC,
            arp(1, mac_of(sweeper), v4(sweeper), [0; 6], [10, 10, 1, h]),
        );
    }

    // beacon: check-ins every 60 s (±1 s) for the two hours.
    let implant = ip("10.10.1.17");
    let c2 = ip("198.51.100.77");
    let mut rng = SplitMix(77);
    for k in 0..118i64 {
        let jitter = (rng.next() % 2_000) as i64 * MS;
        t.tcp_session(
            at + 60 * SEC + k * 60 * SEC + jitter,
            &Conv::new(implant, ports.next(), c2, 443),
            220,
            180,
        );
    }

    // tcp_flags: NULL, Xmas and SYN+FIN probes to a few ports.
    let prober = ip("10.10.1.67");
    for (i, p) in [21u16, 22, 23, 25, 80, 110].iter().enumerate() {
        let c = Conv::new(prober, 42_000, files, *p);
        let t0 = at + 60 * 60 * SEC + i as i64 * 300 * MS;
        t.tcp_segment(t0, &c, true, 0, 0);
        t.tcp_segment(
            t0 + 100 * MS,
            &Conv::new(prober, 42_001, files, *p),
            true,
            FIN | PSH | URG,
            0,
        );
        t.tcp_segment(
            t0 + 200 * MS,
            &Conv::new(prober, 42_002, files, *p),
            true,
            SYN | FIN,
            0,
        );
    }

    // arp_spoof: another MAC claims the gateway, in a gratuitous storm.
    let attacker_mac = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];
    let gw = [10, 10, 1, 1];
    for k in 0..40i64 {
        t.push(
            at + 70 * 60 * SEC + k * SEC,
            arp(2, attacker_mac, gw, [0xff; 6], gw),
        );
    }
}

/// The learning capture: Monday and Tuesday.
pub fn learning_trace() -> Trace {
    let mut t = Trace::new();
    benign(&mut t, LEARN_START, LEARN_END, 1);
    t
}

/// The detection capture: Wednesday 10:00-12:00, with or without the
/// injected cases.
pub fn detection_trace(with_attacks: bool) -> Trace {
    let mut t = Trace::new();
    benign(&mut t, DETECT_START, DETECT_END, 2);
    if with_attacks {
        attacks(&mut t, DETECT_START);
    }
    t
}

/// Write the scenario into `dir`: `learn.pcap`, `detect.pcap` (with the
/// injected cases), `detect-benign.pcap` (without) and `segwatch.toml`.
/// Frames are cut at 200 bytes (their wire length is kept), as a capture
/// with a short snaplen would be, to keep the files small.
pub fn write(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let opts = FileOptions {
        snaplen: 200,
        ..FileOptions::default()
    };
    learning_trace().write(&dir.join("learn.pcap"), opts)?;
    detection_trace(true).write(&dir.join("detect.pcap"), opts)?;
    detection_trace(false).write(&dir.join("detect-benign.pcap"), opts)?;
    crate::sink::write_atomic(&dir.join("segwatch.toml"), CONFIG.as_bytes())
}
