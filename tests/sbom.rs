//! OUT/sbom.cdx.json: valid CycloneDX 1.5 (the official schema, vendored in
//! tests/fixtures/cyclonedx), reproducible, and true to the image: every
//! package `dpkg-query` lists inside the built image appears, nothing else.
use crate::common;
use crate::image_support;

use hardroot::image::manifest::BuildDir;
use hardroot::image::sbom::{self, Input, OutFile};
use hardroot::image::{ImageRequest, build_image};
use image_support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The vendored schema files, by the URI bom-1.5's `$ref`s resolve to.
struct Vendored;

impl jsonschema::Retrieve for Vendored {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.path().as_str().rsplit('/').next().unwrap_or("");
        let text = std::fs::read_to_string(schema_dir().join(name))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn schema_dir() -> std::path::PathBuf {
    common::fixtures().join("cyclonedx")
}

/// Every schema error, one per line; empty when the document is valid.
fn schema_errors(doc: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(schema_dir().join("bom-1.5.schema.json")).expect("schema"),
    )
    .expect("schema json");
    let validator = jsonschema::options()
        .with_retriever(Vendored)
        .should_validate_formats(true)
        .build(&schema)
        .expect("the CycloneDX schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

const STATUS: &str = "\
Package: base-files\nStatus: install ok installed\nInstalled-Size: 340\nArchitecture: amd64\nVersion: 12.4+deb12u5\n\n\
Package: libfoo1\nStatus: install ok installed\nInstalled-Size: 9000\nArchitecture: amd64\nVersion: 1:2.3-1\n\n\
Package: removed\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\n\
Package: tzdata\nStatus: install ok installed\nInstalled-Size: 2000\nArchitecture: all\nVersion: 2024a-0+deb12u1\n";

/// A tree with a dpkg status and copyright files: one DEP-5, one free text,
/// one reached through a doc-folder link; and an apt index that knows one .deb.
fn fake_root(dir: &Path) {
    let doc = dir.join("usr/share/doc");
    for d in ["base-files", "libfoo-common", "tzdata"] {
        std::fs::create_dir_all(doc.join(d)).expect("mkdir");
    }
    std::fs::create_dir_all(dir.join("var/lib/dpkg")).expect("mkdir");
    std::fs::write(dir.join("var/lib/dpkg/status"), STATUS).expect("status");
    std::fs::write(
        doc.join("base-files/copyright"),
        "This is Debian's base-files.\nGPL.\n",
    )
    .expect("cp");
    std::fs::write(
        doc.join("libfoo-common/copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
         Files: *\nCopyright: x\nLicense: LGPL-2.1+ or MIT\n",
    )
    .expect("cp");
    std::os::unix::fs::symlink("libfoo-common", doc.join("libfoo1")).expect("link");
    std::fs::write(
        doc.join("tzdata/copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
         Files: *\nLicense: public-domain\n",
    )
    .expect("cp");
}

fn fake_lists(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(
        dir.join("mirror_dists_bookworm_main_binary-amd64_Packages"),
        "Package: libfoo1\nVersion: 1:2.3-1\nArchitecture: amd64\nSHA256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\n\
         Package: tzdata\nVersion: 2023c-5\nArchitecture: all\nSHA256: fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210\n",
    )
    .expect("index");
}

fn input<'a>(root: &'a Path, lists: &'a Path, build: &'a BuildDir) -> Input<'a> {
    Input {
        root,
        apt_lists: lists,
        build,
        image: OutFile {
            name: "disk.img".into(),
            sha256: "a".repeat(64),
        },
        kernel: OutFile {
            name: "vmlinuz".into(),
            sha256: "b".repeat(64),
        },
        kernel_version: "6.1.0-99-cloud-amd64",
    }
}

fn by_name<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name}"))
}

#[test]
fn sbom_is_valid_cyclonedx_reproducible_and_says_what_the_tree_holds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (root, lists) = (tmp.path().join("root"), tmp.path().join("lists"));
    fake_root(&root);
    fake_lists(&lists);
    let build_dir = write_build(&tmp.path().join("build"), &default_entries(), &[]);
    let build = BuildDir::load(&build_dir).expect("build dir");
    let bytes = sbom::document(&input(&root, &lists, &build)).expect("sbom");
    let doc: Value = serde_json::from_slice(&bytes).expect("json");
    let errors = schema_errors(&doc);
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));
    assert_eq!(doc["specVersion"], "1.5");

    // Reproducible, and the serial number follows the content.
    let again = sbom::document(&input(&root, &lists, &build)).expect("sbom");
    assert_eq!(bytes, again, "same inputs, same bytes");
    let serial = doc["serialNumber"].as_str().expect("serial");
    assert!(serial.starts_with("urn:uuid:"), "{serial}");
    let other_status = STATUS.replace("12.4+deb12u5", "12.4+deb12u6");
    std::fs::write(root.join("var/lib/dpkg/status"), other_status).expect("status");
    let changed: Value =
        serde_json::from_slice(&sbom::document(&input(&root, &lists, &build)).expect("sbom"))
            .expect("json");
    assert_ne!(changed["serialNumber"], doc["serialNumber"]);
    assert_eq!(
        doc["metadata"]["timestamp"], "2023-11-14T22:13:20Z",
        "SOURCE_DATE_EPOCH {SDE}"
    );

    // Packages: the installed ones only, with purl, licences and known hashes.
    let purls: BTreeSet<&str> = doc["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert_eq!(
        purls,
        BTreeSet::from([
            "pkg:deb/debian/base-files@12.4+deb12u5?arch=amd64&distro=debian-12",
            "pkg:deb/debian/libfoo1@1:2.3-1?arch=amd64&distro=debian-12",
            "pkg:deb/debian/tzdata@2024a-0+deb12u1?arch=all&distro=debian-12",
        ])
    );
    let libfoo = by_name(&doc, "libfoo1");
    assert_eq!(libfoo["version"], "1:2.3-1");
    let names: Vec<&str> = libfoo["licenses"]
        .as_array()
        .expect("licenses")
        .iter()
        .filter_map(|l| l["license"]["name"].as_str())
        .collect();
    assert_eq!(names, ["LGPL-2.1+", "MIT"]);
    assert_eq!(libfoo["hashes"][0]["alg"], "SHA-256");
    assert_eq!(
        libfoo["hashes"][0]["content"].as_str().map(|h| &h[..4]),
        Some("0123")
    );
    // Free-text copyright: no licence claimed. Index lists another version: no hash.
    assert!(by_name(&doc, "base-files").get("licenses").is_none());
    assert!(by_name(&doc, "tzdata").get("hashes").is_none());

    // The image is the top-level component; the kernel and overlay files are listed.
    assert_eq!(
        doc["metadata"]["component"]["hashes"][0]["content"],
        "a".repeat(64)
    );
    assert_eq!(by_name(&doc, "vmlinuz")["version"], "6.1.0-99-cloud-amd64");
    check_overlay_files(&doc, &build_dir);

    let summary = hardroot::report::sbom::summarize(&doc);
    assert_eq!(summary.packages, 3);
    assert_eq!(summary.largest[0], ("libfoo1".to_string(), 9000));
    assert_eq!(summary.unlicensed, 1);
}

