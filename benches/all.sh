#!/usr/bin/env bash
# Every benchmark of docs/benchmarks.md in one run, one after the other (so
# none disturbs another), each printing its table of medians:
#   render (cargo bench), image vs bare mmdebstrap, mkosi beside hardroot,
#   bare boot vs the XMPP acceptance test.
# usage: benches/all.sh                (root; RUNS=N rounds for the shell benches, default 3)
# About 50 minutes here with RUNS=3 (2 cores, TCG); asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUNS="${RUNS:-3}"
cargo build --release --quiet
export HARDROOT="$PWD/target/release/hardroot"
section() { printf '\n## %s (%s)\n\n' "$1" "$(date -u +%FT%TZ)"; }
section "machine"
echo "$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(. /etc/os-release && echo "$PRETTY_NAME"), load $(cut -d' ' -f1-3 /proc/loadavg)"
section "render: cargo bench --bench render"
cargo bench --quiet --bench render 2>/dev/null
section "image: benches/image.sh"
benches/image.sh
section "peer: benches/mkosi.sh"
benches/mkosi.sh
section "VM: benches/vm.sh"
benches/vm.sh
