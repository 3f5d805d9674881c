//! The XMPP acceptance test (vm-tests/xmpp-server) through the real binary:
//! `hardroot vm-test profiles/xmpp-test.toml vm-tests/xmpp-server`, as
//! scripts/xmpp.sh runs it. Builds the image (the Debian base comes from the
//! image cache after the first run) and boots it under QEMU: minutes.
//!
//! `#[ignore]`d like the other VM tests so that a plain `cargo test` stays
//! quick; scripts/test.sh runs it with `--ignored`. It skips, loudly, only
//! when the machine cannot run VM tests at all (not root, no /dev/net/tun).
use crate::common;
use common::cannot_run_vm_tests;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
#[ignore = "builds and boots the XMPP image in QEMU; needs root, qemu and mmdebstrap"]
fn xmpp_server_acceptance_test_passes() {
    if let Some(why) = cannot_run_vm_tests() {
        eprintln!("\n!!!!! SKIPPED vm_xmpp: {why} !!!!!\n");
        return;
    }
    // Kept after the run (a CI artifact, like the report test's): the
    // report, results.json with every subtest's duration, serial logs.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-xmpp");
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_hardroot"))
        .current_dir(repo())
        .args([
            "vm-test",
            "profiles/xmpp-test.toml",
            "vm-tests/xmpp-server",
            "--out",
        ])
        .arg(&out)
        .arg("--report")
        .arg(out.join("report.html"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "vm-test failed (exit {:?}):\n{stderr}",
        run.status.code()
    );

    // Every subtest ran and passed (a script that stopped early cannot pass).
    let results = read_json(&out.join("results.json"));
    let subtests = results["subtests"].as_array().cloned().unwrap_or_default();
    assert!(subtests.len() >= 10, "too few subtests ran: {results}");
    assert!(subtests.iter().all(|s| s["passed"] == true), "{results}");

    // It booted the shipped disk through UEFI firmware, the very bytes
    // image-manifest.json names (the report keeps a copy in OUT/build), with
    // every partition and mount as declared.
    let boot = &results["machines"]["server"]["boot"];
    assert_eq!(boot["mode"], "uefi-disk", "{boot}");
    let manifest = read_json(&out.join("build/image-manifest.json"));
    assert_eq!(boot["sha256"], manifest["disk"]["sha256"], "{boot}");
    let layout = read_json(&out.join("server.layout.json"));
    let mounts: Vec<&str> = layout["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["ok"] == true)
        .filter_map(|m| m["target"].as_str())
        .collect();
    for m in [
        "/",
        "/var",
        "/var/tmp",
        "/var/log",
        "/var/log/audit",
        "/home",
        "/tmp",
        "/dev/shm",
    ] {
        assert!(mounts.contains(&m), "{m} not mounted as declared: {layout}");
    }

    // The exposure matrix for the report: one entry per declared listener,
    // with both clients' measurements.
    let matrix = read_json(&out.join("exposure.json"));
    let listeners = matrix["listeners"].as_array().cloned().unwrap_or_default();
    assert!(listeners.len() >= 15, "{matrix}");
    for l in &listeners {
        for client in ["trusted", "untrusted"] {
            for fam in ["ipv4", "ipv6"] {
                assert!(
                    l["reachable"][client][fam].is_boolean(),
                    "no {client} {fam} measurement: {l}"
                );
            }
        }
        assert!(l["listening"].is_boolean(), "{l}");
    }
    let ssh = listeners
        .iter()
        .find(|l| l["service"] == "ssh")
        .expect("ssh is in the exposure table");
    assert_eq!(ssh["reachable"]["trusted"]["ipv4"], true, "{ssh}");
    assert_eq!(ssh["reachable"]["untrusted"]["ipv4"], false, "{ssh}");

    // The report of this run has every input it reads: no "missing" note,
    // the live sshd, sysctl and firewall facts and the boot chart are there.
    let page =
        std::fs::read_to_string(out.join("report.html")).expect("vm-test --report wrote the page");
    for gone in ["missing:", "not found (no manifest.json"] {
        assert!(
            !page.contains(gone),
            "the report lacks an input ({gone}):\n{page}"
        );
    }
    assert!(
        page.contains("id=\"boot-plot\""),
        "the boot chart is in the report"
    );
    // It names the build and the bytes it booted, and every verdict is green:
    // the test passed, the exposure matrix and hardening are as declared,
    // and the booted disk is the one image-manifest.json describes.
    let build = read_json(&out.join("build/manifest.json"));
    let root_hash = build["root_hash"].as_str().expect("root_hash");
    assert!(
        page.contains(root_hash),
        "the overlay's root hash is on the page"
    );
    let disk_sha = manifest["disk"]["sha256"].as_str().expect("disk sha256");
    assert!(page.contains(disk_sha), "disk.img's sha256 is on the page");
    for verdict in [
        "<span id=\"verdict\" class=\"verdict ok\">passed</span>",
        "id=\"exposure-bad\" class=\"verdict ok\">0<",
        "id=\"hardening-bad\" class=\"verdict ok\">0<",
        "id=\"disk-bad\" class=\"verdict ok\">0<",
    ] {
        assert!(page.contains(verdict), "the report lacks {verdict}");
    }
    // The independent audit ran (the last subtest) and its verdict is on the page.
    assert!(
        page.contains("id=\"audit-verdict\"") && !page.contains("id=\"audit-missing\""),
        "the report has the independent audit's verdict"
    );

    // The load and fault part (issue 20): the load passed, every kind of
    // fault was injected and survived, and the report's verdict says so.
    let lf = read_json(&out.join("load-faults.json"));
    assert_eq!(lf["load"]["ok"], true, "{lf}");
    assert_eq!(lf["load"]["crowdsec_decisions"], 0, "{lf}");
    let faults = lf["faults"].as_array().cloned().unwrap_or_default();
    assert!(faults.iter().all(|f| f["ok"] == true), "{lf}");
    let kinds: Vec<&str> = faults.iter().filter_map(|f| f["kind"].as_str()).collect();
    for (kind, at_least) in [
        ("crash", 5),
        ("fail-closed", 2),
        ("messages", 1),
        ("disk", 1),
        ("boot", 1),
        ("power", 1),
        ("acme", 1),
    ] {
        let n = kinds.iter().filter(|k| **k == kind).count();
        assert!(
            n >= at_least,
            "{n} fault(s) of kind {kind}, wanted {at_least}: {lf}"
        );
    }
    let checks = faults.len() + 1;
    assert!(
        page.contains(&format!(
            "id=\"load-faults-verdict\" class=\"verdict ok\">{checks} / {checks}<"
        )),
        "the report's load and faults verdict is {checks} / {checks}"
    );
}
