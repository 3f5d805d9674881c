//! Image stage: mmdebstrap base (cached) + overlay → ext4 / qcow2 / GPT.
//!
//! Flow: load the build output (overlay + manifest + config) → check the
//! overlay's hygiene → find or build the base for the package set (cache) →
//! copy the cached base.img → patch the overlay in with debugfs → fsck →
//! publish rootfs.img, vmlinuz, initrd.img, image-manifest.json by rename.
pub mod base;
pub mod cache;
pub mod disk;
pub mod error;
pub mod esp;
pub mod fsutil;
pub mod gc;
pub mod hygiene;
pub mod leftovers;
pub mod manifest;
pub mod output;
pub mod overlay;
pub mod pack;
pub mod progress;
pub mod sparse;
pub mod tools;

pub use error::ImageError;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Profile to build, e.g. profiles/xmpp-server.toml
    #[arg(required_unless_present = "from_build")]
    pub profile: Option<PathBuf>,
    /// Output folder
    #[arg(short, long, default_value = "out")]
    pub out: PathBuf,
    /// Use an existing `hardroot build` output folder instead of building PROFILE
    #[arg(long, value_name = "DIR", conflicts_with = "profile")]
    pub from_build: Option<PathBuf>,
    /// Extra module folders (as for `hardroot build`)
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
    /// Also write OUT/disk.img: GPT with the `disk` module's layout
    #[arg(long)]
    pub disk: bool,
    /// apt sources for mmdebstrap [default: the host's /etc/apt sources]
    #[arg(long = "sources", value_name = "FILE")]
    pub sources: Vec<PathBuf>,
    /// Only print errors and the final summary
    #[arg(short, long)]
    pub quiet: bool,
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
    /// Also assemble OUT/disk.img (needs the `disk` module).
    pub disk: bool,
    /// Empty: the host's apt sources.
    pub sources: Vec<PathBuf>,
    pub quiet: bool,
}

#[derive(Debug, Clone)]
pub struct ImageOutput {
    pub rootfs: PathBuf,
    pub rootfs_sha256: String,
    pub qcow2: Option<PathBuf>,
    pub disk: Option<PathBuf>,
    pub disk_sha256: Option<String>,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub image_manifest: PathBuf,
    pub cache_key: String,
    pub base_from_cache: bool,
    pub used_bytes: u64,
}

pub fn build_image(req: &ImageRequest) -> Result<ImageOutput, ImageError> {
    output::build(req)
}

pub fn run(args: &ImageArgs) -> miette::Result<()> {
    let started = std::time::Instant::now();
    let out = build_profile(args)?;
    print_summary(&out, started.elapsed());
    Ok(())
}

/// Overlay (or an existing build folder) → image, as `hardroot image` does; `run` uses it too.
pub fn build_profile(args: &ImageArgs) -> miette::Result<ImageOutput> {
    let build_dir = match &args.from_build {
        Some(dir) => dir.clone(),
        None => build_overlay(args)?,
    };
    let req = ImageRequest {
        build_dir,
        out: args.out.clone(),
        cache_dir: args.cache.clone().unwrap_or_else(cache::default_dir),
        rebuild_base: args.rebuild_base,
        qcow2: args.qcow2,
        disk: args.disk,
        sources: args.sources.clone(),
        quiet: args.quiet,
    };
    Ok(build_image(&req)?)
}

/// The core's build writes OUT/overlay, manifest.json and config.json; the
/// image outputs then join them in OUT.
fn build_overlay(args: &ImageArgs) -> miette::Result<PathBuf> {
    let Some(profile) = &args.profile else {
        return Err(miette::miette!("give a PROFILE or --from-build DIR"));
    };
    let built = crate::build::build(&crate::build::BuildOptions {
        profile: profile.clone(),
        out: args.out.clone(),
        module_dirs: args.module_dirs.clone(),
    })?;
    for w in &built.warnings {
        let copy =
            crate::diag::Located::new(w.code, &w.site, w.message.clone()).label(w.label.clone());
        eprintln!("{:?}", miette::Report::new(copy));
    }
    if !args.quiet {
        eprintln!("==> overlay built: root hash {}", built.root_hash);
    }
    Ok(args.out.clone())
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
