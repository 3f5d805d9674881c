//! OUT/disk.img: a GPT disk with the `disk` module's hardened layout. Each
//! filesystem is packed once per (base, layout) from its subtree of the cached
//! base and kept in the cache; a build copies those images, patches each with
//! its share of the overlay (debugfs, as for rootfs.img), installs the disk's
//! fstab, and assembles them with sfdisk + dd. No root mount, no loop device.
use super::base::Base;
use super::cache::{Cache, hex, sha256_file};
use super::error::{Result, input_err, io_err};
use super::fsutil;
use super::manifest::{BuildDir, Entry};
use super::overlay::{Ids, PlanInput, plan_fs};
use super::pack::{self, Ext4Spec, quote, set_times};
use super::progress::Step;
use super::tools;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;
/// Where the disk module renders the fstab that only disk.img uses.
const FSTAB_SOURCE: &str = "etc/hardroot/fstab.disk";
/// GPT type GUIDs (Discoverable Partitions Specification).
const TYPE_ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
const TYPE_VAR: &str = "4D21B016-B534-45C2-A9FB-5C16E091FD2D";
const TYPE_VAR_TMP: &str = "7EC6F557-3BC5-4ACA-B293-16EF5DF639D1";
const TYPE_HOME: &str = "933AC7E1-2EB4-4F13-B844-0E14E2AEF915";
const TYPE_SRV: &str = "3B8F8425-20E0-4F3B-907F-1A25A76F98E8";
const TYPE_LINUX_DATA: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const TYPE_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// The EFI system partition's pseudo mount point (it is not in /etc/fstab).
const ESP_MOUNT: &str = "boot/efi";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Filesystem {
    pub mount: String,
    pub label: String,
    pub size_mib: u64,
    #[serde(default)]
    pub options: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DiskSettings {
    pub filesystems: Vec<Filesystem>,
    #[serde(default)]
    pub root_size_mib: u64,
    /// An EFI system partition with systemd-boot, kernel and initrd.
    #[serde(default)]
    pub bootable: bool,
    #[serde(default = "default_esp_mib")]
    pub esp_size_mib: u64,
    /// The filesystem that grows into a larger disk on first boot ("" for
    /// none): its partition is the disk's last, so there is room after it.
    #[serde(default)]
    pub grow: String,
}

fn default_esp_mib() -> u64 {
    128
}

/// One packed partition in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Part {
    /// "" for root, else the mount point without its leading slash.
    mount: String,
    label: String,
    size: u64,
    paths: BTreeMap<String, String>,
}

pub struct DiskOutput {
    pub bootable: bool,
    pub path: PathBuf,
    pub sha256: String,
    pub root_partuuid: String,
    pub cmdline: String,
    /// OUT/disk.qcow2 and its sha256, once converted.
    pub qcow2: Option<(PathBuf, String)>,
    /// The partition table as written, in disk order.
    pub partitions: Vec<PartitionInfo>,
    /// disk.img's /etc/fstab as data: what the machine mounts, with which options.
    pub mounts: Vec<MountInfo>,
}

/// One line of disk.img's /etc/fstab (image-manifest.json, vm-test's layout check).
#[derive(Debug, Clone, Serialize)]
pub struct MountInfo {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: String,
}

/// The mounts of an fstab: every non-comment line's first four fields.
pub fn fstab_mounts(text: &str) -> Vec<MountInfo> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(MountInfo {
                source: f.first()?.to_string(),
                target: f.get(1)?.to_string(),
                fstype: f.get(2)?.to_string(),
                options: f.get(3).unwrap_or(&"defaults").to_string(),
            })
        })
        .collect()
}

/// One row of disk.img's partition table (image-manifest.json, the report).
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub number: usize,
    pub label: String,
    /// "/" for root, "/boot/efi" for the ESP (not mounted by the image).
    pub mount: String,
    pub type_guid: String,
    pub partuuid: String,
    pub start_bytes: u64,
    pub size_bytes: u64,
    /// Mount options from the disk module ("" for root and the ESP).
    pub options: String,
    pub grows: bool,
}

