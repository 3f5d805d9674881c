//! `hardroot run`: build the image (base from cache) and boot it interactively,
//! like `mkosi qemu`: serial console on this terminal, SSH forwarded from
//! 127.0.0.1 only, the golden image untouched (writes go to a throwaway
//! copy-on-write layer). Ctrl-C or a poweroff in the guest ends it and cleans up.
//! `--ssh-key FILE` adds a key to ssh.authorized_keys through a wrapper profile.
use crate::image::{ImageArgs, ImageOutput};
use crate::vmtest::qemu::{
    Accel, BootMode, ImageDir, Net, Qemu, QemuBoot, Serial, command_line, copy_on_write,
    probe_accel,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// What `hardroot run` asks.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The profile to boot, e.g. profiles/xmpp-server.toml
    pub profile: PathBuf,
    /// Output folder for the image [default: out/run/<profile>]
    pub out: Option<PathBuf>,
    /// Host port on 127.0.0.1 forwarded to the guest's SSH port (the profile's ssh.port)
    pub ssh_port: u16,
    /// Guest memory in MiB
    pub memory: u32,
    /// Guest CPUs
    pub cpus: u32,
    /// Extra folder of modules, searched before modules/ beside the profile (repeatable)
    pub module_dirs: Vec<PathBuf>,
    /// Cache of Debian bases [default: $XDG_CACHE_HOME/hardroot or ~/.cache/hardroot]
    pub cache: Option<PathBuf>,
    /// Let this public key (e.g. ~/.ssh/id_ed25519.pub) log in as root too: it is added to
    /// ssh.authorized_keys for this run's image only (the profile must import `ssh`)
    pub ssh_key: Option<PathBuf>,
    /// Boot rootfs.img with QEMU's -kernel instead of the shipped disk.img through UEFI firmware
    pub direct_kernel: bool,
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
    for note in ssh_notes(&out.join("config.json")) {
        eprintln!("note: {note}");
    }
    let layer = out.join("run-layer.qcow2");
    let dir = ImageDir::from_output(&image);
    let mode = dir.boot_mode(a.direct_kernel);
    copy_on_write(&dir, mode, &layer).map_err(|e| miette::miette!("{e}"))?;
    let accel = probe_accel(&image.kernel, &out);
    // Ctrl-C on a terminal reaches QEMU too (signal=on) and it quits; a SIGTERM
    // sent to hardroot alone is passed on. Either way the layer is removed.
    crate::vmtest::interrupt::install();
    eprintln!(
        "==> booting {name}: ssh -p {} root@127.0.0.1   (Ctrl-C or `poweroff` to stop)",
        a.ssh_port
    );
    let guest_port = guest_ssh_port(&out.join("config.json"));
    let status = Command::new("qemu-system-x86_64")
        .args(qemu_args(a, &dir, mode, &layer, accel, guest_port))
        .spawn()
        .and_then(wait_or_stop);
    let _ = std::fs::remove_file(&layer);
    match status {
        Ok(s) if s.success() || s.code().is_none() => Ok(()),
        Ok(s) => Err(miette::miette!("qemu exited with {s}")),
        Err(e) => Err(miette::miette!("cannot start qemu-system-x86_64: {e}")
            .wrap_err("install the Debian package qemu-system-x86")),
    }
}

