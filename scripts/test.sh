#!/usr/bin/env bash
# All tests: unit, CLI, bad-input corpus, real-tool validation, image build, VM tests.
# Installs what the tests need first, so it runs on a fresh Debian 12 machine.
#
# Every part prints "test.sh: part NAME done in N s" and the end prints them
# all as a table (also when a part fails), so a CI log says where the time
# went: benches/ci-times.py turns such a log into the table of
# docs/benchmarks.md. The budget: docs/testing.md, "The time budget".
set -euo pipefail
cd "$(dirname "$0")/.."

times=$(mktemp)
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
  echo "$name $((SECONDS - t0)) $rc" >>"$times"
  return "$rc"
}
stamp() {
  local line
  while IFS= read -r line; do printf '[%5d] %s\n' $((SECONDS - $1)) "$line"; done
}
summary() {
  echo "test.sh: time of each part"
  local name secs rc
  while read -r name secs rc; do
    printf 'test.sh:   %-16s %6s s  exit %s\n' "$name" "$secs" "$rc"
  done <"$times"
  printf 'test.sh:   %-16s %6s s\n' total $((SECONDS - started))
  rm -f "$times"
}
trap summary EXIT

# The suite's test binary, run by hand in the lanes below: two `cargo test`
# at once would wait for each other's lock on target/.
suite_binary() {
  cargo test --release --locked --test suite --no-run --message-format=json |
    python3 -c '
import json, sys
for m in map(json.loads, sys.stdin):
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "suite" and m.get("executable"):
        print(m["executable"])'
}

# ignored LANE: the ignored tests tests/budget.toml puts in LANE, as many
# at a time as its [threads] says (the first line python prints).
ignored() {
  local lines
  mapfile -t lines < <(python3 -c '
import sys, tomllib
budget = tomllib.load(open("tests/budget.toml", "rb"))
print(budget["threads"][sys.argv[1]])
print("\n".join(name for name, row in budget["ignored"].items() if row["lane"] == sys.argv[1]))' "$1")
  [ ${#lines[@]} -gt 1 ] || { echo "tests/budget.toml: no test in lane $1" >&2; return 1; }
  "$suite" --ignored --test-threads="${lines[0]}" --exact "${lines[@]:1}"
}

# side_by_side F G: the functions F and G at once; each one's log is
# printed whole when both are done, so their lines do not interleave.
side_by_side() {
  local logs rc=0 pids=() i
  logs=$(mktemp -d)
  for i in 1 2; do
    (trap - EXIT; "${!i}") >"$logs/$i" 2>&1 &
    pids+=($!)
  done
  for i in 0 1; do wait "${pids[$i]}" || rc=1; done
  cat "$logs/1" "$logs/2"
  rm -rf "$logs"
  return "$rc"
}

# The fast tests (four threads: several wait on a bootstrap or a daemon
# much of the time), then the VM lane, one guest at a time.
fast_then_vm() {
  local rc=0
  part fast-tests cargo test --release --locked --no-fail-fast -- --test-threads=4 || rc=1
  part ignored-vm ignored vm || rc=1
  return "$rc"
}
image_lane() { part ignored-image ignored image; }

part deps scripts/deps.sh
export CARGO_TERM_COLOR=never
# One build: `cargo test` builds the hardroot binary the tests run, and a
# `cargo build` before it would build every dependency twice (the dev-
# dependency jsonschema turns on more features of serde, regex, hashbrown...).
part build cargo test --release --locked --no-run
# Then the tests, in the lanes tests/budget.toml gives each #[ignore]d one
# (docs/testing.md, "The time budget"): the fast tests and then the "vm"
# lane (QEMU, one TCG guest at a time: two on two cores only slow each
# other down) beside the "image" lane (bootstraps and image builds, mostly
# waiting on the mirror and the disk: two at a time); last, the "alone" lane with nothing
# beside it, as its load and fault figures are measured.
suite=$(suite_binary)
# The image tests' shared Debian bases persist between runs, as the VM tests'
# do in ~/.cache/hardroot (each is still checked against the archive and
# refreshed when it serves newer packages); a cold bootstrap is for the
# tests that must be cold, which keep caches of their own.
export HARDROOT_TEST_CACHE=${HARDROOT_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hardroot-tests}
side_by_side fast_then_vm image_lane
# The alone lane's figures assume a quiet machine: the log shows what else
# still runs (a test that left a daemon or a guest behind shows up here).
echo "test.sh: before the alone lane:$(uptime)"
ps -eo pcpu,etimes,args --sort=-pcpu | head -n 6 | cut -c1-160 | sed 's/^/test.sh:   /'
part ignored-alone ignored alone
part flake-parse bash -c 'nix-instantiate --parse flake.nix >/dev/null'
echo "all tests passed"
