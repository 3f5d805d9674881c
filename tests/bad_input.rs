//! The bad-input corpus: every folder under tests/bad-input holds a broken
//! profile (and maybe broken modules) and an `expect` file with the error kind,
//! the position and part of the message. Each must fail with exactly that, exit
//! 1, never panic, and write no output.
use crate::common;
use common::*;
use std::path::Path;

struct Expect {
    code: String,
    at: String,
    message: String,
}

fn read_expect(dir: &Path) -> Expect {
    let text = std::fs::read_to_string(dir.join("expect")).expect("expect file");
    parse_expect(dir, &text)
}

fn parse_expect(dir: &Path, text: &str) -> Expect {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("{}: expect has no `{k}:`", dir.display()))
            .to_string()
    };
    Expect {
        code: field("code"),
        at: field("at"),
        message: field("message"),
    }
}

fn run_case(dir: &Path) -> Result<(), String> {
    run_with(dir, &read_expect(dir))
}

/// Builds `dir/profile.toml` into a fresh temp folder and checks the error.
fn run_with(dir: &Path, expect: &Expect) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = tmp.path().join("out");
    let fixture_modules = fixtures().join("modules");
    let mut args = vec![
        "build",
        "profile.toml",
        "-o",
        out.to_str().unwrap_or_default(),
    ];
    if dir.join("modules").is_dir() {
        args.extend(["--modules", "modules"]);
    }
    let more_modules = fixtures().join("more-modules");
    args.extend(["--modules", fixture_modules.to_str().unwrap_or_default()]);
    args.extend(["--modules", more_modules.to_str().unwrap_or_default()]);
    let o = hardroot(dir, &args);
    let stderr = text(&o.stderr);
    let mut problems = Vec::new();
    if o.status.code() != Some(1) {
        problems.push(format!("exit code {:?}, expected 1", o.status.code()));
    }
    if stderr.contains("panicked") {
        problems.push("panicked".into());
    }
    for (what, needle) in [
        ("code", &expect.code),
        ("position", &expect.at),
        ("message", &expect.message),
    ] {
        // miette may wrap long lines; compare with whitespace folded.
        if !fold(&stderr).contains(&fold(needle)) {
            problems.push(format!("{what} {needle:?} not in the error"));
        }
    }
    if out.exists() {
        problems.push("an output folder was written".into());
    }
    // Nor a staging folder beside it.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    if !leftovers.is_empty() {
        problems.push(format!("left behind: {leftovers:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}\n--- stderr:\n{stderr}",
            dir.display(),
            problems.join("; ")
        ))
    }
}

fn fold(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c == '│')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_bad_input_fails_with_its_expected_error() {
    let root = repo().join("tests/bad-input");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("corpus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 60, "the corpus shrank to {}", cases.len());
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Inputs too big or too strange to keep in git: made here, checked the same way.
fn generated(name: &str, expect: &str, make: impl FnOnce(&Path)) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path().join(name);
    std::fs::create_dir_all(dir.join("modules/gen")).map_err(|e| e.to_string())?;
    make(&dir);
    run_with(&dir, &parse_expect(&dir, expect))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

const USES_GEN: &str = "[profile]\nimports = [\"gen\"]\n";

#[test]
fn generated_huge_and_strange_inputs_fail_cleanly() {
    let cases: Vec<Result<(), String>> = vec![
        generated(
            "ten-megabyte-profile",
            "code: hardroot::too-large\nat: profile.toml:1:1\nmessage: input files may be at most 1048576 bytes",
            |d| {
                let list = "\"10.0.0.0/8\",".repeat(800_000);
                write(
                    &d.join("profile.toml"),
                    &format!("[profile]\nimports = [\"svc\"]\n[fw]\ntrusted = [{list}]\n"),
                );
            },
        ),
        generated(
            "deeply-nested-arrays",
            "code: hardroot::toml\nat: profile.toml:4\nmessage: invalid TOML: cannot recurse further",
            |d| {
                let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
                write(
                    &d.join("profile.toml"),
                    &format!("[profile]\nimports = [\"svc\"]\n[fw]\ntrusted = {deep}\n"),
                );
            },
        ),
        generated(
            "deeply-nested-type",
            "code: hardroot::schema\nat: modules/gen/module.toml:4:8\nmessage: nests too deeply",
            |d| {
                let ty = format!("{}port", "list of ".repeat(50_000));
                write(&d.join("profile.toml"), USES_GEN);
                write(
                    &d.join("modules/gen/module.toml"),
                    &format!(
                        "[module]\ndescription = \"deep\"\n[options.x]\ntype = \"{ty}\"\ndefault = []\ndescription = \"x\"\n"
                    ),
                );
            },
        ),
        generated(
            "two-megabyte-template",
            "code: hardroot::too-large\nat: modules/gen/module.toml:4:10\nmessage: input files may be at most 1048576 bytes",
            |d| {
                write(&d.join("profile.toml"), USES_GEN);
                write(
                    &d.join("modules/gen/module.toml"),
                    "[module]\ndescription = \"big template\"\n[[files]]\ntarget = \"/etc/big\"\ntemplate = \"big.tera\"\n",
                );
                write(&d.join("modules/gen/big.tera"), &"x".repeat(2 << 20));
            },
        ),
        generated(
            "profile-import-is-a-fifo",
            "code: hardroot::io\nat: fifo.toml\nmessage: is not a regular file",
            |d| {
                write(
                    &d.join("profile.toml"),
                    "[profile]\nimports = [\"svc\", \"fifo.toml\"]\n",
                );
                let ok = std::process::Command::new("mkfifo")
                    .arg(d.join("fifo.toml"))
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "mkfifo failed");
            },
        ),
        generated(
            "profile-is-a-directory",
            "code: hardroot::io\nat: profile.toml\nmessage: is not a regular file",
            |d| {
                std::fs::create_dir(d.join("profile.toml")).unwrap_or_else(|e| panic!("mkdir: {e}"))
            },
        ),
    ];
    let failures: Vec<String> = cases.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_condition_may_test_an_optional_module_with_is_defined() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("modules/gen")).unwrap();
    write(&d.join("profile.toml"), USES_GEN);
    write(
        &d.join("modules/gen/module.toml"),
        "[module]\ndescription = \"optional crowdsec\"\n[[files]]\ntarget = \"/etc/x\"\n\
         template = \"x.tera\"\nwhen = \"crowdsec is defined and crowdsec.enable\"\n",
    );
    write(&d.join("modules/gen/x.tera"), "x\n");
    let o = hardroot(d, &["check", "profile.toml", "--modules", "modules"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}
