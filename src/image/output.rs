//! Writing OUT: every file is made under a temp name in OUT and renamed into
//! place only when complete, so a failure (or a full disk) never leaves a
//! half-written image that looks good.
use super::base::{self, Base};
use super::cache::{Cache, KeyInputs, sha256_file};
use super::error::{ImageError, Result, io_err};
use super::hygiene::{self, Scope};
use super::manifest::BuildDir;
use super::progress::Step;
use super::{ImageOutput, ImageRequest, disk, leftovers, overlay, pack, sbom, sparse, tools};
use serde_json::json;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

pub fn build(req: &ImageRequest) -> Result<ImageOutput> {
    check_host(req)?;
    let build = BuildDir::load(&req.build_dir)?;
    let want_disk = req.disk && disk::declared(&build);
    if want_disk {
        // Fail before the (long) base build when the layout is wrong.
        disk::settings(&build)?;
        tools::require(tools::QEMU_IMG)?;
    }
    let bad = hygiene::check(&build.overlay, Scope::Overlay)?;
    if !bad.is_empty() {
        return Err(ImageError::Hygiene { violations: bad });
    }
    std::fs::create_dir_all(req.out.join("logs"))
        .map_err(io_err("creating", req.out.join("logs")))?;
    // A killed earlier run's temp files (OUT's are outside the cache's lock).
    leftovers::remove_dead(&req.out);
    let (inputs, sources) = base_inputs(req, &build)?;
    let cache = Cache::open(&req.cache_dir)?;
    let log_dir = req.out.join("logs");
    let base_req = base::Request {
        cache: &cache,
        inputs: &inputs,
        build: &build,
        sources: &sources,
        rebuild: req.rebuild_base,
        log_dir: &log_dir,
        quiet: req.quiet,
        shared: &req.shared,
    };
    let (base, _lock) = base::ensure(&base_req)?;
    let disk = if want_disk {
        let mut d = disk::build(&cache, &base, &build, &req.out, req.quiet)?;
        d.qcow2 = Some(disk_qcow2(req, &d.path)?);
        Some(d)
    } else {
        None
    };
    write_outputs(req, &build, &base, disk, &sources)
}

/// The key of the cached base `req` builds on (`image` with several
/// profiles groups them by it before building any).
pub fn base_key(req: &ImageRequest) -> Result<String> {
    let build = BuildDir::load(&req.build_dir)?;
    Ok(base_inputs(req, &build)?.0.key())
}

/// What the base depends on, and the apt sources it is bootstrapped from.
fn base_inputs(req: &ImageRequest, build: &BuildDir) -> Result<(KeyInputs, Vec<PathBuf>)> {
    let sources = if req.sources.is_empty() {
        base::host_sources()?
    } else {
        req.sources.clone()
    };
    let mut inputs = base::key_inputs(build, &sources, tools::mmdebstrap_version()?)?;
    if let Some(p) = &req.pinned {
        inputs.pins = p
            .packages
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect();
        inputs.identity = Some(p.identity.clone());
    }
    Ok((inputs, sources))
}

fn check_host(req: &ImageRequest) -> Result<()> {
    tools::require_root()?;
    for tool in [
        tools::MMDEBSTRAP,
        tools::MKE2FS,
        tools::DEBUGFS,
        tools::E2FSCK,
    ] {
        tools::require(tool)?;
    }
    if req.qcow2 {
        tools::require(tools::QEMU_IMG)?;
    }
    std::fs::create_dir_all(&req.out).map_err(io_err("creating", &req.out))
}

fn write_outputs(
    req: &ImageRequest,
    build: &BuildDir,
    base: &Base,
    disk: Option<disk::DiskOutput>,
    sources: &[PathBuf],
) -> Result<ImageOutput> {
    let img = patched_image(req, build, base)?;
    let step = Step::start("hash", "hashing the image", req.quiet);
    let rootfs_sha256 = sha256_file(img.path())?;
    step.done("");
    let used_bytes = used_bytes(img.path())?;
    let qcow2 = if req.qcow2 {
        Some(convert_qcow2(req, img.path())?)
    } else {
        None
    };
    let rootfs = publish(img, &req.out.join("rootfs.img"))?;
    let kernel = copy_published(&base.dir.join("vmlinuz"), &req.out.join("vmlinuz"))?;
    let initrd = copy_published(&base.dir.join("initrd.img"), &req.out.join("initrd.img"))?;
    let mut out = ImageOutput {
        rootfs,
        rootfs_sha256,
        qcow2,
        disk: disk.as_ref().map(|d| d.path.clone()),
        disk_sha256: disk.as_ref().map(|d| d.sha256.clone()),
        disk_qcow2: disk
            .as_ref()
            .and_then(|d| d.qcow2.as_ref().map(|(p, _)| p.clone())),
        kernel,
        initrd,
        image_manifest: req.out.join("image-manifest.json"),
        cache_key: base.meta.key.clone(),
        base_from_cache: base.from_cache,
        base_pulled: base.pulled.clone(),
        base_pushed: base.pushed.clone(),
        base_refreshed: base.refreshed.clone(),
        size_bytes: base.meta.image_bytes,
        used_bytes,
        profile: build.manifest.profile.clone(),
        overlay_root_hash: build.manifest.root_hash.clone(),
        kernel_version: base.meta.kernel.clone(),
        packages: base.meta.packages.len(),
        sbom: req.out.join("sbom.cdx.json"),
        steps: Vec::new(),
        warnings: Vec::new(),
    };
    let sbom_sha256 = write_sbom(req, build, base, &out)?;
    let recorded = recorded_inputs(req, build, base, sources)?;
    write_image_manifest(build, base, disk.as_ref(), &sbom_sha256, recorded, &mut out)?;
    out.steps = super::progress::take_timings();
    Ok(out)
}

