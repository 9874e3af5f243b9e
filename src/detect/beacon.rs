//! Beacons: a host connecting to one destination again and again at a
//! steady interval with requests of a steady size, as malware checking in
//! with its controller does.
//!
//! Scoring follows RITA's: for the intervals between connection starts and
//! for the bytes sent, a skew score (1 − |Bowley skewness|) and a dispersion
//! score (1 − MAD / median, so a jitter of 10% scores 0.9); the beacon score
//! is their mean. RITA divides the MAD by fixed constants (30 s, 32 bytes);
//! relative dispersion judges a 10-second and a 1-hour beacon alike.
//!
//! Not beacons: fewer than `min_connections`, intervals under
//! `min_interval_secs` (bursts), timing that is not regular (interval MAD
//! over 30% of the median interval) whatever the sizes, and pairs where most
//! connections failed (a host retrying a dead server is not checking in
//! with anyone).

use std::collections::VecDeque;
use std::net::IpAddr;

use hashbrown::HashMap;

use crate::baseline::dist::{bowley_skew, median_sorted, quantile_sorted};

/// Connections kept per pair (the most recent).
pub const KEPT: usize = 64;
/// A series is judged only on connections that started this long before
/// the latest flow end seen: workers hand finished flows over in their own
/// order, and a connection still on its way would change the series. With
/// it the series judged are the same for any worker count. At least the
/// longest flow timeout plus a minute ([`Beacons::set_grace`]): a flow that
/// ends by timing out is handed over that long after its last packet.
pub const GRACE_NS: i64 = 5 * 60 * 1_000_000_000;
/// Pairs tracked at once; past it new pairs are not tracked.
pub const MAX_PAIRS: usize = 200_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub port: u16,
}

/// One connection: start (ns), bytes sent (saturating), connected.
type Conn = (i64, u32, bool);

/// A pair seen twice or more: its key and its recent connections, in
/// order of start.
#[derive(Clone, Debug)]
struct Series {
    key: PairKey,
    conns: VecDeque<Conn>,
    /// Where its two ends are (for findings made without a flow at hand).
    places: (super::network::Place, super::network::Place),
    /// The next series length to judge (0: the minimum).
    next: u32,
}

/// A series judged: its key and ends, the start of its last connection,
/// and its figures.
pub struct Judged {
    pub key: PairKey,
    pub places: (super::network::Place, super::network::Place),
    pub at: i64,
    pub score: Score,
}

/// A pair seen at least twice. Pairs seen once (most of them) are only a
/// hash and their one connection in [`Beacons::once`], which keeps the
/// per-flow cost to one small probe. The connection is kept (not only the
/// hash) so that a series holds every connection whatever order flows are
/// handed over in: with several workers that order varies, and a series
/// missing whichever connection happened to come first scored differently.
#[derive(Clone, Debug)]
struct Pair {
    series: Box<Series>,
    total: u32,
    last_seen: i64,
}

/// A pair's beacon figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub score: f64,
    pub connections: u64,
    pub median_interval_secs: f64,
    pub interval_mad_secs: f64,
    pub interval_skew: f64,
    pub median_bytes: f64,
    pub bytes_mad: f64,
    pub connected_ratio: f64,
    pub span_secs: f64,
}

/// Connection series per pair.
#[derive(Clone, Debug, Default)]
pub struct Beacons {
    /// By a 64-bit hash of the pair key (collisions, one in billions of
    /// pairs, would merge two series).
    pairs: HashMap<u64, Pair>,
    /// Pairs seen once, this hour and the hour before (so pairs up to an
    /// hour or two apart are still paired up).
    once: [HashMap<u64, Conn>; 2],
    hasher: ahash::RandomState,
    pub untracked: u64,
    last_sweep_hour: i64,
    /// Pairs (and pairs seen once) tracked at most; 0 means [`MAX_PAIRS`].
    max_pairs: usize,
    /// See [`GRACE_NS`]; 0: that.
    grace_ns: i64,
}

/// Pairs quiet this long are forgotten (packet time).
const IDLE_NS: i64 = 6 * 3_600_000_000_000;

fn mad(sorted: &[f64], median: f64) -> f64 {
    let mut dev: Vec<f64> = sorted.iter().map(|v| (v - median).abs()).collect();
    dev.sort_by(f64::total_cmp);
    median_sorted(&dev)
}

/// Bowley skewness, damped when the quartiles are close together: with
/// nearly equal values (60.0, 60.5, 60.5 s) the median lands on a quartile
/// and the skewness jumps to ±1, though the series could hardly be more
/// regular. Full weight from an interquartile range of 20% of `scale` up.
fn damped_skew(sorted: &[f64], scale: f64) -> f64 {
    let iqr = quantile_sorted(sorted, 0.75) - quantile_sorted(sorted, 0.25);
    let weight = if scale <= 0.0 {
        1.0
    } else {
        (iqr / (0.2 * scale)).min(1.0)
    };
    bowley_skew(sorted) * weight
}

