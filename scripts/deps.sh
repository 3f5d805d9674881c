#!/usr/bin/env bash
# Installs the Debian packages whose commands hardroot's pipeline and tests run.
#
# It decides by what is there to run, not by what dpkg says is installed: a
# package can be "installed" at a version whose files apt then takes away (a
# backported qemu-utils that qemu-system-x86 from the release removes). It
# installs every missing package in ONE apt transaction that also names every
# needed package that is already there, so apt cannot resolve it by removing
# one of them; a needed package apt would have to replace is pinned to the
# archive's version. It ends by checking that every command is there and
# exits non-zero naming what is not.
#
# Each line of `needs`: a Debian package, then what shows that it is usable: a
# command on PATH, an absolute path, or py:MODULE (importable by python3).
# flake.nix's dev shell lists the same packages: tests/flake.rs checks both.
#
# HARDROOT_DEPS_DRY_RUN=1 prints what would be installed and installs nothing.
set -euo pipefail

needs=(
  "mmdebstrap mmdebstrap"                          # image: Debian base
  "e2fsprogs mke2fs debugfs e2fsck resize2fs"      # image: ext4 without a mount
  "fdisk sfdisk"                                   # image: GPT of disk.img
  "qemu-utils qemu-img"                            # image: disk.qcow2; vm-test: throw-away overlays
  "qemu-system-x86 qemu-system-x86_64"             # vm-test, run
  "dosfstools mkfs.vfat"                           # bootable disk.img: ESP without a mount
  "mtools mcopy mmd"                               # ... filled without a mount
  "ovmf /usr/share/ovmf/OVMF.fd"                   # UEFI firmware: vm-test boots disk.img through it
  "iproute2 ip"                                    # test networks (namespaces, taps)
  "iptables iptables-restore ip6tables-restore"    # real-tool validation of the rules
  "openssh-server /usr/sbin/sshd"                  # sshd -t
  "openssh-client ssh ssh-keygen"                  # test clients
  "nginx /usr/sbin/nginx"                          # nginx -t
  "libnginx-mod-stream /usr/lib/nginx/modules/ngx_stream_module.so"   # nginx -t and the live test of TLS stream proxies
  "systemd systemd-analyze"                        # unit verify
  "curl curl"                                      # client probes
  "openssl openssl"                                # TLS probes, certificates in tests
  "python3 /usr/bin/python3"                       # probes and clients (Debian's, not a PATH one)
  "python3-yaml py:yaml"                           # YAML parse of rendered configs
  "nix-bin nix-instantiate"                        # flake parse check
  "ssh-audit ssh-audit"                            # SSH algorithm audit
  "chromium chromium"                              # the acceptance report renders in headless Chromium
  "postgresql /usr/lib/postgresql/*/bin/pg_ctl"    # live service tests (own netns)
  "ejabberd /usr/sbin/ejabberdctl"                 # live service tests
  "erlang-p1-pgsql /usr/lib/erlang/lib/p1_pgsql-*/ebin"   # ejabberd's PostgreSQL driver
  "certbot certbot"                                # live ACME test
  "pebble pebble"                                  # ACME CA of the live and VM tests
  "procps pgrep"                                   # live tests: wait for daemons
  "python3-slixmpp py:slixmpp"                     # XMPP VM test: XMPP client
  "sudo visudo"                                    # CIS: visudo -c of the sudoers drop-in
  "aide aide"                                      # CIS: aide --config-check, init + check on a scratch tree
  "linux-libc-dev /usr/include/x86_64-linux-gnu/asm/unistd_64.h"   # CIS: syscall names of the audit rules
  "kmod modprobe"                                  # CIS: modprobe -n with the rendered modprobe.d file
  "docker-registry docker-registry"                # push/pull tests: the CNCF distribution registry on 127.0.0.1
  "apache2-utils htpasswd"                         # ... its basic-auth password file
  "tar tar"                                        # image --cache-to/--cache-from: a base travels as a tar
  "zstd zstd"                                      # ... compressed with zstd
  "apt-utils apt-ftparchive"                       # base freshness test: a local apt repository's indexes
)

