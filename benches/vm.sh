#!/usr/bin/env bash
# VM benchmark (issue 6 and 9): a bare boot of the XMPP test image to
# `systemctl is-system-running --wait` next to the whole acceptance test on
# the same image, under the same accelerator (TCG here). Target: the whole
# test ≤ 2 × the bare boot. Prints figures (median of RUNS runs each,
# default 3: ~9 min a run under TCG); asserts nothing. The bare boot is
# measured twice: the shipped disk.img through UEFI firmware (what the
# acceptance test boots) and the same image's rootfs.img with a direct
# kernel (issue 18: the firmware should add seconds, not minutes).
# usage: benches/vm.sh            (root; RUNS=1 benches/vm.sh for one quick look)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-3}"
if [ -z "${HARDROOT:-}" ]; then cargo build --release --quiet; fi
hr="${HARDROOT:-$PWD/target/release/hardroot}"
work="$(mktemp -d /var/tmp/hardroot-vmbench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
profile=profiles/xmpp-test.toml
test=vm-tests/xmpp-server
. benches/lib.sh
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }
# A failed run keeps every run's output and shows the driver's error, not
# only the serial console's tail that ends vm-test's message.
failed() {
  trap - EXIT
  grep -v '^  │' "$work/$1.log" | tail -n 40 >&2
  echo "vm bench: run $1 failed; its results and logs are in $work/$1 and $work/$1.log" >&2
  exit 1
}

for i in $(seq "$runs"); do
  "$hr" vm-test "$profile" "$test" --script bare-boot.rhai --out "$work/bare-$i" \
    2>"$work/bare-$i.log" || failed "bare-$i"
  sed -n 's/.*is-system-running ([a-z]*) \([0-9.]*\) s.*/\1/p' "$work/bare-$i.log" >>"$work/bare.txt"
  "$hr" vm-test "$profile" "$test" --direct-kernel --script bare-boot.rhai --out "$work/direct-$i" \
    2>"$work/direct-$i.log" || failed "direct-$i"
  sed -n 's/.*is-system-running ([a-z]*) \([0-9.]*\) s.*/\1/p' "$work/direct-$i.log" >>"$work/direct.txt"
  t0=$(now)
  "$hr" vm-test "$profile" "$test" --out "$work/accept-$i" \
    2>"$work/accept-$i.log" || failed "accept-$i"
  t1=$(now)
  awk "BEGIN { printf \"%.1f\n\", $t1 - $t0 }" >>"$work/accept-process.txt"
  field "$work/accept-$i/results.json" 'r["duration_s"]' >>"$work/accept.txt"
  field "$work/accept-$i/results.json" \
    'next(s["duration_s"] for s in r["subtests"] if s["name"] == "boot")' >>"$work/accept-boot.txt"
done

bare=$(median <"$work/bare.txt")
direct=$(median <"$work/direct.txt")
accept=$(median <"$work/accept.txt")
process=$(median <"$work/accept-process.txt")
boot=$(median <"$work/accept-boot.txt")
accel=$(field "$work/accept-1/results.json" 'r["accel"]')
echo "| figure (median of $runs, $accel; range) | seconds |"
echo "|---|---|"
echo "| bare boot to is-system-running, disk.img through UEFI firmware | $bare ($(spread <"$work/bare.txt")) |"
echo "| bare boot to is-system-running, rootfs.img with a direct kernel | $direct ($(spread <"$work/direct.txt")) |"
echo "| acceptance test (results.json duration) | $accept ($(spread <"$work/accept.txt")) |"
echo "| acceptance test, whole process (image from the warm cache) | $process ($(spread <"$work/accept-process.txt")) |"
echo "| acceptance test, its boot subtest | $boot ($(spread <"$work/accept-boot.txt")) |"
echo "| ratio whole test / bare boot (target ≤ 2) | $(awk "BEGIN { printf \"%.2f\", $accept / $bare }") |"
