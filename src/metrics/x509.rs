//! The few X.509 fields segwatch reads itself, with a minimal DER walker:
//! the validity period (to warn about expired certificates) and the subject
//! alternative names (for `client_allowed_sans`). Signatures and chains are
//! rustls's business; this only reads, and gives up (`None`) on anything it
//! does not expect.

use std::net::IpAddr;

use time::OffsetDateTime;

const SEQUENCE: u8 = 0x30;

/// One DER element at the start of `b`: (tag, contents, what follows).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = b.split_at_checked(n)?;
        b = rest;
        bytes.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x))
    };
    let (contents, rest) = b.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// The fields of TBSCertificate (RFC 5280 4.1) from `serialNumber` on.
fn tbs_fields(cert: &[u8]) -> Option<&[u8]> {
    let (SEQUENCE, cert, _) = der(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der(cert)? else {
        return None;
    };
    // Optional [0] version.
    if der(tbs)?.0 == 0xa0 {
        return Some(der(tbs)?.2);
    }
    Some(tbs)
}

/// `notBefore` and `notAfter`.
pub fn validity(cert: &[u8]) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let mut rest = tbs_fields(cert)?;
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        rest = der(rest)?.2;
    }
    let (SEQUENCE, validity, _) = der(rest)? else {
        return None;
    };
    let (t1, before, rest) = der(validity)?;
    let (t2, after, _) = der(rest)?;
    Some((asn1_time(t1, before)?, asn1_time(t2, after)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn asn1_time(tag: u8, s: &[u8]) -> Option<OffsetDateTime> {
    let s = std::str::from_utf8(s).ok()?.strip_suffix('Z')?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i32 = s.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, s.get(2..)?)
        }
        (0x18, 14) => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| -> Option<u8> { rest.get(i..i + 2)?.parse().ok() };
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(n(0)?).ok()?, n(2)?).ok()?;
    let t = time::Time::from_hms(n(4)?, n(6)?, n(8)?).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

/// The subject alternative names, written as Go's `crypto/x509` writes
/// them (exporter-toolkit compares these strings): DNS names, e-mail
/// addresses, IP addresses (IPv4-mapped IPv6 as IPv4) and URIs. Empty when
/// the certificate has none; `None` when it cannot be read.
pub fn subject_alt_names(cert: &[u8]) -> Option<Vec<String>> {
    let mut rest = tbs_fields(cert)?;
    // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo.
    for _ in 0..6 {
        rest = der(rest)?.2;
    }
    // Optional [1] and [2] unique identifiers, then [3] extensions.
    let mut extensions = None;
    while !rest.is_empty() {
        let (tag, contents, next) = der(rest)?;
        if tag == 0xa3 {
            extensions = Some(contents);
        }
        rest = next;
    }
    let Some(extensions) = extensions else {
        return Some(Vec::new());
    };
    let (SEQUENCE, mut list, _) = der(extensions)? else {
        return None;
    };
    // id-ce-subjectAltName, 2.5.29.17.
    const SAN: &[u8] = &[0x55, 0x1d, 0x11];
    let mut names = Vec::new();
    while !list.is_empty() {
        let (SEQUENCE, ext, next) = der(list)? else {
            return None;
        };
        list = next;
        let (0x06, oid, mut fields) = der(ext)? else {
            return None;
        };
        if oid != SAN {
            continue;
        }
        // Optional critical BOOLEAN, then the OCTET STRING.
        if der(fields)?.0 == 0x01 {
            fields = der(fields)?.2;
        }
        let (0x04, value, _) = der(fields)? else {
            return None;
        };
        let (SEQUENCE, mut general, _) = der(value)? else {
            return None;
        };
        while !general.is_empty() {
            let (tag, v, next) = der(general)?;
            general = next;
            let text = || String::from_utf8_lossy(v).into_owned();
            match tag {
                0x81 | 0x82 | 0x86 => names.push(text()),
                0x87 => {
                    let ip = match v.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(v).ok()?),
                        16 => {
                            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?);
                            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
                        }
                        _ => continue,
                    };
                    names.push(ip.to_string());
                }
                _ => {}
            }
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    fn fixture(name: &str) -> CertificateDer<'static> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name);
        CertificateDer::from_pem_file(p).expect("fixture")
    }

    #[test]
    fn validity_is_read_from_the_certificate() {
        let (before, after) = validity(fixture("server.pem").as_ref()).expect("dates");
        // The fixtures are made valid for 100 years (GeneralizedTime past 2049).
        assert!(after.year() - before.year() >= 99, "{before} {after}");
        assert!(validity(b"\x30\x03\x02\x01").is_none());
        assert!(validity(&[]).is_none());
    }

    #[test]
    fn subject_alt_names_as_go_writes_them() {
        assert_eq!(
            subject_alt_names(fixture("server.pem").as_ref()),
            Some(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        );
        assert_eq!(
            subject_alt_names(fixture("client.pem").as_ref()),
            Some(vec![
                "prometheus.test".to_string(),
                "prometheus@example.test".to_string()
            ])
        );
        // The CA has extensions but no SAN.
        assert_eq!(subject_alt_names(fixture("ca.pem").as_ref()), Some(vec![]));
        assert!(subject_alt_names(b"\x30\x00").is_none());
    }

    #[test]
    fn asn1_times() {
        let t = asn1_time(0x17, b"491231235959Z").expect("utc");
        assert_eq!(t.year(), 2049);
        let t = asn1_time(0x17, b"500101000000Z").expect("utc");
        assert_eq!(t.year(), 1950);
        let t = asn1_time(0x18, b"21260101120000Z").expect("generalized");
        assert_eq!((t.year(), t.hour()), (2126, 12));
        assert!(asn1_time(0x17, b"491331235959Z").is_none());
        assert!(asn1_time(0x17, b"4912312359Z").is_none());
    }
}
