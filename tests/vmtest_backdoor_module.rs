//! The guest side of the VM test driver (modules/test_backdoor) through the
//! real build: it renders to the files the driver expects, enabled early, and
//! byte-identical to its templates (vm-tests/smoke/make-image.sh copies them
//! verbatim, so a Tera construct in them would make the two images differ).
use hardroot::build::{BuildOptions, build};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn test_backdoor_renders_verbatim_and_is_wanted_by_sysinit() {
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("p.toml");
    std::fs::write(
        &profile,
        "[profile]\ndescription = \"backdoor\"\nimports = [\"test_backdoor\"]\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let opts = BuildOptions {
        profile,
        out: out.clone(),
        module_dirs: vec![repo().join("modules")],
    };
    let built = build(&opts).unwrap_or_else(|e| panic!("{e:?}"));
    // The module always warns: an image with it is not a golden image.
    assert!(!built.warnings.is_empty(), "test_backdoor must warn");

    let pairs = [
        (
            "usr/local/lib/hardroot/backdoor",
            "backdoor.sh.tera",
            "0755",
        ),
        (
            "etc/systemd/system/hardroot-backdoor.service",
            "hardroot-backdoor.service.tera",
            "0644",
        ),
    ];
    for (path, template, mode) in pairs {
        let rendered = std::fs::read(out.join("overlay").join(path)).unwrap();
        let source = std::fs::read(repo().join("modules/test_backdoor").join(template)).unwrap();
        assert_eq!(
            rendered, source,
            "{path} must render verbatim from {template}"
        );
        let entry = built
            .manifest
            .entries
            .iter()
            .find(|e| e.path == path)
            .unwrap();
        assert_eq!(entry.mode, mode, "{path}");
    }
    let enabled = &built.manifest.units.enable;
    assert!(
        enabled
            .iter()
            .any(|u| u.unit == "hardroot-backdoor.service" && u.wanted_by == "sysinit.target")
    );
    let link =
        out.join("overlay/etc/systemd/system/sysinit.target.wants/hardroot-backdoor.service");
    assert_eq!(
        std::fs::read_link(link).unwrap(),
        PathBuf::from("/etc/systemd/system/hardroot-backdoor.service")
    );
}

#[test]
fn backdoor_script_is_valid_bash() {
    let script = repo().join("modules/test_backdoor/backdoor.sh.tera");
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success());
}
