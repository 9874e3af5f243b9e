//! HTTP basic authentication against bcrypt hashes, as exporter-toolkit
//! does it.
//!
//! bcrypt is slow on purpose (about 50 to 100 ms at cost 10), and
//! Prometheus sends the same credentials on every scrape, so each verdict is
//! cached under an HMAC of the user and password keyed with a random key
//! drawn at start: the cache never holds a password, and its keys are
//! useless outside this process. Failures are cached too, so a scraper with
//! a stale password costs one bcrypt, not one per scrape.
//!
//! Timing: bcrypt's own comparison is constant-time; an unknown user is
//! checked against a configured user's hash (then refused), so a reply takes
//! as long for a wrong user as for a wrong password. Only one bcrypt runs
//! at a time, so a flood of guesses takes one core, not all of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use ring::hmac;

/// Cached verdicts; past this many, the cache starts over.
const CACHE_ENTRIES: usize = 1024;

pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// The hash an unknown user is checked against.
    decoy: String,
    key: hmac::Key,
    cache: Mutex<HashMap<Vec<u8>, bool>>,
    bcrypt: Mutex<()>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// `users`: user name → bcrypt hash (checked by the web config); `None`
    /// when there are none (no authentication) or the system has no random
    /// source for the cache key.
    pub fn new(users: &BTreeMap<String, String>) -> Option<BasicAuth> {
        let decoy = users.values().next()?.clone();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).ok()?;
        Some(BasicAuth {
            users: users.clone(),
            decoy,
            key,
            cache: Mutex::new(HashMap::new()),
            bcrypt: Mutex::new(()),
        })
    }

    /// Whether an `Authorization` header value carries valid credentials.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let mut ctx = hmac::Context::with_key(&self.key);
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(&user);
        ctx.update(&password);
        let tag = ctx.sign().as_ref().to_vec();
        if let Some(&ok) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tag)
        {
            return ok;
        }
        let known = std::str::from_utf8(&user)
            .ok()
            .and_then(|u| self.users.get(u));
        let hash = known.unwrap_or(&self.decoy);
        let matches = {
            let _one_at_a_time = self.bcrypt.lock().unwrap_or_else(PoisonError::into_inner);
            bcrypt::verify(&password, hash).unwrap_or(false)
        };
        let ok = matches && known.is_some();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(tag, ok);
        ok
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }
}

/// User and password of a `Basic` authorization (RFC 7617); the scheme is
/// case-insensitive, the password may contain ':'.
fn credentials(header: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let header = header.trim_ascii();
    let (scheme, encoded) = header.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let (user, password) = decoded.split_at(colon);
    Some((user.to_vec(), password.get(1..)?.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> Vec<u8> {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}").into_bytes()
    }

    fn auth() -> BasicAuth {
        let hash = bcrypt::hash_with_salt("s3cret:x", 4, [7; 16])
            .expect("hash")
            .to_string();
        let users = BTreeMap::from([("alice".to_string(), hash)]);
        BasicAuth::new(&users).expect("auth")
    }

    #[test]
    fn right_credentials_pass_and_others_do_not() {
        let a = auth();
        assert!(a.allows(Some(&header("alice", "s3cret:x"))));
        assert!(!a.allows(Some(&header("alice", "s3cret"))));
        assert!(!a.allows(Some(&header("bob", "s3cret:x"))));
        assert!(!a.allows(Some(&header("Alice", "s3cret:x"))));
        assert!(!a.allows(None));
        assert!(!a.allows(Some(b"Bearer abc")));
        assert!(!a.allows(Some(b"Basic !!!")));
        // Scheme is case-insensitive.
        let mut lower = header("alice", "s3cret:x");
        lower[..5].copy_from_slice(b"basic");
        assert!(a.allows(Some(&lower)));
    }

    #[test]
    fn verdicts_are_cached() {
        let a = auth();
        for _ in 0..3 {
            assert!(a.allows(Some(&header("alice", "s3cret:x"))));
            assert!(!a.allows(Some(&header("alice", "wrong"))));
        }
        assert_eq!(a.cached(), 2);
    }

    #[test]
    fn no_users_no_auth() {
        assert!(BasicAuth::new(&BTreeMap::new()).is_none());
    }

    #[test]
    fn credentials_split_at_the_first_colon() {
        let (u, p) = credentials(&header("a", "b:c")).expect("parsed");
        assert_eq!((u.as_slice(), p.as_slice()), (&b"a"[..], &b"b:c"[..]));
        assert!(credentials(b"Basic").is_none());
        assert!(credentials(b"Basic bm9jb2xvbg==").is_none()); // "nocolon"
    }
}
