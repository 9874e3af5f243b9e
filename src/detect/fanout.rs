//! Fan-out per source per minute: how many distinct hosts a source opened
//! flows to on one service (horizontal), and how many distinct ports on one
//! host (vertical). Learning records each closed minute's maxima into the
//! source's baseline; the scan detector compares live counts with them.
//!
//! Minutes are fixed, by flow start on packet time; a flow that arrives after
//! its source moved to a later minute counts in the later one (flows arrive
//! when they end, a few seconds apart for scan probes).

use std::net::IpAddr;

use hashbrown::{HashMap, HashSet};

const MINUTE_NS: i64 = 60_000_000_000;

/// One source's current minute.
#[derive(Clone, Debug, Default)]
pub struct Window {
    pub minute: i64,
    /// Distinct destination hosts per (proto, port).
    pub hosts: HashMap<(u8, u16), HashSet<IpAddr>>,
    /// Distinct (proto, port) per destination host.
    pub ports: HashMap<IpAddr, HashSet<(u8, u16)>>,
    /// Scan findings already made this minute (bit 0: horizontal, 1: vertical).
    pub reported: HashSet<(u8, IpAddr, u8, u16)>,
}

impl Window {
    /// The largest distinct-host and distinct-port counts.
    pub fn maxima(&self) -> (usize, usize) {
        (
            self.hosts.values().map(HashSet::len).max().unwrap_or(0),
            self.ports.values().map(HashSet::len).max().unwrap_or(0),
        )
    }
}

/// Sources' windows, bounded in number.
#[derive(Clone, Debug)]
pub struct Fanout {
    windows: HashMap<IpAddr, Window>,
    /// Distinct entries kept per set: past it a scan is a scan; more adds
    /// memory, not information.
    set_cap: usize,
    max_sources: usize,
    /// Flows from sources not tracked because the table was full.
    pub untracked: u64,
    last_sweep: i64,
}

/// What one flow added to its source's window.
pub struct Added<'a> {
    pub window: &'a mut Window,
    pub hosts_on_service: usize,
    pub ports_on_host: usize,
}

impl Fanout {
    pub fn new(set_cap: usize, max_sources: usize) -> Fanout {
        Fanout {
            windows: HashMap::new(),
            set_cap,
            max_sources,
            untracked: 0,
            last_sweep: i64::MIN,
        }
    }

    /// Count a flow from `src` to `dst` on (proto, port) started at `start`.
    /// `closed` receives windows that ended (source, maxima).
    pub fn add(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        service: (u8, u16),
        start: i64,
        closed: &mut impl FnMut(IpAddr, (usize, usize)),
    ) -> Option<Added<'_>> {
        let minute = start.div_euclid(MINUTE_NS);
        if !self.windows.contains_key(&src) && self.windows.len() >= self.max_sources {
            self.untracked += 1;
            return None;
        }
        let w = self.windows.entry(src).or_insert_with(|| Window {
            minute,
            ..Window::default()
        });
        if minute > w.minute {
            closed(src, w.maxima());
            w.hosts.clear();
            w.ports.clear();
            w.reported.clear();
            w.minute = minute;
        }
        let cap = self.set_cap;
        let hosts = w.hosts.entry(service).or_default();
        if hosts.len() < cap {
            hosts.insert(dst);
        }
        let hosts_on_service = hosts.len();
        let ports = w.ports.entry(dst).or_default();
        if ports.len() < cap {
            ports.insert(service);
        }
        let ports_on_host = ports.len();
        Some(Added {
            window: w,
            hosts_on_service,
            ports_on_host,
        })
    }

    /// Close windows two minutes older than `now` (packet time), at most once
    /// a minute, so quiet sources free their memory.
    pub fn sweep(&mut self, now: i64, closed: &mut impl FnMut(IpAddr, (usize, usize))) {
        let minute = now.div_euclid(MINUTE_NS);
        if minute <= self.last_sweep {
            return;
        }
        self.last_sweep = minute;
        self.windows.retain(|src, w| {
            let keep = w.minute + 2 > minute;
            if !keep {
                closed(*src, w.maxima());
            }
            keep
        });
    }

    /// Close every window (end of learning).
    pub fn drain(&mut self, closed: &mut impl FnMut(IpAddr, (usize, usize))) {
        for (src, w) in self.windows.drain() {
            closed(src, w.maxima());
        }
    }

    pub fn sources(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_hosts_and_ports_per_minute() {
        let mut f = Fanout::new(1000, 10);
        let src: IpAddr = "10.0.0.1".parse().expect("ip");
        let mut closed = Vec::new();
        for i in 0..30u8 {
            let dst = IpAddr::from([10, 0, 1, i]);
            let a = f
                .add(
                    src,
                    dst,
                    (6, 22),
                    i64::from(i) * 1_000_000_000,
                    &mut |s, m| closed.push((s, m)),
                )
                .expect("tracked");
            assert_eq!(a.hosts_on_service, usize::from(i) + 1);
        }
        // A flow in the next minute closes the first.
        f.add(src, src, (6, 80), MINUTE_NS + 1, &mut |s, m| {
            closed.push((s, m))
        });
        assert_eq!(closed, vec![(src, (30, 1))]);
        f.sweep(10 * MINUTE_NS, &mut |s, m| closed.push((s, m)));
        assert_eq!(f.sources(), 0);
        assert_eq!(closed.len(), 2);
    }
}
