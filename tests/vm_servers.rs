//! The acceptance tests of the bastion and the static site (issue 21)
//! through the real binary: `hardroot vm-test profiles/bastion-test.toml
//! vm-tests/bastion` and `… profiles/web-test.toml vm-tests/web`. Each builds
//! its image (the Debian base comes from the image cache after the first run)
//! and boots it under QEMU: a few minutes each (docs/benchmarks.md).
//!
//! `#[ignore]`d like the other VM tests; scripts/test.sh runs them with
//! `--ignored`. They skip, loudly, only when the machine cannot run VM tests
//! at all (not root, no /dev/net/tun).
use crate::common;
use common::cannot_run_vm_tests;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the test folder against the profile; returns its output folder
/// (kept after the run, a CI artifact) once every subtest passed.
fn vm_test(name: &str, profile: &str, subtests: usize) -> Option<PathBuf> {
    if let Some(why) = cannot_run_vm_tests() {
        eprintln!("\n!!!!! SKIPPED vm-tests/{name}: {why} !!!!!\n");
        return None;
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("vm-{name}"));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_hardroot"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["vm-test", profile, &format!("vm-tests/{name}"), "--out"])
        .arg(&out)
        .arg("--report")
        .arg(out.join("report.html"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "vm-test {name} failed (exit {:?}):\n{}",
        run.status.code(),
        String::from_utf8_lossy(&run.stderr)
    );
    let path = out.join("results.json");
    let text = std::fs::read_to_string(&path).expect("results.json");
    let results: serde_json::Value = serde_json::from_str(&text).expect("results.json is JSON");
    let ran = results["subtests"].as_array().cloned().unwrap_or_default();
    // A script that stopped early cannot pass.
    assert_eq!(ran.len(), subtests, "{results}");
    assert!(ran.iter().all(|s| s["passed"] == true), "{results}");
    assert_eq!(
        results["machines"]["server"]["boot"]["mode"], "uefi-disk",
        "{results}"
    );
    Some(out)
}

#[test]
#[ignore = "builds and boots the bastion image in QEMU; needs root, qemu and mmdebstrap"]
fn bastion_acceptance_test_passes() {
    vm_test("bastion", "profiles/bastion-test.toml", 6);
}

#[test]
#[ignore = "builds and boots the web image in QEMU; needs root, qemu and mmdebstrap"]
fn web_acceptance_test_passes() {
    vm_test("web", "profiles/web-test.toml", 5);
}