/// Score a series of (start, bytes, connected), in any order.
pub fn score(conns: &[(i64, u64, bool)]) -> Option<Score> {
    score_iter(conns.iter().copied())
}

fn score_conns(conns: &VecDeque<Conn>) -> Option<Score> {
    score_iter(conns.iter().map(|&(t, b, c)| (t, u64::from(b), c)))
}

fn score_iter(it: impl Iterator<Item = (i64, u64, bool)>) -> Option<Score> {
    let conns: Vec<(i64, u64, bool)> = it.collect();
    let conns = conns.as_slice();
    if conns.len() < 3 {
        return None;
    }
    let mut starts: Vec<i64> = conns.iter().map(|c| c.0).collect();
    starts.sort_unstable();
    let mut gaps: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e9)
        .collect();
    gaps.sort_by(f64::total_cmp);
    let mut sizes: Vec<f64> = conns.iter().map(|c| c.1 as f64).collect();
    sizes.sort_by(f64::total_cmp);
    let gap_median = median_sorted(&gaps);
    let gap_mad = mad(&gaps, gap_median);
    let size_median = median_sorted(&sizes);
    let size_mad = mad(&sizes, size_median);
    let skew = damped_skew(&gaps, gap_median);
    let disp = |m: f64, med: f64| {
        if med <= 0.0 {
            0.0
        } else {
            (1.0 - m / med).max(0.0)
        }
    };
    let parts = [
        1.0 - skew.abs(),
        disp(gap_mad, gap_median),
        1.0 - damped_skew(&sizes, size_median.max(32.0)).abs(),
        // Tiny requests vary by a few bytes (timestamps, IDs): judge size
        // jitter against at least 32 bytes, as RITA does.
        disp(size_mad, size_median.max(32.0)),
    ];
    let connected = conns.iter().filter(|c| c.2).count();
    Some(Score {
        score: parts.iter().sum::<f64>() / parts.len() as f64,
        connections: conns.len() as u64,
        median_interval_secs: gap_median,
        interval_mad_secs: gap_mad,
        interval_skew: skew,
        median_bytes: size_median,
        bytes_mad: size_mad,
        connected_ratio: connected as f64 / conns.len() as f64,
        span_secs: (starts[starts.len() - 1] - starts[0]) as f64 / 1e9,
    })
}

impl Beacons {
    /// Track at most `max` pairs.
    pub fn with_cap(max: usize) -> Beacons {
        Beacons {
            max_pairs: max.max(1),
            ..Beacons::default()
        }
    }

    /// Wait this long (at least [`GRACE_NS`]) before judging connections.
    pub fn set_grace(&mut self, ns: i64) {
        self.grace_ns = ns.max(GRACE_NS);
    }

    pub fn grace(&self) -> i64 {
        self.grace_ns.max(GRACE_NS)
    }

    fn cap(&self) -> usize {
        if self.max_pairs == 0 {
            MAX_PAIRS
        } else {
            self.max_pairs
        }
    }

