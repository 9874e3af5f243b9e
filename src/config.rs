//! The TOML configuration, in two tiers: raw serde structs for what the user
//! wrote (`deny_unknown_fields`, spans kept for error messages), validated into
//! the typed settings the program uses. Every error names the file, the line and
//! column, and what to do about it.
//!
//! Every option is documented in `configs/segwatch.example.toml`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::capture::LiveOptions;
use crate::detect::settings::{DetectSettings, RawAllow, RawDetect, RawLearn};
use crate::flow::Timeouts;
use crate::pipeline::PipelineConfig;
use crate::policy::SharedPolicy;
use crate::policy::load::{Locator, RawParts, RawPolicy, RawRule, RawZone, Warning};
use crate::privileges::{Named, ServiceOptions};
use crate::sink::live_file::Rotation;

/// A configuration error a user can fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {reason}\n  fix: check the path and that segwatch may read it; it must be UTF-8 text (configs/segwatch.example.toml is a starting point)"
    )]
    Read { path: PathBuf, reason: String },
    #[error("{path}:{line}:{column}: {message}\n  fix: {fix}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        fix: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    capture: RawCapture,
    #[serde(default)]
    pipeline: RawPipeline,
    #[serde(default)]
    flows: RawFlows,
    #[serde(default)]
    zone: Vec<Spanned<RawZone>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    detect: RawDetect,
    #[serde(default)]
    allow: Vec<Spanned<RawAllow>>,
    #[serde(default)]
    learn: RawLearn,
    #[serde(default)]
    output: RawOutput,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    service: RawService,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mib: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    rotate_mib: Option<Spanned<i64>>,
    rotate_keep: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    allow_root: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
    web_config: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    interface: Option<String>,
    promiscuous: Option<bool>,
    snaplen: Option<Spanned<i64>>,
    buffer_mib: Option<Spanned<i64>>,
    filter: Option<String>,
    immediate: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    workers: Option<Spanned<i64>>,
    batch_size: Option<Spanned<i64>>,
    queue_batches: Option<Spanned<i64>>,
    frame_prefix: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlows {
    max_flows: Option<Spanned<i64>>,
    #[serde(default)]
    timeouts: RawTimeouts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    tcp_half_open: Option<Spanned<i64>>,
    tcp_established: Option<Spanned<i64>>,
    tcp_closed: Option<Spanned<i64>>,
    udp: Option<Spanned<i64>>,
    icmp: Option<Spanned<i64>>,
    other: Option<Spanned<i64>>,
}

