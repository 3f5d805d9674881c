//! docs/modules.md's worked examples cannot rot. The node_exporter one: its
//! files are written, as the page shows them, into a copy of modules/ and
//! profiles/. The web server one: every file it shows must be the
//! repository's, byte for byte. In both, every command of the `sh` blocks is
//! run in the copy and must succeed, and every output block the page shows
//! after a command block must appear in what those commands printed.
use crate::common;
use common::*;
use std::path::Path;
use std::process::Command;

const NODE_EXPORTER: &str = "## Worked example: a node_exporter module";
const WEB: &str = "## Worked example: a static web server";

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

fn section(heading: &str) -> String {
    let doc = std::fs::read_to_string(repo().join("docs/modules.md")).expect("docs/modules.md");
    let at = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/modules.md has `{heading}`"));
    let rest = &doc[at + heading.len()..];
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

/// What `walk` found: files, commands, output blocks.
struct Walked {
    files: usize,
    commands: usize,
    outputs: usize,
}

/// Runs a worked example in a copy of modules/ and profiles/. Its files are
/// written there (`write_files`) or must equal the repository's.
fn walk(heading: &str, write_files: bool) -> Walked {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("modules"), &t.path().join("modules"));
    copy_tree(&repo().join("profiles"), &t.path().join("profiles"));
    let blocks = blocks(&section(heading));
    let mut w = Walked {
        files: 0,
        commands: 0,
        outputs: 0,
    };
    let mut printed = String::new();
    for b in &blocks {
        if let Some(target) = file_target(&b.intro) {
            let path = t.path().join(target);
            if write_files {
                std::fs::create_dir_all(path.parent().expect("parent")).unwrap();
                std::fs::write(&path, &b.body).unwrap();
            } else {
                let real = std::fs::read_to_string(repo().join(target))
                    .unwrap_or_else(|e| panic!("docs/modules.md shows {target}: {e}"));
                assert_eq!(
                    b.body, real,
                    "docs/modules.md shows {target} other than the repository has it"
                );
            }
            w.files += 1;
        } else if b.lang == "sh" {
            printed.clear();
            for line in b.body.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                printed.push_str(&run_line(t.path(), line));
                w.commands += 1;
            }
        } else if b.lang.is_empty() {
            let want = normalize(&b.body);
            assert!(
                normalize(&printed).contains(&want),
                "docs/modules.md shows output that the commands before it did not print:\n{}\n--- they printed ---\n{printed}",
                b.body
            );
            w.outputs += 1;
        }
    }
    w
}

#[test]
fn the_worked_example_module_builds_and_every_command_runs() {
    let w = walk(NODE_EXPORTER, true);
    // The example shrinking to nothing would make this test pass vacuously.
    assert!(w.files >= 5, "only {} files in the worked example", w.files);
    assert!(
        w.commands >= 8,
        "only {} commands in the worked example",
        w.commands
    );
    assert!(
        w.outputs >= 2,
        "only {} output blocks in the worked example",
        w.outputs
    );
    assert!(
        !repo().join("modules/node_exporter").exists(),
        "the example lives in the doc, not in modules/"
    );
}

#[test]
fn the_web_server_walkthrough_shows_the_real_files_and_its_commands_run() {
    let w = walk(WEB, false);
    assert!(
        w.files >= 3,
        "only {} files in the web walkthrough",
        w.files
    );
    assert!(w.commands >= 5, "only {} commands", w.commands);
    assert!(w.outputs >= 3, "only {} output blocks", w.outputs);
}
