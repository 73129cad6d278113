//! Key-file permission rules (CockroachDB's): at most `0700`, or `0740` when
//! the file is owned by root and its group is the process's group (the
//! Kubernetes-secret case). `MOAT_SKIP_KEY_PERMISSION_CHECK` (or CockroachDB's
//! `COCKROACH_SKIP_KEY_PERMISSION_CHECK`) set to a true value disables the check.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Environment variable that disables the key permission check.
pub const SKIP_ENV: &str = "MOAT_SKIP_KEY_PERMISSION_CHECK";

/// Whether the check is disabled by the environment.
pub fn check_disabled() -> bool {
    [SKIP_ENV, "COCKROACH_SKIP_KEY_PERMISSION_CHECK"].iter().any(|v| {
        std::env::var(v)
            .map(|s| matches!(s.to_ascii_lowercase().as_str(), "1" | "t" | "true" | "yes" | "on"))
            .unwrap_or(false)
    })
}

/// Renders a mode like `ls -l` does (`-rw-r-----`).
pub fn render_mode(mode: u32) -> String {
    let mut s = String::from("-");
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Checks a key file's permissions; returns the problem and its fix when they
/// are too open.
pub fn check_key_permissions(path: &Path, meta: &Metadata) -> Result<(), String> {
    if check_disabled() {
        return Ok(());
    }
    let mode = meta.mode() & 0o777;
    // SAFETY: getgid has no preconditions and cannot fail.
    let gid = unsafe { libc::getgid() };
    let max = if meta.uid() == 0 && meta.gid() == gid {
        0o740
    } else {
        0o700
    };
    if mode & !max != 0 {
        return Err(format!(
            "key file {} has permissions {}, exceeds {}; run chmod 600 {} (or set {SKIP_ENV}=true)",
            path.display(),
            render_mode(mode),
            render_mode(max),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        assert_eq!(render_mode(0o600), "-rw-------");
        assert_eq!(render_mode(0o740), "-rwxr-----");
        assert_eq!(render_mode(0o644), "-rw-r--r--");
    }
}