/// Validated configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub capture: LiveOptions,
    pub pipeline: PipelineConfig,
    /// The segmentation policy (empty when the file declares no zones).
    pub policy: SharedPolicy,
    /// Legal but suspicious parts of the policy, by line.
    pub warnings: Vec<Warning>,
    /// Where `/metrics` listens (`run` always serves; `analyze` only with
    /// `--metrics-listen`); `None`: [`crate::metrics::DEFAULT_LISTEN`].
    pub metrics_listen: Option<String>,
    /// Anomaly detection and baseline learning.
    pub detect: DetectSettings,
    /// The web config file (TLS, basic auth) of the metrics endpoint, from
    /// `[metrics] web_config`, relative paths resolved against the config
    /// file's folder; `--web-config` overrides it.
    pub metrics_web_config: Option<PathBuf>,
    /// Who `run` becomes once the capture is open (`[service]`).
    pub service: ServiceOptions,
    /// Where the settings came from (for messages).
    pub source: Option<PathBuf>,
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Config::parse(&text, path)
    }

    /// Validate config text; `path` is used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |span: Option<Range<usize>>, message: String, fix: &str| {
            let (line, column) = span.map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
                fix: fix.to_string(),
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            invalid(
                e.span(),
                e.message().trim().to_string(),
                "compare with configs/segwatch.example.toml, which lists every section and option",
            )
        })?;

        // A number within bounds, or an error pointing at it.
        let ranged = |v: &Option<Spanned<i64>>, name: &str, lo: i64, hi: i64, default: i64| {
            in_range(v, name, (lo, hi), default, &invalid)
        };

        let d = Config::default();
        let c = &raw.capture;
        let capture = LiveOptions {
            interface: c.interface.clone().unwrap_or_default(),
            promiscuous: c.promiscuous.unwrap_or(d.capture.promiscuous),
            snaplen: ranged(&c.snaplen, "capture.snaplen", 64, 262_144, 262_144)? as i32,
            buffer_bytes: (ranged(&c.buffer_mib, "capture.buffer_mib", 1, 2047, 64)? << 20) as i32,
            filter: c.filter.clone().unwrap_or_default(),
            immediate: c.immediate.unwrap_or(d.capture.immediate),
            timeout_ms: d.capture.timeout_ms,
        };
        let p = &raw.pipeline;
        let workers = ranged(&p.workers, "pipeline.workers", 0, 256, 0)?;
        let t = &raw.flows.timeouts;
        let secs = |v, name, default| -> Result<u64, ConfigError> {
            Ok(ranged(v, name, 1, 7 * 24 * 3600, default)? as u64)
        };
        let pipeline = PipelineConfig {
            workers: if workers == 0 {
                PipelineConfig::default_workers()
            } else {
                workers as usize
            },
            batch_size: ranged(&p.batch_size, "pipeline.batch_size", 1, 65_536, 256)? as usize,
            queue_batches: ranged(&p.queue_batches, "pipeline.queue_batches", 1, 65_536, 64)?
                as usize,
            frame_prefix: ranged(&p.frame_prefix, "pipeline.frame_prefix", 96, 65_535, 192)?
                as usize,
            max_flows: ranged(
                &raw.flows.max_flows,
                "flows.max_flows",
                1,
                1_000_000_000,
                1_000_000,
            )? as usize,
            timeouts: Timeouts::from_secs(
                secs(&t.tcp_half_open, "flows.timeouts.tcp_half_open", 20)?,
                secs(&t.tcp_established, "flows.timeouts.tcp_established", 300)?,
                secs(&t.tcp_closed, "flows.timeouts.tcp_closed", 10)?,
                secs(&t.udp, "flows.timeouts.udp", 60)?,
                secs(&t.icmp, "flows.timeouts.icmp", 30)?,
                secs(&t.other, "flows.timeouts.other", 60)?,
            ),
            rotation: Rotation {
                max_bytes: (ranged(&raw.output.rotate_mib, "output.rotate_mib", 0, 1 << 20, 128)?
                    as u64)
                    << 20,
                keep: ranged(&raw.output.rotate_keep, "output.rotate_keep", 0, 10_000, 10)? as u32,
            },
            memory_limit: match ranged(&raw.limits.memory_mib, "limits.memory_mib", 0, 1 << 20, 0)?
            {
                0 => None,
                mib => Some((mib as u64) << 20),
            },
        };
        let metrics_listen = match &raw.metrics.listen {
            None => None,
            Some(l) => {
                let v = l.get_ref().trim();
                if v.parse::<std::net::SocketAddr>().is_err() {
                    return Err(invalid(
                        Some(l.span()),
                        format!("metrics.listen = \"{v}\" is not an address and port"),
                        "write an IP address and port, for example \"127.0.0.1:9947\" or \"[::1]:9947\"",
                    ));
                }
                Some(v.to_string())
            }
        };
        let metrics_web_config = match &raw.metrics.web_config {
            None => None,
            Some(w) if w.get_ref().trim().is_empty() => {
                return Err(invalid(
                    Some(w.span()),
                    "metrics.web_config is empty".into(),
                    "write the path of a web config file (see configs/prometheus/web-config.example.yml), or remove the line",
                ));
            }
            // Relative to the config file, as exporter-toolkit resolves the
            // paths inside a web config against its folder.
            Some(w) => Some(
                path.parent()
                    .unwrap_or(Path::new(""))
                    .join(w.get_ref().trim()),
            ),
        };
        let service = service_options(&raw.service, path, text, &invalid)?;
        // Policies can have thousands of entries: index line starts once.
        let newlines: Vec<usize> = text
            .bytes()
            .enumerate()
            .filter_map(|(i, b)| (b == b'\n').then_some(i))
            .collect();
        let line_of = |offset: usize| newlines.partition_point(|&n| n < offset) + 1;
        let loc = Locator {
            invalid: &invalid,
            line_of: &line_of,
        };
        let (policy, warnings) = crate::policy::load::build(
            RawParts {
                zones: raw.zone,
                rules: raw.rule,
                policy: raw.policy,
            },
            &loc,
        )?;
        let mut detect = crate::detect::settings::build(raw.detect, raw.allow, raw.learn, &loc)?;
        // A relative baseline path is relative to the config file.
        if let (Some(b), Some(dir)) = (&detect.baseline, path.parent())
            && b.is_relative()
        {
            detect.baseline = Some(dir.join(b));
        }
        Ok(Config {
            capture,
            pipeline,
            policy: std::sync::Arc::new(policy),
            warnings,
            metrics_listen,
            detect,
            metrics_web_config,
            service,
            source: Some(path.to_path_buf()),
        })
    }
}

/// `[service]`: names that look like names (whether they exist is checked
/// by `run`, on the machine that runs it), and a group only with a user.
fn service_options(
    raw: &RawService,
    path: &Path,
    text: &str,
    invalid: crate::policy::load::MakeError<'_>,
) -> Result<ServiceOptions, ConfigError> {
    let name = |v: &Option<Spanned<String>>, key: &str, example: &str| {
        let Some(s) = v else {
            return Ok(None);
        };
        let n = s.get_ref().trim();
        if n.is_empty() || n.contains(|c: char| c == ':' || c == '/' || c.is_whitespace()) {
            return Err(invalid(
                Some(s.span()),
                format!("{key} = {:?} is not a name", s.get_ref()),
                &format!(
                    "write the name of an existing system {example} (configs/segwatch.sysusers creates one), or remove the line"
                ),
            ));
        }
        let (line, _) = line_col(text, s.span().start);
        Ok(Some(Named {
            name: n.to_string(),
            origin: format!("{}:{line}: {key}", path.display()),
        }))
    };
    let user = name(&raw.user, "service.user", "user, such as \"segwatch\"")?;
    let group = name(&raw.group, "service.group", "group, such as \"segwatch\"")?;
    if let (None, Some(g)) = (&user, &raw.group) {
        return Err(invalid(
            Some(g.span()),
            "service.group is set without service.user".into(),
            "set service.user too: the group replaces that user's primary group when segwatch drops root",
        ));
    }
    Ok(ServiceOptions {
        user,
        group,
        allow_root: raw.allow_root.unwrap_or(false),
    })
}

