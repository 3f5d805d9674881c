//! One running guest: a QEMU process (or, for the driver's own tests, the
//! backdoor script run on the host) plus the channel to its backdoor.
use super::channel::Channel;
use super::interrupt;
use super::protocol::Outcome;
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// UEFI firmware for QEMU (Debian package ovmf).
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// An image folder as `hardroot image` writes it: the golden disk.img (when
/// the profile imports `disk`), and rootfs.img with its kernel and initrd.
#[derive(Debug, Clone)]
pub struct ImageDir {
    pub rootfs: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub disk: Option<PathBuf>,
    /// image-manifest.json: disk.img's declared partitions and mounts.
    pub manifest: PathBuf,
    /// The profile's kernel command line words (system.kernel_cmdline_extra),
    /// for a direct-kernel boot; disk.img's loader entry has them already.
    pub cmdline_extra: Vec<String>,
}

/// How a machine boots. `UefiDisk` is what a user ships: firmware →
/// systemd-boot → kernel → root by PARTUUID, every partition mounted as on
/// real hardware. `DirectKernel` hands rootfs.img and the kernel to QEMU:
/// quicker, but not the shipped disk (one filesystem, no bootloader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    UefiDisk,
    DirectKernel,
}

impl ImageDir {
    pub fn open(dir: &Path) -> Result<ImageDir, String> {
        let dir = std::fs::canonicalize(dir).map_err(|e| {
            format!(
                "image folder {}: {e} (build one with `hardroot image PROFILE -o DIR`)",
                dir.display()
            )
        })?;
        let disk = dir.join("disk.img");
        let img = ImageDir {
            rootfs: dir.join("rootfs.img"),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            disk: disk.is_file().then_some(disk),
            manifest: dir.join("image-manifest.json"),
            cmdline_extra: cmdline_extra(&dir.join("image-manifest.json")),
        };
        for f in [&img.rootfs, &img.kernel, &img.initrd] {
            if !f.is_file() {
                return Err(format!(
                    "image folder {} has no {} (it needs rootfs.img, vmlinuz, initrd.img)",
                    dir.display(),
                    f.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                ));
            }
        }
        Ok(img)
    }

    /// The files an image stage just wrote.
    pub fn from_output(img: &crate::image::ImageOutput) -> ImageDir {
        ImageDir {
            rootfs: img.rootfs.clone(),
            kernel: img.kernel.clone(),
            initrd: img.initrd.clone(),
            disk: img.disk.clone(),
            cmdline_extra: cmdline_extra(&img.image_manifest),
            manifest: img.image_manifest.clone(),
        }
    }

    /// The shipped disk when there is one, unless a direct kernel boot is asked for.
    pub fn boot_mode(&self, direct_kernel: bool) -> BootMode {
        match (&self.disk, direct_kernel) {
            (Some(_), false) => BootMode::UefiDisk,
            _ => BootMode::DirectKernel,
        }
    }

    /// The file a machine's copy-on-write layer sits on (never written).
    pub fn backing(&self, mode: BootMode) -> &Path {
        match (mode, &self.disk) {
            (BootMode::UefiDisk, Some(disk)) => disk,
            _ => &self.rootfs,
        }
    }

    /// QEMU's boot arguments for `mode`, with `disk` (the copy-on-write
    /// layer) as the machine's virtio disk at PCI slot `slot`. One place for
    /// both vm-test and `hardroot run`.
    pub fn boot_args(&self, mode: BootMode, disk: &Path, slot: &str) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        match mode {
            BootMode::UefiDisk => a.extend(["-bios".into(), OVMF.into()]),
            BootMode::DirectKernel => {
                a.extend(["-kernel".into(), path(&self.kernel)]);
                a.extend(["-initrd".into(), path(&self.initrd)]);
                // panic=-1: a kernel panic "reboots", and -no-reboot turns that into a prompt QEMU exit.
                // no_timer_check: under TCG on a busy host the early IO-APIC timer check can fail.
                let mut cmdline =
                    "root=/dev/vda rw console=ttyS0 panic=-1 no_timer_check".to_string();
                for w in &self.cmdline_extra {
                    cmdline.push(' ');
                    cmdline.push_str(w);
                }
                a.extend(["-append".into(), cmdline]);
            }
        }
        let drive = format!(
            "file={},if=none,id=disk0,format=qcow2,cache=unsafe",
            path(disk)
        );
        a.extend(["-drive".into(), drive]);
        a.extend([
            "-device".into(),
            format!("virtio-blk-pci,drive=disk0,addr={slot}"),
        ]);
        a
    }
}

