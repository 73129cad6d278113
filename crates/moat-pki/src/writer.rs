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

    /// Writes every file, or none, even across a crash: see [`recover`].
    pub fn commit(self) -> Result<Vec<PathBuf>> {
        self.check_targets()?;
        // Stage 1: temporary files, fully written and synced.
        let mut staged = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let dir = parent_dir(&f.path);
            let tmp = tempfile::Builder::new()
                .prefix(TMP_PREFIX)
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
        // Backups of files being replaced (hard links: the old bytes stay).
        let mut entries = Vec::with_capacity(self.files.len());
        for (f, tmp) in self.files.iter().zip(&staged) {
            let backup = if self.overwrite && fs::symlink_metadata(&f.path).is_ok() {
                let b = backup_name(&f.path);
                let _ = fs::remove_file(&b);
                fs::hard_link(&f.path, &b).ok().map(|_| b)
            } else {
                None
            };
            entries.push(JournalEntry {
                target: absolute(&f.path),
                temp: absolute(tmp.path()),
                backup: backup.as_deref().map(absolute),
            });
        }
        // The journal: until it is deleted, a crash is rolled back by `recover`.
        let journal = if self.files.len() > 1 {
            Some(Journal::write(&entries)?)
        } else {
            None
        };
        // Stage 2: move into place; undo on failure.
        let mut placed: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        for ((f, tmp), entry) in self.files.iter().zip(staged).zip(&entries) {
            let result = if self.overwrite {
                tmp.persist(&f.path).map(|_| ()).map_err(|e| e.error)
            } else {
                tmp.persist_noclobber(&f.path).map(|_| ()).map_err(|e| e.error)
            };
            if let Err(e) = result {
                if let Some(b) = &entry.backup {
                    let _ = fs::remove_file(b);
                }
                rollback(&placed);
                if let Some(j) = journal {
                    j.finish();
                }
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return Err(PkiError::Exists { path: f.path.clone() });
                }
                return Err(PkiError::io(&f.path, e, "check the directory's permissions"));
            }
            placed.push((f.path.clone(), entry.backup.clone()));
        }
        let mut dirs: Vec<&Path> = self.files.iter().map(|f| parent_dir(&f.path)).collect();
        dirs.dedup();
        for d in &dirs {
            sync_dir(d);
        }
        // Commit point: the journal goes, then the backups.
        if let Some(j) = journal {
            j.finish();
        }
        for (_, backup) in &placed {
            if let Some(b) = backup {
                let _ = fs::remove_file(b);
            }
        }
        Ok(self.paths())
    }
}

/// Prefix of staged temporary files (ignored by the loader).
pub const TMP_PREFIX: &str = ".moat-tmp-";
/// Prefix of journal files.
pub const JOURNAL_PREFIX: &str = ".moat-journal-";

struct JournalEntry {
    target: PathBuf,
    temp: PathBuf,
    backup: Option<PathBuf>,
}

/// A commit in progress: a file listing what is being replaced, locked
/// (`flock`) by the committing process, so that [`recover`] can tell a
/// crashed commit (unlocked) from a running one.
struct Journal {
    path: PathBuf,
    file: File,
}

fn absolute(p: &Path) -> PathBuf {
    let dir = parent_dir(p);
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    match p.file_name() {
        Some(n) => dir.join(n),
        None => p.to_path_buf(),
    }
}

fn flock(file: &File, op: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid open descriptor has no memory effects.
    unsafe { libc::flock(file.as_raw_fd(), op) == 0 }
}

