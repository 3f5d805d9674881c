//! scripts/deps.sh cannot half-succeed: it decides by the commands the tests
//! run, not by what dpkg says is installed, and it fails naming what is still
//! missing after it installed. A fresh machine once had qemu-utils
//! "installed" and then removed by apt: vm-test died 9 minutes later without
//! qemu-img.
//!
//! The machine here is the one CI runs on, so the tests hide one command from
//! deps.sh (a PATH of links to everything else) instead of removing a package.
use crate::common;
use common::*;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A folder of links to every program on this PATH except `hidden`.
fn path_without(hidden: &str, dir: &Path) {
    let host_path = std::env::var("PATH").unwrap_or_default();
    for folder in host_path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    {
        let Ok(entries) = std::fs::read_dir(folder) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let link = dir.join(&name);
            if name != hidden && !link.exists() {
                let _ = symlink(e.path(), &link);
            }
        }
    }
}

/// deps.sh with PATH = `front` (stubs, if any) then the links in `links`.
fn deps(front: &Path, links: &Path, dry_run: bool) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/deps.sh"))
        .env("PATH", format!("{}:{}", front.display(), links.display()))
        .env("HARDROOT_DEB_DIR", front.join("debs"));
    if dry_run {
        cmd.env("HARDROOT_DEPS_DRY_RUN", "1");
    }
    cmd.output().expect("run scripts/deps.sh")
}

/// A folder for stubs and one of links to every program but qemu-img.
fn without_qemu_img() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (front, links) = (dir.path().join("front"), dir.path().join("links"));
    std::fs::create_dir_all(&front).unwrap();
    std::fs::create_dir_all(&links).unwrap();
    path_without("qemu-img", &links);
    (dir, front, links)
}

#[test]
fn a_missing_command_is_installed_even_when_its_package_is_recorded() {
    let (_dir, front, links) = without_qemu_img();
    let o = deps(&front, &links, true);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}{err}");
    let plan = out
        .lines()
        .find_map(|l| l.strip_prefix("would install: "))
        .unwrap_or_else(|| panic!("deps.sh installs nothing without qemu-img:\n{out}{err}"));
    assert!(
        plan.split_whitespace().any(|p| p == "qemu-utils"),
        "qemu-img is missing, so qemu-utils must be installed: {plan}"
    );
    assert!(err.contains("qemu-img"), "names the missing command: {err}");
}

#[test]
fn an_install_that_leaves_a_command_missing_fails_loudly() {
    let (_dir, front, links) = without_qemu_img();
    // apt "succeeds" without installing anything: what a resolver that
    // removed the tool again would look like from here.
    for stub in ["apt-get", "sudo"] {
        let p = front.join(stub);
        let body = if stub == "sudo" {
            "#!/bin/sh\nexec \"$@\"\n"
        } else {
            "#!/bin/sh\nexit 0\n"
        };
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let o = deps(&front, &links, false);
    let err = text(&o.stderr);
    assert!(
        !o.status.success(),
        "deps.sh passed with qemu-img missing:\n{err}"
    );
    assert!(
        err.contains("still not usable") && err.contains("qemu-img (package qemu-utils)"),
        "names what is still missing: {err}"
    );
}
