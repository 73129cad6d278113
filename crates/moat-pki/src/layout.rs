//! The certs directory's file names, exactly as CockroachDB names them, and
//! the classification of a file name into a certificate usage.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Main CA bundle.
pub const CA_CERT: &str = "ca.crt";
/// Optional CA that verifies client certificates.
pub const CLIENT_CA_CERT: &str = "ca-client.crt";
/// Optional CA that clients of the HTTP console use to verify `ui.crt`.
pub const UI_CA_CERT: &str = "ca-ui.crt";
/// Node certificate (server, and client to other nodes).
pub const NODE_CERT: &str = "node.crt";
/// Node key.
pub const NODE_KEY: &str = "node.key";
/// Optional console certificate.
pub const UI_CERT: &str = "ui.crt";
/// Console key.
pub const UI_KEY: &str = "ui.key";
/// The user name of the split node client certificate (`client.node.crt`).
pub const NODE_USER: &str = "node";

/// `client.<user>.crt`.
pub fn client_cert(user: &str) -> String {
    format!("client.{user}.crt")
}

/// `client.<user>.key`.
pub fn client_key(user: &str) -> String {
    format!("client.{user}.key")
}

/// `client.<user>.key.pk8` (DER PKCS#8, for Java clients).
pub fn client_pk8(user: &str) -> String {
    format!("client.{user}.key.pk8")
}

/// The key file that goes with a certificate file: same base name, `.key`.
pub fn key_for(cert: &Path) -> PathBuf {
    cert.with_extension("key")
}

/// What a certificate file is for, from its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "user", rename_all = "kebab-case")]
pub enum CertUsage {
    /// `ca.crt`.
    Ca,
    /// `ca-client.crt`.
    ClientCa,
    /// `ca-ui.crt`.
    UiCa,
    /// `node.crt`.
    Node,
    /// `ui.crt`.
    Ui,
    /// `client.<user>.crt` (the user as written in the file name).
    Client(String),
}

impl CertUsage {
    /// CockroachDB's usage string (`cert list`'s first column).
    pub fn label(&self) -> &'static str {
        match self {
            CertUsage::Ca => "CA",
            CertUsage::ClientCa => "Client CA",
            CertUsage::UiCa => "UI CA",
            CertUsage::Node => "Node",
            CertUsage::Ui => "UI",
            CertUsage::Client(_) => "Client",
        }
    }

    /// Whether this is a CA bundle (no key is loaded for CAs).
    pub fn is_ca(&self) -> bool {
        matches!(self, CertUsage::Ca | CertUsage::ClientCa | CertUsage::UiCa)
    }

    /// The metric suffix CockroachDB uses for this kind
    /// (`security.certificate.expiration.<kind>`), where it has one.
    pub fn metric_kind(&self) -> Option<&'static str> {
        match self {
            CertUsage::Ca => Some("ca"),
            CertUsage::ClientCa => Some("client-ca"),
            CertUsage::UiCa => Some("ui-ca"),
            CertUsage::Node => Some("node"),
            CertUsage::Ui => Some("ui"),
            CertUsage::Client(u) if u == NODE_USER => Some("node-client"),
            CertUsage::Client(_) => None,
        }
    }
}

impl fmt::Display for CertUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertUsage::Client(u) => write!(f, "client certificate for {u:?}"),
            other => f.write_str(other.label()),
        }
    }
}

/// The outcome of classifying a file name found in a certs directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// A certificate moat uses.
    Cert(CertUsage),
    /// Not a `.crt` file: ignored without a word (keys, `.pk8`, READMEs).
    Ignored,
    /// A `.crt` file moat does not use, with the reason (warned about).
    Skipped(String),
}

/// Classifies a file name as CockroachDB's loader does: only `*.crt` files
/// count; the prefix before the first dot decides the usage; singleton names
/// must have exactly two parts.
pub fn classify(file_name: &str) -> Classified {
    if !file_name.ends_with(".crt") {
        return Classified::Ignored;
    }
    let parts: Vec<&str> = file_name.split('.').collect();
    if parts.len() < 2 || parts[0].is_empty() {
        return Classified::Skipped("bad filename: not enough parts found".into());
    }
    let singleton = |usage: CertUsage, expected: &str| {
        if parts.len() == 2 {
            Classified::Cert(usage)
        } else {
            Classified::Skipped(format!("bad filename: certificate filename should match {expected}"))
        }
    };
    match parts[0] {
        "ca" => singleton(CertUsage::Ca, CA_CERT),
        "ca-client" => singleton(CertUsage::ClientCa, CLIENT_CA_CERT),
        "ca-ui" => singleton(CertUsage::UiCa, UI_CA_CERT),
        "node" => singleton(CertUsage::Node, NODE_CERT),
        "ui" => singleton(CertUsage::Ui, UI_CERT),
        "client" => {
            let user = parts[1..parts.len() - 1].join(".");
            if user.is_empty() {
                Classified::Skipped("bad filename: client certificate filename should match client.<user>.crt".into())
            } else {
                Classified::Cert(CertUsage::Client(user))
            }
        }
        "ca-client-tenant" | "client-tenant" | "tenant-signing" => {
            Classified::Skipped("tenant certificates are not used by moat".into())
        }
        other => Classified::Skipped(format!("bad filename: unknown prefix {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cockroach_names() {
        assert_eq!(classify("ca.crt"), Classified::Cert(CertUsage::Ca));
        assert_eq!(classify("ca-client.crt"), Classified::Cert(CertUsage::ClientCa));
        assert_eq!(classify("ca-ui.crt"), Classified::Cert(CertUsage::UiCa));
        assert_eq!(classify("node.crt"), Classified::Cert(CertUsage::Node));
        assert_eq!(classify("ui.crt"), Classified::Cert(CertUsage::Ui));
        assert_eq!(
            classify("client.root.crt"),
            Classified::Cert(CertUsage::Client("root".into()))
        );
        assert_eq!(
            classify("client.a.b.crt"),
            Classified::Cert(CertUsage::Client("a.b".into()))
        );
        assert_eq!(classify("node.key"), Classified::Ignored);
        assert_eq!(classify("client.root.key.pk8"), Classified::Ignored);
        assert!(matches!(classify("ca.old.crt"), Classified::Skipped(_)));
        assert!(matches!(classify("client.crt"), Classified::Skipped(_)));
        assert!(matches!(classify("server.crt"), Classified::Skipped(_)));
        assert!(matches!(classify(".crt"), Classified::Skipped(_)));
    }
}
