//! The TLS side of the metrics endpoint: turns the checked
//! `tls_server_config` settings into a rustls server configuration (ring
//! provider), and refuses what would fail later: unreadable or non-PEM
//! files, a key that does not belong to the certificate, a client CA that
//! is missing or unusable, suites and curves rustls does not implement.
//!
//! The certificate and key files are re-read when they change
//! ([`ReloadingCert`]), so renewing them needs no restart.
//!
//! Client certificate policies keep Go's meaning, since exporter-toolkit
//! passes them to Go's `crypto/tls`: `RequestClientCert` and
//! `RequireAnyClientCert` ask for a certificate without verifying it (the
//! client still proves it holds the certificate's key);
//! `VerifyClientCertIfGiven` and `RequireAndVerifyClientCert` verify it
//! against `client_ca_file`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use time::OffsetDateTime;

/// `client_auth_type`, with Go's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl FromStr for ClientAuth {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // exporter-toolkit keeps the old name too.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return Err(()),
        })
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// PEM text, from a file or written inline; the key that named it.
#[derive(Clone, Debug)]
pub enum Pem {
    File(&'static str, PathBuf),
    Inline(&'static str, String),
}

impl Pem {
    fn key(&self) -> &'static str {
        match self {
            Pem::File(k, _) | Pem::Inline(k, _) => k,
        }
    }

    fn describe(&self) -> String {
        match self {
            Pem::File(k, p) => format!("{k} {}", p.display()),
            Pem::Inline(k, _) => format!("the inline {k}"),
        }
    }

    fn bytes(&self) -> Result<Vec<u8>, Problem> {
        match self {
            Pem::File(k, p) => std::fs::read(p).map_err(|e| {
                Problem::new(
                    k,
                    format!("cannot read {k} {}: {e}", p.display()),
                    "check the path (a relative path starts from the web config file's folder) and that segwatch may read the file",
                )
            }),
            Pem::Inline(_, text) => Ok(text.as_bytes().to_vec()),
        }
    }
}

/// What went wrong, the `tls_server_config` key it is about, and the fix.
#[derive(Debug)]
pub struct Problem {
    pub key: &'static str,
    pub message: String,
    pub fix: String,
}

impl Problem {
    pub fn new(key: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem {
            key,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// `tls_server_config` after spelling checks; files not read yet.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub cert: Pem,
    pub key: Pem,
    pub client_ca: Option<Pem>,
    pub client_auth: ClientAuth,
    /// A client certificate must name one of these (DNS, e-mail, IP or URI
    /// subject alternative name); empty: no such check.
    pub client_allowed_sans: Vec<String>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// Go names; empty: rustls's defaults.
    pub cipher_suites: Vec<String>,
    pub prefer_server_cipher_suites: bool,
    /// Go names; empty: rustls's defaults.
    pub curve_preferences: Vec<String>,
}

/// Build the server configuration; also returns warnings about the
/// certificate's validity period at `now`.
pub fn server_config(
    s: &TlsSettings,
    now: OffsetDateTime,
) -> Result<(ServerConfig, Vec<String>), Problem> {
    let provider = Arc::new(provider(s)?);
    let pair = load_pair(&s.cert, &s.key, &provider)?;
    let mut warnings = Vec::new();
    if let Some(w) = pair
        .cert
        .first()
        .and_then(|c| validity_warning(c, now, &s.cert.describe()))
    {
        warnings.push(w);
    }

    let mut versions = Vec::new();
    if s.min_version > s.max_version {
        return Err(Problem::new(
            "max_version",
            "max_version is below min_version",
            "set max_version to min_version or above (TLS12 < TLS13)",
        ));
    }
    if s.min_version <= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if s.max_version >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| {
            Problem::new(
                "cipher_suites",
                format!("no cipher suite is left for the TLS versions allowed: {e}"),
                "list at least one suite of each version allowed, or remove cipher_suites",
            )
        })?;
    let verifier = client_verifier(s, &provider)?;
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(ReloadingCert::new(
            s.cert.clone(),
            s.key.clone(),
            provider,
            pair,
            RELOAD_CHECK,
        )));
    config.ignore_client_order = s.prefer_server_cipher_suites;
    Ok((config, warnings))
}

/// The certificate chain and its key, checked to belong together.
fn load_pair(cert: &Pem, key: &Pem, provider: &CryptoProvider) -> Result<CertifiedKey, Problem> {
    let chain = certificates(cert)?;
    let signing = provider
        .key_provider
        .load_private_key(private_key(key)?)
        .map_err(|e| {
            Problem::new(
                key.key(),
                format!("{} is not a usable private key: {e}", key.describe()),
                "use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key",
            )
        })?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(Problem::new(
            key.key(),
            format!(
                "the private key in {} does not belong to the certificate in {}",
                key.describe(),
                cert.describe()
            ),
            "pair the certificate with the key it was issued for (`openssl x509 -noout -pubkey -in CERT` and `openssl pkey -pubout -in KEY` print the same key when they match)",
        )),
        Err(e) => Err(Problem::new(
            cert.key(),
            format!(
                "the first certificate in {} is not a valid X.509 certificate: {e}",
                cert.describe()
            ),
            "put the server certificate first, then its intermediates, all in PEM",
        )),
    }
}