/// image-manifest.json's kernel.cmdline_extra (empty when absent: an image
/// folder made by hand, or an older manifest).
pub fn cmdline_extra(manifest: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(manifest) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["kernel"]["cmdline_extra"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_string))
        .collect()
}

/// The copy-on-write layer `layer` over the image file `mode` boots: the
/// image itself is never written.
pub fn copy_on_write(image: &ImageDir, mode: BootMode, layer: &Path) -> Result<(), String> {
    if mode == BootMode::UefiDisk && !Path::new(OVMF).is_file() {
        return Err(format!(
            "no UEFI firmware at {OVMF} to boot disk.img (apt-get install ovmf), or pass --direct-kernel"
        ));
    }
    let _ = std::fs::remove_file(layer);
    let backing = path(image.backing(mode));
    super::host::admin(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        &backing,
        "-F",
        "raw",
        &path(layer),
    ])
    .map(|_| ())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
        }
    }
}

/// Everything needed to start one machine's QEMU.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub name: String,
    pub image: ImageDir,
    pub boot: BootMode,
    pub memory_mib: u64,
    pub cpus: u64,
    pub accel: Accel,
    /// Sockets and the copy-on-write disk live here (short paths: unix sockets cap at 108 bytes).
    pub run_dir: PathBuf,
    /// Serial console log, appended across boots; QEMU's own messages go beside it.
    pub serial_log: PathBuf,
    pub qemu_log: PathBuf,
    /// Network namespace and tap device, when the test has a network.
    pub net: Option<(String, String)>,
    pub mac: String,
}

impl VmConfig {
    pub fn disk(&self) -> PathBuf {
        self.run_dir.join(format!("{}.qcow2", self.name))
    }
    fn backdoor_socket(&self) -> PathBuf {
        self.run_dir.join(format!("{}.bd", self.name))
    }
    fn qmp_socket(&self) -> PathBuf {
        self.run_dir.join(format!("{}.qmp", self.name))
    }

    /// This machine's QEMU command line (see `command_line`).
    pub fn qemu_args(&self) -> Vec<String> {
        let (backdoor, qmp) = (self.backdoor_socket(), self.qmp_socket());
        command_line(&Qemu {
            name: Some(&self.name),
            accel: self.accel,
            memory_mib: self.memory_mib,
            cpus: self.cpus,
            boot: QemuBoot::Image {
                image: &self.image,
                mode: self.boot,
                disk: &self.disk(),
            },
            serial: Serial::Append(&self.serial_log),
            control: Some((&backdoor, &qmp)),
            net: match &self.net {
                Some((_, tap)) => Net::Tap {
                    ifname: tap,
                    mac: &self.mac,
                },
                None => Net::None,
            },
            reboot: false,
            rng: true,
        })
    }
}

/// One QEMU machine as vm-test's machines, its KVM probe and `hardroot run`
/// start it; `command_line` is the one place that turns it into arguments.
pub struct Qemu<'a> {
    pub name: Option<&'a str>,
    pub accel: Accel,
    pub memory_mib: u64,
    pub cpus: u64,
    pub boot: QemuBoot<'a>,
    pub serial: Serial<'a>,
    /// vm-test's backdoor (virtio-serial) and QMP sockets.
    pub control: Option<(&'a Path, &'a Path)>,
    pub net: Net<'a>,
    /// Whether a guest reboot reboots (`hardroot run`) or ends QEMU (tests).
    pub reboot: bool,
    /// Entropy at boot: ssh-keygen and friends would otherwise wait for it under TCG.
    pub rng: bool,
}

pub enum QemuBoot<'a> {
    /// An image folder booted as `mode`, writing to the copy-on-write `disk`.
    Image {
        image: &'a ImageDir,
        mode: BootMode,
        disk: &'a Path,
    },
    /// A bare kernel, no disk (the KVM probe).
    Kernel { kernel: &'a Path, append: &'a str },
}

