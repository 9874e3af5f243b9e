//! The HTTP endpoint: `/metrics` (Prometheus text format), `/` (a landing
//! page), `/healthz` (the process is alive) and `/readyz` (the capture is
//! open and the workers run), optionally behind TLS, basic auth and a rate
//! limit from a web config ([`super::web_config`]).
//!
//! One thread accepts; each connection gets a thread of its own, at most
//! [`MAX_CONNECTIONS`] at once (further connections are closed at once), and
//! each has [`REQUEST_TIMEOUT`] to finish its TLS handshake and send its
//! request, so a slow client delays nobody for long. Authentication, when
//! configured, covers every path, `/healthz` included, as in exporter-toolkit:
//! a probe that can scrape can send the same credentials.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::Metrics;
use super::basic_auth::BasicAuth;
use super::http::{Conn, DeadlineStream, ReadError, Request, Response, read_request};
use super::rate_limit::RateLimit;
use super::web_config::WebConfig;

/// Connections served at once; more are closed without an answer.
pub const MAX_CONNECTIONS: usize = 16;
/// Time from accepting a connection to having its request head (TLS
/// handshake included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to write a response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_millis(500);
/// How often the accept loop looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

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
    /// Whether it speaks HTTPS.
    pub tls: bool,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const LANDING: &str = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>segwatch</title></head>\
<body><h1>segwatch</h1><p>A passive network sensor.</p><ul>\
<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\
<li><a href=\"/healthz\">/healthz</a>: the process is alive</li>\
<li><a href=\"/readyz\">/readyz</a>: the capture is open and the workers run</li></ul></body></html>\n";

/// What every connection thread needs.
struct Shared {
    metrics: Arc<Metrics>,
    tls: Option<Arc<rustls::ServerConfig>>,
    auth: Option<BasicAuth>,
    limit: Option<RateLimit>,
    headers: Vec<(String, String)>,
    active: AtomicUsize,
}

impl MetricsServer {
    /// Listen on `addr` (port 0 picks a free port; see `self.addr`), plain
    /// HTTP without authentication.
    pub fn start(addr: &str, metrics: Arc<Metrics>) -> Result<MetricsServer, ServeError> {
        MetricsServer::start_with(addr, metrics, None)
    }

    /// Listen on `addr` with the TLS, basic auth and headers of `web`.
    pub fn start_with(
        addr: &str,
        metrics: Arc<Metrics>,
        web: Option<&WebConfig>,
    ) -> Result<MetricsServer, ServeError> {
        let fail = |reason: String| ServeError::Listen {
            addr: addr.to_string(),
            reason,
        };
        let listener = TcpListener::bind(addr).map_err(|e| fail(e.to_string()))?;
        let bound = listener.local_addr().map_err(|e| fail(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| fail(e.to_string()))?;
        let auth = match web {
            Some(w) if !w.users.is_empty() => Some(
                BasicAuth::new(&w.users)
                    .ok_or_else(|| fail("no random source for the basic auth cache".into()))?,
            ),
            _ => None,
        };
        let shared = Arc::new(Shared {
            metrics,
            tls: web.and_then(|w| w.tls.clone()),
            auth,
            limit: web
                .and_then(|w| w.rate_limit)
                .map(|(interval, burst)| RateLimit::new(interval, burst)),
            headers: web.map(|w| w.headers.clone()).unwrap_or_default(),
            active: AtomicUsize::new(0),
        });
        let tls = shared.tls.is_some();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("segwatch-metrics".into())
            .spawn(move || accept_loop(&listener, &shared, &flag))
            .map_err(|e| fail(e.to_string()))?;
        Ok(MetricsServer {
            addr: bound,
            tls,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop now rather than at its next poll timeout: a
        // run that ends (analyze of a file) would otherwise wait up to
        // POLL for the endpoint to stop.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_millis(50));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Releases a connection slot when the connection's thread ends (or was
/// never started).
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wait_readable(listener);
                continue;
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "metrics endpoint cannot accept a connection");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if shared.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            shared.active.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(%peer, "metrics endpoint busy: connection closed");
            continue;
        }
        let slot = Slot(Arc::clone(shared));
        let spawned = std::thread::Builder::new()
            .name("segwatch-http".into())
            .spawn(move || {
                serve_connection(stream, peer, &slot.0);
                drop(slot);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "metrics endpoint cannot start a thread");
        }
    }
}

/// Sleep until a connection is waiting or [`POLL`] has passed.
fn wait_readable(listener: &TcpListener) {
    let mut fds = [rustix::event::PollFd::new(
        listener,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec::try_from(POLL).ok();
    if rustix::event::poll(&mut fds, timeout.as_ref()).is_err() {
        std::thread::sleep(POLL);
    }
}

fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    // Accepted sockets must block: the deadlines are socket timeouts.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let Some(tls) = &shared.tls else {
        let mut conn = DeadlineStream { stream, deadline };
        exchange(&mut conn, peer, shared);
        linger(&conn.stream);
        return;
    };
    match first_byte(&stream, deadline) {
        Some(0x16) => {}
        Some(_) => {
            // Go's servers answer plain HTTP on a TLS port the same way.
            let mut conn = DeadlineStream { stream, deadline };
            let _ = conn.write_all(
                b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
            );
            linger(&conn.stream);
            return;
        }
        // Silent until the deadline, or gone.
        None => return,
    }
    let Ok(session) = rustls::ServerConnection::new(Arc::clone(tls)) else {
        return;
    };
    let mut conn = rustls::StreamOwned::new(session, DeadlineStream { stream, deadline });
    exchange(&mut conn, peer, shared);
    conn.conn.send_close_notify();
    let _ = conn.flush();
    linger(&conn.sock.stream);
}

/// The client's first byte, without consuming it (0x16 opens a TLS
/// handshake); `None` when it sends nothing before the deadline.
fn first_byte(stream: &TcpStream, deadline: Instant) -> Option<u8> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
        return None;
    }
    let mut first = [0u8; 1];
    match stream.peek(&mut first) {
        Ok(1) => Some(first[0]),
        _ => None,
    }
}