/// The cached base.img, copied sparsely, with the overlay patched in.
fn patched_image(req: &ImageRequest, build: &BuildDir, base: &Base) -> Result<NamedTempFile> {
    let step = Step::start("copy_base", "copying the cached base image", req.quiet);
    let img = temp_in(&req.out, "rootfs.img")?;
    sparse::copy(&base.image(), img.path())?;
    step.done(&format!("{} MiB", base.meta.image_bytes >> 20));
    let step = Step::start(
        "apply_overlay",
        "applying the overlay with debugfs",
        req.quiet,
    );
    let uuid = root_uuid(build);
    let script = overlay::plan(build, &base.meta, &uuid)?;
    pack::debugfs(img.path(), &script, build.manifest.source_date_epoch)?;
    step.done(&format!("{} entries", build.manifest.entries.len()));
    let step = Step::start("fsck", "checking the image (e2fsck -fn)", req.quiet);
    pack::fsck(img.path())?;
    step.done("");
    Ok(img)
}

/// The root filesystem's UUID follows the overlay: two profiles on one base differ.
pub fn root_uuid(build: &BuildDir) -> String {
    pack::uuid_from(&format!("rootfs:{}", build.manifest.root_hash))
}

/// A temp file in `dir` named for `what`, with our pid (see leftovers).
fn temp_in(dir: &Path, what: &str) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&leftovers::prefix(what))
        .tempfile_in(dir)
        .map_err(io_err("creating a temp file in", dir))
}

/// Renames a finished temp file into place, readable like any build output
/// (temp files start 0600; nothing in an image is secret).
fn publish(tmp: NamedTempFile, dest: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let perms = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(tmp.path(), perms)
        .map_err(io_err("setting permissions of", tmp.path()))?;
    tmp.persist(dest)
        .map_err(|e| io_err("renaming into", dest)(e.error))?;
    Ok(dest.to_path_buf())
}

fn copy_published(src: &Path, dest: &Path) -> Result<PathBuf> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = temp_in(dir, "copy")?;
    std::fs::copy(src, tmp.path()).map_err(io_err("copying", src))?;
    publish(tmp, dest)
}

fn convert_qcow2(req: &ImageRequest, raw: &Path) -> Result<PathBuf> {
    let step = Step::start("qcow2", "converting to qcow2", req.quiet);
    let dest = qcow2_of(raw, &req.out.join("rootfs.qcow2"))?;
    step.done("");
    Ok(dest)
}

/// OUT/disk.qcow2 beside disk.img, with its sha256 (qemu-img writes no
/// time or random field into a qcow2, so equal disks give equal files).
fn disk_qcow2(req: &ImageRequest, raw: &Path) -> Result<(PathBuf, String)> {
    let step = Step::start("disk_qcow2", "converting disk.img to qcow2", req.quiet);
    let dest = qcow2_of(raw, &req.out.join("disk.qcow2"))?;
    let sha = sha256_file(&dest)?;
    step.done("");
    Ok((dest, sha))
}

fn qcow2_of(raw: &Path, dest: &Path) -> Result<PathBuf> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = temp_in(dir, "qcow2")?;
    tools::run(
        tools::command(tools::QEMU_IMG.0)
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(raw)
            .arg(tmp.path()),
    )?;
    publish(tmp, dest)
}

/// Blocks in use according to the superblock (`dumpe2fs -h`).
fn used_bytes(img: &Path) -> Result<u64> {
    let text = tools::run(tools::command("dumpe2fs").arg("-h").arg(img))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(field("Block count:").saturating_sub(field("Free blocks:")) * field("Block size:"))
}

