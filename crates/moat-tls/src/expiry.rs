//! Certificate expiry gauges with CockroachDB's names:
//! `security.certificate.expiration.<kind>` (unix seconds of NotAfter) and
//! `security.certificate.ttl.<kind>` (seconds left), for the kinds `ca`,
//! `client-ca`, `ui-ca`, `node`, `node-client` and `ui`; 0 when the file is
//! missing or broken, and the TTL is 0 once expired.

use time::OffsetDateTime;

use crate::material::{TlsMaterial, PROTECTED};

/// Sets every gauge from the material.
pub fn publish(m: &TlsMaterial) {
    let now = OffsetDateTime::now_utc();
    for (kind, _) in PROTECTED {
        let entry = m
            .certs()
            .entries
            .iter()
            .find(|e| e.usage.metric_kind() == Some(kind) && e.error.is_none());
        let (expiration, ttl) = match entry.and_then(|e| e.leaf()) {
            Some(leaf) => {
                let exp = leaf.not_after.unix_timestamp();
                (exp as f64, (exp - now.unix_timestamp()).max(0) as f64)
            }
            None => (0.0, 0.0),
        };
        metrics::gauge!(format!("security.certificate.expiration.{kind}")).set(expiration);
        metrics::gauge!(format!("security.certificate.ttl.{kind}")).set(ttl);
    }
}
