//! # moat-tls
//!
//! The TLS layer every listener and every outgoing connection of a moat node
//! uses: one crypto provider, role-based rustls configurations built from the
//! certs directory, principal extraction and checks, live reload, revocation
//! (CRLs and OCSP) and certificate expiry metrics.
//!
//! A connection flows: accept TCP → [`accept::handshake`] with the current
//! [`store::Snapshot`]'s config for the listener (per connection, so reloads
//! apply to new handshakes at once) → post-handshake checks (principal for
//! RPC, OCSP) → the protocol.

pub mod accept;
pub mod digest_cache;
pub mod error;
pub mod expiry;
pub mod material;
pub mod ocsp;
pub mod principal;
pub mod provider;
pub mod roles;
pub mod store;
pub mod verify_cache;

pub use error::TlsError;
