#!/bin/bash
# In the guest, last step of the acceptance test: the independent audit.
#   lynis-run.sh DIR OUT
# DIR holds lynis_*.deb (Debian's package, fetched on the host by
# scripts/deps.sh) and lynis.prf (this test's Lynis profile). The package is
# installed into this throw-away guest only: the image never carries it.
# OUT receives lynis-report.dat, lynis.log, lynis.out (the screen output)
# and seconds (how long the audit took).
set -euo pipefail
dir=$1
out=$2
mkdir -p "$out"
# Lynis depends only on e2fsprogs, which every image has: nothing to download.
dpkg -i "$dir"/lynis_*.deb >/dev/null
# Its package enables a daily audit timer: not in a test guest.
systemctl disable --now lynis.timer >/dev/null 2>&1 || true
install -m 0640 "$dir/lynis.prf" /etc/lynis/custom.prf
rm -f /var/log/lynis.log /var/log/lynis-report.dat
start=$(date +%s)
rc=0
lynis audit system --quick --no-colors >"$out/lynis.out" 2>&1 || rc=$?
echo $(($(date +%s) - start)) >"$out/seconds"
cp /var/log/lynis-report.dat /var/log/lynis.log "$out/" 2>/dev/null || true
# The verdict is the host's (lynis_check in test.rhai, src/lynis.rs); Lynis'
# own exit code only says whether it ran.
if [ "$rc" -ne 0 ]; then
	echo "lynis exited $rc" >&2
	tail -n 20 "$out/lynis.out" >&2
	exit "$rc"
fi
grep -E '^(lynis_version|hardening_index)=' "$out/lynis-report.dat"
echo "audit took $(cat "$out/seconds") s"
