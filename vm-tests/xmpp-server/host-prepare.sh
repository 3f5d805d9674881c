#!/bin/bash
# Host side of the XMPP VM test, before the server boots:
#   host-prepare.sh OUT [LOAD_ACCOUNTS]
# OUT/to-guest/ receives what test.rhai copies into the guest in one go:
#   authorized_keys   the public half of a key made now (the private half stays in OUT/keys)
#   accounts          two XMPP accounts with random passwords, "user password" a line
#   load-accounts     the load test's accounts (xmpp-load.py), as many as LOAD_ACCOUNTS
#                     (else $HARDROOT_XMPP_LOAD_ACCOUNTS, else 200): load-001 ..., random passwords
#   guest-check.sh    the in-guest checks (units and exposure: the driver's check_units, probe_exposure)
#   register-accounts.sh  registers the accounts in the running ejabberd (erl_call)
#   guest-facts.sh    the facts the report shows (boot timing, sshd -T, sysctls, rules)
# OUT/to-guest-lynis/ what the last subtest copies in for the independent audit:
#   lynis_*.deb       Debian's package, from ${HARDROOT_DEB_DIR:-/var/cache/hardroot/debs}
#                     (scripts/deps.sh fetches it; never installed on the host or in the image)
#   lynis.prf         this test's Lynis profile (custom.prf beside Lynis in the guest)
#   lynis-run.sh      unpacks it (installs nothing), audits, keeps the report
# Nothing secret is ever in the repository: every key and password is made here, per run.
set -euo pipefail
out=$1
load=${2:-${HARDROOT_XMPP_LOAD_ACCOUNTS:-200}}
here=$(cd "$(dirname "$0")" && pwd)

debs=${HARDROOT_DEB_DIR:-/var/cache/hardroot/debs}
lynis_deb=$(compgen -G "$debs/lynis_*.deb" | sort -V | tail -n 1 || true)
if [ -z "$lynis_deb" ]; then
	echo "no lynis_*.deb in $debs: run scripts/deps.sh (it downloads Debian's lynis package there for the VM test)" >&2
	exit 1
fi

rm -rf "$out/keys" "$out/to-guest" "$out/to-guest-lynis"
mkdir -p "$out/keys" "$out/to-guest" "$out/to-guest-lynis"
cp "$lynis_deb" "$here/lynis.prf" "$here/lynis-run.sh" "$out/to-guest-lynis/"
chmod 0700 "$out/keys"
ssh-keygen -q -t ed25519 -N '' -C hardroot-vm-test -f "$out/keys/id_ed25519"
cp "$out/keys/id_ed25519.pub" "$out/to-guest/authorized_keys"

for u in alice bob; do
	printf '%s %s\n' "$u" "$(openssl rand -hex 16)"
done >"$out/keys/accounts"
cp "$out/keys/accounts" "$out/to-guest/accounts"
# 16 random bytes each, from one read: openssl per line would be 200 processes.
openssl rand -hex $((16 * load)) | fold -w 32 | head -n "$load" | awk '{ printf "load-%03d %s\n", NR, $0 }' >"$out/keys/load-accounts"
cp "$out/keys/load-accounts" "$out/to-guest/load-accounts"

cp "$here/guest-check.sh" "$here/guest-facts.sh" "$here/register-accounts.sh" "$here/fault-kill.sh" "$here/load-sample.sh" "$out/to-guest/"
