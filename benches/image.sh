#!/usr/bin/env bash
# Image stage benchmark (targets, not tests):
#   cold  ≤ 1.15 × a bare mmdebstrap of the same package set
#   warm  ≤ 5 s after a one-value profile change (same package set)
#   used  ≤ 750 MiB for the XMPP set
# usage: benches/image.sh [PROFILE]   (root; default profiles/xmpp-server.toml)
# Builds into a fresh temp cache, so it costs two full bootstraps.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-profiles/xmpp-server.toml}"
cargo build --release --quiet
hr="$PWD/target/release/hardroot"
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
t0=$(now)
"$hr" image "$variant" -o "$work/warm" --cache "$work/cache" -q >/dev/null
t1=$(now)
warm=$(secs "$t0" "$t1")

used=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rootfs"]["used_bytes"] >> 20)' "$work/cold/image-manifest.json")
echo "bare mmdebstrap: ${bare} s"
echo "cold image:      ${cold} s ($(awk "BEGIN { printf \"%.2f\", $cold / $bare }") × bare; target ≤ 1.15)"
echo "warm image:      ${warm} s (target ≤ 5)"
echo "used size:       ${used} MiB (target ≤ 750)"