/// Does the profile import the `disk` module (and so ship disk.img)?
pub fn declared(build: &BuildDir) -> bool {
    build.config.get("disk").is_some()
}

pub fn settings(build: &BuildDir) -> Result<DiskSettings> {
    let path = build.dir.join("config.json");
    let Some(disk) = build.config.get("disk") else {
        return Err(input_err(
            &path,
            "disk.img needs the `disk` module",
            "add \"disk\" to the profile's imports",
        ));
    };
    let s: DiskSettings = serde_json::from_value(disk.clone()).map_err(|e| {
        input_err(
            &path,
            format!("disk options: {e}"),
            "check the `disk` module's options",
        )
    })?;
    for f in &s.filesystems {
        super::manifest::check_path(f.mount.trim_start_matches('/'))?;
    }
    Ok(s)
}

pub fn build(
    cache: &Cache,
    base: &Base,
    build: &BuildDir,
    out: &Path,
    quiet: bool,
) -> Result<DiskOutput> {
    tools::require(tools::SFDISK)?;
    let disk = settings(build)?;
    let parts = cached_parts(cache, base, build, &disk, quiet)?;
    let step = Step::start("assemble_disk", "assembling disk.img", quiet);
    let work = tempfile::Builder::new()
        .prefix(&super::leftovers::prefix("disk"))
        .tempdir_in(out)
        .map_err(io_err("creating a temp folder in", out))?;
    let mut images = Vec::new();
    for part in &parts.1 {
        images.push(patched_part(
            &parts.0,
            part,
            base,
            build,
            &parts.1,
            work.path(),
        )?);
    }
    let mut all: Vec<(Part, PathBuf)> = parts.1.iter().cloned().zip(images).collect();
    let cmdline = cmdline(
        &partuuid(build, &build.system.root_label),
        &build.system.kernel_cmdline_extra,
    );
    if disk.bootable {
        let size = disk.esp_size_mib * MIB;
        let esp = super::esp::make(base, build, &cmdline, size, work.path())?;
        let part = Part {
            mount: ESP_MOUNT.into(),
            label: "esp".into(),
            size,
            paths: BTreeMap::new(),
        };
        all.push((part, esp));
    }
    all.sort_by_key(|(p, _)| disk_order(p, &disk));
    let mut result = assemble(build, &disk, &all, work.path(), out)?;
    result.cmdline = cmdline;
    let fstab = build.overlay.join(FSTAB_SOURCE);
    result.mounts =
        fstab_mounts(&std::fs::read_to_string(&fstab).map_err(io_err("reading", &fstab))?);
    step.done(&format!("{} partitions", all.len()));
    Ok(result)
}

/// Where a partition goes on the disk: the ESP first (firmware looks there),
/// root next, the others by mount point, and the one that grows last, so
/// that the free space of a larger disk follows it.
fn disk_order(p: &Part, disk: &DiskSettings) -> (u8, String) {
    let rank = match p.mount.as_str() {
        ESP_MOUNT => 0,
        "" => 1,
        m if m == disk.grow.trim_start_matches('/') => 3,
        _ => 2,
    };
    (rank, p.mount.clone())
}

/// The kernel command line that boots disk.img's root partition.
pub fn cmdline(root_partuuid: &str, extra: &[String]) -> String {
    let mut words = vec![
        format!("root=PARTUUID={root_partuuid}"),
        "rw".into(),
        "console=ttyS0".into(),
    ];
    words.extend(extra.iter().cloned());
    words.join(" ")
}

/// A partition's GPT UUID: fixed by the overlay's root hash and the label.
fn partuuid(build: &BuildDir, label: &str) -> String {
    pack::uuid_from(&format!("partuuid:{}:{label}", build.manifest.root_hash))
}

fn layout_key(base: &Base, disk: &DiskSettings, free_mib: u64) -> String {
    // The first field changes whenever the way partitions are packed changes
    // (5: each filesystem's top folder keeps the base's mode, pack::root_mode).
    let text = serde_json::to_string(&(
        5,
        &base.meta.key,
        &disk.filesystems,
        disk.root_size_mib,
        free_mib,
    ))
    .unwrap_or_default();
    hex(&Sha256::digest(text.as_bytes()))[..16].to_string()
}

