//! Image stage, end to end (needs root, mmdebstrap, e2fsprogs, qemu-utils and
//! the host's apt sources). The base is cached in the shared test cache
//! (image_support::cache_dir(): HARDROOT_TEST_CACHE, else under target/).
use crate::common;
use crate::image_support;

use hardroot::image::{ImageError, ImageOutput, build_image};
use image_support::*;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

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
        if e["module"] == "" {
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

#[test]
fn profile_change_reuses_the_base_and_changes_only_the_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let before = build(&default_entries(), &[], tmp.path(), "a").expect("first image");
    let mut changed = default_entries();
    changed[1].content = "answer = 43\n";
    let after = build(&changed, &[], tmp.path(), "b").expect("changed image");
    assert!(after.base_from_cache);
    assert_eq!(
        before.cache_key, after.cache_key,
        "same package set, same base"
    );
    assert_ne!(before.rootfs_sha256, after.rootfs_sha256);
    assert_eq!(
        debugfs(&after.rootfs, "cat /etc/hardroot-test/app.conf"),
        "answer = 43\n"
    );
}

const FAKE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n";

#[test]
fn private_key_in_the_overlay_is_refused_and_nothing_is_published() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut entries = default_entries();
    entries[2].content = FAKE_KEY;
    let err = build(&entries, &[], tmp.path(), "a").expect_err("a private key must be refused");
    let text = format!("{err}");
    assert!(
        text.contains("etc/hardroot-test/owned: contains a PEM private key"),
        "{text}"
    );
    assert!(!tmp.path().join("a/out/rootfs.img").exists());
}

#[test]
fn unknown_owner_is_a_clear_error_and_nothing_is_published() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut entries = default_entries();
    entries[2].owner = "nosuchuser";
    let err = build(&entries, &[], tmp.path(), "a").expect_err("unknown owner must fail");
    let text = format!("{err:?}");
    assert!(
        text.contains("user `nosuchuser` does not exist in the base image"),
        "{text}"
    );
    assert!(!tmp.path().join("a/out/rootfs.img").exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("a/out"))
        .expect("out")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers.iter().all(|n| n == "logs"),
        "temp files left in OUT: {leftovers:?}"
    );
}

/// Two runs share one cache while one of them bootstraps the base again: both
/// succeed (file lock), and the freshly bootstrapped base gives the same bytes.
#[test]
fn concurrent_runs_with_a_rebuilt_base_give_the_same_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<_> = ["a", "b"].iter().map(|n| tmp.path().join(n)).collect();
    for d in &dirs {
        write_build(&d.join("build"), &default_entries(), &[]);
    }
    let mut rebuild = request(&dirs[0].join("build"), &dirs[0].join("out"));
    rebuild.rebuild_base = true;
    let cached = request(&dirs[1].join("build"), &dirs[1].join("out"));
    let a = std::thread::spawn(move || build_image(&rebuild));
    let b = std::thread::spawn(move || build_image(&cached));
    let a = a.join().expect("thread a").expect("rebuilt image");
    let b = b.join().expect("thread b").expect("cached image");
    assert!(!a.base_from_cache);
    assert_eq!(a.cache_key, b.cache_key);
    assert_eq!(
        a.rootfs_sha256, b.rootfs_sha256,
        "a fresh bootstrap must reproduce the image"
    );
}

/// `debugfs -R CMD 'disk.img?offset=N'` reads one partition of the disk.
fn part_debugfs(disk: &Path, parts: &serde_json::Value, name: &str, cmd: &str) -> String {
    let p = parts
        .as_array()
        .expect("partitions")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no partition {name}"));
    let offset = p["start"].as_u64().expect("start") * 512;
    debugfs(
        Path::new(&format!("{}?offset={offset}", disk.display())),
        cmd,
    )
}