/// Read one request and answer it.
fn exchange(conn: &mut impl Conn, peer: SocketAddr, shared: &Shared) {
    let (reply, head_only) = match read_request(conn) {
        Ok(req) => (answer(&req, peer, shared), req.method == "HEAD"),
        Err(ReadError::Closed) => return,
        Err(ReadError::Io(e)) => {
            // TLS handshake failures land here too (no client certificate,
            // unknown CA...): the client was told by an alert.
            tracing::debug!(%peer, error = %e, "metrics request not read");
            return;
        }
        Err(ReadError::Malformed) => (Response::text(400, "bad request\n"), false),
        Err(ReadError::TooLarge) => (Response::text(431, "request head too large\n"), false),
    };
    send(conn, reply, head_only, shared);
}

fn send(conn: &mut impl Conn, mut reply: Response, head_only: bool, shared: &Shared) {
    reply.headers.extend(shared.headers.iter().cloned());
    conn.set_deadline(Instant::now() + RESPONSE_TIMEOUT);
    // A scraper that hung up is not our problem.
    let _ = reply.write_to(conn, head_only);
}

fn answer(req: &Request, peer: SocketAddr, shared: &Shared) -> Response {
    // Before authentication, as exporter-toolkit does: a flood spends no bcrypt.
    if let Some(limit) = &shared.limit
        && !limit.allow()
    {
        return Response::text(429, "Too Many Requests\n");
    }
    if let Some(auth) = &shared.auth
        && !auth.allows(req.authorization.as_deref())
    {
        tracing::debug!(%peer, path = %req.path, "metrics request refused: bad or missing credentials");
        let mut r = Response::text(401, "Unauthorized\n");
        r.headers
            .push(("WWW-Authenticate".into(), "Basic realm=\"segwatch\"".into()));
        return r;
    }
    if req.method != "GET" && req.method != "HEAD" {
        let mut r = Response::text(405, "only GET and HEAD\n");
        r.headers.push(("Allow".into(), "GET, HEAD".into()));
        return r;
    }
    let metrics = &shared.metrics;
    match req.path.as_str() {
        "/metrics" => Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/" => Response::new(200, "text/html; charset=utf-8", LANDING),
        "/healthz" => Response::text(200, "ok\n"),
        "/readyz" if metrics.is_ready() => Response::text(200, "ready\n"),
        "/readyz" => Response::text(503, "not ready\n"),
        _ => Response::text(404, "not found\n"),
    }
}

/// Close gracefully: stop sending, then read what the client still sends
/// (for at most [`LINGER`]), so the kernel does not reset the connection
/// under a response the client has not read yet.
fn linger(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut s = stream;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}
