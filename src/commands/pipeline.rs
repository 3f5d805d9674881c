//! The verbs that drive the image, registry, VM and report layers (image,
//! verify, cache, push, pull, vm-test, report, run): each turns its arguments
//! into its layer's request, calls the layer, and prints what it returns.
use super::args::{
    CacheAction, CacheArgs, ImageArgs, PullArgs, PushArgs, ReportArgs, RunArgs, VerifyArgs,
    VmTestArgs,
};
use crate::image::fleet::{Outcome, Status};
use crate::image::gc::{Entry, entries, epoch_secs, remove, select};
use crate::image::{ImageError, ImageOutput, cache::Cache, progress};
use crate::vmtest::{Failure, TestFailed};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub fn image(args: &ImageArgs) -> miette::Result<()> {
    let started = std::time::Instant::now();
    let out = crate::image::build_profile(&args.request()?)?;
    if args.json {
        let v = summary_json(&out, started.elapsed());
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_summary(&out, started.elapsed());
    }
    Ok(())
}

/// `hardroot image P1 P2 ... -o OUT`: every profile into OUT/<profile>/, the
/// summary table (or JSON) on stdout, each failure's message on stderr. The
/// outcomes go back to cli.rs, which makes the exit code of them.
pub fn image_fleet(args: &ImageArgs) -> miette::Result<Vec<Outcome>> {
    let started = std::time::Instant::now();
    let outcomes = crate::image::build_fleet(&args.request()?)?;
    for o in &outcomes {
        if let Status::Failed(e) = &o.status {
            eprintln!("{}: {e:?}", o.name);
        }
    }
    if args.json {
        let v = fleet_json(&outcomes, started.elapsed());
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_table(&outcomes, started.elapsed());
    }
    Ok(outcomes)
}

/// What a table row and the JSON say of an outcome.
fn row(o: &Outcome) -> (&'static str, String, String) {
    match &o.status {
        Status::Built(out) => (
            base_cache(out),
            out.disk_sha256
                .clone()
                .unwrap_or_else(|| out.rootfs_sha256.clone()),
            "built".to_string(),
        ),
        Status::Skipped(why) => ("-", "-".into(), format!("skipped: {why}")),
        Status::Failed(_) => ("-", "-".into(), "FAILED (message above)".into()),
        Status::Pending => ("-", "-".into(), "not built".into()),
    }
}

/// One line per profile: profile, base key, cache, sha256 of disk.img (or
/// rootfs.img when the profile has no disk), seconds.
fn print_table(outcomes: &[Outcome], took: std::time::Duration) {
    let width = outcomes
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:width$}  {:32}  {:6}  {:64}  {:>8}  result",
        "profile", "base key", "cache", "sha256 (disk.img, else rootfs.img)", "seconds"
    );
    for o in outcomes {
        let (cache, sha, result) = row(o);
        println!(
            "{:width$}  {:32}  {:6}  {:64}  {:>8.1}  {result}",
            o.name,
            o.base_key.as_deref().unwrap_or("-"),
            cache,
            sha,
            o.seconds
        );
    }
    let failed = outcomes.iter().filter(|o| o.failed()).count();
    let keys: BTreeSet<_> = outcomes
        .iter()
        .filter_map(|o| o.base_key.as_ref())
        .collect();
    let bases = Bases::of(outcomes);
    println!(
        "{} profiles, {} base keys, {} bootstrapped, {} pulled, {} MiB of bases pushed, {failed} failed, {:.1} s",
        outcomes.len(),
        keys.len(),
        bases.bootstrapped,
        bases.pulled,
        bases.pushed_bytes >> 20,
        took.as_secs_f64()
    );
}

/// Where a built image's base came from: the local cache (`hit`), the shared
/// cache (`pulled`), a bootstrap (`miss`), or a bootstrap because the cached
/// one was stale (`refreshed`).
fn base_cache(out: &ImageOutput) -> &'static str {
    if !out.base_refreshed.is_empty() {
        "refreshed"
    } else if out.base_from_cache {
        "hit"
    } else if out.base_pulled.is_some() {
        "pulled"
    } else {
        "miss"
    }
}

/// The fleet's bases: bootstrapped, pulled from the shared cache, bytes sent to it.
#[derive(serde::Serialize)]
struct Bases {
    bootstrapped: usize,
    pulled: usize,
    pushed_bytes: u64,
}

impl Bases {
    fn of(outcomes: &[Outcome]) -> Bases {
        let built = || {
            outcomes.iter().filter_map(|o| match &o.status {
                Status::Built(out) => Some(out),
                _ => None,
            })
        };
        Bases {
            bootstrapped: built()
                .filter(|o| matches!(base_cache(o), "miss" | "refreshed"))
                .count(),
            pulled: built().filter(|o| o.base_pulled.is_some()).count(),
            pushed_bytes: built()
                .filter_map(|o| o.base_pushed.as_ref())
                .map(|t| t.bytes)
                .sum(),
        }
    }
}