pub enum Serial<'a> {
    /// The console appended to a log file (kept across boots).
    Append(&'a Path),
    /// The console written to a file.
    File(&'a Path),
    /// The console on this terminal; Ctrl-C stops QEMU instead of going to the guest.
    Stdio,
}

pub enum Net<'a> {
    None,
    /// A tap device of the test network, with the machine's MAC address.
    Tap {
        ifname: &'a str,
        mac: &'a str,
    },
    /// QEMU's user network, as the given `-netdev` value.
    User(String),
}

/// The QEMU command line. The disk sits at PCI slot 4 and the NIC at slot 3,
/// so that the guest names it `ens3` on every boot.
pub fn command_line(m: &Qemu) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    if let Some(name) = m.name {
        push(&["-name", name]);
    }
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    if !m.reboot {
        push(&["-no-reboot"]);
    }
    push(&m.accel.args());
    push(&["-m", &m.memory_mib.to_string(), "-smp", &m.cpus.to_string()]);
    match &m.boot {
        QemuBoot::Image { image, mode, disk } => a.extend(image.boot_args(*mode, disk, "0x4")),
        QemuBoot::Kernel { kernel, append } => {
            a.extend([
                "-kernel".into(),
                path(kernel),
                "-append".into(),
                append.to_string(),
            ]);
        }
    }
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    if let Some((backdoor, qmp)) = m.control {
        let bd = format!("socket,id=bd,path={}", path(backdoor));
        push(&["-device", "virtio-serial-pci,addr=0x5", "-chardev", &bd]);
        push(&[
            "-device",
            "virtserialport,chardev=bd,name=org.test.backdoor",
        ]);
        push(&["-qmp", &format!("unix:{},server=on,wait=off", path(qmp))]);
    }
    let serial = match m.serial {
        Serial::Append(log) => format!("file,id=ser0,path={},append=on", path(log)),
        Serial::File(log) => format!("file,id=ser0,path={}", path(log)),
        Serial::Stdio => "stdio,id=ser0,signal=on".to_string(),
    };
    push(&["-chardev", &serial, "-serial", "chardev:ser0"]);
    if m.rng {
        push(&["-device", "virtio-rng-pci,addr=0x6"]);
    }
    let nic = match &m.net {
        Net::None => None,
        Net::Tap { ifname, mac } => Some((
            format!("tap,id=n0,ifname={ifname},script=no,downscript=no"),
            format!("virtio-net-pci,netdev=n0,mac={mac},addr=0x3"),
        )),
        Net::User(netdev) => Some((netdev.clone(), "virtio-net-pci,netdev=n0,addr=0x3".into())),
    };
    if let Some((netdev, device)) = nic {
        push(&["-netdev", &netdev, "-device", &device]);
    }
    a
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// How a guest is run.
#[derive(Debug, Clone)]
pub enum Backend {
    Qemu(Box<VmConfig>),
    /// The backdoor script run directly on the host (tests of the driver without QEMU).
    Local {
        script: PathBuf,
        work_dir: PathBuf,
    },
}

/// A running guest.
pub struct Guest {
    child: Child,
    channel: Channel,
    qmp: Option<PathBuf>,
    qemu_log: Option<PathBuf>,
    pub started: Instant,
}

impl Guest {
    pub fn start(backend: &Backend) -> Result<Guest, String> {
        match backend {
            Backend::Qemu(cfg) => start_qemu(cfg),
            Backend::Local { script, work_dir } => start_local(script, work_dir),
        }
    }

    /// Wait for the backdoor's ready marker; returns the guest's uptime then.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<f64, String> {
        let deadline = Instant::now() + timeout;
        let (child, log) = (&mut self.child, &self.qemu_log);
        self.channel
            .wait_ready(deadline, &mut || alive(child, log.as_deref()))
    }

    pub fn run(&mut self, command: &str, limit_secs: u64) -> Result<Outcome, String> {
        let (child, log) = (&mut self.child, &self.qemu_log);
        self.channel
            .run(command, limit_secs, &mut || alive(child, log.as_deref()))
    }

    pub fn send_only(&mut self, command: &str) -> Result<(), String> {
        self.channel.send_only(command)
    }

    /// Wait until the process ends by itself (poweroff, reboot with -no-reboot).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            interrupt::check()?;
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {}s waiting for the machine to power off",
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop at once: QMP `quit` (QEMU exits cleanly, flushing nothing the test needs),
    /// then SIGKILL if QEMU did not go.
    pub fn hard_stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Some(qmp) = &self.qmp {
            let _ = qmp_quit(qmp);
            if self.wait_exit(Duration::from_secs(3)).is_ok() {
                return;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.hard_stop();
    }
}

