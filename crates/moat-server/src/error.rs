//! Typed errors of the server library.

use std::path::PathBuf;

/// An error of the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS layer refused (missing or broken certificates ...).
    #[error(transparent)]
    Tls(#[from] moat_tls::TlsError),
    /// The store could not be opened or used.
    #[error("{}: {problem}; {fix}", path.display())]
    Store {
        /// The store path.
        path: PathBuf,
        /// What went wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// A setting is invalid (HBA configuration, flags ...).
    #[error("{0}")]
    Invalid(String),
    /// Binding or accepting on a socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
