//! # moat-pki
//!
//! The PKI half of moat: private keys of every supported type, the certificate
//! profiles of a CockroachDB-style cluster (CA, node, client, UI), CA signing,
//! certificate signing requests, and the certs directory with CockroachDB's
//! file names and loading rules.
//!
//! Everything here is synchronous, does no network I/O and never logs a secret.
//! The command-line tool (`moat cert ...`) is a thin layer over [`ops`].

pub mod ca;
pub mod certsdir;
pub mod crl;
pub mod csr;
pub mod error;
pub mod inspect;
pub mod keys;
pub mod layout;
pub mod lifetime;
pub mod ops;
pub mod perms;
pub mod profile;
pub mod username;
pub mod writer;

pub use error::PkiError;

/// Result type of this crate.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;
