//! Rebuilding a recorded image: `hardroot image --from-manifest FILE` builds
//! what an image-manifest.json describes, and `hardroot verify OUT` does so
//! cold in a temporary place (a base bootstrapped anew with the recorded
//! versions, never the local cache) and compares the bytes with OUT's.
use super::base::Package;
use super::cache::sha256_file;
use super::error::{ImageError, Result, input_err, io_err};
use super::manifest::BuildDir;
use super::{ImageOutput, ImageRequest, Pinned, build_image, tools};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `hardroot verify` asks.
#[derive(Debug, Clone)]
pub struct VerifyArgs {
    /// The output folder of `hardroot image`: image-manifest.json, disk.img, the build
    pub out: PathBuf,
    /// The build folder (overlay/, manifest.json, config.json) [default: OUT]
    pub build: Option<PathBuf>,
    /// Bootstrap the base from a dated snapshot archive (URL with the date),
    /// for versions the mirror no longer serves
    pub snapshot: Option<String>,
    /// apt sources for the rebuild [default: those recorded in image-manifest.json]
    pub sources: Vec<PathBuf>,
    /// Where to rebuild (needs room for a base and a disk) [default: /var/tmp]
    pub work: Option<PathBuf>,
    /// Only print errors and the verdict
    pub quiet: bool,
}

