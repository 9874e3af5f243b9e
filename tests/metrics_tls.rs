//! The metrics endpoint behind TLS and basic auth, as clients see it: in a
//! network namespace of its own, `segwatch run --metrics-listen
//! 127.0.0.1:0 --web-config FILE` serves with a certificate made by the
//! `openssl` command line, and `curl --cacert` checks that HTTPS works, plain
//! HTTP to the TLS port is refused, missing or wrong credentials get 401 with
//! a `WWW-Authenticate` challenge, the right ones get the metrics, and that
//! with `RequireAndVerifyClientCert` (set through `[metrics] web_config` in
//! the TOML config) a client without a certificate, or with
//! one the CA did not sign, is refused while one with a signed certificate
//! gets in, and with `client_allowed_sans` only if the certificate names an
//! allowed client. A certificate renewed in place is served from the next
//! connection on, without a restart.
//!
//! Also, through the library and without root: a client that trickles its
//! request or sends nothing does not stop others from scraping, an oversized
//! request head gets 431, `HEAD` and other methods are answered as HTTP
//! says, and `rate_limit` answers 429 once its bucket is empty, before
//! looking at credentials.
//!
//! Skipped with a message where namespaces, curl or openssl are missing
//! (`scripts/install-deps.sh test` installs them).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::netns::{Killed, Netns};

const PASSWORD: &str = "correct horse";

