//! Host tools the image stage runs, and how it runs them.
use super::error::{ImageError, Result, io_err};
use std::path::Path;
use std::process::{Command, Stdio};

/// (program, Debian package that provides it)
pub const MMDEBSTRAP: (&str, &str) = ("mmdebstrap", "mmdebstrap");
pub const MKE2FS: (&str, &str) = ("mke2fs", "e2fsprogs");
pub const DEBUGFS: (&str, &str) = ("debugfs", "e2fsprogs");
pub const E2FSCK: (&str, &str) = ("e2fsck", "e2fsprogs");
pub const QEMU_IMG: (&str, &str) = ("qemu-img", "qemu-utils");
pub const SFDISK: (&str, &str) = ("sfdisk", "fdisk");
pub const CP: (&str, &str) = ("cp", "coreutils");
pub const UNSHARE: (&str, &str) = ("unshare", "util-linux");
pub const TAR: (&str, &str) = ("tar", "tar");
pub const ZSTD: (&str, &str) = ("zstd", "zstd");

pub fn require(tool: (&str, &str)) -> Result<()> {
    if find_on_path(tool.0) {
        Ok(())
    } else {
        Err(ImageError::ToolMissing {
            tool: tool.0.into(),
            package: tool.1.into(),
        })
    }
}

fn find_on_path(name: &str) -> bool {
    // sbin is searched too: e2fsprogs lives there and a non-login root shell may lack it.
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(name).is_file())
}

pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(ImageError::NotRoot)
    }
}

/// A command in the one environment every image tool runs in, whatever the
/// builder's: the same bytes from a build anywhere (issue 31). Nothing of the
/// caller's environment passes but PATH (where the tools are; sbin added, as
/// a non-login root shell may lack it), TMPDIR and the proxy settings (where
/// scratch files go and how packages travel: neither reaches the image).
/// Above all no TZ: Debian's maintainer scripts wrote the builder's zone into
/// postgresql.conf, and mtools stamps FAT entries in local time. Umask 022, as
/// on a stock Debian system, for the files maintainer scripts create. Tool
/// output stays parseable (C locale). The child is killed if we die first, so
/// a killed `hardroot image` leaves no tool running on behind it, writing
/// into files nobody will read.
pub fn command(program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for (name, value) in std::env::vars_os() {
        if PASSED_THROUGH.iter().any(|p| name == *p) {
            cmd.env(name, value);
        }
    }
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{path}:/usr/sbin:/sbin"));
    for (name, value) in FIXED_ENV {
        cmd.env(name, value);
    }
    let parent = std::process::id();
    // SAFETY: the hook only makes async-signal-safe calls (umask, prctl,
    // getppid) and allocates nothing unless it fails.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(0o022);
            die_with_parent(parent)
        })
    };
    cmd
}

/// What every image tool sees, on every builder.
pub const FIXED_ENV: [(&str, &str); 5] = [
    ("TZ", "UTC"),
    ("LC_ALL", "C.UTF-8"),
    ("LANG", "C.UTF-8"),
    ("HOME", "/root"),
    ("DEBIAN_FRONTEND", "noninteractive"),
];

/// What a tool may take from the builder's environment: it decides where
/// scratch files and downloads go, never what they contain.
const PASSED_THROUGH: [&str; 9] = [
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// In the forked child: SIGKILL when the parent goes (PR_SET_PDEATHSIG).
fn die_with_parent(parent: u32) -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number; no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The parent may have died between fork and prctl: then nobody would kill us.
    // SAFETY: getppid has no preconditions.
    if u32::try_from(unsafe { libc::getppid() }).ok() != Some(parent) {
        return Err(std::io::Error::other(
            "hardroot exited while starting a tool",
        ));
    }
    Ok(())
}

/// `program` in a mount and pid namespace of its own. For mmdebstrap: the
/// /dev, /proc and /sys mounts it makes in the tree, and every process it
/// starts (apt, dpkg, maintainer scripts), vanish with it. If we are killed,
/// unshare is killed (see `command`), --kill-child kills the namespace's first
/// process, and the kernel then kills the rest and drops the mounts; before,
/// a killed run left mmdebstrap running and its mounts in the host's table.
pub fn contained(program: &str) -> Command {
    let mut cmd = command(UNSHARE.0);
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--kill-child=SIGKILL",
        "--",
        program,
    ]);
    cmd
}

/// Runs to completion; on failure the error carries the end of stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = describe(cmd);
    // output() gives the child an empty stdin unless the caller set one (sfdisk).
    let out = cmd.output().map_err(io_err(
        "running",
        cmd.get_program().to_string_lossy().to_string(),
    ))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let mut said = String::from_utf8_lossy(&out.stderr).into_owned();
    if said.trim().is_empty() {
        said = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    Err(ImageError::Command {
        command: shown,
        status: out.status.to_string(),
        hint: tail(&said, 20),
    })
}

/// Runs with stdout and stderr appended to `log`; on failure the error names the log.
pub fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    let shown = describe(cmd);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err("opening", log))?;
    let err_file = file.try_clone().map_err(io_err("opening", log))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        .status()
        .map_err(io_err(
            "running",
            cmd.get_program().to_string_lossy().to_string(),
        ))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Err(ImageError::Command {
        command: shown,
        status: status.to_string(),
        hint: format!("last lines of {}:\n{}", log.display(), tail(&text, 25)),
    })
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if s.len() > 400 {
        s.truncate(400);
        s.push_str(" …");
    }
    s
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Identifies the installed mmdebstrap for the base cache key: the sha256 of
/// the script itself (a single Perl file), which is exact and, unlike
/// `mmdebstrap --version`, costs no interpreter start.
pub fn mmdebstrap_version() -> Result<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join(MMDEBSTRAP.0))
        .find(|p| p.is_file());
    let Some(script) = found else {
        return Err(ImageError::ToolMissing {
            tool: MMDEBSTRAP.0.into(),
            package: MMDEBSTRAP.1.into(),
        });
    };
    Ok(format!("sha256:{}", super::cache::sha256_file(&script)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the builder's environment (this test's, here), a tool sees
    /// the fixed one: UTC, C.UTF-8, umask 022, HOME /root, and no variable
    /// that is neither fixed nor passed through.
    #[test]
    fn tools_run_in_the_fixed_environment() {
        let out = run(command("sh").args(["-c", "umask; env | sort"])).expect("sh runs");
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("0022"), "{out}");
        let names: Vec<&str> = lines.filter_map(|l| l.split('=').next()).collect();
        for (name, value) in FIXED_ENV {
            assert!(
                out.contains(&format!("\n{name}={value}\n")),
                "{name}: {out}"
            );
        }
        let allowed: Vec<&str> = FIXED_ENV
            .iter()
            .map(|(n, _)| *n)
            .chain(PASSED_THROUGH)
            .chain(["PATH", "PWD", "SHLVL", "_"])
            .collect();
        let leaked: Vec<&&str> = names.iter().filter(|n| !allowed.contains(n)).collect();
        assert!(
            leaked.is_empty(),
            "the caller's environment leaked: {leaked:?}"
        );
    }
}
