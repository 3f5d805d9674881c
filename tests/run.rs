//! `hardroot run` end to end: build and boot a small profile, log in over the
//! forwarded SSH port with a key the test made and passed with --ssh-key,
//! power off from inside; then a second run stopped by SIGINT. Both times
//! QEMU and the temporary files must be gone afterwards.
//!
//! Needs root, QEMU, mmdebstrap and ssh (scripts/deps.sh), so it is ignored
//! in a plain `cargo test`:
//!
//!     cargo test --release --test suite -- --ignored run::
use crate::common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROFILE: &str = r#"[profile]
description = "Smallest machine with SSH, for the hardroot run test"
imports = ["system", "ssh"]

[networking]
hostname = "runtest"

[firewall]
# QEMU's user network: forwarded connections come from the host side, 10.0.2.2.
trusted_v4 = ["10.0.2.2/32"]
"#;

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    key: PathBuf,
    profile: PathBuf,
    out: PathBuf,
    /// TMPDIR of `hardroot run`: must be empty once it has exited.
    scratch: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let key = dir.join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "run-test", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(made.success());
    let profile = dir.join("run-ssh.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let scratch = dir.join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    Setup {
        out: dir.join("out"),
        _tmp: tmp,
        dir,
        key,
        profile,
        scratch,
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start_run(s: &Setup, port: u16) -> Child {
    let log = |name: &str| std::fs::File::create(s.dir.join(name)).unwrap();
    Command::new(bin())
        .arg("run")
        .arg(&s.profile)
        .arg("--modules")
        .arg(repo().join("modules"))
        .arg("--ssh-key")
        .arg(s.key.with_extension("pub"))
        .arg("--ssh-port")
        .arg(port.to_string())
        .args(["--memory", "768", "-o"])
        .arg(&s.out)
        .env("TMPDIR", &s.scratch)
        // The serial console is the terminal of `run`; here a pipe kept open.
        .stdin(Stdio::piped())
        .stdout(log("console.log"))
        .stderr(log("run.log"))
        .spawn()
        .expect("start hardroot run")
}

/// The port in `run`'s "ssh -p PORT root@127.0.0.1" line, once it is printed.
fn printed_port(s: &Setup, child: &mut Child, limit: Duration) -> u16 {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(s.dir.join("run.log")).unwrap_or_default();
        let port = log
            .split("ssh -p ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok());
        if let Some(port) = port {
            assert!(log.contains("root@127.0.0.1"), "{log}");
            return port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("hardroot run exited ({status}) before booting:\n{log}");
        }
        assert!(
            started.elapsed() < limit,
            "no ssh line from hardroot run:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn ssh(s: &Setup, port: u16, cmd: &str) -> std::process::Output {
    Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "-i",
        ])
        .arg(&s.key)
        .arg("-p")
        .arg(port.to_string())
        .arg("root@127.0.0.1")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("ssh (openssh-client)")
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("hardroot run still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Nothing left behind: no QEMU on this run's disk layer, no layer, no temp files.
fn assert_clean(s: &Setup) {
    let layer = s.out.join("run-layer.qcow2");
    assert!(!layer.exists(), "{} was left behind", layer.display());
    assert!(
        !qemu_running_with(&layer),
        "a QEMU on {} outlived hardroot run",
        layer.display()
    );
    let left: Vec<_> = std::fs::read_dir(&s.scratch)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

fn qemu_running_with(needle: &Path) -> bool {
    let needle = needle.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read(p.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&needle))
            .unwrap_or(false)
    })
}

fn log_of(s: &Setup) -> String {
    let tail = |name: &str| {
        let t = std::fs::read_to_string(s.dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    format!(
        "--- run.log ---\n{}\n--- console ---\n{}",
        tail("run.log"),
        tail("console.log")
    )
}

#[test]
#[ignore = "builds an image and boots QEMU; needs root, qemu, mmdebstrap and ssh"]
fn run_boots_accepts_the_given_key_and_cleans_up() {
    let s = setup();
    let port = free_port();
    let mut child = start_run(&s, port);
    // A cold base (new package set) takes minutes; a cached one seconds.
    assert_eq!(
        printed_port(&s, &mut child, Duration::from_secs(1200)),
        port
    );
    let booted = Instant::now();
    let started = Instant::now();
    let hostname = loop {
        let o = ssh(&s, port, "cat /etc/hostname");
        if o.status.success() {
            break text(&o.stdout);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("hardroot run exited ({status}):\n{}", log_of(&s));
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!(
                "no SSH login within 300 s: {}\n{}",
                text(&o.stderr),
                log_of(&s)
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(hostname.trim(), "runtest");
    eprintln!(
        "run: SSH login {:.1} s after the boot line",
        booted.elapsed().as_secs_f64()
    );
    // The connection may drop before ssh sees an exit code: only the result counts.
    let _ = ssh(&s, port, "systemctl poweroff");
    let status = wait_exit(&mut child, Duration::from_secs(120));
    assert!(
        status.success(),
        "run after poweroff: {status}\n{}",
        log_of(&s)
    );
    assert_clean(&s);

    // The same image again (seconds now), stopped by SIGINT to hardroot alone.
    let mut child = start_run(&s, port);
    printed_port(&s, &mut child, Duration::from_secs(300));
    std::thread::sleep(Duration::from_secs(3));
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on a child of this test.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert!(
        status.code().is_some(),
        "hardroot run died of the signal instead of cleaning up: {status}\n{}",
        log_of(&s)
    );
    assert_clean(&s);
}