    /// Add a connection (`places`: where its ends are; `now`: the latest
    /// flow end seen). Returns the series that became due for a look: the
    /// first `min` connections in order of start, then every eighth
    /// length, each once every connection up to it is surely in
    /// ([`GRACE_NS`]).
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        key: PairKey,
        places: (super::network::Place, super::network::Place),
        start: i64,
        bytes: u64,
        connected: bool,
        min: usize,
        now: i64,
    ) -> Vec<Judged> {
        self.sweep(start);
        let h = self.hasher.hash_one(key);
        let conn = (start, u32::try_from(bytes).unwrap_or(u32::MAX), connected);
        let p = match self.pairs.get_mut(&h) {
            Some(p) => {
                let c = &mut p.series.conns;
                let at = c.partition_point(|x| x.0 <= start);
                c.insert(at, conn);
                if c.len() > KEPT {
                    c.pop_front();
                }
                p.total = p.total.saturating_add(1);
                p.last_seen = p.last_seen.max(start);
                p
            }
            None => {
                let Some(first) = self.once[0].remove(&h).or_else(|| self.once[1].remove(&h))
                else {
                    if self.once[0].len() >= self.cap() {
                        self.untracked += 1;
                    } else {
                        self.once[0].insert(h, conn);
                    }
                    return Vec::new();
                };
                if self.pairs.len() >= self.cap() {
                    self.untracked += 1;
                    return Vec::new();
                }
                let mut conns = VecDeque::with_capacity(4);
                conns.push_back(first.min(conn));
                conns.push_back(first.max(conn));
                self.pairs.entry(h).or_insert(Pair {
                    series: Box::new(Series {
                        key,
                        conns,
                        places,
                        next: 0,
                    }),
                    total: 2,
                    last_seen: start.max(first.0),
                })
            }
        };
        let mut out = Vec::new();
        let grace = self.grace_ns.max(GRACE_NS);
        judge_due(p, min, now.saturating_sub(grace), &mut out);
        out
    }

    /// End of the run: every series judged as far as it goes.
    pub fn finish(&mut self, min: usize) -> Vec<Judged> {
        let mut out = Vec::new();
        for p in self.pairs.values_mut() {
            judge_due(p, min, i64::MAX, &mut out);
        }
        out
    }

    /// Once an hour of packet time, forget pairs quiet for [`IDLE_NS`].
    fn sweep(&mut self, now: i64) {
        let hour = now.div_euclid(3_600_000_000_000);
        if hour > self.last_sweep_hour {
            self.last_sweep_hour = hour;
            self.forget_before(now - IDLE_NS);
            let older = std::mem::take(&mut self.once[0]);
            self.once[1] = older;
        }
    }

    /// Forget pairs quiet since `before` (packet time).
    pub fn forget_before(&mut self, before: i64) {
        self.pairs.retain(|_, p| p.last_seen >= before);
    }

    /// Every pair's current score (end of learning).
    pub fn scores(&self, min: usize) -> Vec<(PairKey, Score)> {
        self.pairs
            .iter()
            .map(|(_, p)| &p.series)
            .filter(|s| s.conns.len() >= min)
            .filter_map(|s| score_conns(&s.conns).map(|sc| (s.key, sc)))
            .collect()
    }

    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }
}

/// Judge the series lengths that are due and complete at `cutoff`.
fn judge_due(p: &mut Pair, min: usize, cutoff: i64, out: &mut Vec<Judged>) {
    let s = &mut p.series;
    let min = u32::try_from(min).unwrap_or(u32::MAX).max(3);
    if s.next == 0 {
        s.next = min;
    }
    // Connections before the kept ones (the first of every pair, and those
    // that fell off the front) count as earlier than all kept.
    let before = p.total.saturating_sub(s.conns.len() as u32);
    let complete = before + s.conns.partition_point(|c| c.0 <= cutoff) as u32;
    while s.next <= complete {
        let n = s.next;
        s.next = if n < 8 { 8 } else { (n / 8 + 1) * 8 };
        let Some(end) = n.checked_sub(before).map(|e| e as usize) else {
            continue;
        };
        if end == 0 || end > s.conns.len() {
            continue;
        }
        if let Some(score) = score_iter(s.conns.range(..end).map(|&(t, b, c)| (t, u64::from(b), c)))
        {
            out.push(Judged {
                key: s.key,
                places: s.places,
                at: s.conns[end - 1].0,
                score,
            });
        }
    }
}

/// Whether a score makes a beacon under the given thresholds.
///
/// Besides the score, the timing itself must be regular (intervals within
/// 30% of the median, by MAD): constant-size traffic such as DNS
/// queries gets the two size scores for free, and random (Poisson) timing,
/// MAD about 0.7 of the median, could otherwise reach the score by luck in
/// a short window.
pub fn is_beacon(s: &Score, min_score: f64, min_interval_secs: f64) -> bool {
    s.score >= min_score
        && s.median_interval_secs >= min_interval_secs
        && s.interval_mad_secs <= 0.3 * s.median_interval_secs
        && s.connected_ratio >= 0.5
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn steady_checkins_score_high_and_random_ones_low() {
        let steady: Vec<_> = (0..20)
            .map(|i| (i * 60 * S + (i % 3) * S / 2, 310 + (i % 2) as u64, true))
            .collect();
        let s = score(&steady).expect("enough");
        assert!(s.score > 0.9, "{s:?}");
        assert!(is_beacon(&s, 0.85, 1.0));
        // Poisson-like arrivals with varied sizes.
        let mut t = 0;
        let mut x = 12345u64;
        let random: Vec<_> = (0..40)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = ((x >> 11) as f64 / (1u64 << 53) as f64).max(1e-9);
                t += (-u.ln() * 30.0 * S as f64) as i64;
                (t, 200 + (x >> 40) % 5000, true)
            })
            .collect();
        let r = score(&random).expect("enough");
        assert!(r.score < 0.8, "{r:?}");
        assert!(!is_beacon(&r, 0.85, 1.0));
    }

    #[test]
    fn failed_connections_do_not_make_a_beacon() {
        let retries: Vec<_> = (0..20).map(|i| (i * 5 * S, 74, false)).collect();
        let s = score(&retries).expect("enough");
        assert!(s.score > 0.9);
        assert!(!is_beacon(&s, 0.85, 1.0));
    }
}