/// The parts of image-manifest.json a rebuild reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Recorded {
    pub profile: String,
    pub overlay_root_hash: String,
    pub cache_key: String,
    pub packages: Vec<Package>,
    pub rootfs: RecordedFile,
    pub disk: Option<RecordedDisk>,
    #[serde(default)]
    pub inputs: Option<RecordedInputs>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordedFile {
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordedDisk {
    pub file: String,
    pub sha256: String,
    pub partitions: Vec<RecordedPartition>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordedPartition {
    pub number: usize,
    pub label: String,
    pub mount: String,
    pub start_bytes: u64,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordedInputs {
    pub suite: String,
    #[serde(default)]
    pub apt_sources: Vec<AptSource>,
    #[serde(default)]
    pub snapshot: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AptSource {
    pub name: String,
    pub text: String,
}

impl Recorded {
    pub fn load(path: &Path) -> Result<Recorded> {
        let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
        serde_json::from_str(&text).map_err(|e| {
            input_err(
                path,
                format!("not an image-manifest.json hardroot can rebuild from: {e}"),
                "give the image-manifest.json that `hardroot image` wrote",
            )
        })
    }
}

/// How a rebuild gets its packages and where it writes.
pub struct Rebuild<'a> {
    pub manifest: &'a Path,
    pub build: &'a Path,
    pub out: &'a Path,
    pub cache: &'a Path,
    /// Bootstrap the base even if the cache has the pinned one (verify: always).
    pub cold: bool,
    pub snapshot: Option<&'a str>,
    pub sources: &'a [PathBuf],
    pub quiet: bool,
}

/// Builds exactly what the manifest records: same overlay (checked by its
/// root hash), same package versions, same base identity, same sources.
pub fn rebuild(r: &Rebuild) -> Result<ImageOutput> {
    let rec = Recorded::load(r.manifest)?;
    let build = BuildDir::load(r.build)?;
    if build.manifest.root_hash != rec.overlay_root_hash {
        return Err(input_err(
            r.build.join("manifest.json"),
            format!(
                "the overlay's root hash is {}, the image was built from {}",
                build.manifest.root_hash, rec.overlay_root_hash
            ),
            "give the build folder the image was made from (--build DIR), or rebuild it with `hardroot build` at the same commit",
        ));
    }
    // Recorded sources are written out for mmdebstrap; the folder lives until the build ends.
    let scratch = tempfile::Builder::new()
        .prefix(&super::leftovers::prefix("sources"))
        .tempdir_in(r.out.parent().unwrap_or(Path::new(".")))
        .map_err(io_err("creating a temp folder beside", r.out))?;
    let snapshot = r
        .snapshot
        .map(str::to_string)
        .or_else(|| rec.inputs.as_ref().and_then(|i| i.snapshot.clone()));
    let sources = rebuild_sources(&rec, r, snapshot.as_deref(), scratch.path())?;
    let req = ImageRequest {
        build_dir: r.build.to_path_buf(),
        out: r.out.to_path_buf(),
        cache_dir: r.cache.to_path_buf(),
        rebuild_base: r.cold,
        qcow2: false,
        disk: rec.disk.is_some(),
        sources,
        quiet: r.quiet,
        pinned: Some(Pinned {
            packages: rec.packages.clone(),
            identity: rec.cache_key.clone(),
        }),
        snapshot,
        // A rebuild is cold by design: never a base from elsewhere.
        shared: Default::default(),
    };
    build_image(&req)
}

/// --sources, else a snapshot archive, else the recorded sources, else the host's.
fn rebuild_sources(
    rec: &Recorded,
    r: &Rebuild,
    snapshot: Option<&str>,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    if !r.sources.is_empty() {
        return Ok(r.sources.to_vec());
    }
    let suite = rec.inputs.as_ref().map_or("bookworm", |i| i.suite.as_str());
    if let Some(url) = snapshot {
        return Ok(vec![snapshot_sources(url, suite, dir)?]);
    }
    let mut out = Vec::new();
    for s in rec.inputs.iter().flat_map(|i| &i.apt_sources) {
        let name = Path::new(&s.name).file_name().unwrap_or_default();
        let path = dir.join(name);
        std::fs::write(&path, &s.text).map_err(io_err("writing", &path))?;
        out.push(path);
    }
    Ok(out)
}

/// One apt source line for a dated snapshot archive: its Release files are
/// old by design, so their Valid-Until is not checked.
pub fn snapshot_sources(url: &str, suite: &str, dir: &Path) -> Result<PathBuf> {
    let plain =
        url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file:/");
    if !plain
        || url
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"')
    {
        return Err(input_err(
            url,
            "not a snapshot archive URL",
            "give the archive's URL with its date, e.g. https://HOST/archive/debian/20240101T000000Z",
        ));
    }
    let text = format!(
        "deb [check-valid-until=no] {url} {suite} main\ndeb [check-valid-until=no] {url} {suite}-updates main\n"
    );
    let path = dir.join("snapshot.list");
    std::fs::write(&path, text).map_err(io_err("writing", &path))?;
    Ok(path)
}

/// What `hardroot verify` found.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The compared file (disk.img, else rootfs.img) and its sha256 when both sides match.
    pub file: String,
    pub sha256: String,
    pub seconds: f64,
}

/// Rebuilds OUT's image cold in a temp folder and compares it byte for byte.
/// A difference is ImageError::NotReproduced naming partitions and files.
pub fn verify(args: &VerifyArgs) -> Result<Verdict> {
    let started = std::time::Instant::now();
    let manifest = args.out.join("image-manifest.json");
    let rec = Recorded::load(&manifest)?;
    let build = args.build.clone().unwrap_or_else(|| args.out.clone());
    if !build.join("manifest.json").is_file() {
        return Err(input_err(
            &build,
            "no manifest.json: this is not the build the image was made from",
            "an image made with --from-build keeps its build elsewhere: give that folder with --build DIR",
        ));
    }
    let work_root = args
        .work
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    // A killed earlier verify's temp folder (ours are named for their pid).
    super::leftovers::remove_dead(&work_root);
    let work = tempfile::Builder::new()
        .prefix(&super::leftovers::prefix("verify"))
        .tempdir_in(&work_root)
        .map_err(io_err("creating a temp folder in", &work_root))?;
    let rebuilt_dir = work.path().join("out");
    std::fs::create_dir_all(&rebuilt_dir).map_err(io_err("creating", &rebuilt_dir))?;
    rebuild(&Rebuild {
        manifest: &manifest,
        build: &build,
        out: &rebuilt_dir,
        cache: &work.path().join("cache"),
        cold: true,
        snapshot: args.snapshot.as_deref(),
        sources: &args.sources,
        quiet: args.quiet,
    })?;
    let result = compare(&rec, &args.out, &rebuilt_dir, work.path());
    write_status(&args.out, &rec, &result);
    let file = result?;
    Ok(Verdict {
        sha256: sha256_file(&args.out.join(&file))?,
        file,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// OUT/verify.json: the last verify's verdict, for the report.
fn write_status(out: &Path, rec: &Recorded, result: &Result<String>) {
    let doc = match result {
        Ok(file) => serde_json::json!({
            "format": 1, "reproduced": true, "file": file,
            "sha256": sha256_file(&out.join(file)).unwrap_or_default(),
            "hardroot_version": env!("CARGO_PKG_VERSION"),
        }),
        Err(e) => serde_json::json!({
            "format": 1, "reproduced": false,
            "file": rec.disk.as_ref().map_or(&rec.rootfs.file, |d| &d.file),
            "error": e.to_string(),
            "hardroot_version": env!("CARGO_PKG_VERSION"),
        }),
    };
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    let _ = std::fs::write(out.join("verify.json"), text);
}

/// Ok(file compared) when every image file is byte-identical.
fn compare(rec: &Recorded, published: &Path, rebuilt: &Path, work: &Path) -> Result<String> {
    let mut report = Vec::new();
    if let Some(disk) = &rec.disk {
        compare_disk(disk, published, rebuilt, work, &mut report)?;
    }
    let rootfs = &rec.rootfs.file;
    let (a, b) = (published.join(rootfs), rebuilt.join(rootfs));
    if a.is_file() && sha256_file(&a)? != sha256_file(&b)? {
        report.push(format!("{rootfs} differs"));
        let dir = work.join("rootfs");
        report.extend(file_differences(&a, &b, &dir, "/")?);
    }
    if report.is_empty() {
        Ok(rec.disk.as_ref().map_or(rootfs, |d| &d.file).clone())
    } else {
        Err(ImageError::NotReproduced {
            report: report.join("\n"),
        })
    }
}

fn compare_disk(
    disk: &RecordedDisk,
    published: &Path,
    rebuilt: &Path,
    work: &Path,
    report: &mut Vec<String>,
) -> Result<()> {
    let (a, b) = (published.join(&disk.file), rebuilt.join(&disk.file));
    let (sa, sb) = (sha256_file(&a)?, sha256_file(&b)?);
    if sa == sb {
        return Ok(());
    }
    report.push(format!(
        "{}: published sha256 {sa}, rebuilt {sb} (recorded {})",
        disk.file, disk.sha256
    ));
    for p in &disk.partitions {
        let dir = work.join(format!("part-{}", p.number));
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let (pa, pb) = (dir.join("published.img"), dir.join("rebuilt.img"));
        cut(&a, p, &pa)?;
        cut(&b, p, &pb)?;
        if sha256_file(&pa)? == sha256_file(&pb)? {
            continue;
        }
        report.push(format!(
            "partition {} \"{}\" ({}) differs",
            p.number, p.label, p.mount
        ));
        if p.mount == "/boot/efi" {
            report.push("  (the ESP is FAT: its files are not compared one by one)".into());
            continue;
        }
        for line in file_differences(&pa, &pb, &dir, &p.mount)? {
            report.push(format!("  {line}"));
        }
    }
    Ok(())
}

/// One partition's bytes, copied out sparsely (partitions start and end on MiB).
fn cut(disk: &Path, p: &RecordedPartition, dest: &Path) -> Result<()> {
    const MIB: u64 = 1 << 20;
    tools::run(
        tools::command("dd")
            .arg(format!("if={}", disk.display()))
            .arg(format!("of={}", dest.display()))
            .args(["bs=1M", "conv=sparse", "status=none"])
            .arg(format!("skip={}", p.start_bytes / MIB))
            .arg(format!("count={}", p.size_bytes.div_ceil(MIB))),
    )
    .map(|_| ())
}

/// The files of two ext4 images that differ: dumped with debugfs (no mount),
/// then compared by size and sha256; a line per path, like a short diffoscope.
/// Paths are printed as the machine sees them: under the partition's mount point.
fn file_differences(a: &Path, b: &Path, dir: &Path, mount: &str) -> Result<Vec<String>> {
    let (ta, tb) = (
        dump(a, &dir.join("published"))?,
        dump(b, &dir.join("rebuilt"))?,
    );
    let mut lines = Vec::new();
    let paths: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
    let under = mount.trim_end_matches('/');
    for rel in paths {
        let path = format!("{under}/{rel}");
        match (ta.get(rel), tb.get(rel)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => lines.push(format!(
                "{path}: published {} bytes sha256 {}, rebuilt {} bytes sha256 {}",
                x.0, x.1, y.0, y.1
            )),
            (Some(x), None) => lines.push(format!(
                "{path}: only published ({} bytes sha256 {})",
                x.0, x.1
            )),
            (None, Some(y)) => lines.push(format!(
                "{path}: only rebuilt ({} bytes sha256 {})",
                y.0, y.1
            )),
            (None, None) => {}
        }
    }
    if lines.is_empty() {
        lines.push(
            "no file differs: the difference is in metadata (inodes, times, owners or free space)"
                .into(),
        );
    }
    Ok(lines)
}

/// path → (size, sha256) of every regular file and link of an ext4 image.
fn dump(img: &Path, dest: &Path) -> Result<BTreeMap<String, (u64, String)>> {
    std::fs::create_dir_all(dest).map_err(io_err("creating", dest))?;
    tools::run(
        tools::command(tools::DEBUGFS.0)
            .arg("-R")
            .arg(format!("rdump / {}", dest.display()))
            .arg(img),
    )?;
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dest).min_depth(1).sort_by_file_name() {
        let entry =
            entry.map_err(|e| input_err(dest, e.to_string(), "check free space in --work"))?;
        let rel = entry
            .path()
            .strip_prefix(dest)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let t = entry.file_type();
        if t.is_file() {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            files.insert(rel, (size, sha256_file(entry.path())?));
        } else if t.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            files.insert(rel, (0, format!("link to {}", target.display())));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_one_source_for_the_suite_and_its_updates() {
        let tmp = tempfile::tempdir().unwrap();
        let url = "https://snapshot.example/archive/debian/20240101T000000Z";
        let path = snapshot_sources(url, "bookworm", tmp.path()).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            text,
            format!(
                "deb [check-valid-until=no] {url} bookworm main\ndeb [check-valid-until=no] {url} bookworm-updates main\n"
            )
        );
        for bad in [
            "ftp://x/y",
            "https://x/y z",
            "https://x/'y",
            "20240101T000000Z",
        ] {
            assert!(
                snapshot_sources(bad, "bookworm", tmp.path()).is_err(),
                "{bad}"
            );
        }
    }
}
