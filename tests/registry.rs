//! `hardroot push` / `hardroot pull` against a real registry: Debian's
//! docker-registry (the CNCF distribution registry), started here on
//! 127.0.0.1 with a throw-away storage folder. The image folder is made by
//! hand (image-manifest.json with the files' real sha256s), so these tests
//! need neither root nor a bootstrap.
use crate::registry_support;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use registry_support::{PASSWORD, Registry, USER, hardroot};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic bytes that do not compress (a disk image's worth of entropy).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// An image folder as `hardroot image` leaves it, with a disk of `disk_mib`.
fn image_dir(dir: &Path, disk_mib: usize, seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let disk = noise(disk_mib << 20, seed);
    let qcow2 = noise(300_000, seed + 1);
    let sbom = br#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#.to_vec();
    std::fs::write(dir.join("disk.img"), &disk).expect("disk");
    std::fs::write(dir.join("disk.qcow2"), &qcow2).expect("qcow2");
    std::fs::write(dir.join("sbom.cdx.json"), &sbom).expect("sbom");
    let manifest = json!({
        "format": 1,
        "profile": "web",
        "source_date_epoch": 1_700_000_000,
        "overlay_root_hash": "ab".repeat(32),
        "disk": {
            "file": "disk.img",
            "sha256": sha256(&disk),
            "qcow2": { "file": "disk.qcow2", "sha256": sha256(&qcow2) },
        },
        "sbom": { "file": "sbom.cdx.json", "sha256": sha256(&sbom) },
    });
    std::fs::write(
        dir.join("image-manifest.json"),
        serde_json::to_string_pretty(&manifest).expect("json"),
    )
    .expect("manifest");
    dir.to_path_buf()
}

const FILES: &[&str] = &[
    "disk.img",
    "disk.qcow2",
    "image-manifest.json",
    "sbom.cdx.json",
];

fn same_files(a: &Path, b: &Path, names: &[&str]) {
    for n in names {
        let x = std::fs::read(a.join(n)).unwrap_or_else(|e| panic!("{n} in {}: {e}", a.display()));
        let y = std::fs::read(b.join(n)).unwrap_or_else(|e| panic!("{n} in {}: {e}", b.display()));
        assert!(x == y, "{n} differs after the round trip");
    }
}

/// The manifest as the registry serves it (curl, not our client).
fn served_manifest(reg: &Registry, repo: &str, tag: &str, user: Option<&str>) -> Value {
    let mut c = Command::new("curl");
    c.args([
        "-sf",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
    ]);
    if let Some(u) = user {
        c.args(["-u", u]);
    }
    let out = c
        .arg(format!(
            "http://127.0.0.1:{}/v2/{repo}/manifests/{tag}",
            reg.port
        ))
        .output()
        .expect("curl");
    assert!(out.status.success(), "manifest not served: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("manifest json")
}

fn push(dir: &Path, reference: &str) -> Output {
    hardroot(&["push"])
        .arg(dir)
        .arg(reference)
        .output()
        .expect("run hardroot push")
}

fn push_with_report(dir: &Path, reference: &str, report: &Path) -> Output {
    hardroot(&["push", "--report"])
        .arg(report)
        .arg(dir)
        .arg(reference)
        .output()
        .expect("run hardroot push")
}

fn pull(reference: &str, out: &Path) -> Output {
    hardroot(&["pull", reference, "-o"])
        .arg(out)
        .output()
        .expect("run hardroot pull")
}

#[test]
fn push_then_pull_gives_the_same_files_as_one_annotated_artifact() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), false);
    let img = image_dir(&tmp.path().join("img"), 9, 7);
    let report = tmp.path().join("report.html");
    std::fs::write(&report, "<html>passed</html>").expect("report");
    let reference = reg.reference("fleet/web:1");

    let out = push_with_report(&img, &reference, &report);
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let digest = printed
        .strip_prefix(&format!("{reference}@"))
        .unwrap_or_else(|| panic!("push printed {printed:?}"))
        .to_string();

    // What the registry serves: one OCI 1.1 artifact, its layers typed and titled.
    let m = served_manifest(&reg, "fleet/web", "1", None);
    assert_eq!(m["artifactType"], "application/vnd.hardroot.image.v1");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["annotations"]["dev.hardroot.profile"], "web");
    assert_eq!(
        m["annotations"]["dev.hardroot.overlay-root-hash"],
        "ab".repeat(32)
    );
    assert_eq!(
        m["annotations"]["dev.hardroot.source-date-epoch"],
        "1700000000"
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    let layers: Vec<(String, String, String)> = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["annotations"]["org.opencontainers.image.title"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                l["mediaType"].as_str().unwrap_or_default().to_string(),
                l["digest"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let titles: Vec<&str> = layers.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        titles,
        [
            "disk.img",
            "disk.qcow2",
            "image-manifest.json",
            "sbom.cdx.json",
            "report.html"
        ]
    );
    assert_eq!(layers[0].1, "application/vnd.hardroot.disk.raw");
    assert_eq!(layers[3].1, "application/vnd.cyclonedx+json");
    assert_eq!(layers[4].1, "text/html");
    let disk_sha = sha256(&std::fs::read(img.join("disk.img")).expect("disk"));
    assert_eq!(
        layers[0].2,
        format!("sha256:{disk_sha}"),
        "a layer's digest is the file's sha256"
    );

    // Pull by tag and by the printed digest: the same bytes, in place.
    let back = tmp.path().join("back");
    let out = pull(&reference, &back);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), printed);
    same_files(&img, &back, FILES);
    assert_eq!(
        std::fs::read_to_string(back.join("report.html")).expect("report"),
        "<html>passed</html>"
    );
    let by_digest = tmp.path().join("by-digest");
    let out = pull(
        &format!("{}@{digest}", reg.reference("fleet/web")),
        &by_digest,
    );
    assert!(out.status.success(), "{}", text(&out));
    same_files(&img, &by_digest, FILES);

    // Pushing again sends nothing and names the same manifest.
    let out = push_with_report(&img, &reference, &report);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), printed);
    assert!(!text(&out).contains(" uploaded"), "{}", text(&out));
}

