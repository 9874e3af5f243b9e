//! The web config file of the metrics endpoint: TLS, basic auth and extra
//! response headers, in the YAML format of the Prometheus exporter-toolkit
//! (`--web.config.file` of node_exporter and friends), so a file written for
//! an exporter works here unchanged.
//!
//! Everything is checked when the file is loaded: unknown keys, bcrypt
//! hashes, header names and values, and the certificate, key and CA files
//! ([`super::tls`]). An error names the file, the line where it can be found,
//! and what to do. Relative paths are resolved against the web config file's
//! folder, as exporter-toolkit does.
//!
//! What differs from exporter-toolkit, by key:
//! - `http_server_config.http2: true` (exporter-toolkit's default) is
//!   accepted with a warning: segwatch speaks HTTP/1.1, which every
//!   Prometheus speaks too.
//! - `min_version`/`max_version` `TLS10` and `TLS11` are refused: rustls
//!   implements TLS 1.2 and 1.3 only. `cipher_suites` and `curve_preferences`
//!   are honoured for what rustls implements (AEAD suites with ECDHE;
//!   X25519, P-256, P-384); a name it does not implement is an error.
//! - The file is read once, at start (exporter-toolkit re-reads it per
//!   request), except the certificate and key files, which are re-read when
//!   they change so a renewed certificate needs no restart ([`super::tls`]).
//! - A user name with ':' (which basic auth cannot carry), a user given
//!   twice and an empty `client_allowed_sans` are errors rather than
//!   accounts or rules that can never match.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::tls::{self, ClientAuth, Pem, Problem, TlsSettings, TlsVersion};

/// An error in a web config file a user can fix.
#[derive(Debug, Error)]
pub enum WebConfigError {
    #[error("cannot read web config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{}: {message}\n  fix: {fix}", at(path, *line))]
    Invalid {
        path: PathBuf,
        /// 1-based line of the offending key, when it can be found.
        line: Option<usize>,
        message: String,
        fix: String,
    },
}

fn at(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    }
}

/// A loaded and checked web config.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// TLS, when `tls_server_config` sets a certificate.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The client certificate policy (for the log line at start).
    pub client_auth: ClientAuth,
    /// User name → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// Extra headers on every response.
    pub headers: Vec<(String, String)>,
    /// `rate_limit`: one request per interval, in bursts of up to so many.
    pub rate_limit: Option<(Duration, u32)>,
    /// Legal but noteworthy settings, to be logged.
    pub warnings: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<UniqueMap>,
    rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    interval: Option<serde_norway::Value>,
    burst: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<UniqueMap>,
}

/// A string-to-string mapping that refuses a key given twice (a map would
/// keep the last silently; exporter-toolkit's YAML parser refuses it too).
#[derive(Debug, Default)]
struct UniqueMap(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of names to strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<UniqueMap, A::Error> {
                let mut map = BTreeMap::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    if map.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("{k:?} is given twice")));
                    }
                    map.insert(k, v);
                }
                Ok(UniqueMap(map))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// The headers exporter-toolkit lets a web config set, with the values it
/// accepts (empty: any value). Kept identical so files stay interchangeable.
const HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

const EXAMPLE: &str = "configs/prometheus/web-config.example.yml";

/// The hash of "change-me" that the example file ships with.
const EXAMPLE_HASH: &str = "$2b$10$41EfGZ3SP3zofN5JFUaRSeQx2Tx.BVwpeuIImHpZtpf9F2KiOn7Ke";