/// A number within bounds (or the default when absent), or an error
/// pointing at it with the range to use.
pub(crate) fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
    v: &Option<Spanned<T>>,
    name: &str,
    (lo, hi): (T, T),
    default: T,
    invalid: crate::policy::load::MakeError<'_>,
) -> Result<T, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) if lo <= *s.get_ref() && *s.get_ref() <= hi => Ok(*s.get_ref()),
        Some(s) => Err(invalid(
            Some(s.span()),
            format!("{name} = {} is out of range", s.get_ref()),
            &format!("use a value from {lo} to {hi}"),
        )),
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("seg.toml"))
            .map(|_| ())
            .expect_err("should fail")
            .to_string()
    }

    #[test]
    fn empty_config_gives_defaults() {
        let c = Config::parse("", Path::new("x.toml")).expect("valid");
        assert_eq!(c.pipeline.batch_size, 256);
        assert_eq!(c.pipeline.max_flows, 1_000_000);
        assert_eq!(c.pipeline.timeouts, Timeouts::default());
    }

    #[test]
    fn values_are_read() {
        let c = Config::parse(
            "[pipeline]\nworkers = 3\n[flows]\nmax_flows = 5000\n[flows.timeouts]\nudp = 5\n[capture]\ninterface = \"eth1\"\nbuffer_mib = 8\n",
            Path::new("x.toml"),
        )
        .expect("valid");
        assert_eq!(c.pipeline.workers, 3);
        assert_eq!(c.pipeline.max_flows, 5000);
        assert_eq!(c.pipeline.timeouts.ns[3], 5_000_000_000);
        assert_eq!(c.capture.interface, "eth1");
        assert_eq!(c.capture.buffer_bytes, 8 << 20);
    }

    #[test]
    fn unknown_field_names_file_and_line() {
        let e = err("[pipeline]\nworkers = 2\nwrokers = 3\n");
        assert!(e.starts_with("seg.toml:3:1:"), "{e}");
        assert!(e.contains("wrokers"), "{e}");
        assert!(e.contains("fix:"), "{e}");
    }

    #[test]
    fn out_of_range_names_line_and_range() {
        let e = err("[flows]\n\nmax_flows = 0\n");
        assert!(e.starts_with("seg.toml:3:13:"), "{e}");
        assert!(e.contains("from 1 to"), "{e}");
    }

    #[test]
    fn web_config_is_relative_to_the_config_file() {
        let c = Config::parse(
            "[metrics]\nweb_config = \"web.yml\"\n",
            Path::new("/etc/segwatch/segwatch.toml"),
        )
        .expect("valid");
        assert_eq!(
            c.metrics_web_config.as_deref(),
            Some(Path::new("/etc/segwatch/web.yml"))
        );
        let c = Config::parse(
            "[metrics]\nweb_config = \"/srv/w.yml\"\n",
            Path::new("x.toml"),
        )
        .expect("valid");
        assert_eq!(
            c.metrics_web_config.as_deref(),
            Some(Path::new("/srv/w.yml"))
        );
        let e = err("[metrics]\nweb_config = \" \"\n");
        assert!(e.starts_with("seg.toml:2:14:") && e.contains("fix:"), "{e}");
    }

    #[test]
    fn service_names_and_their_origin() {
        let c = Config::parse(
            "[service]\nuser = \"segwatch\"\ngroup = \"adm\"\nallow_root = true\n",
            Path::new("s.toml"),
        )
        .expect("valid");
        let user = c.service.user.expect("user");
        assert_eq!(user.name, "segwatch");
        assert_eq!(user.origin, "s.toml:2: service.user");
        assert_eq!(c.service.group.expect("group").name, "adm");
        assert!(c.service.allow_root);
        assert_eq!(
            Config::parse("", Path::new("x.toml"))
                .expect("valid")
                .service,
            ServiceOptions::default()
        );
        let e = err("[service]\nuser = \"\"\n");
        assert!(e.starts_with("seg.toml:2:8:") && e.contains("fix:"), "{e}");
        let e = err("[service]\ngroup = \"segwatch\"\n");
        assert!(
            e.starts_with("seg.toml:2:9:") && e.contains("set service.user too"),
            "{e}"
        );
        let e = err("[service]\nusr = \"segwatch\"\n");
        assert!(e.starts_with("seg.toml:2:1:") && e.contains("`usr`"), "{e}");
    }

    #[test]
    fn syntax_error_names_line() {
        let e = err("[capture]\nsnaplen = = 3\n");
        assert!(e.starts_with("seg.toml:2:"), "{e}");
    }
}