/// `hardroot image P1 P2 ... --json` (docs/json.md, format 1).
fn fleet_json(outcomes: &[Outcome], took: std::time::Duration) -> serde_json::Value {
    let profiles: Vec<_> = outcomes
        .iter()
        .map(|o| {
            let (cache, _, _) = row(o);
            let (status, image, reason) = match &o.status {
                Status::Built(out) => (
                    "built",
                    Some(summary_json(
                        out,
                        std::time::Duration::from_secs_f64(o.seconds),
                    )),
                    None,
                ),
                Status::Skipped(why) => ("skipped", None, Some(why.clone())),
                Status::Failed(e) => ("failed", None, Some(format!("{e}"))),
                Status::Pending => ("failed", None, Some("not built".to_string())),
            };
            serde_json::json!({
                "name": o.name,
                "profile": o.profile,
                "out": o.out,
                "base_key": o.base_key,
                "cache": (cache != "-").then_some(cache),
                "status": status,
                "reason": reason,
                "image": image,
                "seconds": progress::round_ms(o.seconds),
            })
        })
        .collect();
    serde_json::json!({
        "format": 1,
        "profiles": profiles,
        "bases": Bases::of(outcomes),
        "failed": outcomes.iter().filter(|o| o.failed()).count(),
        "seconds": progress::round_ms(took.as_secs_f64()),
    })
}

fn print_summary(out: &ImageOutput, took: std::time::Duration) {
    let base = match (&out.base_pulled, out.base_from_cache) {
        (_, true) => "cached".to_string(),
        (Some(t), _) => format!("pulled from {}", t.reference),
        (None, false) => "built".to_string(),
    };
    println!("rootfs.img sha256 {}", out.rootfs_sha256);
    println!(
        "base {} ({base}), used {} MiB",
        out.cache_key,
        out.used_bytes >> 20
    );
    if !out.base_refreshed.is_empty() {
        println!(
            "base refreshed: {}",
            crate::image::fresh::describe(&out.base_refreshed)
        );
    }
    if let Some(t) = &out.base_pushed {
        println!(
            "base pushed to {}@{} ({} MiB sent)",
            t.reference,
            t.digest,
            t.bytes >> 20
        );
    }
    println!(
        "image written to {} in {:.1} s",
        out.rootfs.display(),
        took.as_secs_f64()
    );
}

/// `hardroot image --json`: the shape is documented in docs/json.md (format 1).
fn summary_json(out: &ImageOutput, took: std::time::Duration) -> serde_json::Value {
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).ok();
    serde_json::json!({
        "format": 1,
        "profile": out.profile,
        "overlay_root_hash": out.overlay_root_hash,
        "rootfs": {
            "path": out.rootfs,
            "sha256": out.rootfs_sha256,
            "size_bytes": out.size_bytes,
            "used_bytes": out.used_bytes,
        },
        "qcow2": out.qcow2.as_ref().map(|p| serde_json::json!({ "path": p, "size_bytes": size(p) })),
        "disk": out.disk.as_ref().map(|p| serde_json::json!({
            "path": p,
            "sha256": out.disk_sha256,
            "size_bytes": size(p),
            "qcow2": out.disk_qcow2,
        })),
        "kernel": { "path": out.kernel, "version": out.kernel_version },
        "initrd": { "path": out.initrd },
        "image_manifest": out.image_manifest,
        "base": {
            "cache_key": out.cache_key,
            "cache": base_cache(out),
            "pulled": out.base_pulled,
            "pushed": out.base_pushed,
            "refreshed": out.base_refreshed,
        },
        "packages": out.packages,
        "sbom": { "path": out.sbom },
        "steps": out.steps,
        "seconds": progress::round_ms(took.as_secs_f64()),
        "warnings": out.warnings,
    })
}

pub fn push(a: &PushArgs) -> miette::Result<()> {
    let pushed = crate::oci::push::push(&a.request())?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&pushed).unwrap_or_default()
        );
    } else {
        if !a.quiet {
            for f in &pushed.files {
                let how = if f.uploaded {
                    "uploaded"
                } else {
                    "already there"
                };
                eprintln!("    {:20} {:>12} bytes  {how}", f.name, f.size);
            }
        }
        println!("{}@{}", pushed.reference, pushed.digest);
    }
    Ok(())
}

pub fn pull(a: &PullArgs) -> miette::Result<()> {
    let pulled = crate::oci::pull::pull(&a.request())?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&pulled).unwrap_or_default()
        );
    } else {
        if !a.quiet {
            for f in &pulled.files {
                eprintln!("    {:20} {:>12} bytes  verified", f.name, f.size);
            }
        }
        println!("{}@{}", pulled.reference, pulled.digest);
    }
    Ok(())
}

