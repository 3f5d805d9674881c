#!/usr/bin/env bash
# Peer comparison (issue 9): the image a user would otherwise make with mkosi
# (Debian 12's mkosi 14), given what hardroot is given, timed next to it.
#
# mkosi gets: the profile's package set (from the overlay's manifest.json),
# the rendered overlay as its extra tree, the overlay's "early" files (those
# hardroot puts in place before packages are configured, e.g. CrowdSec's
# offline marker) as its skeleton tree, the host's Debian mirror, and ext4 in
# a GPT disk (gpt_ext4; mkosi 14 has no bare ext4 output). hardroot gets the
# profile. Both start with empty caches; "warm" is one file of the overlay
# changed (mkosi --incremental) / one value of the profile changed (hardroot).
#
# usage: benches/mkosi.sh [PROFILE]      (root; default profiles/xmpp-server.toml)
#        RUNS=N benches/mkosi.sh        (rounds; default 3, each figure their median)
# Prints one table; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-profiles/xmpp-server.toml}"
runs="${RUNS:-3}"
command -v mkosi >/dev/null || {
  echo "mkosi.sh: mkosi is missing: apt-get install mkosi debootstrap" >&2
  exit 3
}
if [ -z "${HARDROOT:-}" ]; then cargo build --release --quiet; fi
hr="${HARDROOT:-$PWD/target/release/hardroot}"
work="$(mktemp -d /var/tmp/hardroot-mkosi.XXXXXX)"
# KEEP=1 keeps the work folder (logs, both images) for a look afterwards.
trap '[ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"; rm -f "$(dirname "$profile")/.bench-$$.toml"' EXIT
. benches/lib.sh

# The host's Debian mirror for SUITE, read at run time (never written into
# the repo): the first deb822 or one-line source serving it.
host_mirror() {
  python3 - "$1" <<'EOF'
import glob, re, sys
suite = sys.argv[1]
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
        f = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
        if suite in f.get("Suites", "").split() and "deb" in f.get("Types", "").split():
            print(f["URIs"].split()[0]); sys.exit(0)
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        for line in open(path):
            w = re.sub(r"\[[^]]*\]", "", line).split()
            if len(w) >= 3 and w[0] == "deb" and w[2] == suite:
                print(w[1]); sys.exit(0)
    except FileNotFoundError:
        pass
sys.exit(f"mkosi.sh: no {suite} source in the host's apt configuration")
EOF
}
mirror="$(host_mirror bookworm)"
security="$(host_mirror bookworm-security)"

"$hr" build "$profile" -o "$work/build" >/dev/null
overlay="$work/build/overlay"
pkgs="$(python3 -c 'import json,sys; print(",".join(json.load(open(sys.argv[1]))["packages"]))' "$work/build/manifest.json")"
mkdir -p "$work/skeleton"
python3 - "$work/build/manifest.json" "$overlay" "$work/skeleton" <<'EOF'
import json, os, shutil, sys
manifest, overlay, skeleton = sys.argv[1:]
for e in json.load(open(manifest))["entries"]:
    if e.get("early") and e["type"] == "file":
        dst = os.path.join(skeleton, e["path"])
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(overlay, e["path"]), dst)
EOF

# --nspawn-keep-unit: mkosi runs apt and dpkg in systemd-nspawn, which
# otherwise asks systemd over D-Bus for a scope (no system bus in containers
# such as CI's).
# mkosi 14 writes security.debian.org into the image's sources and updates
# from it; only the host's mirrors may be reached here, so the skeleton tree
# (copied after that, before apt runs) replaces the file with the host's
# security mirror: both tools then install from the same three suites.
mkdir -p "$work/skeleton/etc/apt/sources.list.d"
echo "deb $security bookworm-security main" >"$work/skeleton/etc/apt/sources.list.d/bookworm-security.list"
mkosi_build() {
  mkosi --distribution=debian --release=bookworm \
    --mirror="$mirror" \
    --format=gpt_ext4 --package="$pkgs" \
    --skeleton-tree="$work/skeleton" --extra-tree="$overlay" \
    --cache="$work/mkosi-cache" --output-dir="$work/mkosi-out" \
    --workspace-dir="$work" --nspawn-keep-unit \
    --incremental --force build >>"$work/mkosi.log" 2>&1 || {
    tail -n 40 "$work/mkosi.log" >&2
    exit 1
  }
}

