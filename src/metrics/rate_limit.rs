//! `rate_limit` of the web config: one token bucket for the whole endpoint,
//! as exporter-toolkit has (Go's `golang.org/x/time/rate`): `burst` tokens
//! to start with, one more every `interval`, one spent per request; a
//! request that finds none gets `429 Too Many Requests` before any bcrypt
//! is spent on it.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    burst: u32,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    /// `interval` must not be zero (zero turns the limiter off: no
    /// `RateLimit` at all).
    pub fn new(interval: Duration, burst: u32) -> RateLimit {
        RateLimit {
            interval,
            burst,
            state: Mutex::new(Bucket {
                tokens: f64::from(burst),
                at: Instant::now(),
            }),
        }
    }

    /// Whether a request may be served now (and spend a token if so).
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut b = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let earned =
            now.saturating_duration_since(b.at).as_secs_f64() / self.interval.as_secs_f64();
        b.tokens = (b.tokens + earned).min(f64::from(self.burst));
        b.at = now.max(b.at);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A Go duration (`time.ParseDuration`): decimal numbers, each with a unit
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), as in `1s`, `1.5m`, `1h30m`;
/// `0` alone needs no unit. Negative durations are refused.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let value: f64 = number.parse().ok()?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = after;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s| parse_go_duration(s);
        assert_eq!(d("1s"), Some(Duration::from_secs(1)));
        assert_eq!(d("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(d("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(d("1.5m"), Some(Duration::from_secs(90)));
        assert_eq!(d("250us"), Some(Duration::from_micros(250)));
        assert_eq!(d("0"), Some(Duration::ZERO));
        for bad in ["", "1", "s", "1x", "-1s", "1..2s", "one second"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn bucket_starts_full_and_refills_one_per_interval() {
        let l = RateLimit::new(Duration::from_secs(1), 2);
        let t0 = Instant::now();
        assert!(l.allow_at(t0));
        assert!(l.allow_at(t0));
        assert!(!l.allow_at(t0));
        assert!(!l.allow_at(t0 + Duration::from_millis(900)));
        assert!(l.allow_at(t0 + Duration::from_millis(1000)));
        assert!(!l.allow_at(t0 + Duration::from_millis(1100)));
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(3600);
        assert!(l.allow_at(later) && l.allow_at(later));
        assert!(!l.allow_at(later));
    }
}
