//! SCRAM-SHA-256 password verifiers in PostgreSQL's format
//! (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`): passwords
//! are never stored, only this.

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pgwire::api::auth::sasl::scram::ScramSecret;

/// Iterations for new verifiers (PostgreSQL's default).
pub const ITERATIONS: u32 = 4096;

/// A parsed verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Salt.
    pub salt: Vec<u8>,
    /// `SHA-256(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn prep(password: &str) -> String {
    // PostgreSQL applies SASLprep and uses the raw password when that fails.
    stringprep::saslprep(password)
        .map(|p| p.into_owned())
        .unwrap_or_else(|_| password.to_string())
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations.max(1)).expect("non-zero"),
        salt,
        prep(password).as_bytes(),
        &mut out,
    );
    out
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg)
        .as_ref()
        .to_vec()
}

impl Verifier {
    /// Makes a verifier for a password with a fresh random salt.
    pub fn new(password: &str) -> Verifier {
        let mut salt = vec![0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).expect("system randomness");
        Self::with_salt(password, salt, ITERATIONS)
    }

    fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Verifier {
        let sp = salted_password(password, &salt, iterations);
        let client_key = hmac_sha256(&sp, b"Client Key");
        Verifier {
            iterations,
            stored_key: digest::digest(&digest::SHA256, &client_key).as_ref().to_vec(),
            server_key: hmac_sha256(&sp, b"Server Key"),
            salt,
        }
    }

    /// Checks a cleartext password (the `password` method) in constant time.
    pub fn matches(&self, password: &str) -> bool {
        let other = Self::with_salt(password, self.salt.clone(), self.iterations);
        constant_time::verify_slices_are_equal(&other.stored_key, &self.stored_key).is_ok()
            && constant_time::verify_slices_are_equal(&other.server_key, &self.server_key).is_ok()
    }

    /// PostgreSQL's text form.
    pub fn encode(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }

    /// Parses PostgreSQL's text form.
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let v = Verifier {
            iterations: iterations.parse().ok().filter(|i| *i > 0)?,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: STANDARD.decode(stored).ok()?,
            server_key: STANDARD.decode(server).ok()?,
        };
        (v.stored_key.len() == 32 && v.server_key.len() == 32).then_some(v)
    }

    /// The secret for pgwire's SCRAM state machine.
    pub fn to_scram_secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations as usize,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_match() {
        let v = Verifier::new("s3cret");
        let text = v.encode();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        let back = Verifier::parse(&text).unwrap();
        assert_eq!(back, v);
        assert!(back.matches("s3cret"));
        assert!(!back.matches("s3cret "));
        assert!(Verifier::parse("md5abc").is_none());
        assert!(Verifier::parse("SCRAM-SHA-256$0:AA==$AA==:AA==").is_none());
    }
}
