//! Profile + module parsing, evaluation and rendering, from arbitrary bytes.
//! The input is split on "\n%%%%\n" into a profile, a module.toml and a template
//! (see hardroot::fuzzing); every outcome except a panic, a hang or a crash is fine.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Ok or an input error are both fine; only panics, hangs and crashes are findings.
    let _ = hardroot::fuzzing::check_bytes(data);
});
