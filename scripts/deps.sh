#!/usr/bin/env bash
# Installs the Debian packages that hardroot's pipeline and tests call, when missing.
# Every tool named here is used by a script or a test (flake.nix's dev shell lists the same set).
set -euo pipefail

packages=(
  mmdebstrap e2fsprogs fdisk qemu-utils qemu-system-x86   # image + vm-test
  iproute2 iptables openssh-server openssh-client nginx     # real-tool validation, test clients
  systemd curl openssl netcat-openbsd python3 python3-yaml  # unit verify, client probes, YAML parse
  nix-bin                                                   # nix-instantiate --parse flake.nix
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Services are installed for their binaries (sshd -t, nginx -t); they need not run on the host.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
