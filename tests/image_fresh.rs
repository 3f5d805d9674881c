//! A cached base follows the archive (issue 31): when the archive publishes a
//! newer version of a package in the base (a security update), the next
//! `hardroot image` bootstraps the base anew by itself, with no
//! `--rebuild-base`, and says what changed; a rebuild pinned to the first
//! image's manifest still gives the first image's bytes. With `--cache-to`,
//! the refreshed base replaces the shared cache's stale copy: another
//! builder pulls the update instead of bootstrapping it again.
//!
//! Offline: the archive that changes is a local apt repository this test
//! makes (`apt-ftparchive`, a `copy:` source beside the host's sources), with
//! one package at version 1, then at versions 1 and 2; the shared cache a
//! docker-registry on 127.0.0.1 (tests/registry_support). Needs root,
//! mmdebstrap, docker-registry and the host's apt sources for the rest of
//! the base: `#[ignore]`d; scripts/test.sh runs it in the image lane. Three
//! cold bootstraps of the test package set (first, refreshed, pinned).
use crate::common;
use crate::image_support::*;
use crate::registry_support::{Registry, hardroot};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROBE: &str = "hardroot-fresh-probe";

/// OUT/hardroot-fresh-probe_VERSION_all.deb: one file saying its version.
fn make_deb(repo: &Path, version: &str) {
    let root = repo.join(format!("src-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).expect("DEBIAN");
    std::fs::create_dir_all(root.join("usr/share").join(PROBE)).expect("share");
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {PROBE}\nVersion: {version}\nArchitecture: all\n\
             Maintainer: hardroot tests <tests@hardroot.invalid>\n\
             Description: what the base freshness test upgrades\n"
        ),
    )
    .expect("control");
    std::fs::write(root.join("usr/share").join(PROBE).join("version"), version).expect("file");
    let deb = repo.join(format!("{PROBE}_{version}_all.deb"));
    common::run_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&root)
            .arg(&deb)
            .env("SOURCE_DATE_EPOCH", SDE.to_string()),
    );
    std::fs::remove_dir_all(&root).expect("remove the package's tree");
}

/// Packages and Release of a flat repository, as the archive publishes them.
fn index(repo: &Path) {
    // Release lists the indexes it finds: not the one it replaces.
    let _ = std::fs::remove_file(repo.join("Release"));
    for (what, file) in [("packages", "Packages"), ("release", "Release")] {
        let index = common::run_ok(
            Command::new("apt-ftparchive")
                .arg(what)
                .arg(".")
                .current_dir(repo),
        );
        std::fs::write(repo.join(file), index).expect("index");
    }
}

/// The host's sources, then the local repository's.
fn sources(tmp: &Path, repo: &Path) -> Vec<PathBuf> {
    let local = tmp.join("local.list");
    std::fs::write(
        &local,
        format!("deb [trusted=yes] copy://{} ./\n", repo.display()),
    )
    .expect("local.list");
    let mut all = hardroot::image::base::host_sources().expect("the host's apt sources");
    all.push(local);
    all
}

fn image(args: &[&str], out: &Path, cache: &Path, sources: &[PathBuf]) -> Value {
    let mut cmd = hardroot(&["image", "--quiet", "--json"]);
    cmd.args(args).arg("-o").arg(out).arg("--cache").arg(cache);
    for s in sources {
        cmd.arg("--sources").arg(s);
    }
    serde_json::from_str(&common::run_ok(&mut cmd)).expect("stdout is one JSON document")
}