/// How often, at most, the certificate and key files are looked at.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Serves the certificate and key, and re-reads their files when either
/// changes (looked at on a new connection, at most once per
/// [`RELOAD_CHECK`]), so a renewed certificate is served without a restart,
/// as exporter-toolkit does. A new pair that does not load (a file half
/// written, a key that does not match) is logged and the previous pair
/// kept until the files change again.
#[derive(Debug)]
struct ReloadingCert {
    cert: Pem,
    key: Pem,
    provider: Arc<CryptoProvider>,
    every: Duration,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    pair: Arc<CertifiedKey>,
    stamp: Option<Stamp>,
    checked: Instant,
}

/// Modification time and length of the certificate and key files.
type Stamp = [(SystemTime, u64); 2];

fn stamp(cert: &Pem, key: &Pem) -> Option<Stamp> {
    let one = |p: &Pem| match p {
        Pem::File(_, path) => std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len()))),
        Pem::Inline(..) => None,
    };
    Some([one(cert)?, one(key)?])
}

impl ReloadingCert {
    fn new(
        cert: Pem,
        key: Pem,
        provider: Arc<CryptoProvider>,
        pair: CertifiedKey,
        every: Duration,
    ) -> ReloadingCert {
        let state = Mutex::new(Loaded {
            pair: Arc::new(pair),
            stamp: stamp(&cert, &key),
            checked: Instant::now(),
        });
        ReloadingCert {
            cert,
            key,
            provider,
            every,
            state,
        }
    }

    /// The pair to serve now.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.stamp.is_some() && st.checked.elapsed() >= self.every {
            st.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now.is_some() && now != st.stamp {
                st.stamp = now;
                match load_pair(&self.cert, &self.key, &self.provider) {
                    Ok(pair) => {
                        tracing::info!(cert = %self.cert.describe(), "metrics endpoint: certificate reloaded");
                        if let Some(w) = pair.cert.first().and_then(|c| {
                            validity_warning(c, OffsetDateTime::now_utc(), &self.cert.describe())
                        }) {
                            tracing::warn!("{w}");
                        }
                        st.pair = Arc::new(pair);
                    }
                    Err(p) => tracing::warn!(
                        "metrics endpoint: the changed certificate or key does not load, the previous pair stays in use: {} ({})",
                        p.message,
                        p.fix
                    ),
                }
            }
        }
        Arc::clone(&st.pair)
    }
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn certificates(pem: &Pem) -> Result<Vec<CertificateDer<'static>>, Problem> {
    let bytes = pem.bytes()?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Problem::new(
                pem.key(),
                format!("{} is not valid PEM: {e}", pem.describe()),
                "give certificates in PEM (-----BEGIN CERTIFICATE-----); convert DER with `openssl x509 -inform der -in CERT -out CERT.pem`",
            )
        })?;
    if certs.is_empty() {
        return Err(Problem::new(
            pem.key(),
            format!(
                "{} holds no certificate (no -----BEGIN CERTIFICATE----- block)",
                pem.describe()
            ),
            "point it at the certificate in PEM (the server's first, then its intermediates), not at the key",
        ));
    }
    Ok(certs)
}

fn private_key(pem: &Pem) -> Result<PrivateKeyDer<'static>, Problem> {
    let bytes = pem.bytes()?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let message = match e {
            rustls::pki_types::pem::Error::NoItemsFound => format!(
                "{} holds no private key (no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)",
                pem.describe()
            ),
            e => format!("{} is not valid PEM: {e}", pem.describe()),
        };
        Problem::new(
            pem.key(),
            message,
            "point it at the unencrypted private key in PEM; an encrypted key (ENCRYPTED PRIVATE KEY) must be decrypted first with `openssl pkey -in KEY -out KEY.plain`",
        )
    })
}

