//! A small bounded map keyed by the SHA-256 of certificate bytes.
//!
//! Used to remember work done for a certificate that clients present again
//! and again (a connection pool reconnecting, pgbench `-C`): the chain
//! verification of [`crate::verify_cache`] and the principals of
//! [`crate::principal::PrincipalCache`]. The key is a digest of the exact DER
//! (a different certificate, or the same one with other intermediates, is a
//! different key), so a hit can only ever return what was computed for those
//! very bytes.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::digest::{Context, SHA256};

/// A SHA-256 digest of one or more DER certificates.
pub type CertDigest = [u8; 32];

/// The digest of `certs` (each length-prefixed, so that the boundaries count).
pub fn digest_of<'a>(certs: impl IntoIterator<Item = &'a [u8]>) -> CertDigest {
    let mut ctx = Context::new(&SHA256);
    for c in certs {
        ctx.update(&(c.len() as u64).to_be_bytes());
        ctx.update(c);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A map from [`CertDigest`] to `V` holding at most `capacity` entries: when
/// full, it starts again empty (certificates in use come back at once; an
/// attacker presenting many certificates can only make it forget).
#[derive(Debug)]
pub struct DigestCache<V> {
    capacity: usize,
    map: Mutex<HashMap<CertDigest, V>>,
}

impl<V: Clone> DigestCache<V> {
    /// An empty cache for up to `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        DigestCache {
            capacity: capacity.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The value remembered for `key`, if any.
    pub fn get(&self, key: &CertDigest) -> Option<V> {
        self.lock().get(key).cloned()
    }

    /// Remembers `value` for `key`.
    pub fn insert(&self, key: CertDigest, value: V) {
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, value);
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &CertDigest) {
        self.lock().remove(key);
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CertDigest, V>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every operation is a single HashMap call).
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_change_the_digest() {
        assert_ne!(digest_of([&b"ab"[..], b"c"]), digest_of([&b"a"[..], b"bc"]));
        assert_eq!(digest_of([&b"ab"[..], b"c"]), digest_of([&b"ab"[..], b"c"]));
    }

    #[test]
    fn bounded_by_capacity() {
        let c = DigestCache::new(2);
        c.insert([1; 32], 1);
        c.insert([2; 32], 2);
        assert_eq!(c.get(&[1; 32]), Some(1));
        c.insert([2; 32], 20); // replacing never evicts
        assert_eq!(c.len(), 2);
        c.insert([3; 32], 3); // full: starts again
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&[1; 32]), None);
        assert_eq!(c.get(&[3; 32]), Some(3));
        c.remove(&[3; 32]);
        assert!(c.is_empty());
    }
}