/// The probe's version in OUT/image-manifest.json.
fn probe_version(out: &Path) -> String {
    let text = std::fs::read_to_string(out.join("image-manifest.json")).expect("manifest");
    let m: Value = serde_json::from_str(&text).expect("json");
    m["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == PROBE)
        .and_then(|p| p["version"].as_str())
        .unwrap_or_else(|| panic!("{PROBE} is not in {}", out.display()))
        .to_string()
}

/// The test build with the probe added to its package set.
fn build_with_probe(dir: &Path) -> PathBuf {
    let build = write_build(dir, &disk_entries(), &[]);
    let path = build.join("manifest.json");
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("json");
    m["packages"]
        .as_array_mut()
        .expect("packages")
        .push(PROBE.into());
    std::fs::write(&path, m.to_string()).expect("manifest");
    build
}

#[test]
#[ignore = "bootstraps Debian three times with a local apt repository and a registry: needs root, mmdebstrap, apt-utils, docker-registry and apt sources (scripts/test.sh)"]
fn a_cached_base_follows_the_archive_and_a_pinned_rebuild_does_not() {
    let tmp = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let (repo, cache) = (tmp.path().join("repo"), tmp.path().join("cache"));
    std::fs::create_dir_all(&repo).expect("repo");
    make_deb(&repo, "1");
    index(&repo);
    let sources = sources(tmp.path(), &repo);
    let registry = Registry::start(&tmp.path().join("registry"), false);
    let bases = registry.reference("fleet/bases");
    // The first image's output is its build folder: --from-manifest reads both there.
    let build = build_with_probe(&tmp.path().join("build"));
    let b = build.display().to_string();
    let shared = ["--from-build", &b, "--cache-to", &bases];
    let first = image(&shared, &build, &cache, &sources);
    assert_eq!(first["base"]["cache"], "miss", "{first}");
    assert_eq!(probe_version(&build), "1");
    assert!(first["base"]["pushed"].is_object(), "{first}");

    // Nothing changed in the archive: the base is reused, after asking,
    // and the registry's copy is left as it is.
    let same = tmp.path().join("same");
    let v = image(&shared, &same, &cache, &sources);
    assert_eq!(v["base"]["cache"], "hit", "{v}");
    assert!(v["steps"].to_string().contains("check_archive"), "{v}");
    assert!(v["base"]["pushed"].is_null(), "{v}");

    // The archive publishes version 2 (and still serves 1, as a point
    // release's archive does): the next build, with no flag, has 2.
    make_deb(&repo, "2");
    index(&repo);
    let second = tmp.path().join("second");
    let v = image(&shared, &second, &cache, &sources);
    assert_eq!(v["base"]["cache"], "refreshed", "{v}");
    assert_eq!(
        v["base"]["refreshed"],
        serde_json::json!([{ "name": PROBE, "from": "1", "to": "2" }]),
        "{v}"
    );
    assert_eq!(v["base"]["cache_key"], first["base"]["cache_key"], "{v}");
    assert_eq!(probe_version(&second), "2");
    assert_ne!(v["disk"]["sha256"], first["disk"]["sha256"]);
    // The refreshed base replaced the registry's stale copy under the same key.
    assert_eq!(
        v["base"]["pushed"]["reference"], first["base"]["pushed"]["reference"],
        "{v}"
    );
    assert_ne!(
        v["base"]["pushed"]["digest"], first["base"]["pushed"]["digest"],
        "{v}"
    );

    // Another builder, its cache empty: it pulls version 2 and finds it current.
    let other = tmp.path().join("other");
    let pulled = image(
        &["--from-build", &b, "--cache-from", &bases],
        &other,
        &tmp.path().join("other-cache"),
        &sources,
    );
    assert_eq!(pulled["base"]["cache"], "pulled", "{pulled}");
    assert_eq!(
        pulled["base"]["pulled"]["digest"],
        v["base"]["pushed"]["digest"]
    );
    assert_eq!(probe_version(&other), "2");
    assert_eq!(pulled["disk"]["sha256"], v["disk"]["sha256"], "{pulled}");

    // A rebuild pinned to the first image's manifest: version 1 again, and
    // the first image's bytes, though the archive's newest is 2.
    let again = tmp.path().join("again");
    let manifest = build.join("image-manifest.json").display().to_string();
    let v = image(&["--from-manifest", &manifest], &again, &cache, &[]);
    assert_eq!(probe_version(&again), "1");
    assert_eq!(v["disk"]["sha256"], first["disk"]["sha256"], "{v}");
    assert_eq!(
        common::sha256_file(&again.join("disk.img")),
        first["disk"]["sha256"].as_str().expect("sha")
    );
}