/// The ring provider, narrowed to the configured suites and curves.
fn provider(s: &TlsSettings) -> Result<CryptoProvider, Problem> {
    let mut p = ring::default_provider();
    if !s.cipher_suites.is_empty() {
        let available: Vec<String> = p.cipher_suites.iter().map(|c| go_suite_name(*c)).collect();
        let mut tls12 = Vec::new();
        for name in &s.cipher_suites {
            let canonical = match name.as_str() {
                // Go's older names for the ChaCha20 suites.
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"
                | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
                    format!("{name}_SHA256")
                }
                _ => name.clone(),
            };
            match p
                .cipher_suites
                .iter()
                .find(|c| go_suite_name(**c) == canonical)
            {
                // As in Go, TLS 1.3 suites are always on; listing them changes nothing.
                Some(c) if c.tls13().is_some() => {}
                Some(c) => tls12.push(*c),
                None => {
                    let known_to_go = name.starts_with("TLS_")
                        && ["_CBC_", "_RC4_", "3DES", "TLS_RSA_"]
                            .iter()
                            .any(|k| name.contains(k));
                    let message = if known_to_go {
                        format!(
                            "cipher suite {name} is not implemented by rustls (no CBC, RC4, 3DES or RSA key exchange suites)"
                        )
                    } else {
                        format!("unknown cipher suite {name}")
                    };
                    return Err(Problem::new(
                        "cipher_suites",
                        message,
                        format!("choose from {}", available.join(", ")),
                    ));
                }
            }
        }
        p.cipher_suites.retain(|c| c.tls13().is_some());
        p.cipher_suites.extend(tls12);
    }
    if !s.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for name in &s.curve_preferences {
            let group = match name.as_str() {
                "X25519" => ring::kx_group::X25519,
                "CurveP256" => ring::kx_group::SECP256R1,
                "CurveP384" => ring::kx_group::SECP384R1,
                "CurveP521" | "X25519MLKEM768" => {
                    return Err(Problem::new(
                        "curve_preferences",
                        format!("curve {name} is not implemented by segwatch's TLS library"),
                        "choose from X25519, CurveP256, CurveP384",
                    ));
                }
                _ => {
                    return Err(Problem::new(
                        "curve_preferences",
                        format!("unknown curve {name}"),
                        "choose from X25519, CurveP256, CurveP384",
                    ));
                }
            };
            groups.push(group);
        }
        p.kx_groups = groups;
    }
    Ok(p)
}

