#!/usr/bin/env bash
# Installs the Debian packages that hardroot's pipeline and tests call, when missing.
# Every tool named here is used by a script or a test, and flake.nix's dev shell lists the same
# set: tests/flake.rs checks both.
set -euo pipefail

packages=(
  mmdebstrap e2fsprogs fdisk qemu-utils qemu-system-x86   # image + vm-test
  dosfstools mtools ovmf                                    # bootable disk.img: ESP without a mount; UEFI firmware for its boot test
  iproute2 iptables openssh-server openssh-client nginx     # real-tool validation, test clients
  systemd curl openssl python3 python3-yaml                 # unit verify, client probes, YAML parse
  nix-bin ssh-audit                                         # flake parse check; SSH algorithm audit
  chromium                                                  # the acceptance report renders in headless Chromium
  postgresql ejabberd erlang-p1-pgsql certbot pebble procps  # live service tests (own netns)
  python3-slixmpp                                           # XMPP VM test: XMPP client (pebble above is its ACME CA)
)

# Packages whose maintainer scripts the tests run offline in a scratch root
# (crowdsec's postinst): fetched as .debs, never installed on the host.
fetch_debs() {
  local dir=${HARDROOT_DEB_DIR:-/var/cache/hardroot/debs}
  mkdir -p "$dir"
  ls "$dir"/crowdsec_*.deb "$dir"/crowdsec-firewall-bouncer_*.deb >/dev/null 2>&1 && return 0
  (cd "$dir" && apt-get download crowdsec crowdsec-firewall-bouncer >/dev/null)
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  fetch_debs
  exit 0
fi

echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Services are installed for their binaries (sshd -t, nginx -t); they need not run on the host.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fetch_debs