#[test]
fn pull_verifies_every_file_and_writes_nothing_when_one_is_wrong() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), false);
    let img = image_dir(&tmp.path().join("img"), 2, 11);
    let reference = reg.reference("fleet/db:1");
    let out = push(&img, &reference);
    assert!(out.status.success(), "{}", text(&out));

    // The registry's stored qcow2 blob is changed behind its back.
    let qcow2_sha = sha256(&std::fs::read(img.join("disk.qcow2")).expect("qcow2"));
    let blob = reg
        .storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&qcow2_sha[..2])
        .join(&qcow2_sha)
        .join("data");
    let mut bytes = std::fs::read(&blob).expect("stored blob");
    bytes[1000] ^= 0xff;
    std::fs::write(&blob, bytes).expect("tamper");

    let back = tmp.path().join("back");
    let out = pull(&reference, &back);
    assert!(!out.status.success(), "a corrupted blob was accepted");
    let t = text(&out);
    assert!(t.contains("disk.qcow2") && t.contains(&qcow2_sha), "{t}");
    let left: Vec<_> = std::fs::read_dir(&back)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files were written in place: {left:?}");
}

#[test]
fn push_refuses_an_image_changed_after_its_manifest_was_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let img = image_dir(&tmp.path().join("img"), 1, 5);
    std::fs::write(img.join("disk.qcow2"), b"not the recorded disk").expect("change");
    // No registry is needed: the check comes before any connection.
    let out = push(&img, "127.0.0.1:9/fleet/x:1");
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("disk.qcow2") && t.contains("image-manifest.json records"),
        "{t}"
    );
}