/// The partition images for this base and layout, packing them if needed.
fn cached_parts(
    cache: &Cache,
    base: &Base,
    build: &BuildDir,
    disk: &DiskSettings,
    quiet: bool,
) -> Result<(PathBuf, Vec<Part>)> {
    let key = layout_key(base, disk, build.system.image_free_mib);
    let dir = base.dir.join(format!("disk-{key}"));
    let _lock = cache.lock(&format!("{}-disk-{key}", base.meta.key), true)?;
    if !dir.join("parts.json").is_file() {
        let step = Step::start(
            "pack_disk_filesystems",
            "packing the disk's filesystems",
            quiet,
        );
        pack_parts(base, build, disk, &dir)?;
        step.done("");
    }
    let path = dir.join("parts.json");
    let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
    let parts = serde_json::from_str(&text).map_err(|e| {
        input_err(
            &path,
            format!("corrupt cache entry: {e}"),
            "run again with --rebuild-base",
        )
    })?;
    Ok((dir, parts))
}

fn pack_parts(base: &Base, build: &BuildDir, disk: &DiskSettings, dest: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(&super::leftovers::prefix("disk-parts"))
        .tempdir_in(&base.dir)
        .map_err(io_err("creating a temp folder in", &base.dir))?;
    let stage = tmp.path().join("root");
    // Hard links: a full tree to cut up, without copying any data.
    tools::run(
        tools::command(tools::CP.0)
            .arg("-al")
            .arg(base.rootfs())
            .arg(&stage),
    )?;
    let sde = base.meta.source_date_epoch;
    let mut fss = disk.filesystems.clone();
    // Deepest first, so /var/log/audit leaves /var/log before /var/log leaves /var.
    fss.sort_by_key(|f| std::cmp::Reverse(f.mount.len()));
    let mut parts = Vec::new();
    for fs in &fss {
        let sub = tmp.path().join(format!("part-{}", fs.label));
        split_off(&stage, fs.mount.trim_start_matches('/'), &sub, sde)?;
        parts.push(pack_part(
            &sub,
            fs.mount.trim_start_matches('/'),
            &fs.label,
            fs.size_mib * MIB,
            base,
            tmp.path(),
        )?);
    }
    let used = fsutil::survey(&stage)?.used_bytes;
    let root_size = match disk.root_size_mib {
        0 => pack::image_size(used, build.system.image_free_mib),
        n => n * MIB,
    };
    parts.push(pack_part(
        &stage,
        "",
        &build.system.root_label,
        root_size,
        base,
        tmp.path(),
    )?);
    // Root first (place() relies on it), then by mount point; the disk's
    // order is decided when it is assembled (disk_order).
    parts.sort_by(|a, b| a.mount.cmp(&b.mount));
    let json = serde_json::to_string(&parts).unwrap_or_default();
    let list = tmp.path().join("parts.json");
    std::fs::write(&list, json).map_err(io_err("writing", &list))?;
    std::fs::remove_dir_all(&stage).map_err(io_err("removing", &stage))?;
    let kept = tmp.keep();
    std::fs::rename(&kept, dest).map_err(io_err("publishing", dest))
}

/// Moves stage/<mount> to `sub` and leaves an empty mount point with the
/// same owner and mode in its place (created if the base has none).
fn split_off(stage: &Path, mount: &str, sub: &Path, sde: i64) -> Result<()> {
    let from = stage.join(mount);
    let meta = std::fs::symlink_metadata(&from).ok().filter(|m| m.is_dir());
    match &meta {
        Some(_) => std::fs::rename(&from, sub).map_err(io_err("moving", &from))?,
        None => std::fs::create_dir_all(sub).map_err(io_err("creating", sub))?,
    }
    std::fs::create_dir_all(&from).map_err(io_err("creating", &from))?;
    if let Some(m) = meta {
        std::os::unix::fs::chown(&from, Some(m.uid()), Some(m.gid()))
            .map_err(io_err("chown", &from))?;
        std::fs::set_permissions(&from, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io_err("chmod", &from))?;
    }
    fsutil::clamp_times(sub, sde)?;
    fsutil::clamp_times(&from, sde)
}