/// Every file of the build's manifest.json is a component with its sha256 and module.
fn check_overlay_files(doc: &Value, build_dir: &Path) {
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(build_dir.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let files: Vec<&Value> = manifest["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["type"] == "file")
        .collect();
    assert!(!files.is_empty());
    for e in files {
        let path = format!("/{}", e["path"].as_str().expect("path"));
        let c = by_name(doc, &path);
        assert_eq!(c["type"], "file");
        assert_eq!(c["hashes"][0]["content"], e["sha256"], "{path}");
        let module = c["properties"]
            .as_array()
            .expect("properties")
            .iter()
            .find(|p| p["name"] == "hardroot:module")
            .map(|p| &p["value"]);
        assert_eq!(module, Some(&e["module"]), "{path}");
    }
}

#[test]
fn schema_check_is_not_a_rubber_stamp() {
    // The validator must reject what the spec forbids, else the test above proves nothing.
    let bad = serde_json::json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "components": [{ "type": "no-such-type", "name": "x" }],
    });
    assert!(!schema_errors(&bad).is_empty());
}

/// (name, version, architecture) of every package dpkg-query lists in the image.
fn dpkg_query_in(img: &Path, tmp: &Path) -> BTreeSet<(String, String, String)> {
    let admin = tmp.join("dpkg-admin");
    std::fs::create_dir_all(admin.join("info")).expect("mkdir");
    let dump = Command::new("debugfs")
        .arg("-R")
        .arg(format!(
            "dump /var/lib/dpkg/status {}",
            admin.join("status").display()
        ))
        .arg(img)
        .output()
        .expect("debugfs");
    assert!(dump.status.success());
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args([
            "-W",
            "-f",
            "${db:Status-Status} ${Package} ${Version} ${Architecture}\n",
        ])
        .output()
        .expect("dpkg-query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 4 && f[0] == "installed")
                .then(|| (f[1].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .collect()
}

#[test]
#[ignore = "builds an image: needs root, mmdebstrap, e2fsprogs and apt sources (scripts/test.sh)"]
fn image_sbom_lists_exactly_the_packages_dpkg_query_finds_in_the_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let build = write_build(&tmp.path().join("build"), &disk_entries(), &[]);
    let req = |out: &str| ImageRequest {
        quiet: true,
        ..request(&build, &tmp.path().join(out))
    };
    let first = build_image(&req("a")).expect("image");
    let text = std::fs::read(&first.sbom).expect("sbom written");
    let doc: Value = serde_json::from_slice(&text).expect("json");
    let errors = schema_errors(&doc);
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));

    let in_image = dpkg_query_in(&first.rootfs, tmp.path());
    assert!(in_image.len() > 50, "{} packages", in_image.len());
    let in_sbom: BTreeSet<(String, String, String)> = doc["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter(|c| {
            c["purl"]
                .as_str()
                .is_some_and(|p| p.starts_with("pkg:deb/"))
        })
        .map(|c| {
            let arch = c["properties"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == "hardroot:architecture"))
                .and_then(|p| p["value"].as_str())
                .unwrap_or("");
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["version"].as_str().unwrap_or("").to_string(),
                arch.to_string(),
            )
        })
        .collect();
    let missing: Vec<_> = in_image.difference(&in_sbom).collect();
    let extra: Vec<_> = in_sbom.difference(&in_image).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );

    // The top-level component is the shipped disk, by its real hash.
    let disk = first.disk.as_ref().expect("disk.img");
    assert_eq!(
        doc["metadata"]["component"]["hashes"][0]["content"],
        common::sha256_file(disk)
    );
    // Most Debian packages ship DEP-5 copyright files.
    let licensed = hardroot::report::sbom::summarize(&doc);
    assert!(licensed.unlicensed * 2 < licensed.packages, "{licensed:?}");
    check_overlay_files(&doc, &build);

    let second = build_image(&req("b")).expect("second image");
    assert_eq!(
        std::fs::read(&second.sbom).expect("sbom"),
        text,
        "the same image gives the same SBOM bytes"
    );
}