#[test]
fn basic_auth_credentials_come_from_the_environment_or_a_file_and_are_never_printed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), true);
    let img = image_dir(&tmp.path().join("img"), 1, 3);
    let reference = reg.reference("private/web:1");

    let out = push(&img, &reference);
    assert!(!out.status.success(), "pushed without credentials");
    assert!(
        text(&out).contains("refused the credentials"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("HARDROOT_REGISTRY_USERNAME"),
        "{}",
        text(&out)
    );

    let out = hardroot(&["push"])
        .arg(&img)
        .arg(&reference)
        .env("HARDROOT_REGISTRY_USERNAME", USER)
        .env("HARDROOT_REGISTRY_PASSWORD", "wrong")
        .output()
        .expect("push");
    assert!(!out.status.success(), "a wrong password was accepted");
    assert!(!text(&out).contains("wrong"), "{}", text(&out));

    let out = hardroot(&["push"])
        .arg(&img)
        .arg(&reference)
        .env("HARDROOT_REGISTRY_USERNAME", USER)
        .env("HARDROOT_REGISTRY_PASSWORD", PASSWORD)
        .output()
        .expect("push");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD), "the password was printed");
    served_manifest(
        &reg,
        "private/web",
        "1",
        Some(&format!("{USER}:{PASSWORD}")),
    );

    // A docker-config-style file (what `docker login` writes).
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let file = tmp.path().join("auth.json");
    let registry = format!("127.0.0.1:{}", reg.port);
    std::fs::write(
        &file,
        json!({ "auths": { registry: { "auth": auth } } }).to_string(),
    )
    .expect("auth file");
    let back = tmp.path().join("back");
    let out = hardroot(&["pull", &reference, "-o"])
        .arg(&back)
        .env("HARDROOT_REGISTRY_AUTH_FILE", &file)
        .output()
        .expect("pull");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD) && !text(&out).contains(&auth));
    same_files(&img, &back, FILES);
}

/// Starts a push of a large disk and kills the registry once the upload is under way.
fn push_and_kill(reg: &mut Registry, img: &Path, reference: &str) -> Child {
    // A killed push's unfinished upload stays in the storage: count what is new.
    let before = reg.upload_bytes();
    let child = hardroot(&["push", "-q"])
        .arg(img)
        .arg(reference)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("push");
    let start = Instant::now();
    while reg.upload_bytes() < before + (8 << 20) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the upload never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    reg.kill();
    child
}

#[test]
fn a_registry_killed_mid_push_serves_nothing_half_written_and_the_next_push_completes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut reg = Registry::start(&tmp.path().join("reg"), false);
    let img = image_dir(&tmp.path().join("img"), 160, 13);
    let reference = reg.reference("fleet/big:1");

    // Killed and left down: the push gives up with a clear error.
    let child = push_and_kill(&mut reg, &img, &reference);
    let out = child.wait_with_output().expect("push");
    assert!(!out.status.success(), "the push claimed success");
    assert!(text(&out).contains("attempts"), "{}", text(&out));

    // Back up on the same storage: the tag names nothing, the disk's blob is unknown.
    reg.spawn();
    let out = pull(&reference, &tmp.path().join("none"));
    assert!(!out.status.success());
    assert!(text(&out).contains("no such artifact"), "{}", text(&out));
    let disk_sha = sha256(&std::fs::read(img.join("disk.img")).expect("disk"));
    let blob = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I"])
        .arg(format!(
            "http://127.0.0.1:{}/v2/fleet/big/blobs/sha256:{disk_sha}",
            reg.port
        ))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&blob.stdout),
        "404",
        "a partial blob is served"
    );

    // The next push completes, and the pull is byte-identical.
    let out = push(&img, &reference);
    assert!(out.status.success(), "{}", text(&out));
    let back = tmp.path().join("back");
    let out = pull(&reference, &back);
    assert!(out.status.success(), "{}", text(&out));
    same_files(&img, &back, FILES);

    // Killed and back a moment later: the same push retries the blob and completes.
    let reference = reg.reference("fleet/big:2");
    let img2 = image_dir(&tmp.path().join("img2"), 160, 17);
    let child = push_and_kill(&mut reg, &img2, &reference);
    std::thread::sleep(Duration::from_millis(1500));
    reg.spawn();
    let out = child.wait_with_output().expect("push");
    assert!(out.status.success(), "no retry: {}", text(&out));
    assert!(text(&out).contains("retrying"), "{}", text(&out));
    let back = tmp.path().join("back2");
    let out = pull(&reference, &back);
    assert!(out.status.success(), "{}", text(&out));
    same_files(&img2, &back, FILES);
}

