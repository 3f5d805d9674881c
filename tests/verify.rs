//! `hardroot verify OUT`: one planted byte in a file of the published disk is
//! named, with its partition, and exits 1; everything else compares equal.
//! (That an untouched image verifies is proven on the XMPP server's real disk
//! by tests/reproducible_xmpp.rs: each verify is a cold bootstrap, so the
//! two cases share none and CI pays for each once.)
use crate::common;
use crate::image_support;

use hardroot::image::{ImageRequest, build_image};
use image_support::*;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Output};

fn verify(out: &Path, build: &Path, work: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hardroot"))
        .arg("verify")
        .arg(out)
        .arg("--build")
        .arg(build)
        .arg("--work")
        .arg(work)
        .output()
        .expect("run hardroot verify")
}

/// The byte offset in disk.img of the first data byte of FILE on the partition labelled LABEL.
fn file_offset(disk: &Path, manifest: &serde_json::Value, label: &str, file: &str) -> u64 {
    let part = manifest["disk"]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .find(|p| p["label"] == label)
        .unwrap_or_else(|| panic!("no partition {label}"));
    let start = part["start_bytes"].as_u64().expect("start");
    let dev = format!("{}?offset={start}", disk.display());
    let run = |cmd: &str| {
        let o = Command::new("debugfs")
            .args(["-R", cmd, &dev])
            .output()
            .expect("debugfs");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let block: u64 = run(&format!("bmap {file} 0"))
        .trim()
        .parse()
        .expect("block");
    let size: u64 = run("stats")
        .lines()
        .find_map(|l| l.strip_prefix("Block size:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("block size");
    start + block * size
}

#[test]
#[ignore = "builds an image and rebuilds it cold: needs root, mmdebstrap and apt sources (scripts/test.sh)"]
fn verify_names_a_planted_byte_with_its_partition_and_file() {
    let tmp = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let build = write_build(&tmp.path().join("build"), &disk_entries(), &[]);
    let out = tmp.path().join("out");
    let image = build_image(&ImageRequest {
        quiet: true,
        ..request(&build, &out)
    })
    .expect("image");
    let disk = image.disk.clone().expect("disk.img");
    // One byte of /home/hardroot/readme on the home partition, flipped in place.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("image-manifest.json")).expect("manifest"),
    )
    .expect("json");
    let at = file_offset(&disk, &manifest, "home", "/hardroot/readme");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .expect("open disk");
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.read_exact(&mut byte).expect("read");
    assert_eq!(
        byte[0], b'o',
        "the file's first byte ('on the home partition')"
    );
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(b"O").expect("write");
    drop(f);

    let bad = verify(&out, &build, tmp.path());
    let stdout = String::from_utf8_lossy(&bad.stdout);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(
        bad.status.code(),
        Some(1),
        "a planted byte exits 1:\n{stderr}"
    );
    assert!(
        stdout.contains("\"home\" (/home) differs"),
        "names the partition:\n{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("/home/hardroot/readme"))
        .unwrap_or_else(|| panic!("names the file:\n{stdout}"));
    let planted = common::sha256_file(&build.join("overlay/home/hardroot/readme"));
    assert!(
        line.contains("published 22 bytes")
            && line.contains(&format!("rebuilt 22 bytes sha256 {planted}")),
        "sizes and both hashes: {line}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(" bytes sha256 "))
            .count(),
        1,
        "only that file differs:\n{stdout}"
    );
    assert!(stderr.contains("differs"), "{stderr}");
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("verify.json")).expect("verify.json"),
    )
    .expect("json");
    assert_eq!(status["reproduced"], false);
}

#[test]
fn verify_without_a_recorded_image_or_its_build_says_what_to_give() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = verify(tmp.path(), tmp.path(), tmp.path());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("image-manifest.json"), "{stderr}");

    let recorded = serde_json::json!({
        "profile": "p", "overlay_root_hash": "r", "cache_key": "k", "packages": [],
        "rootfs": { "file": "rootfs.img", "sha256": "s" }, "disk": null,
    });
    std::fs::write(tmp.path().join("image-manifest.json"), recorded.to_string()).expect("write");
    let o = verify(tmp.path(), tmp.path(), tmp.path());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("--build DIR"), "{stderr}");
}

// `--from-manifest` giving the recorded disk again (a pinned rebuild) is
// proven by tests/image_fresh.rs, on an image whose archive has moved on
// since: one bootstrap fewer than a test of its own (issue 30).
