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
pub mod fresh;
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
pub mod shared;
pub mod sparse;
pub mod tools;
pub mod verify;

pub use error::ImageError;
use std::path::PathBuf;

/// What `hardroot image` asks (the command line is the CLI's: commands/args.rs).
#[derive(Debug, Clone)]
pub struct ImageArgs {
    /// Profiles to build; with several, each goes to OUT/<profile>/ (fleet.rs)
    pub profiles: Vec<PathBuf>,
    /// Output folder: rootfs.img, vmlinuz, initrd.img, image-manifest.json (and
    /// the overlay); with several profiles, one folder per profile inside it
    pub out: PathBuf,
    /// With several profiles: how many images are built at once (a package
    /// set is still bootstrapped once, by one of them)
    pub jobs: usize,
    /// Use an existing `hardroot build` output folder instead of building PROFILE
    pub from_build: Option<PathBuf>,
    /// Build exactly what an image-manifest.json records (same overlay, package
    /// versions, sources, base identity); its folder must hold the build
    pub from_manifest: Option<PathBuf>,
    /// With --from-manifest: bootstrap from a dated snapshot archive (URL with the date)
    pub snapshot: Option<String>,
    /// Extra folder of modules, searched before modules/ beside the profile (repeatable)
    pub module_dirs: Vec<PathBuf>,
    /// Base cache [default: $XDG_CACHE_HOME/hardroot or ~/.cache/hardroot]
    pub cache: Option<PathBuf>,
    /// Bootstrap the base again even if the cache has it
    pub rebuild_base: bool,
    /// Also write OUT/rootfs.qcow2
    pub qcow2: bool,
    /// Skip disk.img and disk.qcow2 (the golden disk of a profile that imports
    /// `disk`): rootfs.img, kernel and initrd only, for a quicker direct-kernel boot
    pub no_disk: bool,
    /// apt sources for mmdebstrap [default: the host's /etc/apt sources]
    pub sources: Vec<PathBuf>,
    /// Only print errors and the final summary
    pub quiet: bool,
    /// `--cache-from` / `--cache-to`: bases shared with other builders (shared.rs)
    pub shared: shared::SharedCache,
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
    /// Where a missing base may be fetched from, and sent to (default: nowhere).
    pub shared: shared::SharedCache,
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
    /// The local base cache had the base.
    pub base_from_cache: bool,
    /// The base came from the shared cache (`--cache-from`), not a bootstrap.
    pub base_pulled: Option<shared::Transfer>,
    /// This build sent its base to the shared cache (`--cache-to`).
    pub base_pushed: Option<shared::Transfer>,
    /// The cached base was stale (the archive serves newer packages) and was
    /// bootstrapped anew: what changed.
    pub base_refreshed: Vec<fresh::Upgrade>,
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

/// `hardroot image P1 P2 ... -o OUT`: every profile into OUT/<profile>/.
/// The outcomes go back to the CLI, which prints them and makes the exit code.
pub fn build_fleet(args: &ImageArgs) -> miette::Result<Vec<fleet::Outcome>> {
    fleet::build(&fleet::FleetRequest {
        profiles: args.profiles.clone(),
        out: args.out.clone(),
        jobs: args.jobs,
        module_dirs: args.module_dirs.clone(),
        template: request(args, args.out.clone()),
    })
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
        shared: args.shared.clone(),
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
