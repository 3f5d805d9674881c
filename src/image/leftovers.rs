//! Temp files and folders of a killed run. Every temp name the image stage
//! makes (in OUT and in the cache) starts with `.hrtmp-<pid>-`, so a later
//! run can tell a dead run's leftovers (SIGKILL, power loss) from those of a
//! run that is still writing, and remove them.
use std::path::{Path, PathBuf};

const MARK: &str = ".hrtmp-";

/// `.hrtmp-<our pid>-<what>-`: the prefix for one of our temp names.
pub fn prefix(what: &str) -> String {
    format!("{MARK}{}-{what}-", std::process::id())
}

/// The pid in a temp name we made, if `name` is one.
fn owner(name: &str) -> Option<i32> {
    name.strip_prefix(MARK)?.split('-').next()?.parse().ok()
}

/// Removes the dead runs' temp entries directly in `dir`; returns what was
/// removed. Best effort: what cannot be removed now is tried again next run.
/// A folder with anything still mounted below it is left alone (a killed
/// mmdebstrap of an older hardroot could leave /dev, /proc or /sys mounted
/// there, and deleting through such a mount would delete the host's files).
pub fn remove_dead(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner) else {
            continue;
        };
        if crate::build::process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&path)
        } else {
            std::fs::remove_file(&path).is_ok()
        };
        if gone {
            removed.push(path);
        }
    }
    removed
}

fn remove_tree(path: &Path) -> bool {
    if !unmount_below(path) {
        return false;
    }
    std::fs::remove_dir_all(path).is_ok()
}

/// Detaches every mount below `path`, deepest first; true when none is left.
fn unmount_below(path: &Path) -> bool {
    let mut mounts = mounts_below(path);
    if mounts.is_empty() {
        return true;
    }
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for m in &mounts {
        let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: umount2 with a valid C string; failure is checked below.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    mounts_below(path).is_empty()
}

/// Mount points strictly below `path`, from /proc/self/mountinfo.
pub fn mounts_below(path: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mount_points(&text)
        .into_iter()
        .filter(|m| m.starts_with(path) && m != path)
        .collect()
}

/// Field 5 of each mountinfo line, with its octal escapes (\040 …) decoded.
fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|field| PathBuf::from(std::ffi::OsString::from_vec(unescape(field))))
        .collect()
}

fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_our_pid() {
        let p = prefix("rootfs.img");
        assert_eq!(owner(&format!("{p}Ab12")), Some(std::process::id() as i32));
        assert_eq!(owner(".rootfs.img.x"), None);
        assert_eq!(owner(".hrtmp-x-y"), None);
    }

    #[test]
    fn dead_owners_leftovers_go_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22, so this pid cannot exist.
        let dead = dir.path().join(".hrtmp-99999999-rootfs.img-abc");
        let dead_dir = dir.path().join(".hrtmp-99999999-base-x");
        let live = dir.path().join(format!("{}abc", prefix("rootfs.img")));
        let other = dir.path().join("rootfs.img");
        std::fs::write(&dead, "x").unwrap();
        std::fs::create_dir_all(dead_dir.join("rootfs/etc")).unwrap();
        std::fs::write(&live, "x").unwrap();
        std::fs::write(&other, "x").unwrap();
        let removed = remove_dead(dir.path());
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!dead.exists() && !dead_dir.exists());
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let text = "36 35 98:0 /mnt1 /mnt/a\\040b rw - ext3 /dev/root rw\n";
        assert_eq!(mount_points(text), vec![PathBuf::from("/mnt/a b")]);
    }
}
