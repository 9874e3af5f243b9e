//! `hdrhistogram` distributions exported as Prometheus summaries.
//!
//! Each worker records into its own [`LocalHistogram`] and publishes into a
//! shared histogram now and then (every 64 records or every second), so the
//! lock is taken rarely and never contended on the packet path; a scrape
//! reads the shared histograms. Values are nanoseconds, exported in seconds.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary};

/// A histogram shared between one worker and the scraper.
pub type SharedHistogram = Arc<Mutex<Histogram<u64>>>;

/// Quantiles exported.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// Records between two publications, at most.
const PUBLISH_EVERY: u32 = 64;
/// Time between two publications, at most (quiet live capture).
const PUBLISH_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// 1 µs to 1,000 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 1_000_000_000_000, 3).unwrap_or_else(|_| {
        // Constant, valid bounds: this branch is never taken.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

pub fn shared_histogram() -> SharedHistogram {
    Arc::new(Mutex::new(new_histogram()))
}

/// A worker's own histogram, published into the shared one now and then.
pub struct LocalHistogram {
    local: Histogram<u64>,
    shared: Option<SharedHistogram>,
    pending: u32,
    published: std::time::Instant,
}

impl LocalHistogram {
    pub fn new(shared: Option<SharedHistogram>) -> LocalHistogram {
        LocalHistogram {
            local: new_histogram(),
            shared,
            pending: 0,
            published: std::time::Instant::now(),
        }
    }

    pub fn record(&mut self, ns: u64) {
        self.local.saturating_record(ns);
        self.pending += 1;
        if self.pending >= PUBLISH_EVERY || self.published.elapsed() >= PUBLISH_AFTER {
            self.publish();
        }
    }

    /// Move what was recorded into the shared histogram.
    pub fn publish(&mut self) {
        if self.pending == 0 {
            return;
        }
        if let Some(s) = &self.shared
            && let Ok(mut h) = s.lock()
        {
            // Same bounds on both sides: adding cannot fail.
            let _ = h.add(&self.local);
        }
        self.local.reset();
        self.pending = 0;
        self.published = std::time::Instant::now();
    }
}

/// Exports one summary family with a `worker` label per histogram.
pub struct LatencySummary {
    desc: Desc,
    name: String,
    help: String,
    workers: Vec<SharedHistogram>,
}

impl LatencySummary {
    pub fn new(name: &str, help: &str, workers: Vec<SharedHistogram>) -> prometheus::Result<Self> {
        Ok(LatencySummary {
            desc: Desc::new(
                name.into(),
                help.into(),
                vec!["worker".into()],
                Default::default(),
            )?,
            name: name.into(),
            help: help.into(),
            workers,
        })
    }
}

impl Collector for LatencySummary {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut metrics = Vec::new();
        for (i, h) in self.workers.iter().enumerate() {
            let Ok(h) = h.lock() else { continue };
            let mut s = Summary::default();
            s.set_sample_count(h.len());
            // hdrhistogram keeps no exact sum: mean × count is within its precision.
            s.set_sample_sum(h.mean() * h.len() as f64 / 1e9);
            let q = QUANTILES
                .iter()
                .map(|&q| {
                    let mut x = Quantile::default();
                    x.set_quantile(q);
                    x.set_value(if h.is_empty() {
                        0.0
                    } else {
                        h.value_at_quantile(q) as f64 / 1e9
                    });
                    x
                })
                .collect();
            s.set_quantile(q);
            let mut label = LabelPair::default();
            label.set_name("worker".into());
            label.set_value(i.to_string());
            let mut m = Metric::from_label(vec![label]);
            m.set_summary(s);
            metrics.push(m);
        }
        let mut f = MetricFamily::default();
        f.set_name(self.name.clone());
        f.set_help(self.help.clone());
        f.set_field_type(MetricType::SUMMARY);
        f.set_metric(metrics);
        vec![f]
    }
}
