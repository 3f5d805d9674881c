//! Image stage: mmdebstrap base (cached) + overlay → ext4 / qcow2 / GPT.
//!
//! Flow: load the build output (overlay + manifest + config) → check the
//! overlay's hygiene → find or build the base for the package set (cache) →
//! copy the cached base.img → patch the overlay in with debugfs → fsck →
//! publish rootfs.img, vmlinuz, initrd.img, image-manifest.json by rename.
pub mod base;
pub mod cache;
pub mod disk;
pub mod dpkg;
pub mod error;
pub mod esp;
pub mod fleet;
pub mod fsutil;
pub mod gc;
pub mod hygiene;
pub mod leftovers;
pub mod manifest;
pub mod output;
pub mod overlay;
pub mod pack;
pub mod progress;
pub mod sbom;
pub mod sparse;
pub mod tools;
pub mod verify;

pub use error::ImageError;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Profiles to build, e.g. profiles/xmpp-server.toml; with several, each
    /// goes to OUT/<profile>/ (profiles/*.toml builds a whole tree)
    #[arg(required_unless_present_any = ["from_build", "from_manifest"], value_name = "PROFILE")]
    pub profiles: Vec<PathBuf>,
    /// Output folder: rootfs.img, vmlinuz, initrd.img, image-manifest.json (and
    /// the overlay); with several profiles, one folder per profile inside it
    #[arg(short, long, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// With several profiles: how many images are built at once (a package
    /// set is still bootstrapped once, by one of them)
    #[arg(short, long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Use an existing `hardroot build` output folder instead of building PROFILE
    #[arg(long, value_name = "DIR", conflicts_with = "profiles")]
    pub from_build: Option<PathBuf>,
    /// Build exactly what an image-manifest.json records (same overlay, package
    /// versions, sources, base identity); its folder must hold the build
    #[arg(long, value_name = "FILE", conflicts_with_all = ["profiles", "from_build"])]
    pub from_manifest: Option<PathBuf>,
    /// With --from-manifest: bootstrap from a dated snapshot archive (URL with the date)
    #[arg(long, value_name = "URL", requires = "from_manifest")]
    pub snapshot: Option<String>,
    /// Extra folder of modules, searched before modules/ beside the profile (repeatable)
    #[arg(long = "modules", value_name = "DIR")]
    pub module_dirs: Vec<PathBuf>,
    /// Base cache [default: $XDG_CACHE_HOME/hardroot or ~/.cache/hardroot]
    #[arg(long, env = "HARDROOT_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Bootstrap the base again even if the cache has it
    #[arg(long)]
    pub rebuild_base: bool,
    /// Also write OUT/rootfs.qcow2
    #[arg(long)]
    pub qcow2: bool,
    /// Skip disk.img and disk.qcow2 (the golden disk of a profile that imports
    /// `disk`): rootfs.img, kernel and initrd only, for a quicker direct-kernel boot
    #[arg(long)]
    pub no_disk: bool,
    /// apt sources for mmdebstrap [default: the host's /etc/apt sources]
    #[arg(long = "sources", value_name = "FILE")]
    pub sources: Vec<PathBuf>,
    /// Only print errors and the final summary
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the summary as JSON on stdout (shape: docs/json.md); progress stays on stderr
    #[arg(long)]
    pub json: bool,
}

/// What another stage (vm-test, benches) asks of the image stage.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    /// A `hardroot build` output folder: overlay/, manifest.json, config.json.
    pub build_dir: PathBuf,
    pub out: PathBuf,
    pub cache_dir: PathBuf,
    pub rebuild_base: bool,
    pub qcow2: bool,
    /// Assemble OUT/disk.img and disk.qcow2 when the profile imports `disk`.
    pub disk: bool,
    /// Empty: the host's apt sources.
    pub sources: Vec<PathBuf>,
    pub quiet: bool,
    /// A rebuild of a recorded image (verify, --from-manifest): its exact
    /// package versions and its base's identity; None for an ordinary build.
    pub pinned: Option<Pinned>,
    /// The dated snapshot archive `sources` points at, recorded in image-manifest.json.
    pub snapshot: Option<String>,
}

/// What a rebuild takes from the image-manifest.json it reproduces.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub packages: Vec<base::Package>,
    /// The recorded base key: UUIDs and hash seeds derive from it.
    pub identity: String,
}

#[derive(Debug, Clone)]
pub struct ImageOutput {
    pub rootfs: PathBuf,
    pub rootfs_sha256: String,
    pub qcow2: Option<PathBuf>,
    pub disk: Option<PathBuf>,
    pub disk_sha256: Option<String>,
    pub disk_qcow2: Option<PathBuf>,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub image_manifest: PathBuf,
    pub cache_key: String,
    pub base_from_cache: bool,
    /// rootfs.img's size (the ext4 file system's size; the file is sparse).
    pub size_bytes: u64,
    pub used_bytes: u64,
    pub profile: String,
    pub overlay_root_hash: String,
    pub kernel_version: String,
    /// Debian packages installed in the base (dependencies included).
    pub packages: usize,
    /// OUT/sbom.cdx.json: CycloneDX 1.5 of the image (packages, kernel, overlay files).
    pub sbom: PathBuf,
    /// The timed steps of this build, in order (base steps only on a cache miss).
    pub steps: Vec<progress::Timing>,
    /// The core build's warnings, when the image stage built the profile itself.
    pub warnings: Vec<String>,
}

