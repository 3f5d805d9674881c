//! The bad-input corpus: every folder under tests/bad-input holds a broken
//! profile (and maybe broken modules) and an `expect` file with the error kind,
//! the position and part of the message. Each must fail with exactly that, exit
//! 1, never panic, and write no output.
mod common;
use common::*;
use std::path::Path;

struct Expect {
    code: String,
    at: String,
    message: String,
}

fn read_expect(dir: &Path) -> Expect {
    let text = std::fs::read_to_string(dir.join("expect")).expect("expect file");
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
    let expect = read_expect(dir);
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
    args.extend(["--modules", fixture_modules.to_str().unwrap_or_default()]);
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
    assert!(cases.len() >= 20, "the corpus shrank to {}", cases.len());
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
