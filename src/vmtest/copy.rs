//! copy_to_vm / copy_from_vm: files and folders travel as tar streams through
//! the backdoor (base64 on the wire), so modes and folder trees survive.
use super::machine::{Runner, shell_quote, succeed};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::path::{Component, Path};

/// One command line stays well under what the guest reads comfortably.
const CHUNK: usize = 256 * 1024;

/// Copy a host file or folder to exactly `guest` (its parent is created).
pub fn to_vm(r: &mut dyn Runner, host: &Path, guest: &str) -> Result<(), String> {
    let (parent, name) = split_guest(guest)?;
    let archive = pack(host, &name)?;
    let encoded = STANDARD.encode(&archive);
    let staging = staging_file();
    succeed(r, &format!("rm -f {staging}"), 60)?;
    for chunk in encoded.as_bytes().chunks(CHUNK) {
        // base64 is plain ASCII without quotes: safe inside single quotes.
        let text = String::from_utf8_lossy(chunk);
        succeed(r, &format!("printf %s '{text}' >> {staging}"), 120)?;
    }
    let dir = shell_quote(&parent);
    succeed(
        r,
        &format!("mkdir -p {dir} && base64 -d {staging} | tar -x -C {dir} && rm -f {staging}"),
        300,
    )?;
    Ok(())
}

/// Copy a guest file or folder to exactly `host`; a file copied onto an
/// existing host folder lands inside it, as with `cp`.
pub fn from_vm(r: &mut dyn Runner, guest: &str, host: &Path) -> Result<(), String> {
    let (parent, name) = split_guest(guest)?;
    let cmd = format!(
        "tar -C {} -cf - {}",
        shell_quote(&parent),
        shell_quote(&name)
    );
    let out = r.execute(&cmd, 300)?;
    if out.code != 0 {
        return Err(super::machine::failure(&r.label(), &cmd, &out, "failed"));
    }
    unpack(&out.stdout, &name, host)
}

/// A fresh name per copy: copies from parallel tests on one host never mix.
fn staging_file() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "\"$HARDROOT_BACKDOOR_WORK/copy.{}.{nanos}.b64\"",
        std::process::id()
    )
}

fn split_guest(guest: &str) -> Result<(String, String), String> {
    let p = Path::new(guest);
    let ok = p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
    match (ok, name, p.parent()) {
        (true, Some(name), Some(parent)) => Ok((parent.to_string_lossy().into_owned(), name)),
        _ => Err(format!(
            "guest path {guest:?} must be absolute, without `..`, and not `/`"
        )),
    }
}

fn pack(host: &Path, name: &str) -> Result<Vec<u8>, String> {
    let meta =
        std::fs::metadata(host).map_err(|e| format!("cannot copy {}: {e}", host.display()))?;
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let r = if meta.is_dir() {
        b.append_dir_all(name, host)
    } else {
        b.append_path_with_name(host, name)
    };
    r.map_err(|e| format!("cannot pack {}: {e}", host.display()))?;
    b.into_inner()
        .map_err(|e| format!("cannot pack {}: {e}", host.display()))
}

/// Unpack an archive whose top entry is `name` so that `name` lands at `dest`.
fn unpack(archive: &[u8], name: &str, dest: &Path) -> Result<(), String> {
    let mut a = tar::Archive::new(archive);
    let entries = a
        .entries()
        .map_err(|e| format!("bad archive from the guest: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("bad archive from the guest: {e}"))?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let rel = path
            .strip_prefix(name)
            .map_err(|_| format!("unexpected entry {} in the guest's archive", path.display()))?;
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!(
                "refusing entry {} from the guest's archive",
                path.display()
            ));
        }
        let target = top_or_below(dest, name, rel, entry.header().entry_type().is_dir());
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        entry
            .unpack(&target)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    }
    Ok(())
}

/// Where an entry lands. `Path::join("")` would add a trailing slash, which
/// a file cannot be unpacked to: the top entry is `dest` itself, or
/// `dest/name` for a file copied onto an existing folder.
fn top_or_below(dest: &Path, name: &str, rel: &Path, is_dir: bool) -> std::path::PathBuf {
    if !rel.as_os_str().is_empty() {
        dest.join(rel)
    } else if !is_dir && dest.is_dir() {
        dest.join(name)
    } else {
        dest.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_checked() {
        assert_eq!(
            split_guest("/etc/x.conf").unwrap(),
            ("/etc".to_string(), "x.conf".to_string())
        );
        assert!(split_guest("etc/x").is_err());
        assert!(split_guest("/etc/../x").is_err());
        assert!(split_guest("/").is_err());
    }

    #[test]
    fn pack_and_unpack_a_folder_under_a_new_name() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("sub")).unwrap();
        std::fs::write(src.path().join("sub/f"), "data").unwrap();
        let archive = pack(src.path(), "copied").unwrap();
        let dst = tempfile::tempdir().unwrap();
        unpack(&archive, "copied", &dst.path().join("here")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.path().join("here/sub/f")).unwrap(),
            "data"
        );
    }

    #[test]
    fn a_file_copied_onto_an_existing_folder_lands_inside_it() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("x.conf"), "data").unwrap();
        let archive = pack(&src.path().join("x.conf"), "x.conf").unwrap();
        let dst = tempfile::tempdir().unwrap();
        unpack(&archive, "x.conf", dst.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.path().join("x.conf")).unwrap(),
            "data"
        );
        // Onto a path that does not exist: exactly that path.
        unpack(&archive, "x.conf", &dst.path().join("renamed")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.path().join("renamed")).unwrap(),
            "data"
        );
    }
}