/// A base entry as the image stage leaves it in a cache, made by hand:
/// filed under `entry_key`, its meta.json claiming `claimed` with `inputs`.
fn fake_base(
    cache: &hardroot::image::cache::Cache,
    entry_key: &str,
    claimed: &str,
    inputs: &hardroot::image::cache::KeyInputs,
) {
    use std::os::unix::fs::PermissionsExt;
    let dir = cache.entry(entry_key);
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("usr/bin")).expect("tree");
    std::fs::create_dir_all(root.join("etc")).expect("tree");
    std::fs::write(root.join("etc/hostname"), "fleet\n").expect("file");
    std::fs::write(root.join("usr/bin/tool"), noise(70_000, 3)).expect("file");
    std::fs::set_permissions(
        root.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .expect("mode");
    std::fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).expect("link");
    std::os::unix::fs::symlink("tool", root.join("usr/bin/alias")).expect("symlink");
    // A sparse packed image: 64 MiB long, two small extents of data.
    let img = std::fs::File::create(dir.join("base.img")).expect("img");
    img.set_len(64 << 20).expect("len");
    use std::os::unix::fs::FileExt;
    img.write_all_at(&noise(5000, 4), 1 << 20).expect("write");
    img.write_all_at(&noise(5000, 5), 40 << 20).expect("write");
    std::fs::write(dir.join("vmlinuz"), noise(9000, 6)).expect("kernel");
    std::fs::write(dir.join("initrd.img"), noise(7000, 7)).expect("initrd");
    let meta = json!({
        "key": claimed,
        "inputs": inputs,
        "packages": [{"name": "fleet", "version": "1", "architecture": "amd64"}],
        "users": {"root": 0}, "groups": {"root": 0},
        "paths": {"etc": "d", "etc/hostname": "f"},
        "kernel": "6.1.0-test",
        "image_bytes": 64 << 20, "used_bytes": 90_000,
        "source_date_epoch": inputs.source_date_epoch,
    });
    std::fs::write(dir.join("meta.json"), meta.to_string()).expect("meta");
}

fn key_inputs(packages: &[&str]) -> hardroot::image::cache::KeyInputs {
    serde_json::from_value(json!({
        "format": hardroot::image::cache::KeyInputs::format(),
        "suite": "bookworm", "architecture": "amd64", "variant": "minbase",
        "packages": packages, "mmdebstrap": "1.3.5",
        "sources": [], "dpkg_path_exclude": [], "dpkg_path_include": [],
        "scrub": [], "early": [], "source_date_epoch": 1_700_000_000,
        "image_free_mib": 256, "root_label": "root",
    }))
    .expect("key inputs")
}

/// What a tree holds, file by file: type, mode, owner, content or target, and
/// which names share an inode.
fn tree_listing(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut inodes = std::collections::BTreeMap::new();
    walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .map(|e| {
            let m = e.path().symlink_metadata().expect("meta");
            let rel = e
                .path()
                .strip_prefix(root)
                .expect("rel")
                .display()
                .to_string();
            let what = if m.file_type().is_symlink() {
                format!(
                    "-> {}",
                    std::fs::read_link(e.path()).expect("link").display()
                )
            } else if m.is_file() {
                let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
                format!(
                    "{} link of {first}",
                    sha256(&std::fs::read(e.path()).expect("read"))
                )
            } else {
                "dir".into()
            };
            format!("{rel} {:o} {}:{} {what}", m.mode(), m.uid(), m.gid())
        })
        .collect()
}

