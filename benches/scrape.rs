//! What TLS and basic auth cost a scrape: the metrics endpoint served
//! plain, with basic auth, with TLS, and with both, each scraped `ROUNDS`
//! times in turn by a client on the loopback (a new connection per scrape,
//! as the endpoint closes each one), and the median and 90th percentile of
//! the time from connecting to having read the whole response. Also the
//! first scrape with basic auth, which pays for bcrypt (cost 10) before the
//! verdict is cached. Uses the TLS test fixtures (ECDSA P-256).
//! Run: cargo bench --bench scrape [-- ROUNDS]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use segwatch::metrics::Metrics;
use segwatch::metrics::server::MetricsServer;
use segwatch::metrics::web_config::WebConfig;

const PASSWORD: &str = "bench password";

/// One scrape of /metrics; the time it took and the status line.
fn scrape(
    port: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
    auth: Option<&str>,
) -> (Duration, String) {
    let started = Instant::now();
    let mut request =
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_string();
    if let Some(a) = auth {
        request.push_str(&format!("Authorization: {a}\r\n"));
    }
    request.push_str("\r\n");
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let mut response = Vec::new();
    match tls {
        None => {
            tcp.write_all(request.as_bytes()).expect("write");
            let _ = tcp.read_to_end(&mut response);
        }
        Some(config) => {
            let name = ServerName::try_from("localhost").expect("name");
            let conn = rustls::ClientConnection::new(Arc::clone(config), name).expect("client");
            let mut s = rustls::StreamOwned::new(conn, tcp);
            s.write_all(request.as_bytes()).expect("write");
            let _ = s.read_to_end(&mut response);
        }
    }
    let elapsed = started.elapsed();
    let status = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (elapsed, status)
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let dir = std::env::temp_dir().join(format!("segwatch-scrape-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let hash = bcrypt::hash(PASSWORD, 10).expect("hash");
    let tls_keys = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        fixtures.join("server.pem").display(),
        fixtures.join("server.key").display()
    );
    let users = format!("basic_auth_users:\n  prometheus: {hash}\n");
    let load = |name: &str, text: String| -> WebConfig {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write web config");
        WebConfig::load(&p).expect("web config")
    };
    let auth_only = load("auth.yml", users.clone());
    let tls_only = load("tls.yml", tls_keys.clone());
    let both = load("both.yml", format!("{tls_keys}{users}"));
    let _ = std::fs::remove_dir_all(&dir);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixtures.join("ca.pem")).expect("ca"))
        .expect("root");
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{PASSWORD}"))
    );

    let metrics = Metrics::new(1).expect("metrics");
    let modes: [(&str, Option<&WebConfig>, bool, bool); 4] = [
        ("http, no auth", None, false, false),
        ("http, basic auth (cached)", Some(&auth_only), false, true),
        ("https, no auth", Some(&tls_only), true, false),
        ("https, basic auth (cached)", Some(&both), true, true),
    ];
    let mut servers = Vec::new();
    for (name, web, _, with_auth) in &modes {
        let s = MetricsServer::start_with("127.0.0.1:0", Arc::clone(&metrics), *web).expect(name);
        servers.push(s);
        if *with_auth {
            // The first authenticated scrape pays for bcrypt.
            let tls = if servers.last().is_some_and(|s| s.tls) {
                Some(&client)
            } else {
                None
            };
            let port = servers.last().map_or(0, |s| s.addr.port());
            let (t, status) = scrape(port, tls, Some(&header));
            assert!(status.contains(" 200 "), "{name}: {status}");
            println!(
                "{name}: first scrape (bcrypt cost 10, not cached yet): {:.2} ms",
                t.as_secs_f64() * 1e3
            );
        }
    }
    // Interleaved rounds, so noise from the shared machine hits every mode alike.
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); modes.len()];
    for _ in 0..rounds {
        for (i, (name, _, tls, auth)) in modes.iter().enumerate() {
            let (t, status) = scrape(
                servers[i].addr.port(),
                tls.then_some(&client),
                auth.then_some(header.as_str()),
            );
            assert!(status.contains(" 200 "), "{name}: {status}");
            times[i].push(t);
        }
    }
    let bytes = metrics.render().len();
    println!("{rounds} scrapes of /metrics ({bytes} bytes) per mode, a new connection each:");
    for ((name, ..), t) in modes.iter().zip(&mut times) {
        t.sort();
        let at = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        println!(
            "  {name:<28} median {:.3} ms  p90 {:.3} ms",
            at(0.5),
            at(0.9)
        );
    }
}