pub fn verify(args: &VerifyArgs) -> miette::Result<()> {
    let verdict = match crate::image::verify::verify(&args.request()) {
        Ok(v) => v,
        // The differences are the verb's output, one per line (stdout, not
        // wrapped); the error only says so and sets the exit code.
        Err(ImageError::NotReproduced { report }) => {
            println!("{report}");
            return Err(ImageError::NotReproduced {
                report: format!(
                    "{} (the differences are listed above, and in OUT/verify.json)",
                    report.lines().next().unwrap_or_default()
                ),
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    println!("{} reproduced: sha256 {}", verdict.file, verdict.sha256);
    if !args.quiet {
        eprintln!(
            "verify: rebuilt cold and compared in {:.0} s",
            verdict.seconds
        );
    }
    Ok(())
}

pub fn cache(args: &CacheArgs) -> miette::Result<()> {
    let dir = args
        .cache
        .clone()
        .unwrap_or_else(crate::image::cache::default_dir);
    let cache = Cache::open(&dir)?;
    match &args.action {
        CacheAction::List { json } => print_list(&entries(&cache)?, *json),
        CacheAction::Gc {
            keep,
            older_than,
            dry_run,
        } => {
            // clap's "rule" group makes sure at least one of the two is given.
            let now = SystemTime::now();
            let doomed = select(&entries(&cache)?, *keep, *older_than, now);
            gc(&cache, &doomed, *dry_run)
        }
    }
}

fn gc(cache: &Cache, doomed: &[Entry], dry_run: bool) -> miette::Result<()> {
    let (mut freed, mut skipped) = (0u64, 0usize);
    for e in doomed {
        if dry_run {
            println!("would remove {} ({} MiB)", e.key, e.bytes >> 20);
            freed += e.bytes;
            continue;
        }
        match remove(cache, e)? {
            true => {
                println!("removed {} ({} MiB)", e.key, e.bytes >> 20);
                freed += e.bytes;
            }
            false => {
                println!("kept {}: in use by a running hardroot", e.key);
                skipped += 1;
            }
        }
    }
    let verb = if dry_run { "would free" } else { "freed" };
    println!("{verb} {} MiB; {skipped} in use", freed >> 20);
    Ok(())
}

fn print_list(entries: &[Entry], json: bool) -> miette::Result<()> {
    if json {
        let doc = serde_json::json!({ "entries": entries });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    let now = epoch_secs(SystemTime::now());
    println!("{:<32}  {:>9}  {:>10}  packages", "key", "size", "last use");
    for e in entries {
        println!(
            "{:<32}  {:>5} MiB  {:>10}  {}",
            e.key,
            e.bytes >> 20,
            ago(now.saturating_sub(e.last_used)),
            e.packages.join(",")
        );
    }
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    println!("{} entries, {} MiB", entries.len(), total >> 20);
    Ok(())
}

fn ago(secs: u64) -> String {
    match secs {
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86400),
    }
}

/// `hardroot vm-test`: the test, then (with --report) the report on its
/// outputs, written before the driver removes its work folder (the images
/// it built are the report's "asked for" side).
pub fn vm_test(args: &VmTestArgs) -> miette::Result<()> {
    crate::vmtest::interrupt::install();
    let req = args.request();
    let report = |out_dir: &Path, work: &Path| {
        if let Some(file) = &args.report {
            report_after_vm_test(file, args.image.as_deref(), work, out_dir);
        }
    };
    let outcome = crate::vmtest::run_test_then(&req, &report);
    if args.json {
        print_results(&req);
    }
    match outcome {
        Ok(p) => {
            eprintln!(
                "vm-test {}: passed in {:.1}s (results: {})",
                p.test,
                p.duration_s,
                p.results.display()
            );
            Ok(())
        }
        Err(Failure::Test(msg)) => Err(TestFailed(msg).into()),
        Err(Failure::Driver(msg)) => Err(miette::miette!("{msg}")),
        Err(Failure::Build(report)) => Err(report),
    }
}

/// `--json`: the results.json this run wrote. prepare() deleted any older one,
/// so a missing file means the driver failed before the test started (stdout
/// then stays empty and the error is on stderr).
fn print_results(req: &crate::vmtest::VmTestArgs) {
    let Some(out) = crate::vmtest::output_folder(req) else {
        return;
    };
    let path = out.join("results.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        print!("{text}");
    }
}

pub fn report(args: &ReportArgs) -> miette::Result<()> {
    let req = crate::report::Request {
        run: args.run.clone(),
        images: args.image.clone(),
        fresh: false,
        against: args.against.clone(),
        out: args
            .out
            .clone()
            .unwrap_or_else(|| args.run.join("report.html")),
    };
    let written = crate::report::write(&req).map_err(|e| miette::miette!("{e}"))?;
    println!("report written to {}", written.display());
    Ok(())
}

/// `hardroot vm-test --report FILE`: called once the test is over, passed or
/// failed, while the driver's work folder (where it builds images) still
/// exists. The report is a by-product: failing to write it is a warning and
/// never changes the test's outcome.
fn report_after_vm_test(file: &Path, image: Option<&Path>, work: &Path, out_dir: &Path) {
    let mut images: Vec<PathBuf> = image.map(Path::to_path_buf).into_iter().collect();
    images.extend(built_images(work));
    let req = crate::report::Request {
        run: out_dir.to_path_buf(),
        images,
        fresh: true,
        against: None,
        out: file.to_path_buf(),
    };
    match crate::report::write(&req) {
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

pub fn run(args: &RunArgs) -> miette::Result<()> {
    crate::run::run(&args.request())
}