# mkosi 14's warm path copies its cached image and gives the root file system
# a new UUID with `tune2fs -U`, which e2fsprogs 1.47 refuses unless the file
# system was checked after its last mount: it fails whenever the cache was
# mounted a second or more after mkfs (most runs here). So the cache images
# are checked before each warm build, untimed (<2 s), as a mkosi user on
# Debian 12 would have to.
fsck_mkosi_cache() {
  local f off
  for f in "$work"/mkosi-out/*/image.raw.cache-pre-*; do
    [ -f "$f" ] || continue
    off=$(python3 -c '
import json, subprocess, sys
t = json.loads(subprocess.run(["sfdisk", "-J", sys.argv[1]], capture_output=True, text=True, check=True).stdout)
print(max(t["partitiontable"]["partitions"], key=lambda p: p["size"])["start"] * 512)' "$f")
    e2fsck -fy "$f?offset=$off" >>"$work/mkosi.log" 2>&1 || true
  done
}

# One round = both tools, cold then warm, from empty caches; the rounds
# alternate so that whatever else the machine does weighs on both alike.
mkosi_round() {
  rm -rf "$work/mkosi-cache" "$work/mkosi-out"
  if [ -f "$work/motd.orig" ]; then cp "$work/motd.orig" "$overlay/etc/motd"; else rm -f "$overlay/etc/motd"; fi
  t0=$(now); mkosi_build; t1=$(now)
  record "$work/mkosi-cold.txt" "$t0" "$t1"
  echo "# changed by benches/mkosi.sh" >>"$overlay/etc/motd"
  fsck_mkosi_cache
  t0=$(now); mkosi_build; t1=$(now)
  record "$work/mkosi-warm.txt" "$t0" "$t1"
}

if [ -f "$overlay/etc/motd" ]; then cp "$overlay/etc/motd" "$work/motd.orig"; fi
for i in $(seq "$runs"); do
  if [ $((i % 2)) = 1 ]; then mkosi_round; hr_round "$profile"; else hr_round "$profile"; mkosi_round; fi
done
mkosi_cold=$(median <"$work/mkosi-cold.txt")
mkosi_warm=$(median <"$work/mkosi-warm.txt")
hr_cold=$(median <"$work/hr-cold.txt")
hr_warm=$(median <"$work/hr-warm.txt")
mkosi_raw="$(find "$work/mkosi-out" -maxdepth 2 -name image.raw | head -n 1)"
mkosi_bytes=$(stat -c %s "$mkosi_raw")
mkosi_used=$(python3 - "$mkosi_raw" <<'EOF'
import subprocess, sys, json
# The root partition's used blocks, read with sfdisk + dumpe2fs (no mount).
t = json.loads(subprocess.run(["sfdisk", "-J", sys.argv[1]], capture_output=True, text=True, check=True).stdout)
p = max(t["partitiontable"]["partitions"], key=lambda p: p["size"])
off = p["start"] * 512
out = subprocess.run(["dumpe2fs", "-h", f"{sys.argv[1]}?offset={off}"], capture_output=True, text=True).stdout
f = dict(l.split(":", 1) for l in out.splitlines() if ":" in l)
used = (int(f["Block count"]) - int(f["Free blocks"])) * int(f["Block size"])
print(used >> 20)
EOF
)
hr_used=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rootfs"]["used_bytes"] >> 20)' "$work/hr-cold/image-manifest.json")

# Same package set? Names only (mkosi does not upgrade what debootstrap
# installed to -updates/-security versions, so some versions differ).
pkg_diff=$(python3 - "$mkosi_raw.manifest" "$work/hr-cold/image-manifest.json" <<'EOF'
import json, sys
m = {p["name"] for p in json.load(open(sys.argv[1]))["packages"]}
h = {p["name"] for p in json.load(open(sys.argv[2]))["packages"]}
print(f"{len(h)} | {len(m)} | only in mkosi's: {' '.join(sorted(m - h)) or '-'}; only in hardroot's: {' '.join(sorted(h - m)) or '-'}")
EOF
)

ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }
echo "| figure (median of $runs rounds; range) | hardroot | mkosi $(mkosi --version | awk '{print $2}') | hardroot / mkosi |"
echo "|---|---|---|---|"
echo "| cold image (empty caches) | ${hr_cold} s ($(spread <"$work/hr-cold.txt")) | ${mkosi_cold} s ($(spread <"$work/mkosi-cold.txt")) | $(ratio "$hr_cold" "$mkosi_cold") |"
echo "| warm image (one file/value changed) | ${hr_warm} s ($(spread <"$work/hr-warm.txt")) | ${mkosi_warm} s ($(spread <"$work/mkosi-warm.txt")) | $(ratio "$hr_warm" "$mkosi_warm") |"
echo "| used size of the root filesystem | ${hr_used} MiB | ${mkosi_used} MiB | $(ratio "$hr_used" "$mkosi_used") |"
echo "| packages installed | $pkg_diff |"
echo "| image file | $(stat -c %s "$work/hr-cold/rootfs.img" | awk '{printf "%d", $1/1048576}') MiB (ext4) | $((mkosi_bytes >> 20)) MiB (GPT + ext4) | |"
