//! What the certificates page and `/_status/certificates` show, and the node
//! list of the overview: built from the store's current snapshot (the
//! certificates being served), its reload record, and the cluster view.

use std::sync::atomic::Ordering;

use moat_pki::certsdir::{CertEntry, CrlEntry, EXPIRY_WARNING_DAYS};
use moat_pki::layout::CertUsage;
use serde::Serialize;
use time::OffsetDateTime;

use super::{HttpContext, NodeSummary};

/// The state of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Valid for more than 30 days.
    Ok,
    /// Expires within 30 days (or a CRL is stale).
    Warning,
    /// Not yet valid.
    NotYetValid,
    /// Expired.
    Expired,
    /// Revoked by a CRL of the directory.
    Revoked,
    /// Unusable: unparsable, key missing or not matching, ...
    Error,
}

impl Status {
    /// Short label.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "expires soon",
            Status::NotYetValid => "not yet valid",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
            Status::Error => "broken",
        }
    }
}

/// One certificate file.
#[derive(Debug, Clone, Serialize)]
pub struct CertReport {
    /// File name (`node.crt`).
    pub file: String,
    /// Full path.
    pub path: String,
    /// CockroachDB's usage label (`CA`, `Node`, `Client`, `UI`, ...).
    pub usage: String,
    /// The user of a client certificate.
    pub user: Option<String>,
    /// The key file, when there is one.
    pub key_file: Option<String>,
    /// Subject DN of the first certificate.
    pub subject: Option<String>,
    /// Its common name.
    pub common_name: Option<String>,
    /// DNS, IP and URI SANs.
    pub sans: Vec<String>,
    /// Issuer DN.
    pub issuer: Option<String>,
    /// Serial, hex.
    pub serial: Option<String>,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// Whole days left (negative once expired).
    pub days_left: Option<i64>,
    /// Key type (`ECDSA P-256`, ...).
    pub key_type: Option<String>,
    /// Extended key usages.
    pub ext_key_usage: Vec<String>,
    /// Certificates in the file (leaf plus chain, or the CA bundle).
    pub certificates_in_file: usize,
    /// The state.
    pub status: Status,
    /// A readable note (`expires in 12 days`, `EXPIRED on ...`, `revoked by ca.crl`).
    pub note: Option<String>,
    /// Why the file is unusable.
    pub error: Option<String>,
}

/// One CRL file.
#[derive(Debug, Clone, Serialize)]
pub struct CrlReport {
    /// File name.
    pub file: String,
    /// Issuer's common name (else the DN).
    pub issuer: Option<String>,
    /// thisUpdate.
    #[serde(with = "time::serde::rfc3339::option")]
    pub this_update: Option<OffsetDateTime>,
    /// nextUpdate.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_update: Option<OffsetDateTime>,
    /// Revoked certificates.
    pub revoked: usize,
    /// `ok`, `warning` (stale) or `error`.
    pub status: Status,
    /// Why it is unusable or ignored.
    pub error: Option<String>,
}

/// A `.crt` file that was not loaded.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedReport {
    /// File name.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// The last reload and the counters.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// `ok` when the last attempt succeeded (or there was none since the
    /// first load), `failed` otherwise.
    pub outcome: &'static str,
    /// Last successful load or reload.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// Last attempt.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt: Option<OffsetDateTime>,
    /// Error of the last attempt, if it failed.
    pub last_error: Option<String>,
    /// Successful reloads since start.
    pub successes: u64,
    /// Refused reloads since start.
    pub failures: u64,
    /// Generation of the certificates being served (1 = first load).
    pub generation: u64,
}

/// Counts by status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Files without problems.
    pub ok: usize,
    /// Expiring within 30 days (or stale CRLs).
    pub warning: usize,
    /// Expired, not yet valid, or revoked.
    pub expired: usize,
    /// Broken.
    pub error: usize,
}

