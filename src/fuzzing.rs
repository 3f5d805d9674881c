//! The fuzz harness's work (fuzz/fuzz_targets/eval.rs), kept in the library so
//! that inputs the fuzzer found replay as ordinary tests (tests/fuzz_regressions.rs).
//! Not part of the public API.
// Input-derived data is never unwrapped or indexed blindly (issue 8): enforced here,
// not crate-wide, because image/ and vmtest/ are checked by their owners.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
use std::path::{Path, PathBuf};

/// Splits one fuzz input into profile, module.toml and template.
pub const SEPARATOR: &[u8] = b"\n%%%%\n";

/// Writes the three parts as `p.toml`, `modules/m/module.toml`, `modules/m/t.tera`
/// in a scratch folder and runs `hardroot check` on them. Returns the number of
/// rendered entries, or the error exactly as the CLI would print it.
pub fn check_bytes(data: &[u8]) -> Result<usize, String> {
    let dir = scratch_dir();
    let module = dir.join("modules/m");
    std::fs::create_dir_all(&module).map_err(|e| e.to_string())?;
    let mut parts = split(data).into_iter();
    for path in [
        dir.join("p.toml"),
        module.join("module.toml"),
        module.join("t.tera"),
    ] {
        let part = parts.next().unwrap_or_default();
        std::fs::write(&path, part).map_err(|e| e.to_string())?;
    }
    match crate::build::check(&dir.join("p.toml"), &[dir.join("modules")]) {
        Ok((_, rendered)) => Ok(rendered.entries.len()),
        // Rendering the report walks spans and snippets: part of what is fuzzed.
        Err(report) => Err(format!("{report:?}")),
    }
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() < 2 {
        let Some(at) = find(rest, SEPARATOR) else {
            break;
        };
        let (head, tail) = rest.split_at(at);
        parts.push(head);
        rest = tail.get(SEPARATOR.len()..).unwrap_or_default();
    }
    parts.push(rest);
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Removes this thread's scratch folder (tests call it; the fuzzer never stops cleanly).
pub fn cleanup() {
    let _ = std::fs::remove_dir_all(scratch_dir());
}

/// One folder per process and thread, reused across inputs (the fuzzer runs millions).
fn scratch_dir() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    base.join(format!("hardroot-fuzz-{}-{thread}", std::process::id()))
}
