//! `hardroot build`: evaluate → render → emit, into a staging folder beside OUT.
// Input-derived data is never unwrapped or indexed blindly (issue 8): enforced here,
// not crate-wide, because image/ and vmtest/ are checked by their owners.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
use crate::diag::{Located, report};
use crate::emit::{self, EmitError, Manifest};
use crate::eval::{Config, evaluate_path};
use crate::render::{Rendered, render};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub profile: PathBuf,
    pub out: PathBuf,
    pub module_dirs: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct BuildOutput {
    pub root_hash: String,
    pub manifest: Manifest,
    pub config: serde_json::Value,
    pub warnings: Vec<Located>,
}

/// Evaluate and render without writing anything (`hardroot check`).
pub fn check(profile: &Path, module_dirs: &[PathBuf]) -> miette::Result<(Config, Rendered)> {
    let config = evaluate_path(profile, module_dirs).map_err(report)?;
    let rendered = render(&config).map_err(report)?;
    Ok((config, rendered))
}

pub fn build(opts: &BuildOptions) -> miette::Result<BuildOutput> {
    let epoch = emit::source_date_epoch()?;
    emit::check_out(&opts.out)?; // fail before the work, not after it
    let (config, rendered) = check(&opts.profile, &opts.module_dirs)?;
    let json = config.json();
    let staging = staging_dir(&opts.out)?;
    let manifest = emit::write_output(
        staging.path(),
        &rendered,
        &config.profile.name,
        &json,
        epoch,
    )?;
    let staged = staging.keep();
    if let Err(e) = emit::replace_dir(&staged, &opts.out) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e.into());
    }
    Ok(BuildOutput {
        root_hash: manifest.root_hash.clone(),
        manifest,
        config: json,
        warnings: config.warnings,
    })
}

/// A fresh folder on the same file system as OUT, so the final rename is atomic.
pub fn staging_dir(out: &Path) -> Result<tempfile::TempDir, EmitError> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(emit::io(&parent))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let prefix = format!(".{name}.building-");
    remove_stale_staging(&parent, &prefix);
    // The pid in the name lets a later build tell a dead build's leftovers
    // (SIGKILL, power loss) from a build that is still running.
    tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .tempdir_in(&parent)
        .map_err(emit::io(&parent))
}

/// Removes `PREFIX<pid>-*` folders whose process is gone. Best effort: a folder
/// that cannot be removed now is tried again by the next build.
fn remove_stale_staging(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && !process_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// True unless the kernel says no such process exists (EPERM means it does).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return true; // never signal a process group by accident
    }
    // SAFETY: signal 0 only checks for existence; nothing is delivered.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