impl WebConfig {
    /// Read, parse and check a web config file, including the files it names.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| WebConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        WebConfig::parse(&text, path)
    }

    /// Check web config text; `path` names it in errors, and its folder
    /// anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        let invalid = |keys: &[&str], message: String, fix: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of(text, keys),
            message,
            fix,
        };
        // An empty file (or only comments) is valid: plain HTTP, no auth.
        let raw: RawWebConfig = if is_blank(text) {
            RawWebConfig::default()
        } else {
            serde_norway::from_str(text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                WebConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    message: yaml_message(&e),
                    fix: format!("compare with {EXAMPLE}, which shows every key segwatch accepts"),
                }
            })?
        };
        let mut warnings = Vec::new();
        let rate_limit = match raw.rate_limit {
            None => None,
            Some(r) => {
                rate_limit(r).map_err(|p| invalid(&["rate_limit", p.key], p.message, p.fix))?
            }
        };

        let mut users = BTreeMap::new();
        for (user, hash) in raw.basic_auth_users.unwrap_or_default().0 {
            let hash = hash.trim().to_string();
            check_bcrypt(&hash).map_err(|why| {
                invalid(
                    &["basic_auth_users", &user],
                    format!("the password of user {user:?} is not a bcrypt hash: {why}"),
                    "write the bcrypt hash of the password, not the password: for example `htpasswd -nBC 10 \"\" | tr -d ':\\n'` (apache2-utils) prints one".into(),
                )
            })?;
            if user.contains(':') {
                return Err(invalid(
                    &["basic_auth_users", &user],
                    format!("user name {user:?} contains ':', which basic auth cannot carry"),
                    "choose a user name without ':'".into(),
                ));
            }
            if hash == EXAMPLE_HASH {
                warnings.push(format!(
                    "{}: user {user:?} has the example password \"change-me\" of {EXAMPLE}: set a hash of your own",
                    at(path, line_of(text, &["basic_auth_users", &user]))
                ));
            }
            users.insert(user, hash);
        }

        let mut headers = Vec::new();
        let http = raw.http_server_config.unwrap_or_default();
        if http.http2 == Some(true) {
            warnings.push(format!(
                "{}: http_server_config.http2 is ignored: segwatch serves HTTP/1.1 (which Prometheus speaks)",
                at(path, line_of(text, &["http_server_config", "http2"]))
            ));
        }
        for (name, value) in http.headers.unwrap_or_default().0 {
            let here = ["http_server_config", "headers", name.as_str()];
            let Some((_, allowed)) = HEADERS.iter().find(|(n, _)| *n == name) else {
                return Err(invalid(
                    &here,
                    format!("HTTP header {name:?} can not be configured"),
                    format!(
                        "use only {} (the same as exporter-toolkit)",
                        HEADERS.map(|h| h.0).join(", ")
                    ),
                ));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(invalid(
                    &here,
                    format!("invalid value {value:?} for {name}"),
                    format!("use one of: {}", allowed.join(", ")),
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(invalid(
                    &here,
                    format!("the value of {name} contains a control character"),
                    "write the value on one line, without control characters".into(),
                ));
            }
            if !value.is_empty() {
                headers.push((name, value));
            }
        }

        let dir = path.parent().unwrap_or(Path::new(""));
        let mut client_auth = ClientAuth::NoClientCert;
        let tls = match raw.tls_server_config {
            Some(t) if tls_enabled(&t) => {
                let settings = tls_settings(t, dir).map_err(|p| tls_invalid(&invalid, p))?;
                client_auth = settings.client_auth;
                let (config, cert_warnings) =
                    tls::server_config(&settings, time::OffsetDateTime::now_utc())
                        .map_err(|p| tls_invalid(&invalid, p))?;
                for w in cert_warnings {
                    warnings.push(format!("{}: {w}", path.display()));
                }
                Some(Arc::new(config))
            }
            _ => None,
        };
        if tls.is_none() && !users.is_empty() {
            warnings.push(format!(
                "{}: basic auth without TLS sends passwords in clear text; add tls_server_config unless the network is trusted",
                path.display()
            ));
        }
        Ok(WebConfig {
            path: path.to_path_buf(),
            tls,
            client_auth,
            users,
            headers,
            rate_limit,
            warnings,
        })
    }
}

