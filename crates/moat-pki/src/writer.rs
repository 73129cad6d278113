//! Crash-safe writing of key and certificate files.
//!
//! A [`FileSet`] is written all-or-nothing: every file goes to a temporary file
//! in its target directory (created with its final mode, so a key is never
//! readable by others even for an instant), is fsynced, and only then renamed
//! into place; the directory is fsynced afterwards. Without `overwrite`, an
//! existing target is refused before anything is written, and the final rename
//! is a no-clobber link, so a file that appears meanwhile is not replaced. If
//! any step fails, the files already put in place by this set are removed (or
//! restored, when they replaced older files), so a key is never left without
//! its certificate.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{PkiError, Result};

/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate files.
pub const CERT_MODE: u32 = 0o644;
/// Mode of a certs directory that moat creates.
pub const DIR_MODE: u32 = 0o700;

struct Pending {
    path: PathBuf,
    contents: Vec<u8>,
    mode: u32,
}

/// Files to be written together.
#[derive(Default)]
pub struct FileSet {
    files: Vec<Pending>,
    overwrite: bool,
}

impl FileSet {
    /// An empty set; `overwrite` allows replacing existing files.
    pub fn new(overwrite: bool) -> Self {
        FileSet {
            files: Vec::new(),
            overwrite,
        }
    }

    /// Adds a file with the given mode.
    pub fn add(&mut self, path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        self.files.push(Pending {
            path: path.into(),
            contents: contents.into(),
            mode,
        });
        self
    }

    /// Adds a private key file (0600).
    pub fn add_key(&mut self, path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> &mut Self {
        self.add(path, contents, KEY_MODE)
    }

    /// Adds a certificate file (0644).
    pub fn add_cert(&mut self, path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> &mut Self {
        self.add(path, contents, CERT_MODE)
    }

    /// Paths of the files in the set, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }

    /// Refuses if a target exists and overwriting is off. Called by
    /// [`commit`](Self::commit); public so callers can fail before expensive work.
    pub fn check_targets(&self) -> Result<()> {
        for f in &self.files {
            let dir = parent_dir(&f.path);
            if !dir.is_dir() {
                return Err(PkiError::bad_file(
                    dir,
                    "directory does not exist",
                    format!("create it first (mkdir -m 700 {})", dir.display()),
                ));
            }
            match fs::symlink_metadata(&f.path) {
                Ok(m) if m.is_dir() => {
                    return Err(PkiError::bad_file(
                        &f.path,
                        "is a directory",
                        "remove it or choose another path",
                    ))
                }
                Ok(_) if !self.overwrite => return Err(PkiError::Exists { path: f.path.clone() }),
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes every file, or none.
    pub fn commit(self) -> Result<Vec<PathBuf>> {
        self.check_targets()?;
        // Stage 1: temporary files, fully written and synced.
        let mut staged = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let dir = parent_dir(&f.path);
            let tmp = tempfile::Builder::new()
                .prefix(".moat-tmp-")
                .permissions(fs::Permissions::from_mode(f.mode))
                .tempfile_in(dir)
                .map_err(|e| PkiError::io(dir, strip_io_path(e), "make the directory writable or choose another"))?;
            let write = || -> std::io::Result<()> {
                let mut file = tmp.as_file();
                // The umask may have narrowed the mode; set it exactly.
                file.set_permissions(fs::Permissions::from_mode(f.mode))?;
                file.write_all(&f.contents)?;
                file.sync_all()
            };
            write().map_err(|e| PkiError::io(&f.path, e, "check free space and permissions"))?;
            staged.push(tmp);
        }
        // Stage 2: move into place; undo on failure.
        let mut placed: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        for (f, tmp) in self.files.iter().zip(staged) {
            let backup = if self.overwrite && fs::symlink_metadata(&f.path).is_ok() {
                let b = backup_name(&f.path);
                let _ = fs::remove_file(&b);
                fs::hard_link(&f.path, &b).ok().map(|_| b)
            } else {
                None
            };
            let result = if self.overwrite {
                tmp.persist(&f.path).map(|_| ()).map_err(|e| e.error)
            } else {
                tmp.persist_noclobber(&f.path).map(|_| ()).map_err(|e| e.error)
            };
            if let Err(e) = result {
                if let Some(b) = backup {
                    let _ = fs::remove_file(b);
                }
                rollback(&placed);
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return Err(PkiError::Exists { path: f.path.clone() });
                }
                return Err(PkiError::io(&f.path, e, "check the directory's permissions"));
            }
            placed.push((f.path.clone(), backup));
        }
        for (_, backup) in &placed {
            if let Some(b) = backup {
                let _ = fs::remove_file(b);
            }
        }
        let mut dirs: Vec<&Path> = self.files.iter().map(|f| parent_dir(&f.path)).collect();
        dirs.dedup();
        for d in dirs {
            sync_dir(d);
        }
        Ok(self.paths())
    }
}

/// tempfile decorates errors with the temporary path; keep the plain reason.
fn strip_io_path(e: std::io::Error) -> std::io::Error {
    std::io::Error::from(e.kind())
}

fn rollback(placed: &[(PathBuf, Option<PathBuf>)]) {
    for (path, backup) in placed.iter().rev() {
        match backup {
            Some(b) => {
                let _ = fs::rename(b, path);
            }
            None => {
                let _ = fs::remove_file(path);
            }
        }
    }
}

fn backup_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(".moat-bak-{name}"))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Creates the certs directory (mode 0700) if it does not exist; refuses a
/// path that exists and is not a directory.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(PkiError::bad_file(
            dir,
            "exists but is not a directory",
            "pass a directory to --certs-dir",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| {
                PkiError::io(
                    dir,
                    e,
                    "could not create the certs directory: check the parent's permissions",
                )
            }),
        Err(e) => Err(PkiError::io(dir, e, "check the path and its permissions")),
    }
}

/// Writes a single file atomically (see [`FileSet`]).
pub fn write_file(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> Result<()> {
    let mut set = FileSet::new(overwrite);
    set.add(path, contents.to_vec(), mode);
    set.commit().map(|_| ())
}

/// Opens a file for exclusive creation with a mode (used by tests and tools).
pub fn create_exclusive(path: &Path, mode: u32) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(mode).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_all_with_modes_and_refuses_existing() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("a.key");
        let crt = dir.path().join("a.crt");
        let mut set = FileSet::new(false);
        set.add_key(&key, "k").add_cert(&crt, "c");
        set.commit().unwrap();
        assert_eq!(fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&crt).unwrap().mode() & 0o777, 0o644);

        // A second set with one existing target writes nothing.
        let other = dir.path().join("b.key");
        let mut set = FileSet::new(false);
        set.add_key(&other, "k2").add_cert(&crt, "c2");
        assert!(matches!(set.commit(), Err(PkiError::Exists { .. })));
        assert!(!other.exists());
        assert_eq!(fs::read_to_string(&crt).unwrap(), "c");

        // Overwrite replaces.
        let mut set = FileSet::new(true);
        set.add_cert(&crt, "c3");
        set.commit().unwrap();
        assert_eq!(fs::read_to_string(&crt).unwrap(), "c3");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".moat-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn failure_midway_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("x.key");
        let mut set = FileSet::new(false);
        set.add_key(&key, "k")
            .add_cert(dir.path().join("missing-dir/x.crt"), "c");
        assert!(set.commit().is_err());
        assert!(!key.exists());
    }
}