/// A running `segwatch run` in `ns` with `args` (the web config) and the
/// port its endpoint listens on.
fn start(ns: &Netns, args: &[&std::ffi::OsStr]) -> (Killed, u16) {
    let mut child = ns
        .command(env!("CARGO_BIN_EXE_segwatch"))
        .args([
            "run",
            "--allow-root",
            "-i",
            "lo",
            "--quiet",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start segwatch");
    let stderr = child.stderr.take().expect("stderr");
    let child = Killed(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        // "metrics: https://127.0.0.1:PORT/metrics"
        if let Some(rest) = line.strip_prefix("metrics: https://127.0.0.1:") {
            let port = rest.trim_end_matches("/metrics").parse().expect("port");
            return (child, port);
        }
        said.push(line);
    }
    panic!("segwatch did not say where it serves: {said:?}");
}

/// curl inside the namespace: (exit code, response with headers).
fn curl(ns: &Netns, dir: &Path, args: &[&str]) -> (i32, String) {
    let out = ns
        .command("curl")
        .args(["-sS", "-i", "--max-time", "10"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("curl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn status(response: &str) -> Option<u16> {
    response
        .lines()
        .find(|l| l.starts_with("HTTP/"))?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// A namespace named after `tag` (one per test: under `cargo test` the
/// tests share a process), or None when a tool is missing or namespaces
/// cannot be made.
fn ready(tag: &str, tools: &[&str]) -> Option<Netns> {
    for tool in tools {
        if !common::has(tool) {
            eprintln!(
                "SKIPPED: {tool} is not installed (scripts/install-deps.sh test installs it)"
            );
            return None;
        }
    }
    let ns = Netns::create(tag);
    if ns.is_none() {
        eprintln!("SKIPPED: cannot create a network namespace here (needs root)");
    }
    ns
}

#[test]
fn curl_sees_tls_and_basic_auth() {
    let Some(ns) = ready("tls", &["ip", "curl", "openssl"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    common::pki::make(d).expect("certificates");
    let hash = bcrypt::hash(PASSWORD, 10).expect("hash");
    std::fs::write(
        d.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .expect("web config");
    let web = d.join("web.yml");
    let (_segwatch, port) = start(&ns, &["--web-config".as_ref(), web.as_os_str()]);
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let cred = format!("prometheus:{PASSWORD}");

    // The right password: the metrics, with the configured header.
    let (code, r) = curl(
        &ns,
        d,
        &["--cacert", "ca.pem", "-u", &cred, &url("/metrics")],
    );
    assert_eq!((code, status(&r)), (0, Some(200)), "{r}");
    assert!(r.contains("\nsegwatch_build_info{"), "{r}");
    assert!(r.contains("X-Content-Type-Options: nosniff"), "{r}");
    // By address too: the certificate names 127.0.0.1.
    let (code, r) = curl(
        &ns,
        d,
        &[
            "--cacert",
            "ca.pem",
            "-u",
            &cred,
            &format!("https://127.0.0.1:{port}/readyz"),
        ],
    );
    assert_eq!((code, status(&r)), (0, Some(200)), "{r}");
    assert!(r.ends_with("ready\n"), "{r}");

    // No credentials, a wrong password, an unknown user: 401 and a challenge.
    // /healthz is protected as well.
    for args in [
        vec![url("/metrics")],
        vec!["-u".into(), "prometheus:wrong".into(), url("/metrics")],
        vec!["-u".into(), format!("grafana:{PASSWORD}"), url("/metrics")],
        vec![url("/healthz")],
    ] {
        let mut all = vec!["--cacert".to_string(), "ca.pem".to_string()];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (code, r) = curl(&ns, d, &all);
        assert_eq!((code, status(&r)), (0, Some(401)), "{all:?}: {r}");
        assert!(
            r.contains("WWW-Authenticate: Basic realm=\"segwatch\""),
            "{r}"
        );
        assert!(!r.contains("segwatch_"), "{r}");
    }

    // Plain HTTP to the TLS port: told off, no metrics.
    let (_, r) = curl(
        &ns,
        d,
        &["-u", &cred, &format!("http://127.0.0.1:{port}/metrics")],
    );
    assert_eq!(status(&r), Some(400), "{r}");
    assert!(r.contains("HTTP request to an HTTPS server"), "{r}");
    // A client that does not trust the CA refuses the server (curl: 60).
    let (code, r) = curl(&ns, d, &["-u", &cred, &url("/metrics")]);
    assert_eq!(code, 60, "{r}");

    // The certificate is renewed in place (here by a new CA): the next
    // connections get the new one, without a restart.
    let renewed = d.join("renewed");
    std::fs::create_dir(&renewed).expect("mkdir");
    common::pki::make(&renewed).expect("renewed certificates");
    for f in ["server.pem", "server.key"] {
        std::fs::copy(renewed.join(f), d.join(f)).expect("renew");
    }
    std::thread::sleep(Duration::from_millis(1200));
    let (code, r) = curl(
        &ns,
        d,
        &["--cacert", "renewed/ca.pem", "-u", &cred, &url("/healthz")],
    );
    assert_eq!((code, status(&r)), (0, Some(200)), "{r}");
    let (code, r) = curl(
        &ns,
        d,
        &["--cacert", "ca.pem", "-u", &cred, &url("/healthz")],
    );
    assert_eq!(code, 60, "the old CA no longer matches: {r}");
}

#[test]
fn curl_needs_a_signed_client_certificate() {
    let Some(ns) = ready("mtls", &["ip", "curl", "openssl"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    common::pki::make(d).expect("certificates");
    // This time from the TOML config, by a path relative to it.
    std::fs::create_dir(d.join("etc")).expect("mkdir");
    std::fs::write(
        d.join("etc/web.yml"),
        "tls_server_config:\n  cert_file: ../server.pem\n  key_file: ../server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ../ca.pem\n  min_version: TLS12\n",
    )
    .expect("web config");
    let cfg = d.join("etc/segwatch.toml");
    std::fs::write(&cfg, "[metrics]\nweb_config = \"web.yml\"\n").expect("config");
    let (_segwatch, port) = start(&ns, &["--config".as_ref(), cfg.as_os_str()]);
    let url = format!("https://localhost:{port}/metrics");

    let (code, r) = curl(&ns, d, &["--cacert", "ca.pem", &url]);
    assert_ne!(code, 0, "no client certificate: {r}");
    assert_eq!(status(&r), None, "{r}");
    let (code, r) = curl(
        &ns,
        d,
        &[
            "--cacert",
            "ca.pem",
            "--cert",
            "rogue.pem",
            "--key",
            "rogue.key",
            &url,
        ],
    );
    assert_ne!(code, 0, "a certificate the CA did not sign: {r}");
    assert_eq!(status(&r), None, "{r}");
    // Both TLS 1.2 and 1.3 (client certificates travel differently).
    for version in [&["--tlsv1.2", "--tls-max", "1.2"][..], &["--tlsv1.3"][..]] {
        let (code, r) = curl(
            &ns,
            d,
            &[
                version,
                &[
                    "--cacert",
                    "ca.pem",
                    "--cert",
                    "client.pem",
                    "--key",
                    "client.key",
                    &url,
                ],
            ]
            .concat(),
        );
        assert_eq!((code, status(&r)), (0, Some(200)), "{version:?}: {r}");
        assert!(r.contains("segwatch_build_info"), "{r}");
    }

    // client_allowed_sans: the signed certificate must also name an allowed
    // client (it names prometheus.test).
    let client = [
        "--cacert",
        "ca.pem",
        "--cert",
        "client.pem",
        "--key",
        "client.key",
    ];
    for (allowed, admitted) in [("[prometheus.test]", true), ("[grafana.test]", false)] {
        let web = d.join("sans.yml");
        std::fs::write(
            &web,
            format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: {allowed}\n"),
        )
        .expect("web config");
        let (_segwatch, port) = start(&ns, &["--web-config".as_ref(), web.as_os_str()]);
        let url = format!("https://localhost:{port}/metrics");
        let (code, r) = curl(&ns, d, &[&client[..], &[url.as_str()]].concat());
        if admitted {
            assert_eq!((code, status(&r)), (0, Some(200)), "{allowed}: {r}");
        } else {
            assert_ne!(code, 0, "{allowed}: {r}");
            assert_eq!(status(&r), None, "{allowed}: {r}");
        }
    }
}

/// Send raw bytes to the endpoint and read the answer, or None on timeout.
/// A refused or empty answer is retried for up to 3 s: the thread of the
/// previous request may still hold its connection slot (on a loaded machine
/// it finishes later).
fn raw(port: u16, request: &[u8]) -> Option<String> {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        match raw_once(port, request) {
            Some(r) if !r.is_empty() => return Some(r),
            other if Instant::now() >= until => return other,
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn raw_once(port: u16, request: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn slow_clients_do_not_block_scrapes() {
    use segwatch::metrics::server::{MAX_CONNECTIONS, MetricsServer};
    let metrics = segwatch::metrics::Metrics::new(1).expect("metrics");
    let server = MetricsServer::start("127.0.0.1:0", metrics).expect("start");
    let port = server.addr.port();

    // Clients that connect and say nothing, or trickle a request, take
    // every connection slot but two (one for each request below, and one
    // while the previous request's thread finishes).
    let mut idle: Vec<TcpStream> = (0..MAX_CONNECTIONS - 2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    if let Some(s) = idle.first_mut() {
        s.write_all(b"GET /metr").expect("trickle");
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("scrape");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("segwatch_build_info"), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let r = raw(port, b"HEAD /healthz HTTP/1.1\r\n\r\n").expect("head");
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    assert!(r.contains("Content-Length: 3\r\n"), "{r}");
    let r = raw(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").expect("post");
    assert!(
        r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET, HEAD"),
        "{r}"
    );
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let r = raw(port, big.as_bytes()).expect("big");
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    let r = raw(port, b"GET /nope HTTP/1.1\r\n\r\n").expect("404");
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    drop(idle);
    drop(server);
    // Stopped: nothing listens any more.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn rate_limit_answers_429_before_authentication() {
    use segwatch::metrics::server::MetricsServer;
    use segwatch::metrics::web_config::WebConfig;
    let hash = bcrypt::hash_with_salt("pw", 4, [5; 16])
        .expect("hash")
        .to_string();
    let web = WebConfig::parse(
        &format!("rate_limit:\n  interval: 1h\n  burst: 2\nbasic_auth_users:\n  u: {hash}\n"),
        Path::new("web.yml"),
    )
    .expect("web config");
    let metrics = segwatch::metrics::Metrics::new(1).expect("metrics");
    let server = MetricsServer::start_with("127.0.0.1:0", metrics, Some(&web)).expect("start");
    let port = server.addr.port();
    // "u:pw"
    let authed = b"GET /metrics HTTP/1.1\r\nAuthorization: Basic dTpwdw==\r\n\r\n";
    let r = raw(port, authed).expect("first");
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    let r = raw(port, b"GET /metrics HTTP/1.1\r\n\r\n").expect("second");
    assert!(r.starts_with("HTTP/1.1 401 "), "{r}");
    // The bucket is empty: refused before the credentials are looked at.
    let r = raw(port, authed).expect("third");
    assert!(r.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{r}");
}
