#!/bin/bash
# In the guest, last step of the acceptance test: the independent audit.
#   lynis-run.sh DIR OUT SECONDS
# DIR holds lynis_*.deb (Debian's package, fetched on the host by
# scripts/deps.sh) and lynis.prf (this test's Lynis profile). The package is
# installed into this throw-away guest only: the image never carries it.
# OUT receives lynis-report.dat, lynis.log, lynis.out (the screen output)
# and seconds (how long the audit took). Lynis is stopped after SECONDS; what
# it wrote until then is kept all the same, and the verdict (lynis_check)
# then fails for want of a hardening index, with the findings so far in the
# report. This script fails only when Lynis cannot be installed.
set -euo pipefail
dir=$1
out=$2
limit=$3
mkdir -p "$out"
# Lynis depends only on e2fsprogs, which every image has: nothing to download.
dpkg -i "$dir"/lynis_*.deb >/dev/null
# Its package enables a daily audit timer: not in a test guest.
systemctl disable --now lynis.timer >/dev/null 2>&1 || true
install -m 0640 "$dir/lynis.prf" /etc/lynis/custom.prf
rm -f /var/log/lynis.log /var/log/lynis-report.dat
start=$(date +%s)
rc=0
timeout "$limit" lynis audit system --quick --no-colors >"$out/lynis.out" 2>&1 || rc=$?
echo $(($(date +%s) - start)) >"$out/seconds"
cp /var/log/lynis-report.dat /var/log/lynis.log "$out/" 2>/dev/null || true
# The verdict is the host's (lynis_check in test.rhai, src/lynis.rs).
case $rc in
	0) ;;
	124) echo "Lynis stopped after its ${limit} s limit: the report is partial" ;;
	*) echo "lynis exited $rc:" && tail -n 20 "$out/lynis.out" ;;
esac
grep -E '^(lynis_version|hardening_index)=' "$out/lynis-report.dat" || true
echo "audit took $(cat "$out/seconds") s"