/// The certificates of one node (`/_status/certificates`).
#[derive(Debug, Clone, Serialize)]
pub struct CertificatesReport {
    /// The node.
    pub node_id: u64,
    /// The certs directory.
    pub certs_dir: String,
    /// When the certificates being served were loaded.
    #[serde(with = "time::serde::rfc3339")]
    pub loaded_at: OffsetDateTime,
    /// Reload outcome and counters.
    pub reload: ReloadReport,
    /// Counts by status.
    pub summary: Summary,
    /// Every certificate file.
    pub certificates: Vec<CertReport>,
    /// Every CRL file.
    pub crls: Vec<CrlReport>,
    /// `.crt` files not loaded.
    pub skipped: Vec<SkippedReport>,
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// (issuer DN, serial without leading zero bytes) → the CRL file revoking it.
type Revocations = std::collections::HashMap<(String, String), String>;

fn revocations(crls: &[CrlEntry]) -> Revocations {
    let mut out = Revocations::new();
    for c in crls.iter().filter(|c| c.is_valid()) {
        if let Some(issuer) = &c.issuer {
            for serial in c.revoked_serials() {
                out.insert((issuer.clone(), trim_serial(&serial)), file_name(&c.path));
            }
        }
    }
    out
}

fn trim_serial(hex: &str) -> String {
    let mut s = hex.to_ascii_lowercase();
    while s.len() > 2 && s.starts_with("00") {
        s.drain(..2);
    }
    s
}

fn cert_report(e: &CertEntry, now: OffsetDateTime, revoked: &Revocations) -> CertReport {
    let leaf = e.leaf();
    let days_left = leaf.map(|l| l.days_left(now));
    let revoked_by = leaf.and_then(|l| revoked.get(&(l.issuer.clone(), trim_serial(&l.serial))));
    let status = match (leaf, &e.error) {
        (_, Some(_)) | (None, _) => Status::Error,
        (Some(_), None) if revoked_by.is_some() => Status::Revoked,
        (Some(l), None) if l.not_after <= now => Status::Expired,
        (Some(l), None) if l.not_before > now => Status::NotYetValid,
        (Some(_), None) if days_left.is_some_and(|d| d < EXPIRY_WARNING_DAYS) => Status::Warning,
        _ => Status::Ok,
    };
    let mut sans = Vec::new();
    if let Some(l) = leaf {
        sans.extend(l.dns_names.iter().cloned());
        sans.extend(l.ip_addresses.iter().map(|ip| ip.to_string()));
        sans.extend(l.uris.iter().cloned());
    }
    CertReport {
        file: file_name(&e.cert_path),
        path: e.cert_path.display().to_string(),
        usage: e.usage.label().to_string(),
        user: match &e.usage {
            CertUsage::Client(u) => Some(u.clone()),
            _ => None,
        },
        key_file: e.key_path.as_deref().map(file_name),
        subject: leaf.map(|l| l.subject.clone()),
        common_name: leaf.and_then(|l| l.common_name.clone()),
        sans,
        issuer: leaf.map(|l| l.issuer.clone()),
        serial: leaf.map(|l| l.serial.clone()),
        not_before: leaf.map(|l| l.not_before),
        not_after: leaf.map(|l| l.not_after),
        days_left,
        key_type: leaf.map(|l| l.key_type.clone()),
        ext_key_usage: leaf.map(|l| l.ext_key_usage.clone()).unwrap_or_default(),
        certificates_in_file: e.certs.len(),
        status,
        note: match revoked_by {
            Some(crl) => Some(format!("revoked by {crl}")),
            None => e.expiry_note(now),
        },
        error: e.error.clone(),
    }
}

fn crl_report(c: &CrlEntry, now: OffsetDateTime) -> CrlReport {
    let status = if c.error.is_some() || c.crls.is_empty() {
        Status::Error
    } else if c.is_stale(now) {
        Status::Warning
    } else {
        Status::Ok
    };
    CrlReport {
        file: file_name(&c.path),
        issuer: c.issuer_common_name().or_else(|| c.issuer.clone()),
        this_update: c.this_update,
        next_update: c.next_update,
        revoked: c.revoked,
        status,
        error: c.error.clone(),
    }
}

/// The certificates report of this node.
pub fn certificates(ctx: &HttpContext) -> CertificatesReport {
    let now = OffsetDateTime::now_utc();
    let snap = ctx.store.snapshot();
    let dir = snap.material.certs();
    let revoked = revocations(&dir.crls);
    let certificates: Vec<CertReport> = dir.entries.iter().map(|e| cert_report(e, now, &revoked)).collect();
    let crls: Vec<CrlReport> = dir.crls.iter().map(|c| crl_report(c, now)).collect();
    let mut summary = Summary::default();
    for s in certificates
        .iter()
        .map(|c| c.status)
        .chain(crls.iter().map(|c| c.status))
    {
        match s {
            Status::Ok => summary.ok += 1,
            Status::Warning => summary.warning += 1,
            Status::Expired | Status::NotYetValid | Status::Revoked => summary.expired += 1,
            Status::Error => summary.error += 1,
        }
    }
    let rec = ctx.store.stats.record();
    let failed = rec.last_error.is_some();
    CertificatesReport {
        node_id: ctx.node_id(),
        certs_dir: dir.dir.display().to_string(),
        loaded_at: snap.material.loaded_at(),
        reload: ReloadReport {
            outcome: if failed { "failed" } else { "ok" },
            last_success: rec.last_success,
            last_attempt: rec.last_attempt,
            last_error: rec.last_error,
            successes: ctx.store.stats.successes.load(Ordering::Relaxed),
            failures: ctx.store.stats.failures.load(Ordering::Relaxed),
            generation: snap.generation,
        },
        summary,
        certificates,
        crls,
        skipped: dir
            .skipped
            .iter()
            .map(|s| SkippedReport {
                file: file_name(&s.path),
                reason: s.reason.clone(),
            })
            .collect(),
    }
}

/// The version every node reports.
pub fn version() -> String {
    format!("moat {}", env!("CARGO_PKG_VERSION"))
}

/// This node alone, as the overview shows it without a cluster.
pub fn this_node(ctx: &HttpContext, http_addr: Option<String>) -> NodeSummary {
    let snap = ctx.store.snapshot();
    NodeSummary {
        id: ctx.node_id(),
        address: ctx.sql_addr.to_string(),
        sql_address: Some(ctx.sql_addr.to_string()),
        http_address: http_addr,
        live: true,
        is_leader: false,
        started_at: Some(ctx.started_at),
        version: version(),
        cert_expiry: snap
            .material
            .certs()
            .node()
            .and_then(|e| e.leaf())
            .map(|l| l.not_after.unix_timestamp()),
    }
}

/// The nodes: the cluster's view, or this node alone.
pub fn nodes(ctx: &HttpContext, http_addr: Option<String>) -> Vec<NodeSummary> {
    match &ctx.cluster {
        Some(c) => {
            let mut v = c.nodes();
            v.sort_by_key(|n| n.id);
            v
        }
        None => vec![this_node(ctx, http_addr)],
    }
}

/// "in 12 days", "3 days ago", "today" for a time relative to now.
pub fn relative_days(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let d = t - now;
    let days = d.whole_days();
    if days > 1 {
        format!("in {days} days")
    } else if days == 1 {
        "in 1 day".into()
    } else if d.is_positive() {
        let h = d.whole_hours();
        if h >= 1 {
            format!("in {h} h")
        } else {
            format!("in {} min", d.whole_minutes().max(1))
        }
    } else if days == 0 {
        "today".into()
    } else if days == -1 {
        "1 day ago".into()
    } else {
        format!("{} days ago", -days)
    }
}

/// "3 d 4 h", "5 min" for an uptime.
pub fn duration_text(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    let (days, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if days > 0 {
        format!("{days} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min")
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn relative() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            relative_days(now + Duration::days(40) + Duration::hours(1), now),
            "in 40 days"
        );
        assert_eq!(
            relative_days(now + Duration::hours(3) + Duration::minutes(1), now),
            "in 3 h"
        );
        assert_eq!(
            relative_days(now - Duration::days(3) - Duration::hours(1), now),
            "3 days ago"
        );
        assert_eq!(duration_text(Duration::seconds(90_061)), "1 d 1 h");
        assert_eq!(duration_text(Duration::seconds(42)), "42 s");
    }
}
