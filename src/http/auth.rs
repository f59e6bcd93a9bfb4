//! `basic_auth_users`: an `Authorization: Basic` header checked against bcrypt hashes.
//! A bcrypt run costs tens of milliseconds by design, so (as exporter-toolkit does)
//! each outcome is cached under a SHA-256 of the user and password, and runs are
//! made one at a time on the blocking pool, never on the runtime's only thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Outcomes kept at most; the cache is emptied when full (a scraper that sends the
/// same credentials every time refills it with one entry).
const CACHE_SIZE: usize = 100;

/// The users of one web config, and the outcomes of the checks made against them.
pub struct Users {
    hashes: BTreeMap<String, String>,
    cache: Mutex<HashMap<[u8; 32], bool>>,
    /// One bcrypt run at a time: a flood of wrong passwords costs one core at most.
    bcrypt: Arc<Semaphore>,
}

impl Users {
    pub fn new(hashes: BTreeMap<String, String>) -> Users {
        Users {
            hashes,
            cache: Mutex::new(HashMap::new()),
            bcrypt: Arc::new(Semaphore::new(1)),
        }
    }

    /// Whether `header` (an `Authorization` value) names a user with its password.
    pub async fn allows(&self, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(credentials) else {
            return false;
        };
        let key = cache_key(&user, &password);
        if let Some(known) = self.cached(&key) {
            return known;
        }
        let Ok(_turn) = self.bcrypt.acquire().await else {
            return false;
        };
        // Another request may have done the work while this one waited.
        if let Some(known) = self.cached(&key) {
            return known;
        }
        // An unknown user costs a bcrypt run too, so timing does not tell which
        // user names exist.
        let hash = self.hashes.get(&user).cloned();
        let outcome = tokio::task::spawn_blocking(move || {
            let valid = hash.is_some();
            let hash = hash.unwrap_or_else(|| dummy_hash().to_string());
            valid && bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_SIZE {
            cache.clear();
        }
        cache.insert(key, outcome);
        outcome
    }

    fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).copied()
    }
}

/// The user and password of a `Basic` header.
fn credentials(header: &HeaderValue) -> Option<(String, String)> {
    use base64::Engine;
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// SHA-256 of the user and the password, each preceded by its length: the cache
/// never holds a password, and no two pairs share a key by concatenation.
fn cache_key(user: &str, password: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [user, password] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// A hash of nothing at the default cost, made once, checked for unknown users.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("", bcrypt::DEFAULT_COST).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(text: &str) -> HeaderValue {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(text);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    /// Right credentials pass, wrong or missing ones do not, and an outcome is
    /// cached: the second check of the same pair runs no bcrypt.
    #[tokio::test]
    async fn checks_and_caches() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let users = Users::new(BTreeMap::from([("prom".to_string(), hash)]));
        assert!(users.allows(Some(&basic("prom:right"))).await);
        assert!(!users.allows(Some(&basic("prom:wrong"))).await);
        assert!(!users.allows(Some(&basic("other:right"))).await);
        assert!(
            !users
                .allows(Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
        assert!(!users.allows(None).await);
        assert_eq!(users.cached(&cache_key("prom", "right")), Some(true));
        assert_eq!(users.cached(&cache_key("prom", "wrong")), Some(false));
    }

    /// A password may hold colons; only the first one separates the user.
    #[test]
    fn colon_in_password() {
        assert_eq!(
            credentials(&basic("u:a:b")),
            Some(("u".to_string(), "a:b".to_string()))
        );
        assert_eq!(credentials(&basic("no colon")), None);
    }
}
