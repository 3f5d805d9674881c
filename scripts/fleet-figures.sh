#!/usr/bin/env bash
# The figures of docs/fleet.md ("Twenty machines, three package sets"): 20
# profiles over 3 package sets, built by three simulated builder machines
# (three cache folders) that share their bases through a throw-away registry
# on 127.0.0.1:
#   A  --jobs 2, empty cache, --cache-to: bootstraps each set once, pushes it
#   B  --jobs 2, empty cache, --cache-from: pulls the three bases, no bootstrap
#   C  --jobs 1, empty cache, --cache-from: the same with one job
#   D  --jobs 1, empty cache, --cache-to: A with one job (run it alone: "D")
# Prints bootstraps, pulls, bytes pushed, cache hits and wall time of each,
# and whether B's and C's images are A's, byte for byte.
#
# Usage: scripts/fleet-figures.sh WORK [BUILDERS]   (as root; BUILDERS: default "A B C")
# HARDROOT_FIGURES_FLAGS: more `image` flags, default --no-disk (rootfs.img,
# kernel, initrd: 20 disk.img + disk.qcow2 would need ~20 GB more). WORK
# needs ~10 GB while a builder runs; each builder's images and cache are
# deleted after it (its --json summary and stderr stay in WORK/<builder>.*).
set -euo pipefail
work=$(realpath -m "${1:?usage: scripts/fleet-figures.sh WORK [BUILDERS]}")
builders=${2:-A B C}
repo=$(cd "$(dirname "$0")/.." && pwd)
read -r -a flags <<<"${HARDROOT_FIGURES_FLAGS---no-disk}"
hardroot=${HARDROOT:-$repo/target/release/hardroot}
mkdir -p "$work/profiles"

# The 20 profiles: variants (their banner) of three package sets, the
# smallest bootable one (profiles/minimal.toml's), with sudo, with timesyncd.
sets=('"system", "disk", "banner"'
      '"system", "disk", "banner", "sudo"'
      '"system", "disk", "banner", "timesync"')
for i in $(seq 1 20); do
  set_no=$(( i <= 7 ? 0 : (i <= 14 ? 1 : 2) ))
  cat >"$work/profiles/m$(printf %02d "$i").toml" <<EOF
[profile]
description = "fleet figures: machine $i of package set $((set_no + 1))"
imports = [${sets[$set_no]}]

[disk]
bootable = true

[banner]
text = "Machine $i of the fleet. Authorized use only.\n"
EOF
done

# A registry with throw-away storage, as tests/registry_support starts one.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -rf "$work/registry"
mkdir -p "$work/registry/storage"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry/storage
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
registry_pid=$!
trap 'kill "$registry_pid" 2>/dev/null || true' EXIT
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null; do sleep 0.2; done
bases="127.0.0.1:$port/fleet/bases"

build() {   # NAME JOBS SHARED-FLAG
  local name=$1 jobs=$2 flag=$3 start end
  rm -rf "$work/$name-out" "$work/$name-cache"
  start=$(date +%s.%N)
  "$hardroot" image "$work"/profiles/*.toml -o "$work/$name-out" --jobs "$jobs" \
    --modules "$repo/modules" --cache "$work/$name-cache" "$flag" "$bases" --json "${flags[@]}" \
    >"$work/$name.json" 2>"$work/$name.log" || echo "builder $name: exit $?"
  end=$(date +%s.%N)
  echo "builder $name: --jobs $jobs $flag, wall $(python3 -c "print(round($end - $start))") s"
  rm -rf "$work/$name-out" "$work/$name-cache"
}

for b in $builders; do
  case $b in
    A) build A 2 --cache-to ;;
    B) build B 2 --cache-from ;;
    C) build C 1 --cache-from ;;
    D) build D 1 --cache-to ;;
  esac
done

python3 - "$work" $builders <<'EOF'
import json, sys
work, names = sys.argv[1], sys.argv[2:]
docs = {n: json.load(open(f"{work}/{n}.json")) for n in names}
def disks(doc):  # disk.img's sha256, else rootfs.img's
    def sha(i):
        return ((i or {}).get("disk") or {}).get("sha256") or ((i or {}).get("rootfs") or {}).get("sha256")
    return {p["name"]: sha(p["image"]) for p in doc["profiles"]}
for n, d in docs.items():
    built = [p for p in d["profiles"] if p["status"] == "built"]
    hits = sum(p["cache"] == "hit" for p in built)
    b = d["bases"]
    print(f"{n}: {len(built)}/{len(d['profiles'])} built, {d['failed']} failed, "
          f"{b['bootstrapped']} bootstrapped, {b['pulled']} pulled, {hits} local cache hits, "
          f"{b['pushed_bytes']} bytes of bases pushed, {d['seconds']:.0f} s")
if "A" in docs:
    for n in names:
        if n != "A":
            same = disks(docs[n]) == disks(docs["A"]) and None not in disks(docs["A"]).values()
            print(f"{n}'s images are A's, byte for byte: {same}")
EOF
du -sb "$work/registry/storage" | awk '{print "registry storage: " $1 " bytes"}'
