//! The acceptance report: one self-contained HTML page per tested image.
//!
//! It reads what the pipeline and the VM test left behind (the build's
//! manifest.json and config.json, the image stage's image-manifest.json, the
//! driver's results.json, the acceptance test's exposure.json,
//! load-faults.json, facts/ and lynis/lynis-report.dat) and
//! sets each measured value next to the value the profile asked for.
//! The page has no scripts and fetches nothing: a CSP meta tag forbids every
//! load except inline styles and data: images. See docs/testing.md
//! ("What the report reads") for the file names and shapes.
mod audit;
mod controls;
mod diff;
mod disk;
mod exposure;
mod facts;
mod hardening;
mod identity;
mod inputs;
mod load_faults;
mod page;
pub mod sbom;
mod steps;

pub use inputs::Inputs;
use std::path::{Path, PathBuf};

/// What one report is made from and where it goes.
#[derive(Debug, Clone)]
pub struct Request {
    pub run: PathBuf,
    /// Build and image folders to copy into RUN/build/ first (the first that has a file wins).
    pub images: Vec<PathBuf>,
    /// The run just ended: RUN/build is made anew instead of updated.
    pub fresh: bool,
    pub against: Option<PathBuf>,
    pub out: PathBuf,
}

/// Write the report. Image folders given are first copied into RUN/build/
/// (manifests and the few rendered files compared against), so that
/// `hardroot report RUN` can redo the page after the image folder is gone.
pub fn write(req: &Request) -> Result<PathBuf, String> {
    if !req.run.join("results.json").is_file() {
        return Err(format!(
            "{} has no results.json: give the output folder of a finished `hardroot vm-test` (its --out)",
            req.run.display()
        ));
    }
    if !req.images.is_empty() {
        inputs::snapshot_build(&req.images, &req.run, req.fresh)?;
    }
    let inputs = Inputs::load(&req.run, None, req.against.as_deref())?;
    let html = page::render(&inputs)?;
    write_atomically(&req.out, &html)?;
    Ok(req.out.clone())
}

/// Renders without writing: what the tests inspect.
pub fn render(run: &Path, image: Option<&Path>, against: Option<&Path>) -> Result<String, String> {
    let inputs = Inputs::load(run, image, against)?;
    page::render(&inputs)
}

fn write_atomically(out: &Path, html: &str) -> Result<(), String> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".report.")
        .tempfile_in(&dir)
        .map_err(|e| format!("cannot make a temp file in {}: {e}", dir.display()))?;
    std::fs::write(tmp.path(), html)
        .map_err(|e| format!("cannot write {}: {e}", tmp.path().display()))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    tmp.persist(out)
        .map_err(|e| format!("cannot write {}: {}", out.display(), e.error))?;
    Ok(())
}
