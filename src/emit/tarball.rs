//! overlay.tar.gz with fixed headers: sorted, fixed mtime, names and numeric ids
//! from the manifest, gzip header without time or file name.
use crate::emit::manifest::numeric_id;
use crate::render::{Entry, Kind, Rendered};
use flate2::{Compression, GzBuilder};
use std::io::Write;
use std::path::Path;
use tar::{EntryType, Header};

pub fn write_tar_gz(path: &Path, rendered: &Rendered, epoch: i64) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let gz = GzBuilder::new().mtime(0).write(file, Compression::new(9));
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for e in rendered.entries.values() {
        append(&mut tar, e, epoch)?;
    }
    let gz = tar.into_inner()?;
    // No fsync: like cargo, we rely on the atomic swap of the whole folder, not on durability.
    gz.finish()?.flush()
}

fn append<W: Write>(tar: &mut tar::Builder<W>, e: &Entry, epoch: i64) -> std::io::Result<()> {
    let mut h = Header::new_gnu();
    h.set_mode(e.mode);
    h.set_uid(u64::from(numeric_id(&e.owner).unwrap_or(0)));
    h.set_gid(u64::from(numeric_id(&e.group).unwrap_or(0)));
    h.set_username(&e.owner)?;
    h.set_groupname(&e.group)?;
    h.set_mtime(u64::try_from(epoch).unwrap_or(0));
    match &e.kind {
        Kind::File(bytes) => {
            h.set_entry_type(EntryType::Regular);
            h.set_size(bytes.len() as u64);
            tar.append_data(&mut h, &e.path, bytes.as_slice())
        }
        Kind::Dir => {
            h.set_entry_type(EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, format!("{}/", e.path), std::io::empty())
        }
        Kind::Symlink(target) => {
            h.set_entry_type(EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, &e.path, target)
        }
    }
}
