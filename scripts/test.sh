#!/usr/bin/env bash
# All tests: unit, CLI, bad-input corpus, real-tool validation, image build, VM tests.
# Installs what the tests need first, so it runs on a fresh Debian 12 machine.
#
# Every part prints "test.sh: part NAME done in N s" and the end prints them
# all as a table (also when a part fails), so a CI log says where the time
# went: benches/ci-times.sh turns such a log into the table of
# docs/benchmarks.md. The budget: docs/testing.md, "The time budget".
set -euo pipefail
cd "$(dirname "$0")/.."

parts=()
started=$SECONDS
# part NAME COMMAND...: runs COMMAND and records how long it took. Every
# line it prints (stdout and stderr) gets the seconds since the part began,
# so a test's time is the stamp of its result line minus the one before.
part() {
  local name=$1 t0=$SECONDS rc=0
  shift
  echo "test.sh: part $name started"
  "$@" 2>&1 | stamp "$t0" || rc=$?
  echo "test.sh: part $name done in $((SECONDS - t0)) s (exit $rc)"
  parts+=("$name $((SECONDS - t0)) $rc")
  return "$rc"
}
stamp() {
  local line
  while IFS= read -r line; do printf '[%5d] %s\n' $((SECONDS - $1)) "$line"; done
}
summary() {
  echo "test.sh: time of each part"
  local p
  for p in "${parts[@]}"; do
    printf 'test.sh:   %-16s %6s s  exit %s\n' $p
  done
  printf 'test.sh:   %-16s %6s s\n' total $((SECONDS - started))
}
trap summary EXIT

part deps scripts/deps.sh
export CARGO_TERM_COLOR=never
part build cargo build --release --locked
part compile-tests cargo test --release --locked --no-run
# Fast tests in parallel; then the ones that bootstrap Debian or boot QEMU
# (marked #[ignore] so a plain `cargo test` stays quick), one at a time:
# two TCG guests on two cores would only slow each other down.
part fast-tests cargo test --release --locked --no-fail-fast -- --test-threads=2
part ignored-tests cargo test --release --locked --no-fail-fast -- --ignored --test-threads=1
part flake-parse bash -c 'nix-instantiate --parse flake.nix >/dev/null'
echo "all tests passed"