/// Waits for QEMU; on SIGINT/SIGTERM to hardroot, asks QEMU to quit (SIGTERM)
/// and waits for it, so that nothing outlives `hardroot run`.
fn wait_or_stop(mut qemu: Child) -> std::io::Result<ExitStatus> {
    let mut asked = false;
    loop {
        if let Some(status) = qemu.try_wait()? {
            return Ok(status);
        }
        if crate::vmtest::interrupt::requested() && !asked {
            if let Ok(pid) = i32::try_from(qemu.id()) {
                // SAFETY: kill(2) on our own child's pid has no memory effects.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            asked = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn build(a: &RunArgs, out: &Path) -> miette::Result<ImageOutput> {
    // Holds the wrapper profile (if any) until the image is built.
    let wrapper_dir = tempfile::Builder::new()
        .prefix("hardroot-run-")
        .tempdir()
        .map_err(|e| miette::miette!("cannot make a temp folder: {e}"))?;
    let profile = match &a.ssh_key {
        Some(key) => {
            require_ssh_module(a)?;
            with_key(&a.profile, key, wrapper_dir.path())?
        }
        None => a.profile.clone(),
    };
    let args = ImageArgs {
        profiles: vec![profile],
        out: out.to_path_buf(),
        jobs: 1,
        from_build: None,
        from_manifest: None,
        snapshot: None,
        module_dirs: a.module_dirs.clone(),
        cache: a.cache.clone(),
        rebuild_base: false,
        qcow2: false,
        no_disk: a.direct_kernel,
        sources: Vec::new(),
        quiet: false,
        shared: Default::default(),
    };
    crate::image::build_profile(&args)
}

/// Said about the user's profile, not about the wrapper that would name it.
fn require_ssh_module(a: &RunArgs) -> miette::Result<()> {
    let (config, _) = crate::build::check(&a.profile, &a.module_dirs)?;
    if config.modules.iter().any(|m| m.name == "ssh") {
        return Ok(());
    }
    Err(miette::miette!(
        "--ssh-key needs the ssh module, and {} does not import it: add \"ssh\" to its [profile] imports, \
         or log in on the console",
        a.profile.display()
    ))
}

/// A profile that imports PROFILE and adds one key to ssh.authorized_keys
/// (lists concatenate, so the profile's own keys stay). The key goes through
/// the ssh module's type check like any profile value. Same file name, so the
/// profile keeps its name.
fn with_key(profile: &Path, key_file: &Path, dir: &Path) -> miette::Result<PathBuf> {
    let text = std::fs::read_to_string(key_file)
        .map_err(|e| miette::miette!("cannot read --ssh-key {}: {e}", key_file.display()))?;
    let Some(key) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    else {
        return Err(miette::miette!(
            "--ssh-key {} holds no key; give a public key file such as ~/.ssh/id_ed25519.pub",
            key_file.display()
        ));
    };
    let original =
        std::path::absolute(profile).map_err(|e| miette::miette!("{}: {e}", profile.display()))?;
    let mut head = toml_edit::Table::new();
    head["description"] = toml_edit::value("hardroot run: the profile plus --ssh-key");
    head["imports"] = toml_edit::value(toml_edit::Array::from_iter([original
        .to_string_lossy()
        .into_owned()]));
    let mut ssh = toml_edit::Table::new();
    ssh["authorized_keys"] = toml_edit::value(toml_edit::Array::from_iter([key]));
    let mut doc = toml_edit::DocumentMut::new();
    doc.insert("profile", toml_edit::Item::Table(head));
    doc.insert("ssh", toml_edit::Item::Table(ssh));
    let name = profile
        .file_name()
        .unwrap_or(std::ffi::OsStr::new("profile.toml"));
    let path = dir.join(name);
    std::fs::write(&path, doc.to_string())
        .map_err(|e| miette::miette!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Why the forwarded SSH port may not answer, read from the evaluated
/// options: QEMU's user network gives the guest 10.0.2.15 by DHCP, and the
/// host's forwarded connections arrive from 10.0.2.2.
fn ssh_notes(config: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(config) else {
        return Vec::new();
    };
    let Ok(c) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    if c.get("ssh").is_none() {
        return vec!["the profile has no ssh module: log in on this console".into()];
    }
    let mut notes = Vec::new();
    let statics = c["networking"]["addresses"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    if statics {
        notes.push(
            "networking.addresses is set, but QEMU's user network only reaches a guest \
             that takes 10.0.2.15 by DHCP: the SSH port will not answer (use this console, \
             or a profile without static addresses)"
                .into(),
        );
    }
    let host = std::net::Ipv4Addr::new(10, 0, 2, 2);
    let trusted = c["firewall"]["trusted_v4"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str()?.parse::<ipnet::Ipv4Net>().ok())
        .any(|n| n.contains(&host));
    if c["ssh"]["exposure"] == "trusted" && !trusted {
        notes.push(
            "ssh.exposure is \"trusted\" and firewall.trusted_v4 lacks 10.0.2.2, where \
             forwarded connections come from: the firewall drops them"
                .into(),
        );
    }
    notes
}

/// The port sshd listens on in the guest: the profile's `ssh.port` as the
/// build evaluated it, 22 when the profile has no ssh module.
fn guest_ssh_port(config: &Path) -> u16 {
    std::fs::read_to_string(config)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|c| c["ssh"]["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(22)
}

/// QEMU's user network with one way in: 127.0.0.1:HOST_PORT to the guest's sshd.
fn user_netdev(host_port: u16, guest_port: u16) -> String {
    format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}")
}

fn qemu_args(
    a: &RunArgs,
    image: &ImageDir,
    mode: BootMode,
    layer: &Path,
    accel: Accel,
    guest_port: u16,
) -> Vec<String> {
    command_line(&Qemu {
        name: None,
        accel,
        memory_mib: u64::from(a.memory),
        cpus: u64::from(a.cpus),
        boot: QemuBoot::Image {
            image,
            mode,
            disk: layer,
        },
        serial: Serial::Stdio,
        control: None,
        // restrict=on: the guest reaches nothing; only the forwarded port comes in, on loopback.
        net: Net::User(user_netdev(a.ssh_port, guest_port)),
        reboot: true,
        rng: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_say_why_ssh_will_not_answer() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("config.json");
        let write = |v: serde_json::Value| std::fs::write(&f, v.to_string()).unwrap();
        write(serde_json::json!({ "system": {} }));
        assert!(ssh_notes(&f)[0].contains("no ssh module"));
        write(serde_json::json!({
            "ssh": { "exposure": "trusted" },
            "networking": { "addresses": [{ "address": "192.0.2.10", "prefix": 24 }] },
            "firewall": { "trusted_v4": ["203.0.113.0/24"] },
        }));
        let notes = ssh_notes(&f);
        assert_eq!(notes.len(), 2, "{notes:?}");
        write(serde_json::json!({
            "ssh": { "exposure": "trusted" },
            "networking": { "addresses": [] },
            "firewall": { "trusted_v4": ["10.0.2.0/24"] },
        }));
        assert!(ssh_notes(&f).is_empty());
    }

    #[test]
    fn the_forwarded_port_reaches_the_profiles_ssh_port() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("config.json");
        std::fs::write(&f, r#"{"ssh": {"port": 2200}}"#).unwrap();
        assert_eq!(guest_ssh_port(&f), 2200);
        std::fs::write(&f, r#"{"system": {}}"#).unwrap();
        assert_eq!(guest_ssh_port(&f), 22, "no ssh module: sshd's default");
        assert_eq!(guest_ssh_port(&t.path().join("missing.json")), 22);
        assert_eq!(
            user_netdev(2022, 2200),
            "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2022-:2200"
        );
    }

    #[test]
    fn the_console_is_this_terminal_and_only_ssh_comes_in() {
        let image = ImageDir {
            rootfs: "/i/rootfs.img".into(),
            kernel: "/i/vmlinuz".into(),
            initrd: "/i/initrd.img".into(),
            disk: Some("/i/disk.img".into()),
            manifest: "/i/image-manifest.json".into(),
            cmdline_extra: Vec::new(),
        };
        let a = RunArgs {
            profile: "p.toml".into(),
            out: None,
            ssh_port: 2022,
            memory: 1024,
            cpus: 2,
            module_dirs: Vec::new(),
            cache: None,
            ssh_key: None,
            direct_kernel: false,
        };
        let line = qemu_args(
            &a,
            &image,
            BootMode::UefiDisk,
            Path::new("/o/layer.qcow2"),
            Accel::Tcg,
            22,
        )
        .join(" ");
        assert!(
            line.contains("-chardev stdio,id=ser0,signal=on -serial chardev:ser0"),
            "{line}"
        );
        assert!(
            line.contains("-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2022-:22"),
            "{line}"
        );
        assert!(
            line.contains("file=/o/layer.qcow2,if=none") && line.contains("-m 1024 -smp 2"),
            "{line}"
        );
        // A reboot inside the guest reboots it; no test backdoor, no QMP.
        assert!(
            !line.contains("-no-reboot") && !line.contains("backdoor") && !line.contains("-qmp"),
            "{line}"
        );
    }

    #[test]
    fn the_key_is_added_to_the_profile_it_wraps() {
        let t = tempfile::tempdir().unwrap();
        let key = t.path().join("k.pub");
        std::fs::write(&key, "# comment\n\nssh-ed25519 AAAAC3Nza\"x t@h\n").unwrap();
        let wrapper = with_key(Path::new("profiles/p.toml"), &key, t.path()).unwrap();
        assert_eq!(wrapper.file_name().unwrap(), "p.toml");
        let doc: toml_edit::DocumentMut =
            std::fs::read_to_string(&wrapper).unwrap().parse().unwrap();
        let imports = doc["profile"]["imports"].as_array().unwrap();
        assert!(Path::new(imports.get(0).unwrap().as_str().unwrap()).is_absolute());
        // The quote stays inside the string: the ssh module's pattern rejects it later.
        let keys = doc["ssh"]["authorized_keys"].as_array().unwrap();
        assert_eq!(
            keys.get(0).unwrap().as_str(),
            Some("ssh-ed25519 AAAAC3Nza\"x t@h")
        );
        std::fs::write(&key, "\n# only a comment\n").unwrap();
        assert!(with_key(Path::new("p.toml"), &key, t.path()).is_err());
    }
}