/// OUT/sbom.cdx.json from the base's tree (what the image holds) and the
/// published files' hashes; returns its sha256 for image-manifest.json.
fn write_sbom(
    req: &ImageRequest,
    build: &BuildDir,
    base: &Base,
    out: &ImageOutput,
) -> Result<String> {
    let step = Step::start("sbom", "writing the SBOM (sbom.cdx.json)", req.quiet);
    let image = match (&out.disk, &out.disk_sha256) {
        (Some(_), Some(sha)) => sbom::OutFile {
            name: "disk.img".into(),
            sha256: sha.clone(),
        },
        _ => sbom::OutFile {
            name: "rootfs.img".into(),
            sha256: out.rootfs_sha256.clone(),
        },
    };
    let input = sbom::Input {
        root: &base.rootfs(),
        apt_lists: Path::new(APT_LISTS),
        build,
        image,
        kernel: sbom::OutFile {
            name: "vmlinuz".into(),
            sha256: sha256_file(&out.kernel)?,
        },
        kernel_version: &base.meta.kernel,
    };
    let tmp = temp_in(&req.out, "sbom")?;
    sbom::write(&input, tmp.path())?;
    let sha = sha256_file(tmp.path())?;
    publish(tmp, &out.sbom)?;
    step.done("");
    Ok(sha)
}

/// Everything a rebuild needs besides the build folder (`hardroot verify`,
/// `image --from-manifest`): the apt sources as they were read (the mirror;
/// the host's, never one of ours), the snapshot archive if any, the suite,
/// SOURCE_DATE_EPOCH, the overlay's root hash, hardroot's version, and the
/// base identity. The exact package versions are the manifest's `packages`.
fn recorded_inputs(
    req: &ImageRequest,
    build: &BuildDir,
    base: &Base,
    sources: &[PathBuf],
) -> Result<serde_json::Value> {
    let mut apt_sources = Vec::new();
    for path in sources {
        let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        apt_sources.push(json!({ "name": name, "text": text }));
    }
    let s = &build.system;
    Ok(json!({
        "hardroot_version": env!("CARGO_PKG_VERSION"),
        "suite": s.suite,
        "architecture": s.architecture,
        "variant": s.variant,
        "apt_sources": apt_sources,
        "snapshot": req.snapshot,
        "source_date_epoch": build.manifest.source_date_epoch,
        "overlay_root_hash": build.manifest.root_hash,
        "base_identity": base.meta.key,
    }))
}

/// Where apt keeps this host's package indexes (the .debs' sha256 for the SBOM).
const APT_LISTS: &str = "/var/lib/apt/lists";

fn write_image_manifest(
    build: &BuildDir,
    base: &Base,
    disk: Option<&disk::DiskOutput>,
    sbom_sha256: &str,
    inputs: serde_json::Value,
    out: &mut ImageOutput,
) -> Result<()> {
    let disk = disk.map(|d| {
        json!({
            "file": "disk.img",
            "sha256": d.sha256,
            "size": std::fs::metadata(&d.path).map(|m| m.len()).unwrap_or(0),
            "qcow2": d.qcow2.as_ref().map(|(_, sha)| json!({ "file": "disk.qcow2", "sha256": sha })),
            "root_partuuid": d.root_partuuid,
            "cmdline": d.cmdline,
            "bootable": d.bootable,
            "partitions": d.partitions,
            "mounts": d.mounts,
        })
    });
    let doc = json!({
        "format": 1,
        "profile": build.manifest.profile,
        "source_date_epoch": build.manifest.source_date_epoch,
        "overlay_root_hash": build.manifest.root_hash,
        "cache_key": base.meta.key,
        "base_inputs": base.meta.inputs,
        "rootfs": {
            "file": "rootfs.img",
            "sha256": out.rootfs_sha256,
            "size": base.meta.image_bytes,
            "used_bytes": out.used_bytes,
            "uuid": root_uuid(build),
            "label": build.system.root_label,
        },
        "kernel": {
            "version": base.meta.kernel,
            "vmlinuz_sha256": sha256_file(&out.kernel)?,
            "initrd_sha256": sha256_file(&out.initrd)?,
            "cmdline_extra": build.system.kernel_cmdline_extra,
        },
        "disk": disk,
        "sbom": { "file": "sbom.cdx.json", "sha256": sbom_sha256 },
        "inputs": inputs,
        "packages": base.meta.packages,
    });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    let tmp = temp_in(&build_out_dir(out), "image-manifest")?;
    std::fs::write(tmp.path(), text).map_err(io_err("writing", tmp.path()))?;
    out.image_manifest = publish(tmp, &out.image_manifest)?;
    Ok(())
}

fn build_out_dir(out: &ImageOutput) -> PathBuf {
    out.image_manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
