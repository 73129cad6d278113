//! `moat cert list`: CockroachDB's table, with problems flagged.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Result;
use clap::ValueEnum;
use moat_pki::certsdir::{CertEntry, CertsDir, CrlEntry};
use moat_pki::layout::CertUsage;
use serde_json::json;
use time::OffsetDateTime;

use crate::table;

/// Output formats of `cert list`.
#[derive(ValueEnum, Clone, Copy)]
pub enum Format {
    /// Aligned table.
    Table,
    /// Tab-separated values.
    Tsv,
    /// JSON, with every certificate's details.
    Json,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn notes(e: &CertEntry, now: OffsetDateTime) -> String {
    let mut parts = Vec::new();
    if let Some(leaf) = e.leaf() {
        match &e.usage {
            CertUsage::Ca | CertUsage::ClientCa | CertUsage::UiCa => {
                parts.push(format!("num certs: {}", e.certs.len()))
            }
            CertUsage::Node | CertUsage::Ui => {
                let mut names = leaf.dns_names.clone();
                names.extend(leaf.ip_addresses.iter().map(|i| i.to_string()));
                parts.push(format!("addresses: {}", names.join(",")));
            }
            CertUsage::Client(_) => parts.push(format!("user: {}", leaf.common_name.as_deref().unwrap_or("<unknown>"))),
        }
        if let Some(x) = e.expiry_note(now) {
            parts.push(x);
        }
    } else {
        parts.push("<unknown>".into());
    }
    parts.join("; ")
}

fn ymd(t: OffsetDateTime) -> String {
    let d = t.date();
    format!("{:04}/{:02}/{:02}", d.year(), u8::from(d.month()), d.day())
}

fn expires(e: &CertEntry) -> String {
    e.leaf()
        .map(|l| ymd(l.not_after))
        .unwrap_or_else(|| "0001/01/01".into())
}

fn crl_notes(c: &CrlEntry, now: OffsetDateTime) -> String {
    let mut parts = Vec::new();
    if c.issuer.is_some() {
        let cn = c
            .issuer_common_name()
            .or_else(|| c.issuer.clone())
            .unwrap_or_else(|| "<unknown>".into());
        parts.push(format!("issuer: {cn}"));
        parts.push(format!("revoked: {}", c.revoked));
        if c.is_stale(now) {
            parts.push("stale".into());
        }
    } else {
        parts.push("<unknown>".into());
    }
    parts.join("; ")
}

/// Prints the certs directory.
pub fn run(dir: &Path, format: Option<Format>) -> Result<()> {
    let loaded = CertsDir::load(dir)?;
    let now = OffsetDateTime::now_utc();
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Tsv
    });
    if let Format::Json = format {
        let certs: Vec<_> = loaded
            .entries
            .iter()
            .map(|e| {
                json!({
                    "usage": e.usage.label(),
                    "user": match &e.usage { CertUsage::Client(u) => Some(u.clone()), _ => None },
                    "cert_file": file_name(&e.cert_path),
                    "key_file": e.key_path.as_deref().map(file_name),
                    "expires": e.leaf().map(|l| l.not_after.to_string()),
                    "days_left": e.leaf().map(|l| l.days_left(now)),
                    "warning": e.expiry_note(now),
                    "notes": notes(e, now),
                    "error": e.error,
                    "certificates": e.certs,
                })
            })
            .collect();
        let skipped: Vec<_> = loaded
            .skipped
            .iter()
            .map(|s| json!({"file": file_name(&s.path), "reason": s.reason}))
            .collect();
        let crls: Vec<_> = loaded
            .crls
            .iter()
            .map(|c| {
                json!({
                    "usage": "CRL",
                    "crl_file": file_name(&c.path),
                    "issuer": c.issuer,
                    "issuer_common_name": c.issuer_common_name(),
                    "crl_number": c.crl_number(),
                    "crls": c.crls.len(),
                    "this_update": c.this_update.map(|t| t.to_string()),
                    "next_update": c.next_update.map(|t| t.to_string()),
                    "stale": c.is_stale(now),
                    "revoked": c.revoked,
                    "revoked_serials": c.revoked_serials(),
                    "notes": crl_notes(c, now),
                    "error": c.error,
                })
            })
            .collect();
        let doc = json!({
            "certs_dir": dir.display().to_string(),
            "certificates": certs,
            "crls": crls,
            "skipped": skipped,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("Certificate directory: {}", dir.display());
    let mut rows: Vec<Vec<String>> = loaded
        .entries
        .iter()
        .map(|e| {
            vec![
                e.usage.label().to_string(),
                file_name(&e.cert_path),
                e.key_path.as_deref().map(file_name).unwrap_or_default(),
                expires(e),
                notes(e, now),
                e.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    rows.extend(loaded.crls.iter().map(|c| {
        vec![
            "CRL".to_string(),
            file_name(&c.path),
            String::new(),
            c.next_update.map(ymd).unwrap_or_default(),
            crl_notes(c, now),
            c.error.clone().unwrap_or_default(),
        ]
    }));
    print!(
        "{}",
        table::render(
            &["Usage", "Certificate File", "Key File", "Expires", "Notes", "Error"],
            &rows,
            matches!(format, Format::Table)
        )
    );
    for s in &loaded.skipped {
        eprintln!("skipped {}: {}", file_name(&s.path), s.reason);
    }
    Ok(())
}
