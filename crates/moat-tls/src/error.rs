//! Typed errors of the TLS layer.

use std::path::PathBuf;

/// An error from the TLS layer.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certs directory could not be read or a file in it is broken.
    #[error(transparent)]
    Pki(#[from] moat_pki::PkiError),
    /// A certificate this role needs is missing.
    #[error("{}: missing: {what} is required; create it with `moat cert` (or copy it) into the certs directory", path.display())]
    Missing {
        /// The file that should exist.
        path: PathBuf,
        /// What it is for.
        what: String,
    },
    /// A certificate or CRL file is present but unusable.
    #[error("{}: {problem}; fix or regenerate it", path.display())]
    Broken {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A reload was refused; the previous certificates keep serving.
    #[error("certificate reload refused, previous certificates kept: {reason}")]
    ReloadRefused {
        /// Why.
        reason: String,
    },
    /// An invalid setting (principal map, distinguished name ...).
    #[error("{0}")]
    Invalid(String),
    /// rustls refused to build a configuration.
    #[error("building the TLS configuration for {role}: {source}")]
    Config {
        /// The role being configured.
        role: &'static str,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
}
