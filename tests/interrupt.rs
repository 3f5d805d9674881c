//! Interrupted builds (issue 8, item 4): `hardroot build` killed with SIGKILL at
//! random moments never leaves a corrupt OUT. OUT is either the previous output
//! or absent, byte for byte, and the next build succeeds and removes the staging
//! folders the killed builds left behind. Also: OUT that is a symlink, or that
//! holds symlinks pointing outside, is never written through.
use crate::common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KILLS: usize = 60;
const OUTPUTS: [&str; 3] = ["manifest.json", "overlay.tar.gz", "config.json"];

fn profile() -> PathBuf {
    fixtures().join("profiles/p.toml")
}

fn build_cmd(out: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("build")
        .arg(profile())
        .arg("-o")
        .arg(out)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn build(out: &Path) {
    let status = build_cmd(out).status().expect("run hardroot build");
    assert!(status.success(), "build into {} failed", out.display());
}

/// The hashes of OUT's files; builds are reproducible, so every complete OUT has these.
fn fingerprint(out: &Path) -> Vec<String> {
    OUTPUTS.iter().map(|f| sha256_file(&out.join(f))).collect()
}

/// Every manifest entry is in overlay/ with its content, and nothing else is.
fn overlay_matches_manifest(out: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(out.join("manifest.json")).map_err(|e| e.to_string())?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let entries = manifest["entries"].as_array().cloned().unwrap_or_default();
    let overlay = out.join("overlay");
    let on_disk = walkdir::WalkDir::new(&overlay)
        .min_depth(1)
        .into_iter()
        .count();
    if on_disk != entries.len() {
        return Err(format!(
            "{on_disk} paths on disk, {} in the manifest",
            entries.len()
        ));
    }
    for e in &entries {
        let path = overlay.join(e["path"].as_str().unwrap_or_default());
        if let Some(sha) = e["sha256"].as_str() {
            if sha256_file(&path) != sha {
                return Err(format!("{} differs from the manifest", path.display()));
            }
        } else if std::fs::symlink_metadata(&path).is_err() {
            return Err(format!("{} is missing", path.display()));
        }
    }
    Ok(())
}

fn staging_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".building-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_corrupt_out() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let t0 = Instant::now();
    build(&reference);
    let build_time = t0.elapsed();
    let expected = fingerprint(&reference);
    overlay_matches_manifest(&reference).unwrap();

    let seed = Rng::seed_from_clock();
    eprintln!("kill loop: seed {seed}, one build takes {build_time:?}");
    let mut rng = Rng(seed);
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = work.join("out");
    let (mut absent, mut complete) = (0, 0);
    for i in 0..KILLS {
        // Half the runs start from an existing OUT (replace), half from none (first build).
        if i % 2 == 0 {
            let _ = std::fs::remove_dir_all(&out);
        }
        let window = (build_time.as_micros() as u64).saturating_mul(3) / 2;
        let mut child = build_cmd(&out).spawn().expect("spawn");
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        let _ = child.kill(); // SIGKILL; the build may have finished already
        let _ = child.wait();
        if !out.exists() {
            absent += 1;
            continue;
        }
        complete += 1;
        assert_eq!(
            fingerprint(&out),
            expected,
            "kill {i} (seed {seed}) left a different OUT"
        );
        if let Err(e) = overlay_matches_manifest(&out) {
            panic!("kill {i} (seed {seed}) left a corrupt overlay: {e}");
        }
    }
    let left = staging_leftovers(&work).len();
    eprintln!("{absent} kills left no OUT, {complete} a complete one; {left} staging folders left");
    build(&out);
    assert_eq!(fingerprint(&out), expected);
    overlay_matches_manifest(&out).unwrap();
    assert_eq!(
        staging_leftovers(&work),
        Vec::<String>::new(),
        "the next build must remove the staging folders of dead builds"
    );
}

#[test]
fn a_running_build_keeps_its_staging_folder() {
    // A folder named after a live process (this test) must survive another build's cleanup.
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp
        .path()
        .join(format!(".out.building-{}-test", std::process::id()));
    std::fs::create_dir(&live).unwrap();
    let dead = tmp.path().join(".out.building-999999999-test");
    std::fs::create_dir(&dead).unwrap();
    build(&tmp.path().join("out"));
    assert!(live.exists(), "a live build's staging folder was removed");
    assert!(!dead.exists(), "a dead build's staging folder was kept");
}

#[test]
fn out_that_is_a_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("precious"), "keep me").unwrap();
    let out = tmp.path().join("out");
    std::os::unix::fs::symlink(&elsewhere, &out).unwrap();
    let o = hardroot(
        tmp.path(),
        &["build", profile().to_str().unwrap(), "-o", "out"],
    );
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("hardroot::out_is_symlink"), "{stderr}");
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("precious")).unwrap(),
        "keep me"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
    assert!(staging_leftovers(tmp.path()).is_empty());
}

#[test]
fn symlinks_inside_an_old_out_are_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("file"), "untouched").unwrap();
    let out = tmp.path().join("out");
    build(&out);
    // Plant links where the next build writes and where the old output is deleted.
    std::os::unix::fs::symlink(&victim, out.join("overlay/etc/planted")).unwrap();
    std::fs::remove_dir_all(out.join("overlay/var")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("overlay/var")).unwrap();
    std::fs::remove_file(out.join("config.json")).unwrap();
    std::os::unix::fs::symlink(victim.join("file"), out.join("config.json")).unwrap();
    build(&out);
    assert_eq!(
        std::fs::read_to_string(victim.join("file")).unwrap(),
        "untouched"
    );
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1);
    overlay_matches_manifest(&out).unwrap();
    assert!(
        !std::fs::symlink_metadata(out.join("config.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
