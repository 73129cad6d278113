//! # moat-server
//!
//! The moat node: the PostgreSQL wire protocol on TLS only, CockroachDB's
//! authentication rules (HBA, certificates, SCRAM passwords), and the
//! embedded SQLite store.

pub mod auth;
pub mod cluster;
mod conn;
pub mod db;
pub mod determinism;
pub mod error;
mod frame_guard;
pub mod hba;
pub mod http;
pub mod node;
pub mod scram;
pub mod sql;
pub mod users;

pub use error::ServerError;
