#!/usr/bin/env bash
# Image stage benchmark (targets, not tests):
#   cold  ≤ 1.15 × a bare mmdebstrap of the same package set
#   warm  ≤ 5 s after a one-value profile change (same package set)
#   used  ≤ 750 MiB for the XMPP set
# usage: benches/image.sh [PROFILE]   (root; default profiles/xmpp-server.toml)
#        RUNS=N benches/image.sh     (rounds; default 3, each figure their median)
# Keep the modules unchanged while it runs: every step reads them.
# Each round builds into a fresh temp cache, so it costs two full bootstraps.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-profiles/xmpp-server.toml}"
runs="${RUNS:-3}"
# HARDROOT=path/to/hardroot skips the release build (e.g. a debug binary: the
# image stage is I/O bound and sha2 is optimised in dev builds too).
if [ -z "${HARDROOT:-}" ]; then
  cargo build --release --quiet
fi
hr="${HARDROOT:-$PWD/target/release/hardroot}"
work="$(mktemp -d /var/tmp/hardroot-bench.XXXXXX)"
trap 'rm -rf "$work" "$(dirname "$profile")/.bench-$$.toml"' EXIT
. benches/lib.sh

# The same package set and dpkg options hardroot passes, bootstrapped bare.
"$hr" build "$profile" -o "$work/overlay" >/dev/null 2>&1
pkgs="$(python3 -c 'import json,sys; print(",".join(json.load(open(sys.argv[1]))["packages"]))' "$work/overlay/manifest.json")"
mapfile -t dpkgopts < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["system"]
for p in s["dpkg_path_exclude"]: print("--dpkgopt=path-exclude=" + p)
for p in s["dpkg_path_include"]: print("--dpkgopt=path-include=" + p)' "$work/overlay/config.json")
sources=(/etc/apt/sources.list.d/*.sources)

bare_round() {
  t0=$(now)
  mmdebstrap --mode=root --variant=minbase --include="$pkgs" "${dpkgopts[@]}" \
      --essential-hook='mkdir -p "$1/etc/crowdsec" && echo "# offline" > "$1/etc/crowdsec/online_api_credentials.yaml"' \
      bookworm "$work/bare" "${sources[@]}" >"$work/bare.log" 2>&1
  t1=$(now)
  rm -rf "$work/bare"
  record "$work/bare.txt" "$t0" "$t1"
}

# Rounds alternate which goes first, so that whatever else the machine does
# (and the mirror's mood) weighs on both alike.
for i in $(seq "$runs"); do
  if [ $((i % 2)) = 1 ]; then bare_round; hr_round "$profile"; else hr_round "$profile"; bare_round; fi
done
bare=$(median <"$work/bare.txt")
cold=$(median <"$work/hr-cold.txt")
warm=$(median <"$work/hr-warm.txt")

used=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rootfs"]["used_bytes"] >> 20)' "$work/hr-cold/image-manifest.json")
echo "| figure (median of $runs rounds; range) | seconds / MiB | target |"
echo "|---|---|---|"
echo "| bare mmdebstrap of the same set | ${bare} s ($(spread <"$work/bare.txt")) | the limit |"
echo "| cold image (empty cache) | ${cold} s ($(spread <"$work/hr-cold.txt")); $(awk "BEGIN { printf \"%.2f\", $cold / $bare }") × bare | ≤ 1.15 × bare |"
echo "| warm image (one value changed) | ${warm} s ($(spread <"$work/hr-warm.txt")) | ≤ 5 s |"
echo "| used size | ${used} MiB | ≤ 750 MiB |"
echo "| load average at the end | $(cut -d' ' -f1-3 /proc/loadavg) | |"
echo "warm steps (last round):"
grep -E '^    .*\([0-9.]+ s\)$' "$work/hr-warm.steps" | sed 's/^    /  /'
