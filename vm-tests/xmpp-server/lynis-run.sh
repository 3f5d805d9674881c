#!/bin/bash
# In the guest: the independent audit, started by test.rhai after the reboot.
#   lynis-run.sh DIR OUT SECONDS
# DIR holds lynis_*.deb (Debian's package, fetched on the host by
# scripts/deps.sh) and lynis.prf (this test's Lynis profile). The package is
# unpacked into DIR and Lynis runs from there, as from its release tarball
# (--usecwd): the audit changes nothing it or the checks beside it look at.
# Installed, the package wrote /var/log/dpkg.log with mode 0644 (the CIS
# check of log file modes runs beside it), its postinst made systemd reload
# (which forgets how the boot's units ran) and enabled a timer.
# OUT receives lynis-report.dat, lynis.log, lynis.out (the screen output)
# and seconds (how long the audit took). Lynis is stopped after SECONDS; what
# it wrote until then is kept all the same, and the verdict (lynis_check)
# then fails for want of a hardening index, with the findings so far in the
# report. This script fails only when Lynis cannot be unpacked.
set -euo pipefail
dir=$1
out=$2
limit=$3
mkdir -p "$out"
pkg=$dir/pkg
run=$dir/run
rm -rf "$pkg" "$run"
dpkg-deb -x "$dir"/lynis_*.deb "$pkg"
# The layout of Lynis' tarball: the program, include/, db/, plugins/ and the
# profiles side by side. Lynis refuses files a non-root user could change.
mkdir -m 0750 "$run"
cp -a "$pkg/usr/sbin/lynis" "$pkg/usr/share/lynis/include" "$pkg/usr/share/lynis/db" "$run/"
cp -a "$pkg/etc/lynis/plugins" "$pkg/etc/lynis/default.prf" "$run/"
install -m 0640 "$dir/lynis.prf" "$run/custom.prf"
start=$(date +%s)
rc=0
(cd "$run" && timeout "$limit" ./lynis audit system --usecwd --quick --no-colors \
	--logfile "$out/lynis.log" --report-file "$out/lynis-report.dat") >"$out/lynis.out" 2>&1 || rc=$?
echo $(($(date +%s) - start)) >"$out/seconds"
# The verdict is the host's (lynis_check in test.rhai, src/lynis.rs).
case $rc in
	0) ;;
	124) echo "Lynis stopped after its ${limit} s limit: the report is partial" ;;
	*) echo "lynis exited $rc:" && tail -n 20 "$out/lynis.out" ;;
esac
grep -E '^(lynis_version|hardening_index)=' "$out/lynis-report.dat" || true
echo "audit took $(cat "$out/seconds") s"