fn pack_part(
    tree: &Path,
    mount: &str,
    label: &str,
    size: u64,
    base: &Base,
    tmp: &Path,
) -> Result<Part> {
    let survey = fsutil::survey(tree)?;
    let seed = format!("{}:{label}", base.meta.key);
    let spec = Ext4Spec {
        size,
        uuid: pack::uuid_from(&format!("part-uuid:{seed}")),
        hash_seed: pack::uuid_from(&format!("part-hash-seed:{seed}")),
        label: label.to_string(),
        sde: base.meta.source_date_epoch,
    };
    // ext4 metadata and the journal take a few percent; keep a fifth free.
    if survey.used_bytes > size / 5 * 4 {
        return Err(input_err(
            format!("/{mount}"),
            format!(
                "{} MiB of content does not fit a {} MiB filesystem",
                survey.used_bytes / MIB,
                size / MIB
            ),
            "raise its size_mib in the `disk` module's options",
        ));
    }
    pack::make_ext4(
        tree,
        &tmp.join(format!("{label}.img")),
        &spec,
        &survey.paths,
    )?;
    Ok(Part {
        mount: mount.to_string(),
        label: label.to_string(),
        size,
        paths: survey.paths,
    })
}

/// The deepest mount point holding `path` ("" = root) and the path inside it.
fn place<'a>(path: &str, parts: &'a [Part]) -> (&'a Part, String) {
    let mut best: Option<&Part> = None;
    for p in parts.iter().filter(|p| !p.mount.is_empty()) {
        let inside = path == p.mount || path.starts_with(&format!("{}/", p.mount));
        if inside && best.is_none_or(|b| p.mount.len() > b.mount.len()) {
            best = Some(p);
        }
    }
    match best {
        Some(p) => (p, path[p.mount.len()..].trim_start_matches('/').to_string()),
        // Root sorts first in parts.json (its mount is "").
        None => (&parts[0], path.to_string()),
    }
}

fn patched_part(
    dir: &Path,
    part: &Part,
    base: &Base,
    build: &BuildDir,
    all: &[Part],
    work: &Path,
) -> Result<PathBuf> {
    let img = work.join(format!("{}.img", part.label));
    let src = dir.join(format!("{}.img", part.label));
    super::sparse::copy(&src, &img)?;
    let entries: Vec<(String, &Entry)> = build
        .manifest
        .entries
        .iter()
        .filter_map(|e| {
            let (p, rel) = place(&e.path, all);
            (p.label == part.label).then_some((rel, e))
        })
        .collect();
    let sde = build.manifest.source_date_epoch;
    let mut script = plan_fs(PlanInput {
        paths: &part.paths,
        ids: Ids {
            users: &base.meta.users,
            groups: &base.meta.groups,
        },
        overlay: &build.overlay,
        entries,
        disable: if part.mount.is_empty() {
            &build.manifest.units.disable
        } else {
            &[]
        },
        sde,
        uuid: pack::uuid_from(&format!(
            "disk-fs:{}:{}",
            build.manifest.root_hash, part.label
        )),
    })?;
    if part.mount.is_empty() {
        install_fstab(&mut script, build, part, sde)?;
    }
    pack::debugfs(&img, &script, sde)?;
    pack::fsck(&img)?;
    Ok(img)
}

/// disk.img's /etc/fstab is the disk module's rendered fstab.disk.
fn install_fstab(script: &mut String, build: &BuildDir, root: &Part, sde: i64) -> Result<()> {
    let src = build.overlay.join(FSTAB_SOURCE);
    if !src.is_file() {
        return Err(input_err(
            &src,
            "missing: the disk module renders it",
            "import the `disk` module",
        ));
    }
    if root.paths.contains_key("etc/fstab") {
        script.push_str("rm /etc/fstab\n");
    }
    script.push_str(&format!(
        "write {} /etc/fstab\n",
        quote(&src.to_string_lossy())?
    ));
    script.push_str("sif /etc/fstab mode 0100644\nsif /etc/fstab uid 0\nsif /etc/fstab gid 0\n");
    set_times(script, "/etc/fstab", sde)
}

