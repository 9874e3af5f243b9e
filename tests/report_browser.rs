//! The PCI report of the bundled sample, rendered by a real headless browser
//! (Debian's chromium): the DOM the browser builds must show the verdicts,
//! coverage, connected systems and violations of the sample's ground truth,
//! and a screenshot must render. Skipped with a message when chromium is not
//! installed (`scripts/install-deps.sh test` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("which").arg(name).output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
}

fn headless(browser: &Path, args: &[&str], page: &Path) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile dir");
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium")
}

#[test]
fn sample_report_renders_in_chromium_with_the_right_verdicts() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: chromium is not installed (scripts/install-deps.sh test installs it)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_segwatch"))
        .arg("report")
        .arg(repo().join("configs/sample/office.pcap"))
        .arg("--config")
        .arg(repo().join("configs/sample/segwatch.toml"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("run segwatch report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = dir.path().join("pci-report.html");
    assert!(dir.path().join("pci-report.json").is_file());
    let html = std::fs::read_to_string(&page).expect("html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external resources"
    );

    let dom = headless(&browser, &["--dump-dom"], &page);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    let cell = |from: &str, to: &str, verdict: &str| {
        format!("data-from=\"{from}\" data-to=\"{to}\" data-verdict=\"{verdict}\"")
    };
    for (from, to, verdict) in [
        ("corp", "cde", "violated"),
        ("corp", "servers", "violated"),
        ("dmz", "cde", "allowed"),
        ("cde", "cde", "allowed"),
        ("guest", "servers", "isolated"),
        ("guest", "cde", "not observed"),
        ("corp", "external", "allowed"),
    ] {
        assert!(
            dom.contains(&cell(from, to, verdict)),
            "{from} -> {to} should be {verdict}"
        );
    }
    for zone in ["corp", "servers", "dmz", "cde", "guest", "external"] {
        assert!(
            dom.contains(&format!("data-zone=\"{zone}\" data-observed=\"true\"")),
            "zone {zone} observed"
        );
    }
    // The connected systems: the shop (allowed) and the rogue laptop (denied).
    assert!(dom.contains("data-host=\"10.30.0.80\" data-allowed=\"true\""));
    assert!(dom.contains("data-host=\"10.10.1.23\" data-allowed=\"false\""));
    assert!(
        dom.contains("data-severity=\"critical\" data-src=\"10.10.1.23\" data-outcome=\"closed\"")
    );
    assert!(dom.contains("11.4.5"));

    let shot = dir.path().join("report.png");
    let arg = format!("--screenshot={}", shot.display());
    let r = headless(&browser, &[&arg, "--window-size=1280,2000"], &page);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}
