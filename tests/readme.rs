//! The README's tour cannot rot: every `hardroot` command in it that needs no
//! Debian mirror or VM is run here, exactly as written, and must succeed.
use crate::common;
use common::*;
use std::process::Command;

/// (push and pull need a registry: tests/registry.rs runs them against one.)
const NEEDS_A_VM_OR_MIRROR: &[&str] = &["image", "verify", "vm-test", "run", "push", "pull"];

fn tour_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let tour = readme
        .split("## A five-minute tour")
        .nth(1)
        .unwrap_or_default();
    let tour = tour.split("\n## ").next().unwrap_or_default();
    tour.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("hardroot "))
        .map(|l| l.split(" # ").next().unwrap_or(l).trim().to_string())
        .collect()
}

#[test]
fn every_tour_command_runs() {
    let cmds = tour_commands();
    assert!(cmds.len() >= 8, "tour shrank: {cmds:?}");
    let t = tempfile::tempdir().unwrap();
    for dir in ["profiles", "modules", "vm-tests"] {
        std::os::unix::fs::symlink(repo().join(dir), t.path().join(dir)).unwrap();
    }
    for cmd in &cmds {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        if NEEDS_A_VM_OR_MIRROR.contains(&words[1]) {
            continue;
        }
        let o = Command::new(bin())
            .args(&words[1..])
            .current_dir(t.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "`{cmd}` failed:\n{}", text(&o.stderr));
    }
}