fn part_type(mount: &str) -> &'static str {
    match mount {
        "" => TYPE_ROOT_X86_64,
        "var" => TYPE_VAR,
        "var/tmp" => TYPE_VAR_TMP,
        "home" => TYPE_HOME,
        "srv" => TYPE_SRV,
        ESP_MOUNT => TYPE_ESP,
        _ => TYPE_LINUX_DATA,
    }
}

/// GPT via sfdisk on a plain file, then each filesystem written at its
/// offset with dd (sparse: zero blocks are skipped).
fn assemble(
    build: &BuildDir,
    disk: &DiskSettings,
    parts: &[(Part, PathBuf)],
    work: &Path,
    out: &Path,
) -> Result<DiskOutput> {
    let hash = &build.manifest.root_hash;
    let total: u64 = parts.iter().map(|(p, _)| p.size).sum::<u64>() + 2 * MIB;
    let path = work.join("disk.img");
    let file = std::fs::File::create(&path).map_err(io_err("creating", &path))?;
    file.set_len(total).map_err(io_err("sizing", &path))?;
    let table = partition_table(build, disk, parts);
    let mut script = format!(
        "label: gpt\nlabel-id: {}\nunit: sectors\nfirst-lba: 2048\n",
        pack::uuid_from(&format!("disk:{hash}"))
    );
    for (row, (p, _)) in table.iter().zip(parts) {
        script.push_str(&format!(
            "start={}, size={}, type={}, uuid={}, name=\"{}\"\n",
            row.start_bytes / 512,
            row.size_bytes / 512,
            row.type_guid,
            row.partuuid,
            p.label
        ));
    }
    sfdisk(&path, &script, work)?;
    for (row, (_, img)) in table.iter().zip(parts) {
        tools::run(
            tools::command("dd")
                .arg(format!("if={}", img.display()))
                .arg(format!("of={}", path.display()))
                .args(["bs=1M", "conv=notrunc,sparse", "status=none"])
                .arg(format!("seek={}", row.start_bytes / MIB)),
        )?;
    }
    let sha256 = sha256_file(&path)?;
    let dest = out.join("disk.img");
    std::fs::rename(&path, &dest).map_err(io_err("publishing", &dest))?;
    let root_partuuid = partuuid(build, &build.system.root_label);
    Ok(DiskOutput {
        bootable: parts.iter().any(|(p, _)| p.mount == ESP_MOUNT),
        path: dest,
        sha256,
        root_partuuid,
        cmdline: String::new(),
        qcow2: None,
        partitions: table,
        mounts: Vec::new(),
    })
}

/// The rows of the partition table, in disk order, from 1 MiB on.
fn partition_table(
    build: &BuildDir,
    disk: &DiskSettings,
    parts: &[(Part, PathBuf)],
) -> Vec<PartitionInfo> {
    let mut offset = MIB;
    let mut rows = Vec::new();
    for (i, (p, _)) in parts.iter().enumerate() {
        let options = disk
            .filesystems
            .iter()
            .find(|f| f.mount.trim_start_matches('/') == p.mount)
            .map(|f| f.options.clone())
            .unwrap_or_default();
        rows.push(PartitionInfo {
            number: i + 1,
            label: p.label.clone(),
            mount: format!("/{}", p.mount),
            type_guid: part_type(&p.mount).to_string(),
            partuuid: partuuid(build, &p.label),
            start_bytes: offset,
            size_bytes: p.size,
            options,
            grows: !p.mount.is_empty() && p.mount == disk.grow.trim_start_matches('/'),
        });
        offset += p.size;
    }
    rows
}

fn sfdisk(disk: &Path, script: &str, work: &Path) -> Result<()> {
    let input = work.join("sfdisk.txt");
    std::fs::write(&input, script).map_err(io_err("writing", &input))?;
    let file = std::fs::File::open(&input).map_err(io_err("reading", &input))?;
    tools::run(
        tools::command(tools::SFDISK.0)
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(disk)
            .stdin(file),
    )
    .map(|_| ())
}
