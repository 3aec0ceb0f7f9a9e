//! The data directory of a running server: one server per directory (an exclusive lock the
//! kernel releases if the process dies), private file modes, the admin token and `server.json`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Shortest admin token accepted (a generated one has 64 hex digits).
const MIN_TOKEN_LEN: usize = 32;
/// Fewest bits of entropy an admin token may have, as estimated from its characters (32
/// random hex characters estimate at about 110).
const MIN_TOKEN_BITS: f64 = 96.0;

/// The token's entropy if its characters were drawn independently with the frequencies they
/// have in it: length × Shannon entropy. A random hex token of 64 characters has about 250 bits;
/// `aaaa…` has none, `abab…` one per character.
fn estimated_bits(t: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in t.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = t.chars().count() as f64;
    let per_char: f64 = counts.values().map(|&k| -(k as f64 / n) * (k as f64 / n).log2()).sum();
    // A pattern repeated (`0123456789abcdef` four times) has many characters but few new ones:
    // only the share of distinct 4-character pieces counts.
    let chars: Vec<char> = t.chars().collect();
    let grams: Vec<&[char]> = chars.windows(4).collect();
    let distinct: std::collections::HashSet<&[char]> = grams.iter().copied().collect();
    let novelty = if grams.is_empty() { 0.0 } else { distinct.len() as f64 / grams.len() as f64 };
    per_char * n * novelty
}

/// A data directory held by this process for as long as the value lives.
pub struct DataDir {
    path: PathBuf,
    // Held for its lock; dropping it (or dying) releases the directory.
    _lock: File,
}

/// Make files this process creates private (0600/0700), whoever creates them (SQLite does).
pub fn private_umask() {
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Whether a server holds the lock of `dir` now (without taking it).
pub fn server_running(dir: &Path) -> bool {
    let Ok(f) = OpenOptions::new().read(true).write(true).open(dir.join("lock")) else { return false };
    match f.try_lock() {
        Ok(()) => {
            let _ = f.unlock();
            false
        }
        Err(_) => true,
    }
}

impl DataDir {
    /// Create (mode 0700) and lock `path`, and make every file in it private. Fails at once, having
    /// changed nothing another server uses, when a server already holds the directory.
    pub fn open(path: &Path) -> anyhow::Result<DataDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create data dir {}", path.display()))?;
        let lock_path = path.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        if let Err(e) = lock.try_lock() {
            let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
            let holder = holder.trim();
            match e {
                std::fs::TryLockError::WouldBlock => bail!(
                    "data dir {} is in use by another weir server{}: stop it first, or give this one its own --data-dir",
                    path.display(),
                    if holder.is_empty() { String::new() } else { format!(" (pid {holder})") }
                ),
                std::fs::TryLockError::Error(e) => {
                    return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
                }
            }
        }
        // The pid is a courtesy for the message above; a full disk must not stop the start.
        let _ = lock.set_len(0).and_then(|()| (&lock).write_all(format!("{}\n", std::process::id()).as_bytes()));
        let dir = DataDir { path: path.to_path_buf(), _lock: lock };
        dir.make_private()?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tighten the directory to 0700 and its files to 0600 (installs made before modes were set).
    fn make_private(&self) -> anyhow::Result<()> {
        let mut tightened = Vec::new();
        let meta = std::fs::metadata(&self.path)?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make {} private (chmod 700)", self.path.display()))?;
            tightened.push(self.path.display().to_string());
        }
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot make {} private (chmod 600)", entry.path().display()))?;
                tightened.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        if !tightened.is_empty() {
            tracing::warn!(
                files = %tightened.join(", "),
                "data dir files were readable by other users; made them private. Secrets in them may \
                 have been read: consider new credentials and a new admin token"
            );
        }
        Ok(())
    }

    /// The admin API token, created (0600) on first start. An existing token must be long enough.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let path = self.path.join("admin-token");
        match std::fs::read_to_string(&path) {
            Ok(t) => {
                let t = t.trim().to_string();
                if t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
                    bail!(
                        "{} holds a token of {} characters; at least {MIN_TOKEN_LEN} printable characters are required. \
                         Delete the file to have a new one generated",
                        path.display(),
                        t.len()
                    );
                }
                if estimated_bits(&t) < MIN_TOKEN_BITS {
                    bail!(
                        "{} holds a token that is easy to guess (it repeats a few characters). Delete the file to \
                         have a random one generated",
                        path.display()
                    );
                }
                Ok(t)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = hex::encode(rand::random::<[u8; 32]>());
                self.write_private("admin-token", format!("{token}\n").as_bytes())?;
                Ok(token)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// A private key kept in the data dir under `name`: 32 random bytes made at first use, the
    /// same ever after (so that what it signed stays valid across restarts).
    pub fn secret(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.path.join(name);
        match std::fs::read_to_string(&path) {
            Ok(t) => hex::decode(t.trim())
                .with_context(|| format!("{} is not hex; delete it to make a new one", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = rand::random::<[u8; 32]>();
                self.write_private(name, format!("{}\n", hex::encode(key)).as_bytes())?;
                Ok(key.to_vec())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Write `server.json` whole or not at all (a reader never sees a torn file).
    pub fn write_server_info(&self, info: &serde_json::Value) -> anyhow::Result<()> {
        self.write_private("server.json", format!("{info}\n").as_bytes())
    }

    /// Remove `server.json` (at shutdown; only the lock holder ever writes it).
    pub fn remove_server_info(&self) {
        let _ = std::fs::remove_file(self.path.join("server.json"));
    }

    /// Write `name` atomically with mode 0600: a temporary file, fsync, rename.
    fn write_private(&self, name: &str, data: &[u8]) -> anyhow::Result<()> {
        let path = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        let result = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_a_locked_dir_fails_and_names_the_holder() {
        let tmp = tempfile::tempdir().expect("tmp");
        let first = DataDir::open(tmp.path()).expect("first");
        assert!(server_running(tmp.path()));
        let err = DataDir::open(tmp.path()).err().expect("second must fail").to_string();
        assert!(
            err.contains("in use by another weir server") && err.contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        assert!(!server_running(tmp.path()));
        DataDir::open(tmp.path()).expect("free again");
    }

    #[test]
    fn guessable_tokens_are_estimated_below_the_minimum_and_random_ones_above() {
        for weak in ["a".repeat(64), "ab".repeat(32), "0123456789abcdef".repeat(4), "password".repeat(8)] {
            assert!(estimated_bits(&weak) < MIN_TOKEN_BITS, "{weak}: {}", estimated_bits(&weak));
        }
        for _ in 0..200 {
            let strong = hex::encode(rand::random::<[u8; 16]>());
            assert!(estimated_bits(&strong) >= MIN_TOKEN_BITS, "{strong}: {}", estimated_bits(&strong));
        }
    }

    #[test]
    fn existing_files_are_made_private() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(tmp.path().join("weir.db"), b"x").expect("write");
        std::fs::set_permissions(tmp.path().join("weir.db"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let _d = DataDir::open(tmp.path()).expect("open");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(tmp.path()), 0o700);
        assert_eq!(mode(&tmp.path().join("weir.db")), 0o600);
        assert_eq!(mode(&tmp.path().join("lock")), 0o600);
    }

    #[test]
    fn short_admin_tokens_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = DataDir::open(tmp.path()).expect("open");
        let t = d.admin_token().expect("generated");
        assert_eq!(t.len(), 64);
        assert_eq!(d.admin_token().expect("read back"), t);
        std::fs::write(tmp.path().join("admin-token"), "secret\n").expect("write");
        assert!(d.admin_token().unwrap_err().to_string().contains("at least 32"));
    }
}
