//! `hardroot image` errors that must be clear and fast (before any bootstrap).
use crate::image_support;

use image_support::*;
use std::process::{Command, Output};

fn hardroot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hardroot"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let build = write_build(&tmp.path().join("build"), &default_entries(), &[]);
    (tmp, build)
}

#[test]
fn not_root_is_said_plainly() {
    let (tmp, build) = fixture();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_hardroot"),
            "image",
            "--from-build",
        ])
        .arg(&build)
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .expect("run setpriv (util-linux)");
    assert!(!out.status.success());
    assert!(text(&out).contains("must run as root"), "{}", text(&out));
}

#[test]
fn missing_mmdebstrap_names_the_package() {
    let (tmp, build) = fixture();
    let out = hardroot()
        .env("PATH", "/nonexistent")
        .args(["image", "--from-build"])
        .arg(&build)
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .expect("run hardroot");
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("`mmdebstrap` was not found"), "{t}");
    assert!(
        t.contains("apt-get install --no-install-recommends mmdebstrap"),
        "{t}"
    );
}

#[test]
fn a_profile_without_the_system_module_is_refused() {
    let (tmp, build) = fixture();
    std::fs::write(build.join("config.json"), "{}").expect("write config");
    let out = hardroot()
        .args(["image", "--from-build"])
        .arg(&build)
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(text(&out).contains("does not import the"), "{}", text(&out));
}
