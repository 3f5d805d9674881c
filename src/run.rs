//! `hardroot run`: build the image (base from cache) and boot it interactively,
//! like `mkosi qemu`: serial console on this terminal, SSH forwarded from
//! 127.0.0.1 only, the golden image untouched (writes go to a throwaway
//! copy-on-write layer). Ctrl-C or a poweroff in the guest ends it and cleans up.
use crate::image::{ImageArgs, ImageOutput};
use crate::vmtest::qemu::probe_accel;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The profile to boot, e.g. profiles/xmpp-server.toml
    pub profile: PathBuf,
    /// Output folder for the image [default: out/run/<profile>]
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Host port on 127.0.0.1 forwarded to the guest's SSH port 22
    #[arg(long, default_value_t = 2222)]
    pub ssh_port: u16,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 2048)]
    pub memory: u32,
    /// Guest CPUs
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    #[arg(long = "modules", value_name = "DIR")]
    pub module_dirs: Vec<PathBuf>,
    /// Base cache folder (as for `hardroot image`)
    #[arg(long, env = "HARDROOT_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

pub fn run(a: &RunArgs) -> miette::Result<()> {
    let name = a
        .profile
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile".into());
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out/run").join(&name));
    let image = build(a, &out)?;
    let layer = out.join("run-layer.qcow2");
    copy_on_write(&image, &layer)?;
    let accel = probe_accel(&image.kernel, &out);
    eprintln!(
        "==> booting {name}: ssh -p {} root@127.0.0.1   (Ctrl-C or `poweroff` to stop)",
        a.ssh_port
    );
    let status = Command::new("qemu-system-x86_64")
        .args(qemu_args(a, &image, &layer, accel.args()))
        .status();
    let _ = std::fs::remove_file(&layer);
    match status {
        Ok(s) if s.success() || s.code().is_none() => Ok(()),
        Ok(s) => Err(miette::miette!("qemu exited with {s}")),
        Err(e) => Err(miette::miette!("cannot start qemu-system-x86_64: {e}")
            .wrap_err("install the Debian package qemu-system-x86")),
    }
}

fn build(a: &RunArgs, out: &Path) -> miette::Result<ImageOutput> {
    let args = ImageArgs {
        profile: Some(a.profile.clone()),
        out: out.to_path_buf(),
        from_build: None,
        module_dirs: a.module_dirs.clone(),
        cache: a.cache.clone(),
        rebuild_base: false,
        qcow2: false,
        disk: false,
        sources: Vec::new(),
        quiet: false,
        json: false,
    };
    crate::image::build_profile(&args)
}

fn copy_on_write(image: &ImageOutput, layer: &Path) -> miette::Result<()> {
    let _ = std::fs::remove_file(layer);
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&image.rootfs)
        .arg(layer)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(miette::miette!(
            "qemu-img could not create {} (install qemu-utils)",
            layer.display()
        ))
    }
}

fn qemu_args(a: &RunArgs, image: &ImageOutput, layer: &Path, accel: [&str; 4]) -> Vec<String> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut v: Vec<String> = accel.iter().map(|x| x.to_string()).collect();
    v.extend(
        [
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-m",
            &a.memory.to_string(),
            "-smp",
            &a.cpus.to_string(),
            "-kernel",
            &s(&image.kernel),
            "-initrd",
            &s(&image.initrd),
            "-append",
            "root=/dev/vda rw console=ttyS0",
            "-drive",
            &format!("file={},if=virtio,format=qcow2,cache=unsafe", s(layer)),
            // signal=on: Ctrl-C stops QEMU instead of going to the guest.
            "-chardev",
            "stdio,id=con,signal=on",
            "-serial",
            "chardev:con",
            // restrict=on: the guest reaches nothing; only the forwarded port comes in, on loopback.
            "-netdev",
            &format!(
                "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{}-:22",
                a.ssh_port
            ),
            "-device",
            "virtio-net-pci,netdev=n0,addr=0x3",
            "-device",
            "virtio-rng-pci",
        ]
        .iter()
        .map(|x| x.to_string()),
    );
    v
}