impl Journal {
    fn write(entries: &[JournalEntry]) -> Result<Journal> {
        let last = &entries.last().expect("a journal has entries").target;
        let dir = parent_dir(last).to_path_buf();
        let mut text = String::new();
        for e in entries {
            let b = e.backup.as_ref().map(|b| b.display().to_string()).unwrap_or_default();
            text.push_str(&format!("{}\t{}\t{}\n", e.target.display(), e.temp.display(), b));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(JOURNAL_PREFIX)
            .tempfile_in(&dir)
            .map_err(|e| PkiError::io(&dir, strip_io_path(e), "make the directory writable"))?;
        let fail = |e: std::io::Error| PkiError::io(&dir, e, "check free space and permissions");
        tmp.write_all(text.as_bytes()).map_err(fail)?;
        tmp.as_file().sync_all().map_err(fail)?;
        let (file, path) = tmp.keep().map_err(|e| fail(e.error))?;
        flock(&file, libc::LOCK_EX);
        sync_dir(&dir);
        Ok(Journal { path, file })
    }

    fn finish(self) {
        let _ = fs::remove_file(&self.path);
        if let Some(d) = self.path.parent() {
            sync_dir(d);
        }
        flock(&self.file, libc::LOCK_UN);
    }
}

/// Rolls back commits that a crash (or `kill -9`) interrupted in `dir`: for
/// every journal no live process holds, restores replaced files from their
/// backups, removes files that were new, and deletes the staged temporary
/// files, so a key never stays without its certificate and a new key never
/// stays beside an old certificate. Called by every `moat cert` operation
/// and by the certs-directory loader; returns the files it restored or removed.
pub fn recover(dir: &Path) -> Vec<PathBuf> {
    let mut touched = Vec::new();
    let Ok(read) = fs::read_dir(dir) else { return touched };
    for entry in read.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(JOURNAL_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = OpenOptions::new().read(true).open(&path) else {
            continue;
        };
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            continue; // a commit is running
        }
        let text = fs::read_to_string(&path).unwrap_or_default();
        let entries: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split('\t').collect())
            .filter(|v: &Vec<&str>| v.len() == 3)
            .collect();
        for e in entries.iter().rev() {
            let (target, temp, backup) = (Path::new(e[0]), Path::new(e[1]), e[2]);
            if !backup.is_empty() && Path::new(backup).exists() {
                if fs::rename(backup, target).is_ok() {
                    touched.push(target.to_path_buf());
                }
                // rename() between two links of one file does nothing: the
                // target already holds the old bytes, drop the extra link.
                let _ = fs::remove_file(backup);
            } else if backup.is_empty() && !temp.exists() && target.exists() {
                // New file already moved into place: take it back out.
                if fs::remove_file(target).is_ok() {
                    touched.push(target.to_path_buf());
                }
            }
            let _ = fs::remove_file(temp);
        }
        let _ = fs::remove_file(&path);
        for e in &entries {
            sync_dir(parent_dir(Path::new(e[0])));
        }
        flock(&file, libc::LOCK_UN);
    }
    touched
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
/// path that exists and is not a directory. Rolls back commits a crash left
/// unfinished there (see [`recover`]).
pub fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            recover(dir);
            Ok(())
        }
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
    fn a_crash_between_renames_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let crt = dir.path().join("node.crt");
        let key = dir.path().join("node.key");
        fs::write(&crt, "old cert").unwrap();
        fs::write(&key, "old key").unwrap();
        // What a commit leaves when killed after its first rename: the new
        // certificate in place, the new key still staged, backups and journal.
        let tmp_key = dir.path().join(".moat-tmp-key");
        fs::write(&tmp_key, "new key").unwrap();
        let bak_crt = dir.path().join(".moat-bak-node.crt");
        let bak_key = dir.path().join(".moat-bak-node.key");
        fs::hard_link(&crt, &bak_crt).unwrap();
        fs::hard_link(&key, &bak_key).unwrap();
        // The rename replaced the directory entry; the backup keeps the old inode.
        let staged_crt = dir.path().join(".moat-tmp-crt");
        fs::write(&staged_crt, "new cert").unwrap();
        fs::rename(&staged_crt, &crt).unwrap();
        let new_file = dir.path().join("client.x.crt");
        fs::write(&new_file, "new client").unwrap();
        let d = dir.path().canonicalize().unwrap();
        let journal = format!(
            "{}\t{}\t{}\n{}\t{}\t{}\n{}\t{}\t\n",
            d.join("node.crt").display(),
            d.join(".moat-tmp-crt").display(),
            d.join(".moat-bak-node.crt").display(),
            d.join("node.key").display(),
            d.join(".moat-tmp-key").display(),
            d.join(".moat-bak-node.key").display(),
            d.join("client.x.crt").display(),
            d.join(".moat-tmp-gone").display(),
        );
        fs::write(dir.path().join(".moat-journal-1"), journal).unwrap();
        let touched = recover(dir.path());
        assert_eq!(touched.len(), 3, "{touched:?}");
        assert_eq!(fs::read_to_string(&crt).unwrap(), "old cert");
        assert_eq!(fs::read_to_string(&key).unwrap(), "old key");
        assert!(!new_file.exists());
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[test]
    fn a_running_commit_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.crt");
        fs::write(&target, "placed by a running commit").unwrap();
        let jpath = dir.path().join(".moat-journal-live");
        fs::write(
            &jpath,
            format!("{}\t{}\t\n", target.display(), dir.path().join(".moat-tmp-x").display()),
        )
        .unwrap();
        let holder = File::open(&jpath).unwrap();
        assert!(flock(&holder, libc::LOCK_EX));
        assert!(recover(dir.path()).is_empty());
        assert!(target.exists() && jpath.exists());
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
