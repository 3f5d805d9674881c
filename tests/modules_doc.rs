//! docs/modules.md's worked example cannot rot: its files are written, as the
//! page shows them, into a copy of modules/ and profiles/, every command of
//! its `sh` blocks is run there and must succeed, and every output block the
//! page shows after a command block must appear in what those commands printed.
mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const SECTION: &str = "## Worked example";

/// A fenced block of the section, with the line that introduces it.
struct Block {
    lang: String,
    intro: String,
    body: String,
}

fn blocks(section: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = section.lines();
    let mut last_text = String::new();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            if !line.trim().is_empty() {
                last_text = line.to_string();
            }
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.push(Block {
            lang: lang.trim().to_string(),
            intro: std::mem::take(&mut last_text),
            body: body.join("\n") + "\n",
        });
    }
    out
}

fn section() -> String {
    let doc = std::fs::read_to_string(repo().join("docs/modules.md")).expect("docs/modules.md");
    let at = doc
        .find(SECTION)
        .expect("docs/modules.md has a worked example");
    let rest = &doc[at + SECTION.len()..];
    rest.split("\n## ").next().unwrap_or(rest).to_string()
}

/// "File `modules/x/y.tera`:" → the path.
fn file_target(intro: &str) -> Option<&str> {
    intro.strip_prefix("File `")?.split('`').next()
}

fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(ok.success());
}

/// Lines without the diagnostic frame (`×`, `│`), whitespace collapsed, so
/// that the page's excerpt matches however the terminal wrapped it.
fn normalize(s: &str) -> String {
    s.lines()
        .map(|l| l.trim().trim_start_matches(['×', '│']).trim())
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_line(dir: &Path, line: &str) -> String {
    let bin_dir = bin().parent().expect("bin dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .output()
        .expect("bash");
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "`{line}` failed:\n{all}");
    all
}

#[test]
fn the_worked_example_module_builds_and_every_command_runs() {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("modules"), &t.path().join("modules"));
    copy_tree(&repo().join("profiles"), &t.path().join("profiles"));
    let blocks = blocks(&section());
    let mut files = 0;
    let mut commands = 0;
    let mut outputs = 0;
    let mut printed = String::new();
    for b in &blocks {
        if let Some(target) = file_target(&b.intro) {
            let path = t.path().join(target);
            std::fs::create_dir_all(path.parent().expect("parent")).unwrap();
            std::fs::write(&path, &b.body).unwrap();
            files += 1;
        } else if b.lang == "sh" {
            printed.clear();
            for line in b.body.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                printed.push_str(&run_line(t.path(), line));
                commands += 1;
            }
        } else if b.lang.is_empty() {
            let want = normalize(&b.body);
            assert!(
                normalize(&printed).contains(&want),
                "docs/modules.md shows output that the commands before it did not print:\n{}\n--- they printed ---\n{printed}",
                b.body
            );
            outputs += 1;
        }
    }
    // The example shrinking to nothing would make this test pass vacuously.
    assert!(files >= 5, "only {files} files in the worked example");
    assert!(
        commands >= 8,
        "only {commands} commands in the worked example"
    );
    assert!(
        outputs >= 2,
        "only {outputs} output blocks in the worked example"
    );
    assert!(
        !repo().join("modules/node_exporter").exists(),
        "the example lives in the doc, not in modules/"
    );
}