# Packages whose maintainer scripts the tests run offline in a scratch root
# (crowdsec's postinst), and what the VM test installs into a throw-away guest
# (lynis): fetched as .debs, never installed on the host.
# lynis is pure shell and Depends only on e2fsprogs, which every image has.
fetch_debs() {
  local dir=${HARDROOT_DEB_DIR:-/var/cache/hardroot/debs}
  local pkg missing=()
  mkdir -p "$dir"
  for pkg in crowdsec crowdsec-firewall-bouncer lynis; do
    compgen -G "$dir/${pkg}_*.deb" >/dev/null || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  (cd "$dir" && apt-get download "${missing[@]}" >/dev/null)
}

# Is this probe usable here?
present() {
  case "$1" in
    py:*) /usr/bin/python3 -c "import ${1#py:}" 2>/dev/null ;;   # Debian's python3: the one the tests run
    /*) compgen -G "$1" >/dev/null ;;   # a path, or a glob of one
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# Prints "package probe" for every probe that is not usable.
absent() {
  local line pkg probe probes
  for line in "${needs[@]}"; do
    read -r pkg probes <<<"$line"
    for probe in $probes; do
      present "$probe" || echo "$pkg $probe"
    done
  done
}

all_packages() {
  local line
  for line in "${needs[@]}"; do echo "${line%% *}"; done
}

# The highest version of a package that a repository offers (not dpkg's
# record of what is installed), or nothing.
archive_version() {
  apt-cache madison "$1" 2>/dev/null | awk -F'|' 'NR==1 { gsub(/ /, "", $2); print $2 }'
}

# The packages an apt-get install of "$@" would remove.
would_remove() {
  apt-get install -s -qq --no-install-recommends "$@" 2>/dev/null | awk '$1 == "Remv" { print $2 }'
}

# The install arguments: every needed package, with those that apt would
# otherwise remove (or that are needed and missing) pinned to the archive.
plan() {
  local -a missing=("$@") args=() pins=()
  local pkg v
  mapfile -t args < <(all_packages | sort -u)
  for pkg in $(would_remove "${missing[@]}"); do
    if all_packages | grep -qx "$pkg"; then
      v=$(archive_version "$pkg")
      [ -n "$v" ] || { echo "deps.sh: apt would remove $pkg, and no repository offers it" >&2; return 1; }
      pins+=("$pkg=$v")
    fi
  done
  for pkg in "${args[@]}"; do
    local pinned=""
    for v in "${pins[@]}"; do [ "${v%%=*}" = "$pkg" ] && pinned=$v; done
    echo "${pinned:-$pkg}"
  done
}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

mapfile -t gaps < <(absent)
if [ ${#gaps[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${gaps[@]}" | awk '{ print $1 }' | sort -u)
  echo "deps.sh: not usable: $(printf '%s\n' "${gaps[@]}" | awk '{ print $2 }' | tr '\n' ' ')" >&2
  if [ "${HARDROOT_DEPS_DRY_RUN:-}" = 1 ]; then
    echo "would install: ${missing[*]}"
    exit 0
  fi
  echo "deps.sh: installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  mapfile -t args < <(plan "${missing[@]}")
  # A package that is "installed" but whose command is gone is reinstalled.
  # Services are installed for their binaries (sshd -t, nginx -t); they need not run on the host.
  $sudo apt-get install -y -qq --no-install-recommends --allow-downgrades \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${args[@]}" >/dev/null
  for pkg in "${missing[@]}"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      mapfile -t still < <(absent | awk -v p="$pkg" '$1 == p')
      [ ${#still[@]} -eq 0 ] || $sudo apt-get install -y -qq --reinstall "$pkg" >/dev/null
    fi
  done
fi

mapfile -t gaps < <(absent)
if [ ${#gaps[@]} -gt 0 ]; then
  echo "deps.sh: still not usable after installing:" >&2
  printf '  %s (package %s)\n' $(printf '%s\n' "${gaps[@]}" | awk '{ print $2, $1 }') >&2
  exit 1
fi
fetch_debs
