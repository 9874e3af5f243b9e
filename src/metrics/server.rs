//! The HTTP endpoint: `/metrics` (Prometheus text format), `/` (a landing
//! page), `/healthz` (the process is alive) and `/readyz` (the capture is
//! open and the workers run). One thread; requests are answered in order,
//! which is plenty for a few scrapers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use thiserror::Error;
use tiny_http::{Header, Response, Server};

use super::Metrics;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(
        "cannot listen for metrics on {addr}: {reason} (choose another address with --metrics-listen or [metrics] listen)"
    )]
    Listen { addr: String, reason: String },
}

/// A running endpoint; stops when dropped.
pub struct MetricsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const LANDING: &str = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>segwatch</title></head>\
<body><h1>segwatch</h1><p>A passive network sensor.</p><ul>\
<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\
<li><a href=\"/healthz\">/healthz</a>: the process is alive</li>\
<li><a href=\"/readyz\">/readyz</a>: the capture is open and the workers run</li></ul></body></html>\n";

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

impl MetricsServer {
    /// Listen on `addr` (port 0 picks a free port; see `self.addr`).
    pub fn start(addr: &str, metrics: Arc<Metrics>) -> Result<MetricsServer, ServeError> {
        let server = Server::http(addr).map_err(|e| ServeError::Listen {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| ServeError::Listen {
                addr: addr.to_string(),
                reason: "not an IP address".into(),
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("segwatch-metrics".into())
            .spawn(move || serve(&server, &metrics, &flag))
            .map_err(|e| ServeError::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        Ok(MetricsServer {
            addr: bound,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &Server, metrics: &Metrics, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let path = req.url().split('?').next().unwrap_or("").to_string();
        let (status, body, kind) = match path.as_str() {
            "/metrics" => (
                200,
                metrics.render(),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            "/" => (200, LANDING.to_string(), "text/html; charset=utf-8"),
            "/healthz" => (200, "ok\n".to_string(), "text/plain; charset=utf-8"),
            "/readyz" if metrics.is_ready() => {
                (200, "ready\n".to_string(), "text/plain; charset=utf-8")
            }
            "/readyz" => (503, "not ready\n".to_string(), "text/plain; charset=utf-8"),
            _ => (404, "not found\n".to_string(), "text/plain; charset=utf-8"),
        };
        let mut resp = Response::from_string(body).with_status_code(status);
        if let Some(h) = header("Content-Type", kind) {
            resp = resp.with_header(h);
        }
        // A scraper that hung up is not our problem.
        let _ = req.respond(resp);
    }
}