/// `image --cache-to` / `--cache-from` without a bootstrap: a hand-made
/// cached base goes to the registry and comes back whole into another
/// cache; a base whose tag, key or inputs do not agree, or whose blob was
/// changed in the registry, is refused and nothing of it is kept (the image
/// stage then bootstraps: tests/image_shared_cache.rs builds for real).
#[test]
fn a_shared_base_comes_back_whole_and_a_wrong_or_damaged_one_is_refused() {
    use hardroot::image::cache::Cache;
    use hardroot::image::shared::{self, Fetched, Push};
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), false);
    let store = hardroot::oci::bases::RegistryBases::new(&reg.reference("fleet/base"))
        .expect("a repository");
    let builder_a = Cache::open(&tmp.path().join("a")).expect("cache a");
    let inputs = key_inputs(&["linux-image-cloud-amd64", "systemd-sysv"]);
    let key = inputs.key();
    fake_base(&builder_a, &key, &key, &inputs);

    let sent = shared::store(&builder_a, &store, &key, Push::IfMissing, true)
        .expect("pushed")
        .expect("the registry lacked it");
    assert!(
        sent.bytes > 0 && sent.bytes < 1 << 20,
        "{sent:?}: holes are not sent"
    );
    assert!(
        shared::store(&builder_a, &store, &key, Push::IfMissing, true)
            .expect("second push")
            .is_none(),
        "a base the registry has is sent again"
    );
    // A refreshed base replaces what the registry holds under its key.
    let replaced = shared::store(&builder_a, &store, &key, Push::Replace, true)
        .expect("replacing push")
        .expect("a refreshed base is sent though the registry has the key");
    assert_eq!(replaced.reference, sent.reference);
    let manifest = served_manifest(&reg, "fleet/base", &key, None);
    assert_eq!(manifest["artifactType"], "application/vnd.hardroot.base.v1");
    assert_eq!(
        manifest["annotations"]["dev.hardroot.base-key"],
        key.as_str()
    );
    assert_eq!(
        manifest["annotations"]["dev.hardroot.base-packages"],
        "linux-image-cloud-amd64 systemd-sysv"
    );
    let titles: Vec<_> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["annotations"]["org.opencontainers.image.title"]
                    .as_str()
                    .unwrap_or("?"),
                l["mediaType"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(
        titles,
        [
            "meta.json application/vnd.hardroot.base.meta.v1+json",
            "base.tar.zst application/vnd.hardroot.base.tree.v1.tar+zstd"
        ]
    );

    // Builder B had nothing: it gets the same entry, file for file.
    let builder_b = Cache::open(&tmp.path().join("b")).expect("cache b");
    match shared::fetch(&builder_b, &store, &key, true).expect("fetch") {
        // What the registry holds now: the replacing push's artifact.
        Fetched::Pulled(t) => assert_eq!(t.digest, replaced.digest),
        other => panic!("not pulled: {other:?}"),
    }
    let (a, b) = (builder_a.entry(&key), builder_b.entry(&key));
    assert_eq!(
        tree_listing(&a.join("rootfs")),
        tree_listing(&b.join("rootfs"))
    );
    for f in ["base.img", "vmlinuz", "initrd.img", "meta.json"] {
        assert!(
            std::fs::read(a.join(f)).expect("a") == std::fs::read(b.join(f)).expect("b"),
            "{f} differs after the round trip"
        );
    }
    use std::os::unix::fs::MetadataExt;
    let blocks = std::fs::metadata(b.join("base.img")).expect("img").blocks();
    assert!(
        blocks * 512 < 1 << 20,
        "base.img came back without its holes"
    );
    let missing = "0".repeat(32);
    assert!(matches!(
        shared::fetch(&builder_b, &store, &missing, true).expect("fetch"),
        Fetched::Missing
    ));

    // Refused: one that says it is another base, one whose inputs hash to
    // another key, and one whose archive was changed in the registry.
    let other_key = "ab".repeat(16);
    fake_base(&builder_a, &other_key, &key, &inputs);
    let altered_key = "cd".repeat(16);
    fake_base(&builder_a, &altered_key, &altered_key, &inputs);
    for k in [&other_key, &altered_key] {
        shared::store(&builder_a, &store, k, Push::IfMissing, true).expect("pushed");
    }
    let archive_digest = manifest["layers"][1]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let hex = archive_digest.trim_start_matches("sha256:");
    let blob = reg
        .storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&blob).expect("stored blob");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&blob, bytes).expect("tamper");
    for (k, says) in [
        (
            &other_key,
            format!("is {key}, not the base {other_key} asked for"),
        ),
        (
            &altered_key,
            format!("inputs hash to {key}, not to its key {altered_key}"),
        ),
        (&key, archive_digest.clone()),
    ] {
        let builder_c = Cache::open(&tmp.path().join(format!("c-{k}"))).expect("cache c");
        match shared::fetch(&builder_c, &store, k, true).expect("fetch") {
            Fetched::Refused(why) => assert!(why.contains(&says), "{k}: {why}"),
            other => panic!("{k}: not refused: {other:?}"),
        }
        let left: Vec<_> = std::fs::read_dir(builder_c.base_dir())
            .expect("base/")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{k}: kept {left:?}");
    }
}
