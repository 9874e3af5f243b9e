//! SIGHUP: re-read the config file (and the baseline in use) on a thread of
//! its own, and hand what can change under a running capture to the
//! flow-analysis thread, which swaps it in between two chunks of flows.
//!
//! What reloads: the segmentation policy (zones and rules), `[detect]`
//! thresholds and detector switches, `[[allow]]` entries, and the baseline
//! file's contents. What needs a restart (capture, pipeline and flow
//! settings, the metrics endpoint, learning caps) is named in the log and
//! left as it was. A config that fails to load is logged with its file,
//! line and fix, counted, and changes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use signal_hook::iterator::{Handle, Signals};

use crate::baseline::model::Baseline;
use crate::config::Config;
use crate::detect::settings::DetectSettings;
use crate::metrics::Metrics;
use crate::policy::SharedPolicy;

/// What a reload hands the analysis thread.
#[derive(Clone, Debug)]
pub struct Reload {
    pub policy: SharedPolicy,
    pub detect: DetectSettings,
    /// The baseline file, read again (`None`: none in use, or learning).
    pub baseline: Option<Baseline>,
    /// The config file it came from (for the log).
    pub path: PathBuf,
}

/// Reads the config again and decides what of it can be applied.
pub struct Reloader {
    /// `None`: started without a config file, so there is nothing to read.
    path: Option<PathBuf>,
    /// The file's settings as first loaded, before command-line overrides:
    /// a reload compares against these to name what needs a restart.
    first: Config,
    /// The baseline in use (`--baseline` wins over the config's).
    baseline_override: Option<PathBuf>,
    /// A baseline is being learned: the file is ours to write, not to read.
    learning: bool,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        first: Config,
        baseline_override: Option<PathBuf>,
        learning: bool,
    ) -> Reloader {
        Reloader {
            path,
            first,
            baseline_override,
            learning,
        }
    }

    /// The config file, for messages.
    pub fn name(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "(no config file)".into(), |p| p.display().to_string())
    }

    /// Load the config (and baseline) again. `Err` names the file, line and
    /// fix; the second value lists the changed settings that need a restart.
    pub fn load(&self) -> Result<(Reload, Vec<&'static str>), String> {
        let path = self.path.as_ref().ok_or(
            "segwatch was started without --config, so there is no file to reload; restart it with --config FILE",
        )?;
        let cfg = Config::load(path).map_err(|e| e.to_string())?;
        let restart = needs_restart(&self.first, &cfg);
        let baseline_path = self
            .baseline_override
            .clone()
            .or_else(|| cfg.detect.baseline.clone());
        let baseline = match baseline_path {
            Some(p) if !self.learning && cfg.detect.enabled => {
                Some(Baseline::load(&p).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        Ok((
            Reload {
                policy: cfg.policy,
                detect: cfg.detect,
                baseline,
                path: path.clone(),
            },
            restart,
        ))
    }
}

/// Settings that differ between two loads of the file and only take effect
/// at start.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.capture != new.capture {
        out.push("[capture]");
    }
    if old.pipeline.workers != new.pipeline.workers
        || old.pipeline.batch_size != new.pipeline.batch_size
        || old.pipeline.queue_batches != new.pipeline.queue_batches
        || old.pipeline.frame_prefix != new.pipeline.frame_prefix
    {
        out.push("[pipeline]");
    }
    if old.pipeline.max_flows != new.pipeline.max_flows
        || old.pipeline.timeouts != new.pipeline.timeouts
    {
        out.push("[flows]");
    }
    if old.pipeline.memory_limit != new.pipeline.memory_limit {
        out.push("[limits]");
    }
    if old.pipeline.rotation != new.pipeline.rotation {
        out.push("[output]");
    }
    if old.metrics_listen != new.metrics_listen || old.metrics_web_config != new.metrics_web_config
    {
        out.push("[metrics]");
    }
    if old.detect.enabled != new.detect.enabled {
        out.push("[detect] enabled");
    }
    if old.detect.limits != new.detect.limits {
        out.push("[learn]");
    }
    out
}

/// The SIGHUP watcher thread; dropping it stops the thread.
pub struct Watcher {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Watch for SIGHUP; each one loads the config again and, when it is
    /// good, sends it to the analysis thread through the returned channel.
    pub fn start(
        reloader: Reloader,
        metrics: Option<Arc<Metrics>>,
    ) -> std::io::Result<(Watcher, Receiver<Reload>)> {
        let mut signals = Signals::new([signal_hook::consts::SIGHUP])?;
        let handle = signals.handle();
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("segwatch-reload".into())
            .spawn(move || {
                for _ in signals.forever() {
                    reload_once(&reloader, &tx, metrics.as_deref());
                }
            })?;
        Ok((
            Watcher {
                handle,
                thread: Some(thread),
            },
            rx,
        ))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reload_once(reloader: &Reloader, tx: &Sender<Reload>, metrics: Option<&Metrics>) {
    tracing::info!(config = %reloader.name(), "SIGHUP: reloading the config");
    match reloader.load() {
        Ok((reload, restart)) => {
            if !restart.is_empty() {
                tracing::warn!(
                    "{}: changes to {} take effect only after a restart; the running values stay",
                    reloader.name(),
                    restart.join(", ")
                );
            }
            // The analysis thread counts the success when it applies it.
            if tx.send(reload).is_err() {
                tracing::warn!("reload arrived while segwatch was stopping; ignored");
            }
        }
        Err(e) => {
            tracing::error!("reload rejected, the running config stays in force: {e}");
            if let Some(m) = metrics {
                m.config_reload(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        Config::parse(text, Path::new("x.toml")).expect("valid")
    }

    #[test]
    fn restart_only_changes_are_named() {
        let a = cfg("[capture]\nsnaplen = 200\n[detect.scan]\nmin_hosts = 40\n");
        let b = cfg("[capture]\nsnaplen = 300\n[detect.scan]\nmin_hosts = 50\n");
        assert_eq!(needs_restart(&a, &b), vec!["[capture]"]);
        let c = cfg("[flows]\nmax_flows = 9\n[pipeline]\nworkers = 3\n");
        assert_eq!(
            needs_restart(&a, &c),
            vec!["[capture]", "[pipeline]", "[flows]"]
        );
        assert!(needs_restart(&a, &a).is_empty());
    }

    #[test]
    fn a_bad_file_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("s.toml");
        std::fs::write(&p, "[detect]\nmin_severity = \"loud\"\n").expect("write");
        let r = Reloader::new(Some(p.clone()), Config::default(), None, false);
        let e = r.load().expect_err("bad");
        assert!(
            Reloader::new(None, Config::default(), None, false)
                .load()
                .is_err()
        );
        assert!(e.contains("s.toml:2:"), "{e}");
        std::fs::write(&p, "[detect]\nmin_severity = \"high\"\n").expect("write");
        let (ok, restart) = r.load().expect("good");
        assert!(restart.is_empty());
        assert_eq!(ok.detect.min_severity, crate::segmentation::Severity::High);
    }
}
