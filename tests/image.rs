//! Image stage, end to end (needs root, mmdebstrap, e2fsprogs, qemu-utils and
//! the host's apt sources). The base is cached under target/ between runs.
mod image_support;

use hardroot::image::{ImageError, ImageOutput, ImageRequest, build_image};
use image_support::*;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

fn request(build: &Path, out: &Path) -> ImageRequest {
    ImageRequest {
        build_dir: build.to_path_buf(),
        out: out.to_path_buf(),
        cache_dir: cache_dir(),
        rebuild_base: false,
        qcow2: false,
        sources: vec![],
        quiet: false,
    }
}

fn build(
    entries: &[FileSpec],
    disable: &[&str],
    tmp: &Path,
    name: &str,
) -> Result<ImageOutput, ImageError> {
    let dir = tmp.join(name);
    write_build(&dir.join("build"), entries, disable);
    build_image(&request(&dir.join("build"), &dir.join("out")))
}

fn debugfs(img: &Path, cmd: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(cmd)
        .arg(img)
        .output()
        .expect("run debugfs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (mode, uid, gid) of a path inside the image, from `debugfs stat`.
fn stat(img: &Path, path: &str) -> (u32, u32, u32) {
    let text = debugfs(img, &format!("stat \"{path}\""));
    let num = |key: &str| -> u32 {
        let at = text
            .find(key)
            .unwrap_or_else(|| panic!("{path}: no {key} in\n{text}"));
        let rest = text[at + key.len()..].trim_start();
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if key == "Mode:" {
            u32::from_str_radix(&word, 8).expect("mode")
        } else {
            word.parse().expect("id")
        }
    };
    (num("Mode:"), num("User:"), num("Group:"))
}

fn id_of(img: &Path, file: &str, name: &str) -> u32 {
    debugfs(img, &format!("cat {file}"))
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| f[2].parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("{name} not in {file}"))
}

#[test]
fn image_matches_manifest_is_clean_and_rebuilds_identically() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = build(
        &default_entries(),
        &["e2scrub_reap.service"],
        tmp.path(),
        "a",
    )
    .expect("first image");
    let img = &first.rootfs;
    check_entries(img, &tmp.path().join("a/build"));
    check_hygiene(img);
    check_disabled_and_enabled(img);
    check_outputs(&first);

    let second = build(
        &default_entries(),
        &["e2scrub_reap.service"],
        tmp.path(),
        "b",
    )
    .expect("second image");
    assert!(
        second.base_from_cache,
        "second build must reuse the cached base"
    );
    assert_eq!(first.cache_key, second.cache_key);
    assert_eq!(
        first.rootfs_sha256, second.rootfs_sha256,
        "same inputs must give the same image bytes"
    );
}

/// Every manifest entry is in the image with its mode, owner and content.
fn check_entries(img: &Path, build: &Path) {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(build.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    for e in manifest["entries"].as_array().expect("entries") {
        if e["module"].is_null() {
            continue;
        }
        let path = format!("/{}", e["path"].as_str().expect("path"))
            .replace("/lib/systemd/", "/usr/lib/systemd/");
        let (mode, uid, gid) = stat(img, &path);
        let want_uid = e["uid"]
            .as_u64()
            .map(|u| u as u32)
            .unwrap_or_else(|| id_of(img, "/etc/passwd", e["owner"].as_str().expect("owner")));
        let want_gid = e["gid"]
            .as_u64()
            .map(|u| u as u32)
            .unwrap_or_else(|| id_of(img, "/etc/group", e["group"].as_str().expect("group")));
        assert_eq!((uid, gid), (want_uid, want_gid), "{path}: owner");
        match e["type"].as_str() {
            Some("file") => {
                assert_eq!(
                    format!("{mode:04o}"),
                    e["mode"].as_str().expect("mode"),
                    "{path}: mode"
                );
                let body = Command::new("debugfs")
                    .arg("-R")
                    .arg(format!("cat {path}"))
                    .arg(img)
                    .output()
                    .expect("cat");
                assert_eq!(
                    hex(&Sha256::digest(&body.stdout)),
                    e["sha256"].as_str().expect("sha"),
                    "{path}: content"
                );
            }
            Some("dir") => assert_eq!(
                format!("{mode:04o}"),
                e["mode"].as_str().expect("mode"),
                "{path}: mode"
            ),
            _ => {
                let text = debugfs(img, &format!("stat {path}"));
                let target = e["target"].as_str().expect("target");
                assert!(
                    text.contains(&format!("Fast link dest: \"{target}\"")),
                    "{path}: link target\n{text}"
                );
            }
        }
    }
}

fn check_hygiene(img: &Path) {
    let ssh = debugfs(img, "ls -l /etc/ssh");
    assert!(ssh.contains("sshd_config"), "listing works: {ssh}");
    assert!(
        !ssh.contains("ssh_host_"),
        "host keys must be scrubbed:\n{ssh}"
    );
    assert_eq!(
        debugfs(img, "cat /etc/machine-id"),
        "",
        "machine-id must be empty"
    );
    for line in debugfs(img, "cat /etc/shadow").lines() {
        let pw = line.split(':').nth(1).unwrap_or("");
        assert!(
            !pw.is_empty() && pw.chars().all(|c| c == '!' || c == '*'),
            "password in shadow: {line}"
        );
    }
    let lists = debugfs(img, "ls /var/lib/apt/lists");
    assert!(!lists.contains("_Packages"), "apt lists left: {lists}");
    let logs = debugfs(img, "ls -l /var/log");
    assert!(!logs.contains("dpkg.log"), "logs left: {logs}");
}

fn check_disabled_and_enabled(img: &Path) {
    let wants = debugfs(img, "ls /etc/systemd/system/default.target.wants");
    assert!(
        !wants.contains("e2scrub_reap.service"),
        "disabled unit still wanted: {wants}"
    );
    let multi = debugfs(img, "ls /etc/systemd/system/multi-user.target.wants");
    assert!(
        multi.contains("hardroot-hello.service"),
        "enabled unit missing: {multi}"
    );
    let early = debugfs(img, "cat /etc/hardroot-early.conf");
    assert!(early.contains("before packages"), "early file missing");
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(img)
        .output()
        .expect("e2fsck");
    assert!(
        out.status.success(),
        "e2fsck: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn check_outputs(out: &ImageOutput) {
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&out.image_manifest).expect("image manifest"),
    )
    .expect("json");
    let file_sha = hex(&Sha256::digest(
        std::fs::read(&out.rootfs).expect("read image"),
    ));
    assert_eq!(m["rootfs"]["sha256"], file_sha.as_str());
    assert_eq!(m["cache_key"], out.cache_key.as_str());
    let pkgs = m["packages"].as_array().expect("packages");
    let sshd = pkgs
        .iter()
        .find(|p| p["name"] == "openssh-server")
        .expect("openssh-server listed");
    assert!(!sshd["version"].as_str().unwrap_or("").is_empty());
    assert!(std::fs::metadata(&out.kernel).expect("vmlinuz").len() > 1 << 20);
    assert!(std::fs::metadata(&out.initrd).expect("initrd").len() > 1 << 20);
}
