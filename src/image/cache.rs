//! The base cache, a small store: one immutable folder per base key.
//!
//!   CACHE/base/<key>/        rootfs/ base.img vmlinuz initrd.img meta.json
//!   CACHE/locks/<key>.lock   exclusive while building, shared while reading
//!
//! An entry appears only by renaming a finished temp folder, so a crash or a
//! full disk never leaves a half-built base under a real key.
use super::error::{Result, io_err};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Bumped whenever the way a base is built changes, so old entries are not reused.
/// 2: bootstrapped in the fixed tool environment (tools::command): a base of
/// format 1 may carry its builder's time zone.
const BASE_FORMAT: u32 = 2;

/// Everything the base tree and its packed ext4 depend on. Read back from a
/// base's meta.json to check a base fetched from a shared cache (shared.rs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInputs {
    pub format: u32,
    pub suite: String,
    pub architecture: String,
    pub variant: String,
    pub packages: Vec<String>,
    pub mmdebstrap: String,
    pub sources: Vec<NamedHash>,
    pub dpkg_path_exclude: Vec<String>,
    pub dpkg_path_include: Vec<String>,
    pub scrub: Vec<String>,
    pub early: Vec<EarlyFile>,
    pub source_date_epoch: i64,
    pub image_free_mib: u64,
    pub root_label: String,
    /// A rebuild's exact versions, `name=version` (verify, --from-manifest);
    /// empty, and then absent from the key, for an ordinary build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<String>,
    /// The key of the base a rebuild reproduces: filesystem UUIDs and hash
    /// seeds come from it, so that the rebuilt bytes can equal the original's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedHash {
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EarlyFile {
    pub path: String,
    pub mode: String,
    pub sha256: String,
}

impl KeyInputs {
    pub fn format() -> u32 {
        BASE_FORMAT
    }

    /// The key: sha256 of the inputs' canonical JSON (sorted lists, fixed field order).
    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex(&Sha256::digest(&json))[..32].to_string()
    }

    /// What the base's UUIDs and hash seeds derive from: the reproduced
    /// build's key for a rebuild, else this key.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| self.key())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub use super::sparse::sha256_file;

/// --cache, else $HARDROOT_CACHE (clap fills that in), else XDG, else ~/.cache.
pub fn default_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("hardroot");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/hardroot")
}

pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    pub fn open(dir: &Path) -> Result<Cache> {
        for sub in ["base", "locks"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
        }
        let tag = dir.join("CACHEDIR.TAG");
        if !tag.exists() {
            // Tells backup tools to skip this folder.
            let text = "Signature: 8a477f597d28d172789f06886806bc55\n# hardroot base cache\n";
            std::fs::write(&tag, text).map_err(io_err("writing", &tag))?;
        }
        let cache = Cache {
            dir: dir.to_path_buf(),
        };
        cache.remove_leftovers();
        Ok(cache)
    }

    /// Temp folders of killed runs: half-built bases (in base/) and
    /// half-packed disk layouts (inside an entry).
    fn remove_leftovers(&self) {
        let base = self.base_dir();
        super::leftovers::remove_dead(&base);
        for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                super::leftovers::remove_dead(&entry.path());
            }
        }
    }

    pub fn entry(&self, key: &str) -> PathBuf {
        self.dir.join("base").join(key)
    }

    pub fn base_dir(&self) -> PathBuf {
        self.dir.join("base")
    }

    /// apt's lists of each set of sources, for the freshness check (fresh.rs).
    pub fn apt_dir(&self) -> PathBuf {
        self.dir.join("apt")
    }

    pub fn lock_path(&self, key: &str) -> PathBuf {
        self.dir.join("locks").join(format!("{key}.lock"))
    }

    fn lock_file(&self, key: &str) -> Result<File> {
        let path = self.lock_path(key);
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening", &path))
    }

    /// The exclusive lock if nobody holds the key's lock now, else None.
    pub fn try_lock(&self, key: &str) -> Result<Option<File>> {
        let file = self.lock_file(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err("locking", self.lock_path(key))(e)),
        }
    }

    /// Records a use of the entry (its lock file's mtime): `cache gc` keeps
    /// recently used entries.
    pub fn touch(&self, key: &str) {
        if let Ok(f) = self.lock_file(key) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Blocks until no other run holds the key's lock in a conflicting way.
    pub fn lock(&self, key: &str, exclusive: bool) -> Result<File> {
        let path = self.lock_path(key);
        let file = self.lock_file(key)?;
        let res = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        res.map_err(io_err("locking", &path))?;
        Ok(file)
    }
}
