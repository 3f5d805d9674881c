//! Every `--json` output has the shape docs/json.md documents, and stdout
//! holds nothing but that one document. (`image --json` is checked in
//! tests/image.rs, which has a cached Debian base; the VM smoke test in
//! tests/vmtest.rs checks `vm-test --json` on a real boot.)
use crate::common;
use common::*;
use std::path::Path;
use std::process::Output;

fn json_of(o: &Output, what: &str) -> serde_json::Value {
    assert!(o.status.success(), "{what} failed:\n{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON document ({e}):\n{}",
            text(&o.stdout)
        )
    })
}

fn check(heading: &str, real: &serde_json::Value) {
    assert_json_shape(&json_doc_example(heading), real, heading);
}

#[test]
fn build_check_explain_diff_and_options_match_the_documented_shapes() {
    let t = tempfile::tempdir().unwrap();
    let out = |n: &str| t.path().join(n).to_string_lossy().into_owned();
    let run = |args: &[&str]| hardroot(&repo(), args);

    let build = json_of(
        &run(&["build", "profiles/minimal.toml", "-o", &out("a"), "--json"]),
        "build",
    );
    check("hardroot build --json", &build);
    run(&["build", "profiles/system-only.toml", "-o", &out("b")]);

    let checked = json_of(&run(&["check", "profiles/minimal.toml", "--json"]), "check");
    check("hardroot check --json", &checked);

    let xmpp = "profiles/xmpp-server.toml";
    let option = json_of(
        &run(&["explain", xmpp, "ssh.port", "--json"]),
        "explain option",
    );
    check("hardroot explain PROFILE OPTION --json", &option);
    let path = json_of(
        &run(&["explain", xmpp, "/etc/iptables/rules.v4", "--json"]),
        "explain path",
    );
    check("hardroot explain PROFILE /PATH --json", &path);

    let diff = json_of(&run(&["diff", &out("b"), &out("a"), "--json"]), "diff");
    check("hardroot diff A B --json", &diff);

    let options = json_of(&run(&["options", "--json"]), "options");
    check("hardroot options --json", &options);
}

/// A test folder whose script never boots its machine, so that the driver's
/// --json output is checked without QEMU (the image files are never read).
fn bootless_test(dir: &Path, script: &str) -> (String, String) {
    bootless_test_with(dir, "[machines.server]\n", script)
}

fn bootless_test_with(dir: &Path, toml: &str, script: &str) -> (String, String) {
    let image = dir.join("image");
    std::fs::create_dir_all(&image).unwrap();
    for f in ["rootfs.img", "vmlinuz", "initrd.img"] {
        std::fs::write(image.join(f), "").unwrap();
    }
    let test = dir.join("t");
    std::fs::create_dir_all(&test).unwrap();
    std::fs::write(test.join("test.toml"), toml).unwrap();
    std::fs::write(test.join("test.rhai"), script).unwrap();
    (
        image.to_string_lossy().into_owned(),
        test.to_string_lossy().into_owned(),
    )
}

fn vm_test_json(dir: &Path, script: &str) -> (Output, std::path::PathBuf) {
    vm_test_json_with(dir, "[machines.server]\n", script, &[])
}

/// `vm-test --json` of a bootless test with this test.toml and more arguments.
fn vm_test_json_with(
    dir: &Path,
    toml: &str,
    script: &str,
    more: &[&str],
) -> (Output, std::path::PathBuf) {
    let (image, test) = bootless_test_with(dir, toml, script);
    let out = dir.join("out");
    let out_arg = out.to_string_lossy();
    let mut args = vec![
        "vm-test", "--image", &image, &test, "--out", &out_arg, "--accel", "tcg", "--json",
    ];
    args.extend_from_slice(more);
    (hardroot(&repo(), &args), out.join("results.json"))
}

#[test]
fn vm_test_json_is_results_json_when_passed() {
    let t = tempfile::tempdir().unwrap();
    let (o, results) = vm_test_json(t.path(), "subtest(\"no boot\", || { log(\"hi\"); });\n");
    let v = json_of(&o, "vm-test");
    check("hardroot vm-test --json", &v);
    assert_eq!(v["passed"], true);
    assert_eq!(v["subtests"][0]["name"], "no boot");
    assert_eq!(
        text(&o.stdout),
        std::fs::read_to_string(results).unwrap(),
        "stdout is results.json byte for byte"
    );
    assert!(
        text(&o.stderr).contains("passed"),
        "the human line goes to stderr"
    );
}

#[test]
fn vm_test_json_is_results_json_when_failed_with_exit_4() {
    let t = tempfile::tempdir().unwrap();
    let (o, results) = vm_test_json(
        t.path(),
        "subtest(\"breaks\", || { throw \"marker-boom\"; });\n",
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    check("hardroot vm-test --json", &v);
    assert_eq!(v["passed"], false);
    assert_eq!(v["subtests"][0]["passed"], false);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("marker-boom"))
    );
    assert_eq!(text(&o.stdout), std::fs::read_to_string(results).unwrap());
    assert!(
        text(&o.stderr).contains("marker-boom"),
        "the error is on stderr too"
    );
}

#[test]
fn vm_test_json_prints_nothing_when_the_driver_cannot_start() {
    let t = tempfile::tempdir().unwrap();
    let (_, test) = bootless_test(t.path(), "");
    let missing = t.path().join("no-such-image");
    let o = hardroot(
        &repo(),
        &[
            "vm-test",
            "--image",
            &missing.to_string_lossy(),
            &test,
            "--out",
            &t.path().join("out").to_string_lossy(),
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty(), "stdout: {}", text(&o.stdout));
    assert!(text(&o.stderr).contains("no-such-image"));
}

#[test]
fn vm_test_json_records_the_parameters_the_run_used() {
    let t = tempfile::tempdir().unwrap();
    let toml = "[machines.server]\n\n[parameters]\nmessages = 2\n\n[parameters.load_clients]\ndefault = 200\ndescription = \"XMPP clients that log in at once\"\n";
    let script = "assert(param(\"load_clients\") == 50 && param(\"messages\") == 2, \"params\");\n";
    let (o, _) = vm_test_json_with(t.path(), toml, script, &["--param", "load_clients=50"]);
    let v = json_of(&o, "vm-test --param");
    check("hardroot vm-test --json", &v);
    assert_eq!(
        v["parameters"],
        serde_json::json!([
            { "name": "messages", "value": 2, "default": 2, "description": null },
            { "name": "load_clients", "value": 50, "default": 200,
              "description": "XMPP clients that log in at once" },
        ])
    );
}
