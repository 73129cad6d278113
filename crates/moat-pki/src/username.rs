//! SQL user names as CockroachDB normalises and validates them for certificates.

use crate::{PkiError, Result};
use unicode_normalization::UnicodeNormalization;

/// Longest user name accepted for a client certificate.
pub const MAX_USERNAME_LEN: usize = 63;

/// Normalises a user name: Unicode lower case, then NFC.
pub fn normalize(name: &str) -> String {
    name.to_lowercase().nfc().collect()
}

/// Normalises and validates a user name for a client certificate: 1 to 63
/// characters, starting with a lower-case letter, a digit or `_`, followed by
/// lower-case letters, digits, `_`, `.` or `-`.
pub fn normalize_and_validate(name: &str) -> Result<String> {
    let norm = normalize(name);
    let shown: String = name.escape_debug().collect();
    let fix = "use 1-63 characters: letters, digits, '_', '.', '-', starting with a letter, digit or '_'";
    let count = norm.chars().count();
    if count == 0 {
        return Err(PkiError::invalid("user name is empty", fix));
    }
    if count > MAX_USERNAME_LEN {
        return Err(PkiError::invalid(
            format!("user name \"{shown}\" is {count} characters long, more than {MAX_USERNAME_LEN}"),
            fix,
        ));
    }
    let mut chars = norm.chars();
    let first = chars.next().expect("non-empty");
    let first_ok = first.is_lowercase() || first.is_ascii_digit() || first == '_';
    let rest_ok = chars.all(|c| c.is_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok {
        return Err(PkiError::invalid(
            format!("\"{shown}\" is not a valid SQL user name"),
            fix,
        ));
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(normalize_and_validate("Alice").unwrap(), "alice");
        assert_eq!(normalize_and_validate("root").unwrap(), "root");
        assert_eq!(normalize_and_validate("_svc.reader-1").unwrap(), "_svc.reader-1");
        assert_eq!(normalize_and_validate("ÉLODIE").unwrap(), "élodie");
    }

    #[test]
    fn refuses() {
        for bad in ["", "-x", ".x", "a b", "a\nb", "a/b", "bob\u{7}", &"x".repeat(64)] {
            assert!(normalize_and_validate(bad).is_err(), "{bad:?}");
        }
    }
}
