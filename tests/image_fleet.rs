//! `hardroot image PROFILE... -o OUT --jobs N`: several machines in one
//! command. Two machines share a package set (one base, bootstrapped at most
//! once), a fragment (marked, or importing no `system`) is skipped, and a broken
//! profile fails alone. Needs root, mmdebstrap and the host's apt sources;
//! the base is the image tests' cached one under target/.
use crate::image_support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write profile");
}

#[test]
#[ignore = "builds images: needs root, mmdebstrap, e2fsprogs and apt sources (scripts/test.sh)"]
fn profiles_sharing_a_package_set_share_one_base_and_a_failure_stays_alone() {
    let tmp = tempfile::tempdir().expect("tmp");
    let profiles = tmp.path().join("profiles");
    std::fs::create_dir_all(&profiles).expect("profiles");
    let machine = |name: &str| {
        format!("[profile]\ndescription = \"fleet test machine {name}\"\nimports = [\"system\"]\n")
    };
    write(&profiles, "one.toml", &machine("one"));
    write(&profiles, "two.toml", &machine("two"));
    write(
        &profiles,
        "fragment.toml",
        "[profile]\ndescription = \"a fragment\"\nimports = [\"banner\"]\n",
    );
    write(
        &profiles,
        "marked.toml",
        "[profile]\ndescription = \"a marked fragment\"\nfragment = true\nimports = [\"system\"]\n",
    );
    write(
        &profiles,
        "broken.toml",
        "[profile]\ndescription = \"wrong\"\nimports = [\"system\"]\n\n[system]\nsuite = 5\n",
    );
    let out = tmp.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_hardroot"))
        .args(["image", "--json", "--no-disk", "--jobs", "2"])
        .args(
            ["one", "broken", "fragment", "marked", "two"]
                .map(|p| profiles.join(format!("{p}.toml"))),
        )
        .arg("-o")
        .arg(&out)
        .arg("--modules")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("modules"))
        .arg("--cache")
        .arg(image_support::cache_dir())
        .output()
        .expect("run hardroot image");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(1),
        "broken.toml is a profile mistake:\n{stderr}"
    );
    let doc: Value = serde_json::from_slice(&run.stdout).expect("--json summary");
    let by_name = |n: &str| -> &Value {
        doc["profiles"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == n))
            .unwrap_or_else(|| panic!("{n} not in {doc}"))
    };
    let (one, two) = (by_name("one"), by_name("two"));
    assert_eq!(one["status"], "built", "{stderr}");
    assert_eq!(two["status"], "built", "{stderr}");
    assert_eq!(
        one["base_key"], two["base_key"],
        "one package set, one base key"
    );
    let misses = [one, two].iter().filter(|p| p["cache"] == "miss").count();
    assert!(
        misses <= 1,
        "the shared base was bootstrapped twice:\n{stderr}"
    );
    // A step prints a line when it starts ("==> …") and one when it is done.
    assert_eq!(
        stderr
            .matches("==> scrubbing and checking the base")
            .count(),
        misses,
        "{stderr}"
    );
    for n in ["one", "two"] {
        let img = out.join(n).join("rootfs.img");
        assert!(img.is_file(), "{} missing", img.display());
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(n).join("image-manifest.json")).expect("manifest"),
        )
        .expect("manifest json");
        assert_eq!(manifest["profile"], n);
        assert_eq!(
            by_name(n)["image"]["rootfs"]["sha256"],
            manifest["rootfs"]["sha256"]
        );
    }
    for n in ["fragment", "marked"] {
        assert_eq!(by_name(n)["status"], "skipped", "{n}");
        assert!(!out.join(n).exists(), "the skipped {n} wrote output");
    }
    let broken = by_name("broken");
    assert_eq!(broken["status"], "failed");
    assert!(
        broken["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("suite")
            || stderr.contains("suite"),
        "{stderr}"
    );
    assert!(!out.join("broken/rootfs.img").exists());
    assert_eq!(doc["failed"], 1);
    // Progress lines name their profile, so two at once stay readable.
    assert!(stderr.contains("[one] ==> "), "{stderr}");
    assert!(stderr.contains("[two] ==> "), "{stderr}");
}
