//! The EFI system partition of a bootable disk.img: FAT32 made with
//! mkfs.vfat on a plain file and filled with mtools (no mount, no loop
//! device), holding systemd-boot as the removable-media loader
//! (EFI/BOOT/BOOTX64.EFI, so no NVRAM entry is needed), the kernel, the
//! initrd and one loader entry that boots the root partition by PARTUUID.
//! Reproducible: --invariant and a volume id from the overlay's root hash;
//! mtools takes file and folder times from SOURCE_DATE_EPOCH.
use super::base::Base;
use super::error::{Result, input_err, io_err};
use super::manifest::BuildDir;
use super::tools;
use std::path::{Path, PathBuf};

pub const MKFS_VFAT: (&str, &str) = ("mkfs.vfat", "dosfstools");
pub const MCOPY: (&str, &str) = ("mcopy", "mtools");
pub const MMD: (&str, &str) = ("mmd", "mtools");
/// systemd-boot's UEFI binary inside the image (package systemd-boot-efi).
const SYSTEMD_BOOT: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// Builds `work/esp.img` of `size` bytes; `cmdline` goes into the loader entry.
pub fn make(
    base: &Base,
    build: &BuildDir,
    cmdline: &str,
    size: u64,
    work: &Path,
) -> Result<PathBuf> {
    for tool in [MKFS_VFAT, MCOPY, MMD] {
        tools::require(tool)?;
    }
    let efi = base.rootfs().join(SYSTEMD_BOOT);
    if !efi.is_file() {
        return Err(input_err(
            &efi,
            "systemd-boot is not in the base",
            "set disk.bootable = true in the profile: the disk module then adds systemd-boot-efi to the packages",
        ));
    }
    let sde = build.manifest.source_date_epoch;
    let files = stage_files(base, &efi, cmdline, sde, &work.join("esp"))?;
    let img = work.join("esp.img");
    mkfs(&img, size, &build.manifest.root_hash, sde)?;
    let mut md = mtools(MMD.0, &img, sde);
    md.args(["::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries"]);
    tools::run(&mut md)?;
    for (src, dest) in &files {
        let mut cp = mtools(MCOPY.0, &img, sde);
        cp.arg("-m").arg(src).arg(format!("::/{dest}"));
        tools::run(&mut cp)?;
    }
    Ok(img)
}

/// The ESP's files in a scratch folder, each with mtime SOURCE_DATE_EPOCH
/// (mcopy -m keeps it): (source, path on the ESP).
fn stage_files(
    base: &Base,
    efi: &Path,
    cmdline: &str,
    sde: i64,
    dir: &Path,
) -> Result<Vec<(PathBuf, String)>> {
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let entry = format!(
        "title hardroot\nversion {}\nlinux /vmlinuz\ninitrd /initrd.img\noptions {cmdline}\n",
        base.meta.kernel
    );
    let texts = [
        (
            "loader.conf",
            // editor no: nobody at the console edits the kernel command line (CIS 1.4.x).
            "default hardroot.conf\ntimeout 0\neditor no\n".to_string(),
        ),
        ("hardroot.conf", entry),
    ];
    for (name, text) in &texts {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(io_err("writing", &p))?;
    }
    for (from, name) in [
        (efi.to_path_buf(), "BOOTX64.EFI"),
        (base.dir.join("vmlinuz"), "vmlinuz"),
        (base.dir.join("initrd.img"), "initrd.img"),
    ] {
        let p = dir.join(name);
        std::fs::copy(&from, &p).map_err(io_err("copying", &from))?;
    }
    let files = [
        ("BOOTX64.EFI", "EFI/BOOT/BOOTX64.EFI"),
        ("vmlinuz", "vmlinuz"),
        ("initrd.img", "initrd.img"),
        ("loader.conf", "loader/loader.conf"),
        ("hardroot.conf", "loader/entries/hardroot.conf"),
    ];
    let mut out = Vec::new();
    for (name, dest) in files {
        let p = dir.join(name);
        crate::emit::set_mtime(&p, sde).map_err(io_err("setting times of", &p))?;
        out.push((p, dest.to_string()));
    }
    Ok(out)
}

fn mkfs(img: &Path, size: u64, root_hash: &str, sde: i64) -> Result<()> {
    let volume_id: String = root_hash.chars().take(8).collect();
    let mut cmd = tools::command(MKFS_VFAT.0);
    cmd.env("SOURCE_DATE_EPOCH", sde.to_string())
        .args([
            "-C",
            "-F",
            "32",
            "-n",
            "ESP",
            "--invariant",
            "-i",
            &volume_id,
        ])
        .arg(img)
        .arg((size / 1024).to_string());
    tools::run(&mut cmd).map(|_| ())
}

/// An mtools command on `img`, without mtools' disk geometry checks.
fn mtools(program: &str, img: &Path, sde: i64) -> std::process::Command {
    let mut cmd = tools::command(program);
    cmd.env("MTOOLS_SKIP_CHECK", "1")
        .env("SOURCE_DATE_EPOCH", sde.to_string())
        .arg("-i")
        .arg(img);
    cmd
}
