//! Tree operations on a root filesystem folder. Symlinks inside the tree are
//! never followed: an absolute link would point into the host.
use super::error::{Result, io_err};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

fn walk_err(root: &Path) -> impl Fn(walkdir::Error) -> super::error::ImageError + '_ {
    move |e| {
        let path = e.path().unwrap_or(root).to_path_buf();
        io_err("walking", path)(e.into())
    }
}

/// Sets atime = mtime = min(mtime, sde) on every inode (children before their
/// folder, so folder mtimes stay put). ctime cannot be set from here; the
/// packer fixes it inside the image.
pub fn clamp_times(root: &Path, sde: i64) -> Result<()> {
    for entry in WalkDir::new(root).contents_first(true) {
        let entry = entry.map_err(walk_err(root))?;
        let meta = entry
            .metadata()
            .map_err(|e| io_err("reading", entry.path())(e.into()))?;
        let mtime = meta.mtime().min(sde);
        set_times(entry.path(), mtime)?;
    }
    Ok(())
}

fn set_times(path: &Path, secs: i64) -> Result<()> {
    crate::emit::set_mtime(path, secs).map_err(io_err("setting times of", path))
}

pub struct Survey {
    /// relative path → "d", "f", "o" or "l:<target>"
    pub paths: BTreeMap<String, String>,
    pub used_bytes: u64,
}

pub fn survey(root: &Path) -> Result<Survey> {
    let mut paths = BTreeMap::new();
    let mut used_bytes = 0;
    for entry in WalkDir::new(root).min_depth(1) {
        let entry = entry.map_err(walk_err(root))?;
        let meta = entry
            .metadata()
            .map_err(|e| io_err("reading", entry.path())(e.into()))?;
        used_bytes += meta.blocks() * 512;
        let rel = relative(root, entry.path());
        paths.insert(rel, kind_of(entry.path(), &meta)?);
    }
    Ok(Survey { paths, used_bytes })
}

fn kind_of(path: &Path, meta: &std::fs::Metadata) -> Result<String> {
    let ft = meta.file_type();
    Ok(if ft.is_dir() {
        "d".into()
    } else if ft.is_symlink() {
        let target = std::fs::read_link(path).map_err(io_err("reading link", path))?;
        format!("l:{}", target.display())
    } else if ft.is_file() {
        "f".into()
    } else {
        "o".into()
    })
}

pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Shell-like glob (`*`, `?` within one path component) relative to root.
pub fn glob(root: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let mut current = vec![root.to_path_buf()];
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for dir in &current {
            expand(dir, part, &mut next)?;
        }
        current = next;
    }
    current.retain(|p| p != root);
    current.sort();
    Ok(current)
}

fn expand(dir: &Path, part: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    // Only descend into real folders, never through a symlink.
    if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    if !part.contains(['*', '?']) {
        let p = dir.join(part);
        if std::fs::symlink_metadata(&p).is_ok() {
            out.push(p);
        }
        return Ok(());
    }
    for e in std::fs::read_dir(dir).map_err(io_err("reading", dir))? {
        let e = e.map_err(io_err("reading", dir))?;
        if wildcard(part.as_bytes(), e.file_name().as_bytes()) {
            out.push(e.path());
        }
    }
    Ok(())
}

fn wildcard(pat: &[u8], name: &[u8]) -> bool {
    match (pat.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard(&pat[1..], name) || (!name.is_empty() && wildcard(pat, &name[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard(&pat[1..], &name[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&pat[1..], &name[1..]),
        _ => false,
    }
}

pub fn remove_any(path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).map_err(io_err("reading", path))?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path).map_err(io_err("removing", path))
    } else {
        std::fs::remove_file(path).map_err(io_err("removing", path))
    }
}

/// Removes every non-folder under dir, keeping the folders (and their owners,
/// which services expect, e.g. /var/log/postgresql).
pub fn remove_files_under(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in WalkDir::new(dir).min_depth(1) {
        let entry = entry.map_err(walk_err(dir))?;
        if !entry.file_type().is_dir() {
            std::fs::remove_file(entry.path()).map_err(io_err("removing", entry.path()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcard_matches_like_a_shell() {
        assert!(wildcard(b"ssh_host_*", b"ssh_host_ed25519_key"));
        assert!(wildcard(b"*.bin", b"pkgcache.bin"));
        assert!(wildcard(b"a?c", b"abc"));
        assert!(!wildcard(b"a?c", b"ac"));
        assert!(!wildcard(b"*.bin", b"pkgcache.bin.old"));
        assert!(wildcard(b"*", b""));
    }
}