fn alive(child: &mut Child, qemu_log: Option<&Path>) -> Result<(), String> {
    match child.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => {
            let said = qemu_log.map(|p| tail_file(p, 10)).unwrap_or_default();
            Err(format!(
                "the machine's process exited ({status}){}",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ))
        }
        Err(e) => Err(format!("cannot check the machine's process: {e}")),
    }
}

fn start_qemu(cfg: &VmConfig) -> Result<Guest, String> {
    let sock = cfg.backdoor_socket();
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(cfg.qmp_socket());
    // Listen before QEMU starts: QEMU connects as a client and fails if nobody listens.
    let listener = UnixListener::bind(&sock)
        .map_err(|e| format!("cannot listen on {}: {e}", sock.display()))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cfg.qemu_log)
        .map_err(|e| format!("cannot write {}: {e}", cfg.qemu_log.display()))?;
    let mut cmd = match &cfg.net {
        Some((ns, _)) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
            c
        }
        None => Command::new("qemu-system-x86_64"),
    };
    cmd.args(cfg.qemu_args())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        // Own process group: Ctrl-C on the terminal reaches only us, and we stop QEMU in order.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        format!("cannot start qemu-system-x86_64: {e} (apt-get install qemu-system-x86)")
    })?;
    let stream = match accept(&listener, &mut child, &cfg.qemu_log) {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    Ok(Guest {
        child,
        channel: Channel::new(stream),
        qmp: Some(cfg.qmp_socket()),
        qemu_log: Some(cfg.qemu_log.clone()),
        started: Instant::now(),
    })
}

fn accept(
    listener: &UnixListener,
    child: &mut Child,
    qemu_log: &Path,
) -> Result<UnixStream, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("accepting QEMU's backdoor connection failed: {e}")),
        }
        alive(child, Some(qemu_log)).map_err(|e| format!("QEMU did not start: {e}"))?;
        interrupt::check()?;
        if Instant::now() >= deadline {
            return Err("timed out waiting for QEMU to connect to the backdoor socket".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_local(script: &Path, work_dir: &Path) -> Result<Guest, String> {
    let (host, guest) = UnixStream::pair().map_err(|e| e.to_string())?;
    let guest_out = guest.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new("bash")
        .arg(script)
        .env("HARDROOT_BACKDOOR_PORT", "-")
        .env("HARDROOT_BACKDOOR_WORK", work_dir)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(guest)))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(guest_out)))
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    Ok(Guest {
        child,
        channel: Channel::new(host),
        qmp: None,
        qemu_log: None,
        started: Instant::now(),
    })
}

fn qmp_quit(socket: &Path) -> Result<(), String> {
    let stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?; // greeting
    writer
        .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
        .map_err(|e| e.to_string())?;
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    writer
        .write_all(b"{\"execute\":\"quit\"}\n")
        .map_err(|e| e.to_string())
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn tail_file(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(256 * 1024);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let all: Vec<&str> = text.lines().collect();
    strip_ansi(&all[all.len().saturating_sub(lines)..].join("\n"))
}

/// systemd colours its console status lines; error messages read better without.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // CSI: ESC [ parameters... final byte in @..~
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// KVM when it really boots a kernel here, else TCG. Nested KVM on the build
/// machines aborts or hangs, so /dev/kvm existing proves nothing: boot the
/// kernel without a root fs and look for its panic (seconds under KVM).
pub fn probe_accel(kernel: &Path, scratch: &Path) -> Accel {
    static CHOICE: OnceLock<Accel> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        let choice = if kvm_boots(kernel, scratch) {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        eprintln!(
            "vm-test: using {}",
            if choice == Accel::Kvm {
                "KVM"
            } else {
                "TCG (-accel tcg -cpu max; KVM is absent or broken)"
            }
        );
        choice
    })
}

