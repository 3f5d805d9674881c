//! Emit: the rendered tree → OUT/overlay/, OUT/overlay.tar.gz, OUT/manifest.json,
//! OUT/config.json and one root hash. Same inputs give the same bytes, whatever
//! the build directory, umask, clock, locale or user. Built beside OUT and swapped
//! in at the end, so a failed build leaves the previous OUT as it was.
// Input-derived data is never unwrapped or indexed blindly (issue 8): enforced here,
// not crate-wide, because image/ and vmtest/ are checked by their owners.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
mod manifest;
mod tarball;
mod write;

use crate::render::Rendered;
use std::path::{Path, PathBuf};

pub use manifest::{Manifest, ManifestEntry, root_hash};
pub use write::{check_out, replace_dir, set_mtime};

/// Used when SOURCE_DATE_EPOCH is not set: 2024-01-01T00:00:00Z.
pub const DEFAULT_EPOCH: i64 = 1_704_067_200;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EmitError {
    #[error("cannot write {path}: {source}")]
    #[diagnostic(
        code(hardroot::io),
        help(
            "check that the output folder's parent exists and is writable, and that the disk is not full"
        )
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} exists and is not a hardroot output folder (no manifest.json); refusing to replace it"
    )]
    #[diagnostic(
        code(hardroot::out_not_ours),
        help("choose another -o folder, or remove it yourself")
    )]
    NotOurs { path: PathBuf },
    #[error(
        "{path} is a symbolic link; refusing to replace it (the output would land wherever it points)"
    )]
    #[diagnostic(
        code(hardroot::out_is_symlink),
        help("pass the real folder with -o, or remove the link")
    )]
    OutIsSymlink { path: PathBuf },
    #[error("SOURCE_DATE_EPOCH={value:?} is not a number of seconds")]
    #[diagnostic(
        code(hardroot::epoch),
        help("unset it, or set it to e.g. $(git log -1 --format=%ct)")
    )]
    BadEpoch { value: String },
}

pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EmitError + '_ {
    move |source| EmitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn source_date_epoch() -> Result<i64, EmitError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(DEFAULT_EPOCH),
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|e| *e >= 0)
            .ok_or(EmitError::BadEpoch { value: v }),
    }
}

/// Writes the whole output into `dir` (a fresh staging folder).
pub fn write_output(
    dir: &Path,
    rendered: &Rendered,
    profile: &str,
    config: &serde_json::Value,
    epoch: i64,
) -> Result<Manifest, EmitError> {
    let manifest = Manifest::new(rendered, profile, epoch);
    let overlay = dir.join("overlay");
    write::write_tree(&overlay, rendered, epoch)?;
    let tar_path = dir.join("overlay.tar.gz");
    tarball::write_tar_gz(&tar_path, rendered, epoch).map_err(io(&tar_path))?;
    let json = serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n";
    let mpath = dir.join("manifest.json");
    std::fs::write(&mpath, json).map_err(io(&mpath))?;
    let cpath = dir.join("config.json");
    std::fs::write(
        &cpath,
        serde_json::to_string_pretty(config).unwrap_or_default() + "\n",
    )
    .map_err(io(&cpath))?;
    Ok(manifest)
}
