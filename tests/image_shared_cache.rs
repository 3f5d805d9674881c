//! `hardroot image --cache-to REF` / `--cache-from REF`: two builder machines,
//! simulated by two cache folders, share one base through a real registry
//! (tests/registry_support). The build is the image tests' small hand-made
//! one with the disk layout (tests/image_support), so builder A, the image
//! tests' shared cache, has its base already (else this is its one
//! bootstrap) and sends it to the registry; builder B, with an empty cache,
//! builds without running mmdebstrap and gets byte-identical images (its
//! disk's partitions are packed from the tree it pulled). The refusal of a
//! wrong or damaged base is tests/registry.rs' (no root, no bootstrap).
//! Needs root, mmdebstrap, tar, zstd, docker-registry and apt sources.
use crate::image_support;
use crate::registry_support;

use registry_support::{Registry, hardroot};
use serde_json::Value;
use std::path::Path;

fn build(build: &Path, cache: &Path, out: &Path, shared: [&str; 2]) -> (Value, String) {
    let run = hardroot(&["image", "--json", "--from-build"])
        .arg(build)
        .arg("-o")
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .args(shared)
        .output()
        .expect("run hardroot image");
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    let doc = serde_json::from_slice(&run.stdout).expect("--json summary");
    (doc, stderr)
}

fn sha256_of(path: &Path) -> String {
    hardroot::image::cache::sha256_file(path).expect("hash")
}

#[test]
#[ignore = "builds images: needs root, mmdebstrap, tar, zstd, docker-registry and apt sources (scripts/test.sh)"]
fn a_second_builder_pulls_the_base_instead_of_bootstrapping_and_gets_the_same_disk() {
    let tmp = tempfile::tempdir_in("/var/tmp").expect("tmp");
    let reg = Registry::start(&tmp.path().join("registry"), false);
    let repository = reg.reference("fleet/bases");
    let build_dir = image_support::write_build(
        &tmp.path().join("build"),
        &image_support::disk_entries(),
        &[],
    );

    let a_out = tmp.path().join("a");
    let (a, a_err) = build(
        &build_dir,
        &image_support::cache_dir(),
        &a_out,
        ["--cache-to", &repository],
    );
    let key = a["base"]["cache_key"].as_str().expect("key").to_string();
    let pushed = &a["base"]["pushed"];
    assert_eq!(
        pushed["reference"],
        format!("{repository}:{key}"),
        "{a_err}"
    );
    assert!(
        pushed["bytes"].as_u64().unwrap_or(0) > 10 << 20,
        "the registry was empty, so the whole base is sent: {pushed}"
    );

    let b_cache = tmp.path().join("b-cache");
    let b_out = tmp.path().join("b");
    let (b, b_err) = build(&build_dir, &b_cache, &b_out, ["--cache-from", &repository]);
    assert_eq!(b["base"]["cache"], "pulled", "{b_err}");
    assert_eq!(b["base"]["cache_key"], key.as_str());
    assert_eq!(b["base"]["pulled"]["digest"], pushed["digest"]);
    assert!(
        !b_err.contains("mmdebstrap") && !b_out.join("logs/mmdebstrap.log").exists(),
        "builder B bootstrapped:\n{b_err}"
    );
    assert!(b_err.contains("pulling the base from"), "{b_err}");
    assert!(b_cache.join("base").join(&key).join("meta.json").is_file());

    for (file, at) in [
        ("disk.img", "/disk/sha256"),
        ("rootfs.img", "/rootfs/sha256"),
    ] {
        let (sa, sb) = (sha256_of(&a_out.join(file)), sha256_of(&b_out.join(file)));
        assert_eq!(sa, sb, "{file} differs between the builders");
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(b_out.join("image-manifest.json")).expect("manifest"),
        )
        .expect("json");
        assert_eq!(
            manifest.pointer(at).and_then(Value::as_str),
            Some(sb.as_str())
        );
    }
}
