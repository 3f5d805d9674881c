//! Golden-image hygiene: what must never ship in an image that many machines
//! boot from (host keys, machine ids, private keys, passwords, caches, logs,
//! shell history). Checked on the cached base after scrubbing and on every
//! overlay; the image is their union.
use super::error::{Result, io_err};
use regex::bytes::Regex;
use std::path::Path;
use std::sync::OnceLock;
use walkdir::WalkDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A whole root filesystem: /etc/machine-id must exist (empty).
    Root,
    /// An overlay: only what it contains is checked.
    Overlay,
}

const HISTORY_FILES: &[&str] = &[
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".python_history",
    ".lesshst",
    ".viminfo",
    ".psql_history",
    ".mysql_history",
    ".wget-hsts",
];

/// Returns "path: reason" lines; empty means clean.
pub fn check(root: &Path, scope: Scope) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    check_machine_ids(root, scope, &mut bad)?;
    if scope == Scope::Root {
        check_host_copies(root, &mut bad);
    }
    check_shadow(root, "etc/shadow", &mut bad)?;
    check_shadow(root, "etc/gshadow", &mut bad)?;
    for entry in WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            io_err("walking", path)(e.into())
        })?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let rel = rel.to_string_lossy();
        if entry.file_type().is_file() {
            check_file(
                entry.path(),
                &rel,
                entry.metadata().map(|m| m.len()).unwrap_or(0),
                &mut bad,
            )?;
        }
    }
    Ok(bad)
}

fn check_machine_ids(root: &Path, scope: Scope, bad: &mut Vec<String>) -> Result<()> {
    let id = root.join("etc/machine-id");
    match std::fs::symlink_metadata(&id) {
        Ok(m) if m.is_file() && m.len() > 0 => {
            bad.push("etc/machine-id: not empty (systemd fills it on first boot)".into())
        }
        Ok(m) if !m.is_file() => bad.push("etc/machine-id: not a regular file".into()),
        Ok(_) => {}
        Err(_) if scope == Scope::Root => {
            bad.push("etc/machine-id: missing (must exist, empty)".into())
        }
        Err(_) => {}
    }
    let dbus = root.join("var/lib/dbus/machine-id");
    if std::fs::symlink_metadata(&dbus).is_ok_and(|m| !m.file_type().is_symlink()) {
        bad.push("var/lib/dbus/machine-id: must be absent or a symlink to /etc/machine-id".into());
    }
    Ok(())
}

/// mmdebstrap copies these from the build host: they would make the image
/// depend on where it was built (and leak the host's resolver).
fn check_host_copies(root: &Path, bad: &mut Vec<String>) {
    for rel in ["etc/hostname", "etc/resolv.conf"] {
        let ours = std::fs::read(root.join(rel));
        let host = std::fs::read(Path::new("/").join(rel));
        if let (Ok(a), Ok(b)) = (ours, host)
            && a == b
        {
            bad.push(format!("{rel}: copied from the build host"));
        }
    }
}

/// Only locked fields (`!`, `*`, `!*`) are allowed: no hash, and no empty password.
fn check_shadow(root: &Path, rel: &str, bad: &mut Vec<String>) -> Result<()> {
    let path = root.join(rel);
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split(':');
        let name = fields.next().unwrap_or("");
        let pw = fields.next().unwrap_or("");
        if pw.is_empty() || !pw.chars().all(|c| c == '!' || c == '*') {
            bad.push(format!(
                "{rel}: {name} has a password (only ! or * allowed)"
            ));
        }
    }
    Ok(())
}

fn check_file(path: &Path, rel: &str, size: u64, bad: &mut Vec<String>) -> Result<()> {
    if let Some(reason) = path_rule(rel, size) {
        bad.push(format!("{rel}: {reason}"));
        return Ok(());
    }
    if has_private_key(path)? {
        bad.push(format!("{rel}: contains a PEM private key"));
    }
    Ok(())
}

fn path_rule(rel: &str, size: u64) -> Option<&'static str> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if rel.starts_with("etc/ssh/ssh_host_") {
        return Some("SSH host key (generate on first boot)");
    }
    if HISTORY_FILES.contains(&name) {
        return Some("shell history");
    }
    if rel.starts_with("var/log/") && size > 0 {
        return Some("log file");
    }
    if rel.starts_with("var/lib/apt/lists/") && name != "lock" {
        return Some("apt list");
    }
    if rel.starts_with("var/cache/apt/") && (name.ends_with(".bin") || name.ends_with(".deb")) {
        return Some("apt cache");
    }
    None
}

/// A PEM block with a body, not just the marker string that ssh-keygen or
/// libcrypto carry as a constant.
fn pem_key() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=:, \r\n-]{32,}?-----END [A-Z0-9 ]*PRIVATE KEY-----")
            .expect("constant regex")
    })
}

/// ELF files are skipped: keys compiled into a library (gnutls' self-test
/// vectors) are public constants shipped identically to every Debian machine,
/// not secrets of this image.
fn has_private_key(path: &Path) -> Result<bool> {
    let data = std::fs::read(path).map_err(io_err("reading", path))?;
    Ok(!data.starts_with(b"\x7fELF") && pem_key().is_match(&data))
}