#[test]
fn disk_image_has_the_hardened_layout_and_is_reproducible() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut outs = Vec::new();
    for name in ["a", "b"] {
        let dir = tmp.path().join(name);
        write_build(&dir.join("build"), &disk_entries(), &[]);
        let req = request(&dir.join("build"), &dir.join("out"));
        outs.push(build_image(&req).expect("disk image"));
    }
    let disk = outs[0].disk.clone().expect("disk.img");
    assert_eq!(
        outs[0].disk_sha256, outs[1].disk_sha256,
        "same inputs, same disk bytes"
    );
    // disk.qcow2 beside it, the same bytes from both builds, its sha256 in
    // image-manifest.json, and the same disk inside.
    let qcow2: Vec<_> = outs
        .iter()
        .map(|o| o.disk_qcow2.clone().expect("disk.qcow2"))
        .collect();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&outs[0].image_manifest).expect("image-manifest.json"),
    )
    .expect("json");
    assert_eq!(
        manifest["disk"]["qcow2"]["sha256"],
        common::sha256_file(&qcow2[0])
    );
    assert_eq!(
        common::sha256_file(&qcow2[0]),
        common::sha256_file(&qcow2[1]),
        "qemu-img writes equal qcow2 files for equal disks"
    );
    let same = Command::new("qemu-img")
        .args(["compare", "-q", "-f", "qcow2", "-F", "raw"])
        .arg(&qcow2[0])
        .arg(&disk)
        .status()
        .expect("qemu-img compare");
    assert!(same.success(), "disk.qcow2 holds disk.img");
    let rows = manifest["disk"]["partitions"]
        .as_array()
        .expect("partitions");
    assert_eq!(
        rows.last().map(|r| (&r["mount"], &r["grows"])),
        Some((&serde_json::json!("/var"), &serde_json::json!(true))),
        "the growing filesystem is the disk's last partition: {rows:?}"
    );

    let table = Command::new("sfdisk")
        .arg("--json")
        .arg(&disk)
        .output()
        .expect("sfdisk");
    let table: serde_json::Value = serde_json::from_slice(&table.stdout).expect("sfdisk json");
    let parts = &table["partitiontable"]["partitions"];
    let names: Vec<&str> = parts
        .as_array()
        .expect("parts")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["root", "home", "var-log", "var-log-audit", "var-tmp", "var"],
        "root first, /var (disk.grow) last"
    );

    assert_eq!(
        part_debugfs(&disk, parts, "root", "cat /etc/fstab"),
        FSTAB,
        "disk.img gets the disk fstab"
    );
    let names = |dir: &str| -> Vec<String> {
        part_debugfs(&disk, parts, "root", &format!("ls -p {dir}"))
            .lines()
            .filter_map(|l| l.split('/').nth(5).map(str::to_string))
            .filter(|n| n != "." && n != "..")
            .collect()
    };
    assert_eq!(
        names("/var"),
        Vec::<String>::new(),
        "/var is an empty mount point on root"
    );
    assert!(names("/etc").contains(&"fstab".to_string()));
    assert!(
        part_debugfs(&disk, parts, "var", "ls /").contains("lib"),
        "var holds the base's /var"
    );
    assert_eq!(
        part_debugfs(&disk, parts, "var", "cat /lib/hardroot/state"),
        "on the var partition\n"
    );
    assert_eq!(
        part_debugfs(&disk, parts, "home", "cat /hardroot/readme"),
        "on the home partition\n"
    );
    let audit = part_debugfs(&disk, parts, "var-log-audit", "stat /");
    assert!(
        audit.contains("Mode:  0700"),
        "audit root must be 0700:\n{audit}"
    );
    // A partition's top folder keeps the base's mode: mke2fs -d alone made
    // /var/tmp 0755, without its sticky bit (CIS 1.1.2.x, Lynis FILE-6363).
    let var_tmp = part_debugfs(&disk, parts, "var-tmp", "stat /");
    assert!(
        var_tmp.contains("Mode:  01777"),
        "/var/tmp must be 1777:\n{var_tmp}"
    );
    assert!(
        !debugfs(&outs[0].rootfs, "cat /etc/fstab").contains("LABEL=var"),
        "rootfs.img keeps the single-filesystem fstab"
    );
}

/// `hardroot image --json`: the documented shape, stdout nothing but JSON,
/// and figures that agree with the files (docs/json.md).
#[test]
fn image_json_summary_has_the_documented_shape_and_true_figures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let build = write_build(&tmp.path().join("build"), &default_entries(), &[]);
    let out = tmp.path().join("out");
    let run = || {
        let o = Command::new(env!("CARGO_BIN_EXE_hardroot"))
            .args(["image", "--qcow2", "--json", "--from-build"])
            .arg(&build)
            .arg("-o")
            .arg(&out)
            .arg("--cache")
            .arg(cache_dir())
            .output()
            .expect("run hardroot image");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("stdout is one JSON document")
    };
    run();
    // The second run finds the base the first one used (or built).
    let v = run();
    common::assert_json_shape(
        &common::json_doc_example("hardroot image --json"),
        &v,
        "image",
    );
    assert_eq!(v["format"], 1);
    assert_eq!(v["base"]["cache"], "hit");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "check_archive",
            "copy_base",
            "apply_overlay",
            "fsck",
            "hash",
            "qcow2",
            "sbom"
        ]
    );
    let rootfs = out.join("rootfs.img");
    assert_eq!(v["rootfs"]["path"], rootfs.to_string_lossy().as_ref());
    assert_eq!(v["rootfs"]["sha256"], common::sha256_file(&rootfs));
    let len = |p: &Path| std::fs::metadata(p).expect("metadata").len();
    assert_eq!(v["rootfs"]["size_bytes"], len(&rootfs));
    assert_eq!(v["qcow2"]["size_bytes"], len(&out.join("rootfs.qcow2")));
    assert!(v["disk"].is_null());
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("image-manifest.json")).expect("image manifest"),
    )
    .expect("manifest json");
    assert_eq!(
        v["packages"].as_u64(),
        manifest["packages"].as_array().map(|p| p.len() as u64)
    );
    assert_eq!(v["kernel"]["version"], manifest["kernel"]["version"]);
}
