#!/usr/bin/env bash
# Builds the fuzz target with libFuzzer's coverage instrumentation on a STABLE
# toolchain, the same flags cargo-fuzz passes (minus AddressSanitizer, which
# needs nightly and buys little for safe Rust). Output: fuzz/target/<host triple>/release/eval
set -euo pipefail
cd "$(dirname "$0")"
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps RUSTFLAGS off build scripts (they would not link against libFuzzer).
cargo build --release --bin eval --target "$(rustc -vV | sed -n "s/^host: //p")"
