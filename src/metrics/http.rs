//! Just enough HTTP/1.1 for a metrics endpoint: one `GET` or `HEAD` per
//! connection, answered with `Connection: close`. The request head is
//! limited in size and must arrive before a deadline, so a slow or
//! malicious client holds a connection for a bounded time.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// A TCP stream whose reads and writes fail once `deadline` has passed,
/// however the peer trickles its bytes.
#[derive(Debug)]
pub struct DeadlineStream {
    pub stream: TcpStream,
    pub deadline: Instant,
}

impl DeadlineStream {
    fn remaining(&self) -> io::Result<std::time::Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        Ok(left)
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.remaining()?))?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.remaining()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A connection, plain or TLS, whose deadline can be moved.
pub trait Conn: Read + Write {
    fn set_deadline(&mut self, at: Instant);
}

impl Conn for DeadlineStream {
    fn set_deadline(&mut self, at: Instant) {
        self.deadline = at;
    }
}

impl Conn for rustls::StreamOwned<rustls::ServerConnection, DeadlineStream> {
    fn set_deadline(&mut self, at: Instant) {
        self.sock.deadline = at;
    }
}

/// What the endpoint needs from a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    pub authorization: Option<Vec<u8>>,
}

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed before sending anything.
    Closed,
    /// Not HTTP: answer 400.
    Malformed,
    /// Head over [`MAX_HEAD`] or too many headers: answer 431.
    TooLarge,
    Io(io::Error),
}

/// Read one request head.
pub fn read_request(r: &mut impl Read) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(ReadError::Closed),
            Ok(0) => return Err(ReadError::Malformed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => return Err(ReadError::TooLarge),
            Ok(httparse::Status::Complete(_)) => {
                let target = req.path.unwrap_or("/");
                return Ok(Request {
                    method: req.method.unwrap_or("").to_string(),
                    path: target.split('?').next().unwrap_or("").to_string(),
                    authorization: req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                        .map(|h| h.value.to_vec()),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(ReadError::TooLarge);
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(ReadError::TooLarge),
            Err(_) => return Err(ReadError::Malformed),
        }
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    /// Write it; `head_only` for `HEAD` (headers, no body).
    pub fn write_to(&self, w: &mut impl Write, head_only: bool) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        if !head_only {
            w.write_all(&self.body)?;
        }
        w.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its bytes a few at a time.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(self.0.len()).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn reads_a_request_in_pieces() {
        let raw = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nauthorization: Basic YTpi\r\n\r\n";
        let req = read_request(&mut Trickle(raw, 3)).expect("request");
        assert_eq!(
            req,
            Request {
                method: "GET".into(),
                path: "/metrics".into(),
                authorization: Some(b"Basic YTpi".to_vec()),
            }
        );
    }

    #[test]
    fn refuses_oversized_garbage_and_truncated_requests() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(
            read_request(&mut Trickle(big.as_bytes(), 1000)),
            Err(ReadError::TooLarge)
        ));
        let many: String = (0..40).map(|i| format!("X{i}: y\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            read_request(&mut Trickle(many.as_bytes(), 1000)),
            Err(ReadError::TooLarge)
        ));
        assert!(matches!(
            read_request(&mut Trickle(b"\x16\x03\x01\x02\x00", 10)),
            Err(ReadError::Malformed)
        ));
        assert!(matches!(
            read_request(&mut Trickle(b"GET / HT", 10)),
            Err(ReadError::Malformed)
        ));
        assert!(matches!(
            read_request(&mut Trickle(b"", 10)),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn writes_a_response() {
        let mut r = Response::text(401, "no\n");
        r.headers.push(("WWW-Authenticate".into(), "Basic".into()));
        let mut out = Vec::new();
        r.write_to(&mut out, false).expect("write");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\nWWW-Authenticate: Basic\r\n\r\nno\n"
        );
        let mut out = Vec::new();
        r.write_to(&mut out, true).expect("write");
        assert!(out.ends_with(b"\r\n\r\n"));
    }
}