pub fn build_image(req: &ImageRequest) -> Result<ImageOutput, ImageError> {
    output::build(req)
}

pub fn run(args: &ImageArgs) -> miette::Result<()> {
    let started = std::time::Instant::now();
    let out = build_profile(args)?;
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
/// outcomes go back to the CLI, which makes the exit code of them.
pub fn run_fleet(args: &ImageArgs) -> miette::Result<Vec<fleet::Outcome>> {
    let started = std::time::Instant::now();
    let req = fleet::FleetRequest {
        profiles: args.profiles.clone(),
        out: args.out.clone(),
        jobs: usize::from(args.jobs),
        module_dirs: args.module_dirs.clone(),
        template: request(args, args.out.clone()),
    };
    let outcomes = fleet::build(&req)?;
    for o in &outcomes {
        if let fleet::Status::Failed(e) = &o.status {
            eprintln!("{}: {e:?}", o.name);
        }
    }
    if args.json {
        let v = fleet::summary_json(&outcomes, started.elapsed());
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        fleet::print_table(&outcomes, started.elapsed());
    }
    Ok(outcomes)
}

/// Overlay (or an existing build folder) → image, as `hardroot image` does; `run` uses it too.
pub fn build_profile(args: &ImageArgs) -> miette::Result<ImageOutput> {
    // Steps a failed earlier build on this thread left in the log are not ours.
    progress::take_timings();
    if let Some(manifest) = &args.from_manifest {
        return Ok(from_manifest(args, manifest)?);
    }
    let (build_dir, warnings) = match &args.from_build {
        Some(dir) => (dir.clone(), Vec::new()),
        None => build_overlay(args)?,
    };
    let mut out = build_image(&request(args, build_dir))?;
    out.warnings = warnings;
    Ok(out)
}

/// What `image`'s flags ask of the image stage, for the build in `build_dir`
/// (the fleet replaces the folders per profile).
fn request(args: &ImageArgs, build_dir: PathBuf) -> ImageRequest {
    ImageRequest {
        build_dir,
        out: args.out.clone(),
        cache_dir: args.cache.clone().unwrap_or_else(cache::default_dir),
        rebuild_base: args.rebuild_base,
        qcow2: args.qcow2,
        disk: !args.no_disk,
        sources: args.sources.clone(),
        quiet: args.quiet,
        pinned: None,
        snapshot: None,
    }
}

/// `--from-manifest FILE`: the build is FILE's folder, the versions FILE's.
fn from_manifest(args: &ImageArgs, manifest: &std::path::Path) -> Result<ImageOutput, ImageError> {
    let dir = match manifest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&args.out).map_err(error::io_err("creating", &args.out))?;
    verify::rebuild(&verify::Rebuild {
        manifest,
        build: &dir,
        out: &args.out,
        cache: &args.cache.clone().unwrap_or_else(cache::default_dir),
        cold: args.rebuild_base,
        snapshot: args.snapshot.as_deref(),
        sources: &args.sources,
        quiet: args.quiet,
    })
}

/// The core's build writes OUT/overlay, manifest.json and config.json; the
/// image outputs then join them in OUT. Returns OUT and the build's warnings.
fn build_overlay(args: &ImageArgs) -> miette::Result<(PathBuf, Vec<String>)> {
    let Some(profile) = args.profiles.first() else {
        return Err(miette::miette!("give a PROFILE or --from-build DIR"));
    };
    let warnings = write_overlay(profile, &args.out, &args.module_dirs, args.quiet)?;
    Ok((args.out.clone(), warnings))
}

/// `hardroot build PROFILE -o OUT`, with progress and the warnings on stderr.
pub(crate) fn write_overlay(
    profile: &std::path::Path,
    out: &std::path::Path,
    module_dirs: &[PathBuf],
    quiet: bool,
) -> miette::Result<Vec<String>> {
    let step = progress::Step::start("build", "building the overlay", quiet);
    let built = crate::build::build(&crate::build::BuildOptions {
        profile: profile.to_path_buf(),
        out: out.to_path_buf(),
        module_dirs: module_dirs.to_vec(),
    })?;
    step.done(&format!("root hash {}", built.root_hash));
    for w in &built.warnings {
        let copy =
            crate::diag::Located::new(w.code, &w.site, w.message.clone()).label(w.label.clone());
        eprintln!("{:?}", miette::Report::new(copy));
    }
    Ok(built.warnings.iter().map(|w| w.to_string()).collect())
}

fn print_summary(out: &ImageOutput, took: std::time::Duration) {
    let base = if out.base_from_cache {
        "cached"
    } else {
        "built"
    };
    println!("rootfs.img sha256 {}", out.rootfs_sha256);
    println!(
        "base {} ({base}), used {} MiB",
        out.cache_key,
        out.used_bytes >> 20
    );
    println!(
        "image written to {} in {:.1} s",
        out.rootfs.display(),
        took.as_secs_f64()
    );
}

/// `hardroot image --json`: the shape is documented in docs/json.md (format 1).
pub(crate) fn summary_json(out: &ImageOutput, took: std::time::Duration) -> serde_json::Value {
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
            "cache": if out.base_from_cache { "hit" } else { "miss" },
        },
        "packages": out.packages,
        "sbom": { "path": out.sbom },
        "steps": out.steps,
        "seconds": progress::round_ms(took.as_secs_f64()),
        "warnings": out.warnings,
    })
}
