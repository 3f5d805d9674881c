//! Inputs the fuzzer found (tests/fuzz-regressions/*, one raw fuzz input per
//! file: profile, module.toml and template joined by "\n%%%%\n") replay here
//! through the same harness: each must end in a result or an input error, never
//! a panic or a hang. See docs/fuzzing.md.
use crate::common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn fuzzer_findings_stay_fixed() {
    let dir = repo().join("tests/fuzz-regressions");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fuzz-regressions")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    for input in inputs {
        let bytes = std::fs::read(&input).unwrap();
        let start = Instant::now();
        // A panic fails this test with the input's name in the backtrace's message.
        let result = std::panic::catch_unwind(|| hardroot::fuzzing::check_bytes(&bytes));
        assert!(result.is_ok(), "{} panics", input.display());
        // Generous: a hang is minutes, not seconds (no timing targets here).
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} took {:?}",
            input.display(),
            start.elapsed()
        );
    }
    hardroot::fuzzing::cleanup();
}
