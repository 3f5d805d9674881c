#!/usr/bin/env bash
# All tests: unit, CLI, bad-input corpus, real-tool validation, image build, VM tests.
# Installs what the tests need first, so it runs on a fresh Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
export CARGO_TERM_COLOR=never
cargo build --release --locked
# Fast tests in parallel; then the ones that bootstrap Debian or boot QEMU
# (marked #[ignore] so a plain `cargo test` stays quick), one at a time:
# two TCG guests on two cores would only slow each other down.
cargo test --release --locked --no-fail-fast -- --test-threads=2
cargo test --release --locked --no-fail-fast -- --ignored --test-threads=1
nix-instantiate --parse flake.nix >/dev/null
echo "all tests passed"