fn kvm_boots(kernel: &Path, scratch: &Path) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let log = scratch.join("kvm-probe.log");
    let mut argv = vec!["qemu-system-x86_64".to_string()];
    argv.extend(command_line(&Qemu {
        name: None,
        accel: Accel::Kvm,
        memory_mib: 256,
        cpus: 1,
        boot: QemuBoot::Kernel {
            kernel,
            append: "console=ttyS0 panic=-1",
        },
        serial: Serial::File(&log),
        control: None,
        net: Net::None,
        reboot: false,
        rng: false,
    }));
    let Ok(out) = super::host::run(&argv, Duration::from_secs(20)) else {
        return false;
    };
    out.code == 0 && std::fs::read_to_string(&log).is_ok_and(|s| s.contains("Kernel panic"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(net: bool) -> VmConfig {
        VmConfig {
            name: "server".into(),
            image: ImageDir {
                rootfs: "/i/rootfs.img".into(),
                kernel: "/i/vmlinuz".into(),
                initrd: "/i/initrd.img".into(),
                disk: Some("/i/disk.img".into()),
                manifest: "/i/image-manifest.json".into(),
                cmdline_extra: vec!["audit=1".into()],
            },
            boot: BootMode::DirectKernel,
            memory_mib: 1024,
            cpus: 2,
            accel: Accel::Tcg,
            run_dir: "/tmp/run".into(),
            serial_log: "/out/server.serial.log".into(),
            qemu_log: "/out/server.qemu.log".into(),
            net: net.then(|| ("hr-1-a".to_string(), "tap0".to_string())),
            mac: "52:54:00:00:00:01".into(),
        }
    }

    #[test]
    fn command_line_has_backdoor_serial_qmp_and_fixed_nic_slot() {
        let a = cfg(true).qemu_args().join(" ");
        assert!(a.contains("-accel tcg -cpu max"));
        assert!(a.contains("-no-reboot"));
        assert!(a.contains("socket,id=bd,path=/tmp/run/server.bd"));
        assert!(a.contains("virtserialport,chardev=bd,name=org.test.backdoor"));
        assert!(a.contains("file,id=ser0,path=/out/server.serial.log,append=on"));
        assert!(a.contains("-qmp unix:/tmp/run/server.qmp,server=on,wait=off"));
        assert!(a.contains("tap,id=n0,ifname=tap0,script=no,downscript=no"));
        assert!(a.contains("virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,addr=0x3"));
        assert!(a.contains("file=/tmp/run/server.qcow2,if=none"));
    }

    #[test]
    fn the_shipped_disk_boots_through_firmware_and_direct_kernel_names_its_files() {
        let mut c = cfg(false);
        let direct = c.qemu_args().join(" ");
        assert!(direct.contains("-kernel /i/vmlinuz -initrd /i/initrd.img -append root=/dev/vda"));
        assert!(direct.contains("no_timer_check audit=1 -drive"), "{direct}");
        assert!(!direct.contains("-bios"));
        assert_eq!(c.image.backing(c.boot), Path::new("/i/rootfs.img"));
        c.boot = c.image.boot_mode(false);
        assert_eq!(c.boot, BootMode::UefiDisk);
        let uefi = c.qemu_args().join(" ");
        assert!(uefi.contains(&format!("-bios {OVMF}")), "{uefi}");
        assert!(!uefi.contains("-kernel"), "{uefi}");
        assert!(uefi.contains("file=/tmp/run/server.qcow2,if=none"));
        assert_eq!(c.image.backing(c.boot), Path::new("/i/disk.img"));
        c.image.disk = None;
        assert_eq!(c.image.boot_mode(false), BootMode::DirectKernel);
        assert_eq!(c.image.boot_mode(true), BootMode::DirectKernel);
    }

    #[test]
    fn no_network_no_nic() {
        assert!(!cfg(false).qemu_args().join(" ").contains("netdev"));
    }

    #[test]
    fn missing_image_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinuz"), "").unwrap();
        let err = ImageDir::open(dir.path()).unwrap_err();
        assert!(err.contains("rootfs.img"), "{err}");
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("log");
        std::fs::write(&f, "a\nb\nc\n").unwrap();
        assert_eq!(tail_file(&f, 2), "b\nc");
        assert_eq!(tail_file(&dir.path().join("none"), 2), "");
        std::fs::write(&f, "[\u{1b}[0;32m  OK  \u{1b}[0m] Started\n").unwrap();
        assert_eq!(tail_file(&f, 1), "[  OK  ] Started");
    }
}