/// `rate_limit`: `None` when off (no interval, or 0, as in exporter-toolkit).
fn rate_limit(r: RawRateLimit) -> Result<Option<(Duration, u32)>, Problem> {
    let fix = "write for example `interval: 1s` and `burst: 20` (up to 20 requests at once, then one per second)";
    let interval = match &r.interval {
        None => return Ok(None),
        Some(serde_norway::Value::Number(n)) if n.as_u64() == Some(0) => return Ok(None),
        Some(serde_norway::Value::String(s)) => super::rate_limit::parse_go_duration(s)
            .ok_or_else(|| {
                Problem::new(
                    "interval",
                    format!("rate_limit.interval {s:?} is not a duration"),
                    fix,
                )
            })?,
        Some(_) => {
            return Err(Problem::new(
                "interval",
                "rate_limit.interval is not a duration",
                fix,
            ));
        }
    };
    if interval.is_zero() {
        return Ok(None);
    }
    match r.burst {
        Some(b) if b >= 1 => Ok(Some((interval, u32::try_from(b).unwrap_or(u32::MAX)))),
        Some(b) => Err(Problem::new(
            "burst",
            format!("rate_limit.burst {b} would refuse every request"),
            fix,
        )),
        None => Err(Problem::new(
            "interval",
            "rate_limit has an interval but no burst",
            fix,
        )),
    }
}

fn tls_invalid(
    invalid: &dyn Fn(&[&str], String, String) -> WebConfigError,
    p: Problem,
) -> WebConfigError {
    invalid(&["tls_server_config", p.key], p.message, p.fix)
}

/// Whether a `tls_server_config` turns TLS on (exporter-toolkit's rule: any
/// of its certificate, key, CA or client auth keys is set).
fn tls_enabled(t: &RawTls) -> bool {
    [
        &t.cert,
        &t.key,
        &t.client_ca,
        &t.cert_file,
        &t.key_file,
        &t.client_ca_file,
        &t.client_auth_type,
    ]
    .iter()
    .any(|v| v.as_deref().is_some_and(|s| !s.is_empty()))
}

/// The TLS keys, checked for presence and spelling; files are read later.
fn tls_settings(t: RawTls, dir: &Path) -> Result<TlsSettings, Problem> {
    if t.client_allowed_sans.as_ref().is_some_and(Vec::is_empty) {
        return Err(Problem::new(
            "client_allowed_sans",
            "client_allowed_sans is empty, which would refuse every client",
            "list the subject alternative names (DNS, e-mail, IP or URI) of the allowed clients' certificates, or remove the key",
        ));
    }
    let source = |inline: Option<String>,
                  file: Option<String>,
                  inline_key: &'static str,
                  file_key: &'static str|
     -> Result<Option<Pem>, Problem> {
        let inline = inline.filter(|s| !s.is_empty());
        let file = file.filter(|s| !s.is_empty());
        match (inline, file) {
            (Some(_), Some(_)) => Err(Problem::new(
                file_key,
                format!("both {inline_key} and {file_key} are set"),
                format!("keep one: {file_key} (a path) or {inline_key} (the PEM text itself)"),
            )),
            (Some(text), None) => Ok(Some(Pem::Inline(inline_key, text))),
            (None, Some(f)) => Ok(Some(Pem::File(file_key, dir.join(f)))),
            (None, None) => Ok(None),
        }
    };
    let cert = source(t.cert, t.cert_file, "cert", "cert_file")?.ok_or_else(|| {
        Problem::new(
            "cert_file",
            "tls_server_config has no certificate",
            "set cert_file to the server certificate (PEM), or remove tls_server_config to serve plain HTTP",
        )
    })?;
    let key = source(t.key, t.key_file, "key", "key_file")?.ok_or_else(|| {
        Problem::new(
            "key_file",
            "tls_server_config has no private key",
            "set key_file to the certificate's private key (PEM)",
        )
    })?;
    let client_ca = source(t.client_ca, t.client_ca_file, "client_ca", "client_ca_file")?;
    let client_auth = match t.client_auth_type.as_deref().unwrap_or("") {
        "" => ClientAuth::NoClientCert,
        s => ClientAuth::from_str(s).map_err(|()| {
            Problem::new(
                "client_auth_type",
                format!("unknown client_auth_type {s:?}"),
                "use NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert",
            )
        })?,
    };
    let version = |v: Option<String>, key: &'static str, default| match v.as_deref() {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some(s @ ("TLS10" | "TLS11")) => Err(Problem::new(
            key,
            format!("{key}: {s} is not supported: rustls implements TLS 1.2 and 1.3 only"),
            "use TLS12 or TLS13",
        )),
        Some(s) => Err(Problem::new(
            key,
            format!("unknown TLS version {s:?}"),
            "use TLS12 or TLS13",
        )),
    };
    Ok(TlsSettings {
        cert,
        key,
        client_ca,
        client_auth,
        client_allowed_sans: t.client_allowed_sans.unwrap_or_default(),
        min_version: version(t.min_version, "min_version", TlsVersion::Tls12)?,
        max_version: version(t.max_version, "max_version", TlsVersion::Tls13)?,
        cipher_suites: t.cipher_suites.unwrap_or_default(),
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
        curve_preferences: t.curve_preferences.unwrap_or_default(),
    })
}

