//! Writing the overlay folder and swapping the finished output into place.
use super::{EmitError, io};
use crate::render::{Kind, Rendered};
use std::ffi::CString;
use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::Path;

/// Writes every entry with its exact mode (umask does not apply) and mtime = epoch.
/// `create_new` means nothing is ever written through an existing file or link.
pub fn write_tree(root: &Path, rendered: &Rendered, epoch: i64) -> Result<(), EmitError> {
    fs::create_dir(root).map_err(io(root))?;
    for e in rendered.entries.values() {
        let path = root.join(&e.path);
        match &e.kind {
            Kind::Dir => fs::create_dir(&path).map_err(io(&path))?,
            Kind::File(bytes) => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io(&path))?;
                f.write_all(bytes).map_err(io(&path))?;
                f.set_permissions(Permissions::from_mode(e.mode))
                    .map_err(io(&path))?;
            }
            Kind::Symlink(target) => symlink(target, &path).map_err(io(&path))?,
        }
    }
    // Folder modes and times last, children first: a read-only folder must not stop its own filling.
    for e in rendered.entries.values().rev() {
        let path = root.join(&e.path);
        if e.kind == Kind::Dir {
            fs::set_permissions(&path, Permissions::from_mode(e.mode)).map_err(io(&path))?;
        }
        set_mtime(&path, epoch).map_err(io(&path))?;
    }
    fs::set_permissions(root, Permissions::from_mode(0o755)).map_err(io(root))?;
    set_mtime(root, epoch).map_err(io(root))
}

/// Sets atime and mtime without following a symlink (the image stage clamps its trees with it too).
pub fn set_mtime(path: &Path, epoch: i64) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let t = libc::timespec {
        tv_sec: epoch as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: `c` is a valid NUL-terminated path and `times` points to two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Puts `staging` where `out` is, atomically: a plain rename when `out` is new,
/// an exchange (renameat2 RENAME_EXCHANGE) when it exists, then the old one is removed.
pub fn replace_dir(staging: &Path, out: &Path) -> Result<(), EmitError> {
    if !check_out(out)? {
        return fs::rename(staging, out).map_err(io(out));
    }
    exchange(staging, out).map_err(io(out))?;
    fs::remove_dir_all(staging).map_err(io(staging))
}

/// Whether OUT exists (Ok(true)) and may be replaced; an error when it must not be
/// touched. Called before a build starts and again right before the swap.
pub fn check_out(out: &Path) -> Result<bool, EmitError> {
    let path = out.to_path_buf();
    match fs::symlink_metadata(out) {
        Err(_) => Ok(false),
        Ok(meta) if meta.file_type().is_symlink() => Err(EmitError::OutIsSymlink { path }),
        Ok(meta) if !meta.is_dir() || !is_ours(out) => Err(EmitError::NotOurs { path }),
        Ok(_) => Ok(true),
    }
}

/// An output folder we may replace: empty, or holding a manifest we wrote.
pub fn is_ours(out: &Path) -> bool {
    out.join("manifest.json").is_file()
        || fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
}

fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let ca = CString::new(a.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let cb = CString::new(b.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: both are valid NUL-terminated paths; renameat2 only reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
