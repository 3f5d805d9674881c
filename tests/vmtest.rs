//! The VM test driver against real QEMU machines (TCG here: minutes, not seconds).
//!
//! These boot VMs and need root (network namespaces, taps), qemu-system-x86,
//! qemu-utils, mmdebstrap and e2fsprogs, so they are `#[ignore]`d in a plain
//! `cargo test`; run them with
//!
//!     cargo test --test suite -- --ignored --test-threads=1 vmtest::
//!
//! The image is HARDROOT_TEST_IMAGE (a folder with rootfs.img, vmlinuz,
//! initrd.img) or is built once by vm-tests/smoke/make-image.sh into a cache
//! folder named by the hash of that script and the backdoor module.
//! The whole path from a profile (build → image stage → boot of the shipped
//! disk) is proven by tests/vm_xmpp.rs, which CI boots anyway.
use crate::common;

use hardroot::vmtest::{AccelChoice, Failure, VmTestArgs, run_test};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The smoke image: given, cached, or built now (once per process).
fn image() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    if let Ok(dir) = std::env::var("HARDROOT_TEST_IMAGE") {
        return PathBuf::from(dir);
    }
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = built.as_ref() {
        return dir.clone();
    }
    let mut h = Sha256::new();
    for f in [
        "vm-tests/smoke/make-image.sh",
        "modules/test_backdoor/backdoor.sh.tera",
        "modules/test_backdoor/hardroot-backdoor.service.tera",
    ] {
        h.update(std::fs::read(repo().join(f)).unwrap());
    }
    let hash: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = std::env::temp_dir().join(format!("hardroot-smoke-image-{hash}"));
    if !dir.join("rootfs.img").exists() {
        let status = Command::new(repo().join("vm-tests/smoke/make-image.sh"))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "building the smoke image failed");
    }
    *built = Some(dir.clone());
    dir
}

fn args(test: &Path, out: &Path) -> VmTestArgs {
    VmTestArgs {
        profile: None,
        test: test.to_path_buf(),
        image: Some(image()),
        direct_kernel: false,
        out: Some(out.to_path_buf()),
        accel: AccelChoice::Auto,
        module_dirs: Vec::new(),
        cache: None,
        script: PathBuf::from("test.rhai"),
        tail: 40,
        params: Vec::new(),
    }
}

fn results(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

#[test]
#[ignore = "boots QEMU; needs root, qemu and mmdebstrap"]
fn smoke_test_passes_and_records_every_verb() {
    let out = tempfile::tempdir().unwrap();
    // Through the CLI with --json, so that this one boot also proves that
    // stdout is results.json and nothing else (docs/json.md).
    let o = Command::new(env!("CARGO_BIN_EXE_hardroot"))
        .arg("vm-test")
        .arg("--image")
        .arg(image())
        .arg(repo().join("vm-tests/smoke"))
        .arg("--out")
        .arg(out.path())
        .arg("--json")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(o.status.success(), "smoke test failed (its error is above)");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    assert_eq!(r, results(out.path()), "stdout is results.json");
    common::assert_json_shape(
        &common::json_doc_example("hardroot vm-test --json"),
        &r,
        "vm-test",
    );
    assert_eq!(r["passed"], true);
    let actions: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["action"].as_str())
        .collect();
    for verb in [
        "start",
        "succeed",
        "fail",
        "execute",
        "wait_until_succeeds",
        "wait_until_fails",
        "wait_for_unit",
        "wait_for_open_port",
        "wait_for_console_text",
        "copy_to_vm",
        "copy_from_vm",
        "reboot",
        "shutdown",
    ] {
        assert!(actions.contains(&verb), "smoke test never used {verb}");
    }
    // Two boots: the first start and the reboot.
    assert_eq!(
        r["machines"]["server"]["boot_to_ready_s"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(
        !process_with(&out.path().to_string_lossy()),
        "a spawned client server outlived the test"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("from-vm/tree/sub/leaf")).unwrap(),
        "leaf\n"
    );
    print_figures(&r);
}

/// Boot-to-ready, per-command overhead and reboot time, for the report.
fn print_figures(r: &serde_json::Value) {
    let steps = r["steps"].as_array().unwrap();
    let trivial: Vec<f64> = steps
        .iter()
        .filter(|s| {
            s["target"] == "server"
                && s["action"] == "succeed"
                && s["detail"].as_str().is_some_and(|d| d.starts_with("cat "))
        })
        .filter_map(|s| s["duration_s"].as_f64())
        .collect();
    let reboot = steps
        .iter()
        .find(|s| s["action"] == "reboot")
        .and_then(|s| s["duration_s"].as_f64());
    eprintln!(
        "accel {}; boot-to-ready {}; trivial command {:?} s; reboot {:?} s",
        r["accel"], r["machines"]["server"]["boot_to_ready_s"], trivial, reboot
    );
}

fn write_test(dir: &Path, toml: &str, rhai: &str) -> PathBuf {
    let t = dir.join("t");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("test.toml"), toml).unwrap();
    std::fs::write(t.join("test.rhai"), rhai).unwrap();
    t
}

