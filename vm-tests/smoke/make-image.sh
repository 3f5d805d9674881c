#!/bin/bash
# Build a minimal test image by hand (no profile): Debian 12 minbase + cloud kernel
# + the test_backdoor module's files. Used by the driver's own smoke test until the
# image stage (`hardroot image`) can build test profiles.
#
# usage: vm-tests/smoke/make-image.sh OUTDIR
# writes OUTDIR/rootfs.img, OUTDIR/vmlinuz, OUTDIR/initrd.img. Needs root, mmdebstrap, e2fsprogs.
set -euo pipefail
out="${1:?usage: $0 OUTDIR}"
here="$(cd "$(dirname "$0")" && pwd)"
mod="$here/../../modules/test_backdoor"
sources=/etc/apt/sources.list.d/debian.sources
[ -r "$sources" ] || sources=/etc/apt/sources.list   # the host's mirror, never ours

mkdir -p "$out"
tree="$(mktemp -d "$out/tree.XXXXXX")"
trap 'rm -rf "$tree"' EXIT

# The templates of test_backdoor use no variables, so they are copied as they are.
mmdebstrap --variant=minbase --mode=root \
    --include=systemd-sysv,linux-image-cloud-amd64,udev,iproute2,openssh-server \
    --customize-hook="install -D -m 0755 '$mod/backdoor.sh.tera' \"\$1/usr/local/lib/hardroot/backdoor\"" \
    --customize-hook="install -D -m 0644 '$mod/hardroot-backdoor.service.tera' \"\$1/etc/systemd/system/hardroot-backdoor.service\"" \
    --customize-hook='mkdir -p "$1/etc/systemd/system/sysinit.target.wants" && ln -sf /etc/systemd/system/hardroot-backdoor.service "$1/etc/systemd/system/sysinit.target.wants/hardroot-backdoor.service"' \
    --customize-hook='echo smoke > "$1/etc/hostname"' \
    bookworm "$tree" "$sources"

cp -L "$tree"/boot/vmlinuz-* "$out/vmlinuz"
cp -L "$tree"/boot/initrd.img-* "$out/initrd.img"
rm -f "$out/rootfs.img"
mke2fs -q -t ext4 -d "$tree" "$out/rootfs.img" 2G
echo "image in $out"