/// Checks a bcrypt hash's shape and cost, as exporter-toolkit does at start
/// (`bcrypt.Cost`), so a plain-text password is caught before the first scrape.
/// The reason never quotes the value: it may be a password written by mistake.
fn check_bcrypt(hash: &str) -> Result<(), String> {
    let parts = bcrypt::HashParts::from_str(hash).map_err(|_| {
        "a bcrypt hash has 60 characters: $2a$, $2b$ or $2y$, the cost, $, then salt and hash"
            .to_string()
    })?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!("cost {cost} is outside 4 to 31"));
    }
    Ok(())
}

/// serde's message without the position (given separately) and without
/// the names of segwatch's internal types.
fn yaml_message(e: &serde_norway::Error) -> String {
    let mut m = e.to_string();
    if let Some(l) = e.location() {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(stripped) = m.strip_suffix(&suffix) {
            m = stripped.to_string();
        }
    }
    for internal in ["struct RawWebConfig", "struct RawTls", "struct RawHttp"] {
        m = m.replace(internal, "a mapping of keys to values");
    }
    m
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    })
}

/// The 1-based line of a nested key (`["tls_server_config", "cert_file"]`):
/// each key is searched after the previous one, deeper indented. YAML
/// parsers do not keep positions past parsing; this finds block-style keys,
/// which is how these files are written, and gives up on anything else.
fn line_of(text: &str, keys: &[&str]) -> Option<usize> {
    let mut from = 0;
    let mut indent: Option<usize> = None;
    let mut found = None;
    let lines: Vec<&str> = text.lines().collect();
    for key in keys {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let body = line.trim_start();
            let this_indent = line.len() - body.len();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            if let Some(parent) = indent
                && this_indent <= parent
            {
                break;
            }
            let body = body.strip_prefix("- ").unwrap_or(body);
            let quoted = [
                format!("{key}:"),
                format!("\"{key}\":"),
                format!("'{key}':"),
            ];
            if quoted.iter().any(|q| body.starts_with(q.as_str())) {
                hit = Some((i, this_indent));
                break;
            }
        }
        let (i, ind) = hit?;
        found = Some(i + 1);
        from = i + 1;
        indent = Some(ind);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls")
    }

    /// Parse `text` as if it were a file in the fixtures folder.
    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(text, &fixtures().join("web.yml"))
    }

    fn err(text: &str) -> String {
        parse(text)
            .map(|_| ())
            .expect_err("should fail")
            .to_string()
    }

    /// A bcrypt hash of "secret" at cost 4 (fast for tests; use 10 or more).
    fn hash() -> String {
        bcrypt::hash_with_salt("secret", 4, [1; 16])
            .expect("hash")
            .to_string()
    }

    #[test]
    fn good_file_with_relative_paths() {
        let c = parse(&format!(
            "# comment\ntls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n  curve_preferences: [X25519, CurveP256]\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\nbasic_auth_users:\n  alice: {h}\n  \"bob\": '{h}'\n",
            h = hash()
        ))
        .expect("valid");
        assert!(c.tls.is_some());
        assert_eq!(c.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(
            c.users.keys().collect::<Vec<_>>(),
            ["alice", "bob"].iter().collect::<Vec<_>>()
        );
        assert_eq!(c.headers.len(), 2);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn empty_file_means_plain_http_without_auth() {
        let c = parse("# nothing here\n").expect("valid");
        assert!(c.tls.is_none() && c.users.is_empty() && c.headers.is_empty());
        let c = parse("tls_server_config:\n  min_version: TLS12\n").expect("valid");
        assert!(c.tls.is_none());
    }

    #[test]
    fn unknown_key_names_file_line_and_fix() {
        let e = err(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  cert_flie: x\n",
        );
        assert!(e.contains("tls/web.yml:4"), "{e}");
        assert!(e.contains("cert_flie"), "{e}");
        assert!(e.contains("fix:"), "{e}");
        let e = err("basic_auth_users: {}\nbasic_auth: {}\n");
        assert!(e.contains("web.yml:2"), "{e}");
        assert!(e.contains("basic_auth"), "{e}");
    }

    #[test]
    fn missing_cert_file_names_the_path_and_the_line() {
        let e = err("tls_server_config:\n  cert_file: nowhere.pem\n  key_file: server.key\n");
        assert!(e.contains("web.yml:2"), "{e}");
        assert!(e.contains("fixtures/tls/nowhere.pem"), "{e}");
        assert!(e.contains("fix:"), "{e}");
        let e = err("tls_server_config:\n  key_file: server.key\n");
        assert!(e.contains("no certificate"), "{e}");
    }

    #[test]
    fn bad_bcrypt_hash_names_the_user() {
        let e = err("basic_auth_users:\n  alice: hunter2\n");
        assert!(e.contains("web.yml:2"), "{e}");
        assert!(e.contains("\"alice\""), "{e}");
        assert!(e.contains("htpasswd"), "{e}");
        let e = err(&format!(
            "basic_auth_users:\n  alice: {}\n",
            hash().replace("$04$", "$99$")
        ));
        assert!(e.contains("cost"), "{e}");
        let e = err(&format!(
            "basic_auth_users:\n  alice: {h}\n  bob: {h}\n  alice: {h}\n",
            h = hash()
        ));
        assert!(e.contains("\"alice\" is given twice"), "{e}");
    }

    #[test]
    fn key_that_does_not_match_the_cert_is_refused() {
        let e = err("tls_server_config:\n  cert_file: server.pem\n  key_file: other.key\n");
        assert!(e.contains("web.yml:3"), "{e}");
        assert!(e.contains("does not belong"), "{e}");
    }

    #[test]
    fn a_key_is_not_a_certificate() {
        let e = err("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n");
        assert!(
            e.contains("web.yml:2") && e.contains("no certificate"),
            "{e}"
        );
        let e = err("tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n");
        assert!(
            e.contains("web.yml:3") && e.contains("no private key"),
            "{e}"
        );
    }

    #[test]
    fn client_auth_rules_follow_exporter_toolkit() {
        let base = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";
        let e = err(&format!("{base}  client_ca_file: ca.pem\n"));
        assert!(e.contains("client_auth_type"), "{e}");
        let e = err(&format!(
            "{base}  client_auth_type: RequireAndVerifyClientCert\n"
        ));
        assert!(e.contains("client_ca_file"), "{e}");
        let e = err(&format!("{base}  client_auth_type: Sometimes\n"));
        assert!(e.contains("web.yml:4") && e.contains("Sometimes"), "{e}");
        for ok in [
            "RequestClientCert",
            "RequireAnyClientCert",
            "RequireClientCert",
        ] {
            parse(&format!("{base}  client_auth_type: {ok}\n")).expect(ok);
        }
        parse(&format!(
            "{base}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n"
        ))
        .expect("verify if given");
    }

    #[test]
    fn unsupported_options_are_refused_or_warned() {
        let base = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";
        let e = err(&format!("{base}  client_allowed_sans: [a]\n"));
        assert!(
            e.contains("web.yml:4") && e.contains("RequireAndVerifyClientCert"),
            "{e}"
        );
        let e = err(&format!(
            "{base}  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: []\n"
        ));
        assert!(e.contains("web.yml:5") && e.contains("empty"), "{e}");
        parse(&format!(
            "{base}  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [prometheus.test]\n"
        ))
        .expect("allowed SANs");
        let c = parse("rate_limit:\n  interval: 1s\n  burst: 20\n").expect("rate limit");
        assert_eq!(c.rate_limit, Some((Duration::from_secs(1), 20)));
        let c = parse("rate_limit:\n  interval: 0\n  burst: 20\n").expect("off");
        assert_eq!(c.rate_limit, None);
        let e = err("rate_limit:\n  interval: 1s\n  burst: 0\n");
        assert!(
            e.contains("web.yml:3") && e.contains("every request"),
            "{e}"
        );
        let e = err("rate_limit:\n  interval: soon\n  burst: 1\n");
        assert!(e.contains("web.yml:2") && e.contains("\"soon\""), "{e}");
        let e = err("rate_limit:\n  every: 1s\n");
        assert!(e.contains("web.yml:2") && e.contains("every"), "{e}");
        let e = err(&format!("{base}  min_version: TLS10\n"));
        assert!(e.contains("web.yml:4") && e.contains("TLS12"), "{e}");
        let e = err(&format!(
            "{base}  min_version: TLS13\n  max_version: TLS12\n"
        ));
        assert!(e.contains("max_version"), "{e}");
        let e = err(&format!(
            "{base}  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n"
        ));
        assert!(e.contains("web.yml:4") && e.contains("CBC"), "{e}");
        let e = err(&format!("{base}  curve_preferences: [CurveP521]\n"));
        assert!(e.contains("CurveP521"), "{e}");
        let c = parse(&format!(
            "{base}  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n  prefer_server_cipher_suites: false\nhttp_server_config:\n  http2: true\n"
        ))
        .expect("valid");
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("web.yml:7") && w.contains("http2"))
        );
    }

    #[test]
    fn headers_follow_exporter_toolkit() {
        let e = err("http_server_config:\n  headers:\n    Server: segwatch\n");
        assert!(e.contains("web.yml:3") && e.contains("\"Server\""), "{e}");
        let e = err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert!(e.contains("deny, sameorigin"), "{e}");
    }

    #[test]
    fn inline_pem_works_and_excludes_the_file() {
        let cert = std::fs::read_to_string(fixtures().join("server.pem")).expect("cert");
        let key = std::fs::read_to_string(fixtures().join("server.key")).expect("key");
        let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
        let c = parse(&format!(
            "tls_server_config:\n  cert: |\n{}  key: |\n{}",
            indent(&cert),
            indent(&key)
        ))
        .expect("valid");
        assert!(c.tls.is_some());
        let e = err(&format!(
            "tls_server_config:\n  cert: |\n{}  cert_file: server.pem\n  key_file: server.key\n",
            indent(&cert)
        ));
        assert!(e.contains("both cert and cert_file"), "{e}");
    }

    #[test]
    fn basic_auth_without_tls_warns() {
        let c = parse(&format!("basic_auth_users:\n  alice: {}\n", hash())).expect("valid");
        assert!(c.tls.is_none());
        assert!(c.warnings.iter().any(|w| w.contains("clear text")));
    }

    #[test]
    fn line_of_finds_nested_keys() {
        let t = "a:\n  b: 1\nc:\n  # b: no\n  \"b\": 2\n  d:\n    - e: 3\n";
        assert_eq!(line_of(t, &["c", "b"]), Some(5));
        assert_eq!(line_of(t, &["a", "b"]), Some(2));
        assert_eq!(line_of(t, &["c", "d", "e"]), Some(7));
        assert_eq!(line_of(t, &["a", "d"]), None);
    }
}
