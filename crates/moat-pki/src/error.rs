//! Typed errors. Every message names the file (when there is one), the problem,
//! and what to do about it, in one line.

use std::path::{Path, PathBuf};

/// An error from the PKI library.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file exists and the operation would replace it.
    #[error("{}: already exists; rerun with --overwrite to replace it", path.display())]
    Exists {
        /// The file that exists.
        path: PathBuf,
    },
    /// A file is unreadable, unparsable or unsuitable.
    #[error("{}: {problem}; {fix}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// An I/O failure on a named file.
    #[error("{}: {source}; {fix}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error (shown in the message, so not chained).
        source: std::io::Error,
        /// What to do.
        fix: String,
    },
    /// An argument is invalid (user name, host, lifetime, key size ...).
    #[error("{problem}; {fix}")]
    Invalid {
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// A certificate signing request is refused by the CA's policy.
    #[error("{}: CSR refused: {reason}", path.display())]
    CsrRefused {
        /// The CSR file.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// The crypto backend failed (should not happen with valid input).
    #[error("crypto failure while {while_doing}: {detail}")]
    Crypto {
        /// What was being done.
        while_doing: &'static str,
        /// The backend's message.
        detail: String,
    },
}

impl PkiError {
    /// A problem with a file, with the fix to suggest.
    pub fn bad_file(path: impl AsRef<Path>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        PkiError::BadFile {
            path: path.as_ref().to_path_buf(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// An I/O error on a file, with the fix to suggest.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error, fix: impl Into<String>) -> Self {
        PkiError::Io {
            path: path.as_ref().to_path_buf(),
            source,
            fix: fix.into(),
        }
    }

    /// An invalid argument, with the fix to suggest.
    pub fn invalid(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        PkiError::Invalid {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// A crypto backend failure.
    pub fn crypto(while_doing: &'static str, detail: impl std::fmt::Display) -> Self {
        PkiError::Crypto {
            while_doing,
            detail: detail.to_string(),
        }
    }
}
