//! The acceptance report: one self-contained HTML page per tested image.
//!
//! It reads what the pipeline and the VM test left behind (the build's
//! manifest.json and config.json, the image stage's image-manifest.json, the
//! driver's results.json, the acceptance test's exposure.json, facts/ and
//! lynis/lynis-report.dat) and
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
mod page;
pub mod sbom;
mod steps;

pub use inputs::Inputs;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A finished VM test's output folder (results.json, exposure.json, facts/)
    pub run: PathBuf,
    /// The image or build folder the test booted (manifest.json, config.json, image-manifest.json,
    /// overlay/); copied into RUN/build first (repeatable) [default: RUN/build, else RUN itself]
    #[arg(long, value_name = "DIR")]
    pub image: Vec<PathBuf>,
    /// Compare with an older image or run folder: added, removed and changed files and packages
    #[arg(long, value_name = "OTHER_OUT")]
    pub against: Option<PathBuf>,
    /// Where to write the page [default: RUN/report.html]
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

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

pub fn run(args: &ReportArgs) -> miette::Result<()> {
    let req = Request {
        run: args.run.clone(),
        images: args.image.clone(),
        fresh: false,
        against: args.against.clone(),
        out: args
            .out
            .clone()
            .unwrap_or_else(|| args.run.join("report.html")),
    };
    let written = write(&req).map_err(|e| miette::miette!("{e}"))?;
    println!("report written to {}", written.display());
    Ok(())
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

/// `hardroot vm-test --report FILE`: called once the test is over, passed or
/// failed, while the driver's work folder (where it builds images) still
/// exists. The report is a by-product: failing to write it is a warning and
/// never changes the test's outcome.
pub fn after_vm_test(file: Option<&Path>, image: Option<&Path>, work: &Path, out_dir: &Path) {
    let Some(file) = file else { return };
    let mut images: Vec<PathBuf> = image.map(Path::to_path_buf).into_iter().collect();
    images.extend(built_images(work));
    let req = Request {
        run: out_dir.to_path_buf(),
        images,
        fresh: true,
        against: None,
        out: file.to_path_buf(),
    };
    match write(&req) {
        Ok(p) => eprintln!("vm-test: report written to {}", p.display()),
        Err(e) => eprintln!("warning: vm-test report not written: {e}"),
    }
}

/// Folders in the driver's work folder where it built a profile's overlay or
/// image (they hold manifest.json or image-manifest.json), in name order.
fn built_images(work: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(work) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|d| d.join("manifest.json").is_file() || d.join("image-manifest.json").is_file())
        .collect();
    dirs.sort();
    dirs
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
