//! The shipped Prometheus and Grafana files: the alerting rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`), the
//! example scrape configuration passes `promtool check config`, every query
//! of the Grafana dashboard parses (checked by promtool as recording rules),
//! the dashboard takes its data source from a variable, and every `segwatch_`
//! metric the rules and the dashboard use is one segwatch exports. The
//! example web config (TLS and basic auth) loads in segwatch and passes
//! `promtool check web-config`, and the commented TLS scrape job of the
//! example scrape configuration, uncommented, passes `promtool check config`.
//! The promtool parts are skipped when promtool is missing
//! (`scripts/install-deps.sh test` installs the `prometheus` package).

use std::path::Path;
use std::process::Command;

fn promtool(args: &[&str]) -> Option<(bool, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

#[test]
fn shipped_rules_and_config_pass_promtool() {
    let Some((ok, text)) = promtool(&["check", "rules", "segwatch-alerts.yml"]) else {
        eprintln!("SKIPPED: promtool is not installed");
        return;
    };
    assert!(ok && text.contains("SUCCESS: 14 rules found"), "{text}");
    let (ok, text) = promtool(&["test", "rules", "segwatch-alerts.test.yml"]).expect("promtool");
    assert!(ok && text.contains("SUCCESS"), "{text}");
    let (ok, text) = promtool(&["check", "config", "prometheus.yml"]).expect("promtool");
    assert!(ok, "{text}");
}

/// The example web config beside the certificate and key it names (the TLS
/// test fixtures), in a temporary folder.
fn example_web_config() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("web-config.example.yml");
    std::fs::copy(
        root.join("configs/prometheus/web-config.example.yml"),
        &file,
    )
    .expect("copy example");
    for (from, to) in [
        ("server.pem", "segwatch.crt"),
        ("server.key", "segwatch.key"),
    ] {
        std::fs::copy(
            root.join("tests/fixtures/tls").join(from),
            dir.path().join(to),
        )
        .expect("copy fixture");
    }
    (dir, file)
}

#[test]
fn example_web_config_loads_and_passes_promtool() {
    let (dir, file) = example_web_config();
    let web = segwatch::metrics::web_config::WebConfig::load(&file).expect("example loads");
    assert!(web.tls.is_some());
    assert_eq!(web.users.keys().collect::<Vec<_>>(), ["prometheus"]);
    assert_eq!(web.headers.len(), 2);
    // Its only warning: the shipped password must be changed.
    assert_eq!(web.warnings.len(), 1, "{:?}", web.warnings);
    assert!(web.warnings[0].contains("change-me"), "{:?}", web.warnings);
    assert!(bcrypt::verify("change-me", &web.users["prometheus"]).expect("hash"));

    let Ok(out) = Command::new("promtool")
        .args(["check", "web-config", "web-config.example.yml"])
        .current_dir(dir.path())
        .output()
    else {
        eprintln!("SKIPPED (promtool part): promtool is not installed");
        return;
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.contains("SUCCESS"), "{said}");
}

#[test]
fn commented_tls_scrape_job_is_valid_once_uncommented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/prometheus");
    let text = std::fs::read_to_string(root.join("prometheus.yml")).expect("prometheus.yml");
    let start = text
        .find("  # - job_name: segwatch-tls")
        .expect("a commented TLS job");
    // Remove one level of "# ": the job's lines become YAML, its own
    // comments stay comments.
    let mut config = text[..start].to_string();
    for line in text[start..].lines() {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        let uncommented = body
            .strip_prefix("# ")
            .or_else(|| body.strip_prefix('#'))
            .unwrap_or(body);
        config.push_str(&" ".repeat(indent));
        config.push_str(uncommented);
        config.push('\n');
    }
    assert!(config.contains("scheme: https") && config.contains("basic_auth:"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config.replace("/etc/prometheus/", "");
    std::fs::write(dir.path().join("prometheus.yml"), &config).expect("write");
    std::fs::copy(
        root.join("segwatch-alerts.yml"),
        dir.path().join("segwatch-alerts.yml"),
    )
    .expect("rules");
    for f in [
        "segwatch-ca.crt",
        "segwatch.password",
        "prometheus.crt",
        "prometheus.key",
    ] {
        std::fs::write(dir.path().join(f), "x\n").expect("placeholder");
    }
    let Ok(out) = Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(dir.path())
        .output()
    else {
        eprintln!("SKIPPED: promtool is not installed");
        return;
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}\n{config}");
    // The job really is part of the checked configuration.
    assert!(
        config.contains("\n  - job_name: segwatch-tls\n"),
        "{config}"
    );
}

/// The metric families segwatch exports, with one series of each.
fn exported() -> String {
    // Label-less families appear at once; the others once a series exists.
    let m = segwatch::metrics::Metrics::new(1).expect("metrics");
    let _worker = segwatch::metrics::WorkerMetrics::new(&m, 0);
    let mut reader = segwatch::metrics::ReaderMetrics::new(&m, 1);
    reader.fold_health("eth1", segwatch::capture::CaptureHealth::default());
    let policy = segwatch::policy::Policy::default();
    let mut a = segwatch::metrics::AnalysisMetrics::new(std::sync::Arc::clone(&m));
    a.flow(&policy, 0, 0, segwatch::flow::Outcome::Established, 100);
    a.violation(
        &policy,
        &segwatch::segmentation::Violation {
            start: 0,
            end: 0,
            proto: 6,
            src_ip: [10, 0, 0, 1].into(),
            src_port: 1,
            dst_ip: [10, 0, 0, 2].into(),
            dst_port: 2,
            vlan: None,
            src_zone: 0,
            dst_zone: 0,
            outcome: segwatch::flow::Outcome::Established,
            packets: [1, 1],
            bytes: [60, 60],
            rule: None,
            severity: segwatch::segmentation::Severity::High,
        },
    );
    m.render()
}

/// Every `segwatch_` name in `text` must be an exported family; returns how many were found.
fn check_names(text: &str, what: &str) -> usize {
    let exported = exported();
    let mut used = 0;
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("segwatch_") && word.len() > "segwatch_".len() {
            used += 1;
            // Summaries expose _sum/_count series of their family.
            let family = word.trim_end_matches("_sum").trim_end_matches("_count");
            assert!(
                exported.contains(&format!("# TYPE {family} ")),
                "{what} uses {word}, which segwatch does not export"
            );
        }
    }
    used
}

#[test]
fn rules_use_only_metrics_segwatch_exports() {
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/prometheus/segwatch-alerts.yml"),
    )
    .expect("rules");
    assert!(check_names(&rules, "the alert rules") >= 6);
}

#[test]
fn dashboard_queries_parse_and_use_exported_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/grafana");
    let text = std::fs::read_to_string(root.join("segwatch-dashboard.json")).expect("dashboard");
    let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(
        !text.contains("${DS_"),
        "the data source must be a template variable, not an import placeholder"
    );
    let vars = d["templating"]["list"].as_array().expect("variables");
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus")
    );
    let mut exprs = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {}",
            p["title"]
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 15, "{}", exprs.len());
    assert!(check_names(&exprs.join("\n"), "the dashboard") >= 15);
    // Every query parses: as recording rules, with Grafana's variables filled in.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&e).expect("quote")
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("queries.yml"), rules).expect("write");
    let Ok(out) = Command::new("promtool")
        .args(["check", "rules", "queries.yml"])
        .current_dir(dir.path())
        .output()
    else {
        eprintln!("SKIPPED (promtool part): promtool is not installed");
        return;
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{said}"
    );
}