#[test]
#[ignore = "boots QEMU; needs root, qemu and mmdebstrap"]
fn a_failing_command_fails_the_test_with_output_and_serial_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let test = write_test(
        tmp.path(),
        "[machines.server]\nmemory = 512\n",
        "subtest(\"breaks\", || {\n  server.succeed(\"echo marker-out; echo marker-err >&2; exit 9\");\n});\nserver.succeed(\"echo never reached\");\n",
    );
    let out = tmp.path().join("out");
    let err = run_test(&args(&test, &out)).unwrap_err();
    assert!(
        matches!(err, Failure::Test(_)),
        "a failing step is a test failure: {err}"
    );
    let err = err.to_string();
    assert!(
        err.contains("server: command failed (exit code 9)"),
        "{err}"
    );
    assert!(
        err.contains("marker-out") && err.contains("marker-err"),
        "{err}"
    );
    assert!(err.contains("test.rhai line 2"), "{err}");
    assert!(err.contains("lines of server's serial console"), "{err}");
    // Last, after the console: which subtest failed and why, for a log
    // whose middle a CI cut out.
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("FAILED in subtest \"breaks\"")
            && last.contains("server: command failed (exit code 9)"),
        "last line: {last}"
    );
    // The tail is the real console: the kernel and systemd wrote to it.
    assert!(err.contains("systemd") || err.contains("login"), "{err}");
    let r = results(&out);
    assert_eq!(r["passed"], false);
    assert_eq!(r["subtests"][0]["passed"], false);
    assert!(
        !r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["detail"] == "echo never reached")
    );
}

#[test]
#[ignore = "boots QEMU; needs root, qemu and mmdebstrap"]
fn sigterm_stops_qemu_and_deletes_the_namespaces() {
    let tmp = tempfile::tempdir().unwrap();
    let test = write_test(
        tmp.path(),
        "[machines.server]\nmemory = 512\n[network]\n[clients.trusted]\nipv4 = \"192.168.77.20/24\"\n",
        "log(\"launching\");\nserver.start();\nsleep(600);\n",
    );
    let out = tmp.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hardroot"))
        .args(["vm-test", "--image"])
        .arg(image())
        .arg("--out")
        .arg(&out)
        .arg(&test)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let serial = out.join("server.serial.log");
    // Interrupt while the machine boots: QEMU is running and the netns exists.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(serial.exists()
        && std::fs::metadata(&serial)
            .map(|m| m.len() > 0)
            .unwrap_or(false))
    {
        assert!(
            Instant::now() < deadline,
            "QEMU never wrote to the serial log"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        namespaces_of(pid) >= 2,
        "expected the test's namespaces to exist while it runs"
    );
    assert!(qemu_running_with(&serial), "expected QEMU to run");
    sigterm(pid);
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted test must fail");
    assert_eq!(namespaces_of(pid), 0, "namespaces left behind");
    assert!(!qemu_running_with(&serial), "QEMU left running");
}

fn sigterm(pid: u32) {
    // SAFETY: kill(2) on the child this test spawned and has not reaped yet.
    let rc = unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
}

fn namespaces_of(pid: u32) -> usize {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("hr-{pid}-");
    String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .count()
}

fn qemu_running_with(serial: &Path) -> bool {
    process_with(&serial.to_string_lossy())
}

/// Is there a process whose command line mentions `needle`?
fn process_with(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(needle))
            .unwrap_or(false)
    })
}

/// `--param` is checked against test.toml before any image is looked at,
/// built or booted (no QEMU needed: the image folder does not even exist).
#[test]
fn a_wrong_param_is_refused_before_anything_boots() {
    let tmp = tempfile::tempdir().unwrap();
    let test = write_test(
        tmp.path(),
        "[machines.server]\n[parameters]\nmessages = 2\n[parameters.load_clients]\ndefault = 200\ndescription = \"clients\"\n",
        "fail_test(\"the script must not run\");\n",
    );
    let vm_test = |param: &str| {
        Command::new(env!("CARGO_BIN_EXE_hardroot"))
            .args(["vm-test", "--image"])
            .arg(tmp.path().join("no-such-image"))
            .arg(&test)
            .arg("--out")
            .arg(tmp.path().join("out"))
            .args(["--json", "--param", param])
            .output()
            .unwrap()
    };
    let refused = |param: &str, wants: &[&str]| {
        let o = vm_test(param);
        // miette wraps long lines: compare words.
        let err = String::from_utf8_lossy(&o.stderr)
            .split_whitespace()
            .filter(|w| *w != "│")
            .collect::<Vec<_>>()
            .join(" ");
        assert!(!o.status.success(), "{param} was accepted");
        assert!(o.stdout.is_empty(), "--json printed {:?}", o.stdout);
        assert!(!err.contains("no-such-image"), "checked too late: {err}");
        for w in wants {
            assert!(err.contains(w), "{param}: no {w:?} in {err}");
        }
        o.status.code()
    };
    let code = refused(
        "load_clients=lots",
        &[
            "--param load_clients=lots: load_clients is an integer (its default is 200), and \"lots\" is not",
        ],
    );
    assert_eq!(code, Some(3));
    refused(
        "clients=5",
        &[
            "declares no parameter \"clients\"",
            "its parameters: messages, load_clients",
        ],
    );
    refused("load_clients", &["is not NAME=VALUE"]);
    // A right one gets past the parameters to the image.
    let o = vm_test("load_clients=50");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-image"));
}
