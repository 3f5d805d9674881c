#!/usr/bin/env bash
# Image stage benchmark (targets, not tests):
#   cold  ≤ 1.15 × a bare mmdebstrap of the same package set
#   warm  ≤ 5 s after a one-value profile change (same package set)
#   used  ≤ 750 MiB for the XMPP set
# usage: benches/image.sh [PROFILE]   (root; default profiles/xmpp-server.toml)
# Keep the modules unchanged while it runs: every step reads them.
# Builds into a fresh temp cache, so it costs two full bootstraps.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-profiles/xmpp-server.toml}"
# HARDROOT=path/to/hardroot skips the release build (e.g. a debug binary: the
# image stage is I/O bound and sha2 is optimised in dev builds too).
if [ -z "${HARDROOT:-}" ]; then
  cargo build --release --quiet
fi
hr="${HARDROOT:-$PWD/target/release/hardroot}"
work="$(mktemp -d /var/tmp/hardroot-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
secs() { awk "BEGIN { printf \"%.1f\", $2 - $1 }"; }

# The same package set and dpkg options hardroot passes, bootstrapped bare.
"$hr" build "$profile" -o "$work/overlay" >/dev/null 2>&1
pkgs="$(python3 -c 'import json,sys; print(",".join(json.load(open(sys.argv[1]))["packages"]))' "$work/overlay/manifest.json")"
mapfile -t dpkgopts < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["system"]
for p in s["dpkg_path_exclude"]: print("--dpkgopt=path-exclude=" + p)
for p in s["dpkg_path_include"]: print("--dpkgopt=path-include=" + p)' "$work/overlay/config.json")
sources=(/etc/apt/sources.list.d/*.sources)
t0=$(now)
mmdebstrap --mode=root --variant=minbase --include="$pkgs" "${dpkgopts[@]}" \
    --essential-hook='mkdir -p "$1/etc/crowdsec" && echo "# offline" > "$1/etc/crowdsec/online_api_credentials.yaml"' \
    bookworm "$work/bare" "${sources[@]}" >"$work/bare.log" 2>&1
t1=$(now)
rm -rf "$work/bare"
bare=$(secs "$t0" "$t1")

t0=$(now)
"$hr" image "$profile" -o "$work/cold" --cache "$work/cache" -q >/dev/null
t1=$(now)
cold=$(secs "$t0" "$t1")

# One value changed: same package set, so the cached base is reused.
variant="$(dirname "$profile")/.bench-$$.toml"
trap 'rm -rf "$work" "$variant"' EXIT
printf '[profile]\nimports = ["%s"]\n[force.networking]\nhostname = "bench"\n' "$(basename "$profile")" >"$variant"
# Three warm runs (the machine may be shared: the spread says how much), each
# into a fresh OUT as a first build would; the last one's steps are printed.
warms=()
for i in 1 2 3; do
  t0=$(now)
  "$hr" image "$variant" -o "$work/warm$i" --cache "$work/cache" 2>"$work/warm.steps" >/dev/null
  t1=$(now)
  warms+=("$(secs "$t0" "$t1")")
done
warm="${warms[*]}"

used=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rootfs"]["used_bytes"] >> 20)' "$work/cold/image-manifest.json")
echo "bare mmdebstrap: ${bare} s"
echo "cold image:      ${cold} s ($(awk "BEGIN { printf \"%.2f\", $cold / $bare }") × bare; target ≤ 1.15)"
echo "warm image:      ${warm} s (three runs; target ≤ 5)"
echo "warm steps (last run):"
grep -E '^    .*\([0-9.]+ s\)$' "$work/warm.steps" | sed 's/^    /  /'
echo "load average:    $(cut -d' ' -f1-3 /proc/loadavg)"
echo "used size:       ${used} MiB (target ≤ 750)"
