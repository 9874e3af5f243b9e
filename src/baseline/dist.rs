//! A learned distribution (bytes per hour, fan-out per minute, ...),
//! bucketed as `hdrhistogram` buckets values at two significant digits
//! (every value is kept to within 1%), stored sparse: only the buckets that
//! hold values, as (value, count) pairs in value order. A dense
//! `hdrhistogram` array costs about 13 kB per distribution at these ranges,
//! and a baseline keeps four per host; the sparse form costs 16 bytes per
//! bucket in use (a few dozen at most). Judged with robust statistics (median
//! and median absolute deviation) rather than a mean that one burst would
//! drag.

use std::sync::LazyLock;

use hdrhistogram::Histogram;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Significant digits kept: values are exact to 1% (plenty for thresholds).
const SIGFIG: u8 = 2;

/// The bucketing template: never recorded into, only asked which bucket a
/// value falls in.
static BUCKETS: LazyLock<Histogram<u64>> = LazyLock::new(|| {
    // Constant, valid bounds.
    Histogram::new_with_max(u64::MAX / 4, SIGFIG).expect("valid histogram bounds")
});

/// The value representing the bucket `v` falls in (its highest equivalent).
fn bucket(v: u64) -> u64 {
    let b = &*BUCKETS;
    if v >= b.high() {
        return v;
    }
    b.highest_equivalent(v)
}

/// A distribution of non-negative integers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dist {
    /// (bucket value, count), ascending, counts > 0.
    buckets: Vec<(u64, u64)>,
}

/// Median and the median absolute deviation, scaled to estimate a standard
/// deviation (×1.4826) so thresholds read as "k sigmas".
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Robust {
    pub median: f64,
    pub sigma: f64,
}

impl Dist {
    pub fn new() -> Dist {
        Dist::default()
    }

    pub fn record(&mut self, v: u64) {
        self.record_n(v, 1);
    }

    pub fn record_n(&mut self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        let b = bucket(v);
        match self.buckets.binary_search_by_key(&b, |e| e.0) {
            // Saturating: counts come from files too, and a corrupt one may hold any number.
            Ok(i) => self.buckets[i].1 = self.buckets[i].1.saturating_add(n),
            Err(i) => self.buckets.insert(i, (b, n)),
        }
    }

    pub fn merge(&mut self, other: &Dist) {
        for &(v, n) in &other.buckets {
            self.record_n(v, n);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0, |n, b| n.saturating_add(b.1))
    }

    pub fn max(&self) -> u64 {
        self.buckets.last().map_or(0, |b| b.0)
    }

    /// The smallest recorded value with at least `q` of the values at or
    /// below it (nearest rank).
    pub fn quantile(&self, q: f64) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen: u64 = 0;
        for &(v, c) in &self.buckets {
            seen = seen.saturating_add(c);
            if seen >= rank {
                return v;
            }
        }
        self.max()
    }

    /// Recorded (value, count) pairs in value order.
    pub fn buckets(&self) -> Vec<(u64, u64)> {
        self.buckets.clone()
    }

    /// Median and scaled MAD; `None` when empty.
    pub fn robust(&self) -> Option<Robust> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let median = weighted_median(self.buckets.iter().map(|&(v, c)| (v as f64, c)), n);
        let mut dev: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .map(|&(v, c)| ((v as f64 - median).abs(), c))
            .collect();
        dev.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mad = weighted_median(dev.into_iter(), n);
        Some(Robust {
            median,
            sigma: 1.4826 * mad,
        })
    }

    /// Heap bytes held (for the memory figures).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(u64, u64)>()
    }
}

/// The value at the middle of `n` weighted values given in ascending order.
fn weighted_median(values: impl Iterator<Item = (f64, u64)>, n: u64) -> f64 {
    let half = n.div_ceil(2);
    let mut seen: u64 = 0;
    let mut last = 0.0;
    for (v, c) in values {
        seen = seen.saturating_add(c);
        last = v;
        if seen >= half {
            break;
        }
    }
    last
}

impl Serialize for Dist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.buckets.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Dist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dist, D::Error> {
        let buckets: Vec<(u64, u64)> = Vec::deserialize(d)?;
        let mut dist = Dist::new();
        for (v, c) in buckets {
            if c == 0 {
                return Err(D::Error::custom("a distribution bucket has a count of 0"));
            }
            dist.record_n(v, c);
        }
        dist.buckets.shrink_to_fit();
        Ok(dist)
    }
}

/// Median and scaled MAD of a small sample (sorted in place).
pub fn robust_of(values: &mut [f64]) -> Option<Robust> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let median = median_sorted(values);
    let mut dev: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    dev.sort_by(f64::total_cmp);
    Some(Robust {
        median,
        sigma: 1.4826 * median_sorted(&dev),
    })
}

/// Median of sorted values (mean of the middle two for even lengths).
pub fn median_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Quantile of sorted values by linear interpolation.
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Bowley's quartile skewness of sorted values, in -1..=1 (0: symmetric);
/// 0 when the quartiles coincide (a perfectly regular series).
pub fn bowley_skew(v: &[f64]) -> f64 {
    let (q1, q2, q3) = (
        quantile_sorted(v, 0.25),
        quantile_sorted(v, 0.5),
        quantile_sorted(v, 0.75),
    );
    if q3 - q1 <= f64::EPSILON {
        0.0
    } else {
        (q1 + q3 - 2.0 * q2) / (q3 - q1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_resist_a_burst() {
        let mut d = Dist::new();
        for v in [100, 102, 98, 101, 99, 100, 103, 97] {
            d.record(v);
        }
        d.record(1_000_000);
        let r = d.robust().expect("not empty");
        assert!((r.median - 100.0).abs() <= 1.0, "{r:?}");
        assert!(r.sigma > 0.0 && r.sigma < 5.0, "{r:?}");
    }

    #[test]
    fn round_trips_through_json() {
        let mut d = Dist::new();
        for v in [0, 1, 5, 5, 70_000, 3_000_000_000] {
            d.record(v);
        }
        let json = serde_json::to_string(&d).expect("serializes");
        let back: Dist = serde_json::from_str(&json).expect("parses");
        assert_eq!(back.count(), 6);
        assert_eq!(back.buckets(), d.buckets());
        assert!(serde_json::from_str::<Dist>("[[5,0]]").is_err());
    }

    #[test]
    fn huge_counts_from_a_file_saturate() {
        // Found by the baseline proptest: counts adding up past u64::MAX.
        let d: Dist =
            serde_json::from_str("[[5,18446744073709551615],[5,1],[900,7]]").expect("parses");
        assert_eq!(d.count(), u64::MAX);
        assert_eq!(d.quantile(0.5), 5);
        assert_eq!(d.robust().map(|r| r.median), Some(5.0));
    }

    #[test]
    fn small_sample_statistics() {
        let mut v = vec![2.0, 2.0, 2.0, 2.0, 9.0];
        let r = robust_of(&mut v).expect("not empty");
        assert_eq!(r.median, 2.0);
        assert_eq!(r.sigma, 0.0);
        assert_eq!(bowley_skew(&[1.0, 2.0, 3.0, 4.0, 5.0]), 0.0);
        assert!(bowley_skew(&[1.0, 1.0, 1.0, 2.0, 10.0]) > 0.0);
        assert_eq!(quantile_sorted(&[1.0, 3.0], 0.5), 2.0);
    }
}
