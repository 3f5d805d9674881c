//! ext4 images without root mounts or loop devices: `mke2fs -d` packs a tree,
//! `debugfs -w` edits the result. Reproducible because every time stamp, UUID
//! and hash seed is fixed: mke2fs ignores SOURCE_DATE_EPOCH but honours
//! E2FSPROGS_FAKE_TIME, and copies ctime/atime from the source inodes, which a
//! debugfs pass then overwrites (notes/vm.md).
use super::error::{ImageError, Result, io_err};
use super::tools;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Our own mke2fs.conf, so the host's defaults cannot change the image.
/// metadata_csum_seed lets the UUID be set per image without rewriting checksums.
const MKE2FS_CONF: &str = "[defaults]
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
\treserved_ratio = 5.0
[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,metadata_csum_seed,64bit,dir_nlink,extra_isize
\t}
\tdefault = {
\t}
";

pub struct Ext4Spec {
    pub size: u64,
    pub uuid: String,
    pub hash_seed: String,
    pub label: String,
    pub sde: i64,
}

/// used bytes + ext4 overhead (inode tables, journal, 5% reserve) + free space,
/// rounded up to 4 MiB.
pub fn image_size(used_bytes: u64, free_mib: u64) -> u64 {
    let mib = 1 << 20;
    let raw = used_bytes + used_bytes / 8 + 80 * mib + free_mib * mib;
    let with_reserve = raw + raw / 19;
    with_reserve.div_ceil(4 * mib) * 4 * mib
}

/// A UUID (version-4 layout) derived from a string: stable across builds.
pub fn uuid_from(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = super::cache::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub fn make_ext4(
    tree: &Path,
    img: &Path,
    spec: &Ext4Spec,
    paths: &BTreeMap<String, String>,
) -> Result<()> {
    tools::require(tools::MKE2FS)?;
    let conf = img.with_extension("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF).map_err(io_err("writing", &conf))?;
    let mut cmd = tools::command(tools::MKE2FS.0);
    cmd.env("MKE2FS_CONFIG", &conf)
        .env("E2FSPROGS_FAKE_TIME", spec.sde.to_string());
    cmd.args([
        "-q",
        "-F",
        "-t",
        "ext4",
        "-T",
        "default",
        "-L",
        &spec.label,
        "-U",
        &spec.uuid,
    ]);
    cmd.arg("-E")
        .arg(format!("hash_seed={},root_owner=0:0", spec.hash_seed));
    cmd.arg("-d")
        .arg(tree)
        .arg(img)
        .arg(format!("{}k", spec.size / 1024));
    tools::run(&mut cmd)?;
    let _ = std::fs::remove_file(&conf);
    let mut script = root_mode(tree)?;
    for path in std::iter::once("").chain(paths.keys().map(String::as_str)) {
        set_times(&mut script, &format!("/{path}"), spec.sde)?;
    }
    debugfs(img, &script, spec.sde)
}

/// mke2fs -d makes the filesystem's root directory 0755 whatever the tree's
/// top folder is: a partition mounted on /var/tmp lost its sticky bit (CIS
/// 1.1.2.x, Lynis FILE-6363), /var/log/audit its 0750. The root inode takes
/// the tree's mode (owner stays root_owner's 0:0).
fn root_mode(tree: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    // st_mode as it is: the directory type bit and the permissions, which
    // is what debugfs' `mode` field holds.
    let meta = std::fs::metadata(tree).map_err(io_err("reading", tree))?;
    Ok(format!("sif \"/\" mode 0{:o}\n", meta.mode()))
}

/// Appends the commands that set all four time stamps of one inode.
pub fn set_times(script: &mut String, path: &str, sde: i64) -> Result<()> {
    let q = quote(path)?;
    for field in ["mtime", "ctime", "atime", "crtime"] {
        script.push_str(&format!("sif {q} {field} @{sde}\n"));
    }
    Ok(())
}

/// debugfs' parser takes double-quoted words, with "" for a literal quote.
pub fn quote(path: &str) -> Result<String> {
    if path.contains(['\n', '\r']) {
        return Err(super::error::input_err(
            path,
            "path holds a line break",
            "remove that file from the base",
        ));
    }
    Ok(format!("\"{}\"", path.replace('"', "\"\"")))
}

/// Runs a debugfs script read-write. debugfs exits 0 even when commands fail,
/// so anything on stderr other than its banner is an error.
pub fn debugfs(img: &Path, script: &str, sde: i64) -> Result<()> {
    tools::require(tools::DEBUGFS)?;
    // Beside the image, so a killed run's script is cleaned with its image.
    let dir = img.parent().unwrap_or(Path::new("."));
    let file = tempfile::Builder::new()
        .prefix(&super::leftovers::prefix("debugfs"))
        .tempfile_in(dir)
        .map_err(io_err("creating a temp file for", img))?;
    std::fs::write(file.path(), script).map_err(io_err("writing", file.path()))?;
    let out = tools::command(tools::DEBUGFS.0)
        .env("E2FSPROGS_FAKE_TIME", sde.to_string())
        .arg("-w")
        .arg("-f")
        .arg(file.path())
        .arg(img)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io_err("running debugfs on", img))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .collect();
    if out.status.success() && errors.is_empty() {
        return Ok(());
    }
    Err(ImageError::Debugfs {
        image: img.to_path_buf(),
        errors: tools::tail(&errors.join("\n"), 20),
    })
}

/// `e2fsck -fn`: read-only full check, so a bad patch never ships.
pub fn fsck(img: &Path) -> Result<()> {
    tools::require(tools::E2FSCK)?;
    tools::run(tools::command(tools::E2FSCK.0).arg("-fn").arg(img)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_stable_and_well_formed() {
        let a = uuid_from("x");
        assert_eq!(a, uuid_from("x"));
        assert_ne!(a, uuid_from("y"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn size_leaves_the_free_space_asked_for() {
        let used = 500 << 20;
        let size = image_size(used, 1024);
        assert!(size >= used + (1024 << 20));
        assert_eq!(size % (4 << 20), 0);
    }

    #[test]
    fn quoting_doubles_quotes_and_refuses_newlines() {
        assert_eq!(quote("/a b\"c").ok(), Some("\"/a b\"\"c\"".to_string()));
        assert!(quote("/a\nb").is_err());
    }
}