/// Go's name of a suite: rustls writes TLS 1.3 suites as `TLS13_...`.
fn go_suite_name(c: rustls::SupportedCipherSuite) -> String {
    let name = format!("{:?}", c.suite());
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

fn client_verifier(
    s: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Problem> {
    let verifier = policy_verifier(s, provider)?;
    if s.client_allowed_sans.is_empty() {
        return Ok(verifier);
    }
    // As exporter-toolkit: only where every client must show a certificate.
    if !matches!(
        s.client_auth,
        ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
    ) {
        return Err(Problem::new(
            "client_allowed_sans",
            format!(
                "client_allowed_sans needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert, not {}",
                s.client_auth
            ),
            "set client_auth_type: RequireAndVerifyClientCert (with client_ca_file), or remove client_allowed_sans",
        ));
    }
    Ok(Arc::new(AllowedSans {
        inner: verifier,
        allowed: s.client_allowed_sans.clone(),
    }))
}

/// The verifier for `client_auth_type`.
fn policy_verifier(
    s: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Problem> {
    let verify = matches!(
        s.client_auth,
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
    );
    match (&s.client_ca, s.client_auth) {
        (Some(ca), ClientAuth::NoClientCert) => {
            return Err(Problem::new(
                ca.key(),
                format!("{} is set but client_auth_type is NoClientCert", ca.key()),
                "set client_auth_type: RequireAndVerifyClientCert to require client certificates signed by that CA, or remove it",
            ));
        }
        (None, ClientAuth::NoClientCert) => return Ok(Arc::new(rustls::server::NoClientAuth)),
        (None, _) if verify => {
            return Err(Problem::new(
                "client_auth_type",
                format!("client_auth_type {} needs client_ca_file", s.client_auth),
                "set client_ca_file to the CA (PEM) that signs the clients' certificates",
            ));
        }
        _ => {}
    }
    if !verify {
        return Ok(Arc::new(AnyClientCert {
            mandatory: s.client_auth == ClientAuth::RequireAnyClientCert,
            algorithms: provider.signature_verification_algorithms,
        }));
    }
    let Some(ca) = &s.client_ca else {
        return Err(Problem::new(
            "client_ca_file",
            "no client CA",
            "set client_ca_file",
        ));
    };
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in certificates(ca)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            Problem::new(
                ca.key(),
                format!(
                    "certificate {} in {} is not a usable CA: {e}",
                    i + 1,
                    ca.describe()
                ),
                "give the CA certificates (PEM) that sign the clients' certificates",
            )
        })?;
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = if s.client_auth == ClientAuth::VerifyClientCertIfGiven {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder.build().map_err(|e| {
        Problem::new(
            ca.key(),
            format!("cannot verify clients with {}: {e}", ca.describe()),
            "give the CA certificates (PEM) that sign the clients' certificates",
        )
    })
}

/// `client_allowed_sans`: after `inner` accepts a client certificate, one
/// of its subject alternative names must be in `allowed` (exact match, as
/// exporter-toolkit compares them).
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = super::x509::subject_alt_names(end_entity.as_ref()).unwrap_or_default();
        if names.iter().any(|n| self.allowed.contains(n)) {
            Ok(verified)
        } else {
            tracing::debug!(
                ?names,
                "client certificate refused: no SAN in client_allowed_sans"
            );
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Go's `RequestClientCert`/`RequireAnyClientCert`: any certificate is
/// accepted, but the handshake signature is still checked, so the client
/// holds its key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A warning when the certificate is expired, not valid yet, or expires
/// within 14 days; clients refuse such certificates, but a sensor should
/// keep running so the warning is all segwatch does.
fn validity_warning(cert: &CertificateDer<'_>, now: OffsetDateTime, what: &str) -> Option<String> {
    let (not_before, not_after) = super::x509::validity(cert.as_ref())?;
    let date = |t: OffsetDateTime| t.date().to_string();
    if now > not_after {
        Some(format!(
            "the certificate in {what} expired on {}; clients will refuse it until it is renewed",
            date(not_after)
        ))
    } else if now < not_before {
        Some(format!(
            "the certificate in {what} is not valid before {}; clients will refuse it until then (is the clock right?)",
            date(not_before)
        ))
    } else if not_after - now < time::Duration::days(14) {
        Some(format!(
            "the certificate in {what} expires on {}; renew it (segwatch picks up the new files)",
            date(not_after)
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_cert() -> CertificateDer<'static> {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/server.pem");
        CertificateDer::from_pem_file(p).expect("fixture")
    }

    #[test]
    fn expired_and_future_certificates_warn() {
        let c = fixture_cert();
        let (before, after) = super::super::x509::validity(c.as_ref()).expect("dates");
        let w =
            validity_warning(&c, after + time::Duration::days(1), "cert_file x").expect("expired");
        assert!(w.contains("expired on"), "{w}");
        let w =
            validity_warning(&c, before - time::Duration::days(1), "cert_file x").expect("future");
        assert!(w.contains("not valid before"), "{w}");
        let w = validity_warning(&c, after - time::Duration::days(3), "x").expect("soon");
        assert!(w.contains("expires on"), "{w}");
        assert!(validity_warning(&c, before + time::Duration::days(1), "x").is_none());
    }

    #[test]
    fn renewed_certificate_is_served_and_a_broken_one_is_not() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let put = |c: &str, k: &str| {
            std::fs::copy(fixtures.join(c), &cert).expect("cert");
            std::fs::copy(fixtures.join(k), &key).expect("key");
        };
        put("server.pem", "server.key");
        let (cert_pem, key_pem) = (
            Pem::File("cert_file", cert.clone()),
            Pem::File("key_file", key.clone()),
        );
        let provider = Arc::new(ring::default_provider());
        let pair = load_pair(&cert_pem, &key_pem, &provider).expect("pair");
        let r = ReloadingCert::new(cert_pem, key_pem, provider, pair, Duration::ZERO);
        let served = |r: &ReloadingCert| r.current().cert[0].as_ref().to_vec();
        let first = served(&r);
        assert_eq!(served(&r), first, "unchanged files, same pair");
        // Renewed: another certificate and its key.
        put("client.pem", "client.key");
        let second = served(&r);
        assert_ne!(second, first);
        assert_eq!(
            second,
            CertificateDer::from_pem_file(&cert).expect("pem").as_ref()
        );
        // A key that does not match: the previous pair stays.
        std::fs::copy(fixtures.join("other.key"), &key).expect("key");
        assert_eq!(served(&r), second);
        std::fs::write(&cert, "half written").expect("cert");
        assert_eq!(served(&r), second);
        // Fixed again: served.
        put("server.pem", "server.key");
        assert_eq!(served(&r), first);
    }

    #[test]
    fn client_allowed_sans_are_matched_exactly() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let client = CertificateDer::from_pem_file(fixtures.join("client.pem")).expect("client");
        let server = CertificateDer::from_pem_file(fixtures.join("server.pem")).expect("server");
        let check = |allowed: &[&str], cert: &CertificateDer<'_>| {
            AllowedSans {
                inner: Arc::new(AnyClientCert {
                    mandatory: true,
                    algorithms: ring::default_provider().signature_verification_algorithms,
                }),
                allowed: allowed.iter().map(|s| s.to_string()).collect(),
            }
            .verify_client_cert(cert, &[], UnixTime::now())
            .is_ok()
        };
        assert!(check(&["prometheus.test"], &client));
        assert!(check(&["x", "prometheus@example.test"], &client));
        assert!(!check(&["prometheus"], &client));
        assert!(!check(&["Prometheus.test"], &client));
        assert!(check(&["127.0.0.1"], &server));
        assert!(!check(&["prometheus.test"], &server));
    }
}
