#!/bin/bash
# Runs inside the XMPP server VM (copied in by test.rhai): every check that
# needs no client host, in one command, because each round trip to the guest
# costs ~0.3 s under TCG. Prints one line per check and ends with the list of
# failures; exits 1 if there is any, so the driver shows them all at once.
# The declared units are the driver's check_units(), the exposure table
# from the clients its probe_exposure().
#   guest-check.sh
set -uo pipefail
failures=()

pass() { printf 'ok    %s\n' "$*"; }
fail() {
	printf 'FAIL  %s\n' "$*"
	failures+=("$*")
}
# check DESCRIPTION COMMAND...: the command's success is the check.
check() {
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi
}

prop() { systemctl show -P "$2" "$1"; }

# ---- the image's own port audit ------------------------------------------------------
# (every socket against the exposure table from outside and inside is the
# driver's probe_exposure(); this proves the audit timer's script agrees)
check_sockets() {
	local report
	if report=$(/usr/lib/hardroot/audit-ports 2>&1); then
		pass "audit-ports: the listening sockets match /etc/hardroot/exposure.tsv"
	else
		fail "audit-ports found problems:
$report"
	fi
	if pgrep -x epmd >/dev/null; then fail "epmd is running"; else pass "epmd is not running"; fi
}

# ---- firewall ---------------------------------------------------------------------------
firewall_modules() { prop hardroot-firewall.service ExecStartPre | sed -n 's|.*argv\[\]=/sbin/modprobe -a \([^;]*\) ;.*|\1|p' | head -n 1; }

check_firewall() {
	local t rules p
	for t in iptables ip6tables; do
		rules=$($t -S)
		for p in "INPUT DROP" "FORWARD DROP" "OUTPUT ACCEPT"; do
			if grep -qx -- "-P $p" <<<"$rules"; then pass "$t policy $p"; else fail "$t: policy is not $p"; fi
		done
		if grep -- '-A INPUT' <<<"$rules" | grep -v -i crowdsec | tail -1 | grep -q -- '-j REJECT'; then
			pass "$t ends INPUT with a REJECT"
		else fail "$t: the last INPUT rule is not a REJECT"; fi
		# CIS 4.4.2.2 / 4.4.3.2: loopback addresses only on lo.
		p=127.0.0.0/8
		[ "$t" = ip6tables ] && p=::1/128
		if grep -qx -- "-A INPUT -s $p -j DROP" <<<"$rules"; then pass "$t drops $p from other interfaces"; else fail "$t: no '-A INPUT -s $p -j DROP'"; fi
	done
	# The rules the machine runs are the rules the image carries (CrowdSec's
	# chain aside, which its bouncer adds at run time). iptables-save prints
	# rules in its own canonical form (10/sec, ICMPv6 types as numbers), so
	# the file is loaded into a scratch network namespace and saved the same way.
	local v d ns=hardroot-check-$$
	ip netns add "$ns"
	for v in 4 6; do
		t=iptables
		[ $v = 6 ] && t=ip6tables
		if d=$(diff <($t-save -t filter | grep '^-A' | grep -v -i crowdsec) \
			<(ip netns exec "$ns" $t-restore </etc/iptables/rules.v$v && ip netns exec "$ns" $t-save -t filter | grep '^-A')); then
			pass "loaded v$v rules equal /etc/iptables/rules.v$v"
		else
			fail "loaded v$v rules differ from /etc/iptables/rules.v$v (< loaded, > file):
$d"
		fi
	done
	ip netns del "$ns"
	# Its ExecStartPre loads the netfilter modules in one go (errors ignored,
	# as the kernel loads them on demand too): every name must exist, and
	# every one is loaded now. The names come from the unit's command line,
	# not its exit status: a daemon-reload (any package's postinst, say)
	# makes systemd forget that.
	local mods missing=
	mods=$(firewall_modules)
	for p in $mods; do [ -d "/sys/module/$p" ] || missing+=" $p"; done
	if [ -n "$mods" ] && [ -z "$missing" ] && modprobe -n -a $mods >/dev/null 2>&1; then
		pass "the firewall's netfilter modules exist and are loaded ($(wc -w <<<"$mods"))"
	else
		fail "the firewall's netfilter modules: ${mods:-none named by ExecStartPre}; not loaded:${missing:- none}; $(modprobe -n -a $mods 2>&1)"
	fi
	# Loaded before networking: the loader finished before networkd started.
	local fw net
	fw=$(prop hardroot-firewall.service ExecMainExitTimestampMonotonic)
	net=$(prop systemd-networkd.service ExecMainStartTimestampMonotonic)
	if [ "${fw:-0}" -gt 0 ] && [ "${net:-0}" -gt 0 ] && [ "$fw" -lt "$net" ]; then
		pass "firewall loaded at ${fw} us, networkd started at ${net} us (monotonic)"
	else
		fail "firewall loaded at ${fw:-?} us, networkd started at ${net:-?} us: not before networking"
	fi
}

# ---- sshd ---------------------------------------------------------------------------------
check_sshd() {
	local t
	t=$(sshd -T 2>&1) || {
		fail "sshd -T failed: $t"
		return
	}
	want() {
		if printf '%s\n' "$t" | grep -qx "$1"; then pass "sshd -T: $1"; else fail "sshd -T: expected '$1', got '$(printf '%s\n' "$t" | grep "^${1%% *} ")'"; fi
	}
	want "passwordauthentication no"
	want "kbdinteractiveauthentication no"
	want "permitemptypasswords no"
	want "pubkeyauthentication yes"
	want "authenticationmethods publickey"
	want "x11forwarding no"
	want "allowagentforwarding no"
	want "permittunnel no"
	if printf '%s\n' "$t" | grep -Eqx 'permitrootlogin (without-password|prohibit-password|no)'; then
		pass "sshd -T: $(printf '%s\n' "$t" | grep ^permitrootlogin)"
	else fail "sshd -T: root may log in with a password: $(printf '%s\n' "$t" | grep ^permitrootlogin)"; fi
	local tries
	tries=$(printf '%s\n' "$t" | awk '$1 == "maxauthtries" {print $2}')
	if [ "${tries:-99}" -le 3 ]; then pass "sshd -T: maxauthtries $tries"; else fail "sshd -T: maxauthtries ${tries:-unset}"; fi
	# The effective algorithm lists are the configured ones (nothing appended by defaults).
	local k conf eff
	for k in Ciphers MACs KexAlgorithms HostKeyAlgorithms; do
		conf=$(awk -v k="$k" '$1 == k {print $2}' /etc/ssh/sshd_config)
		eff=$(printf '%s\n' "$t" | awk -v k="${k,,}" '$1 == k {print $2}')
		if [ -n "$conf" ] && [ "$conf" = "$eff" ]; then pass "sshd -T: ${k,,} $eff"; else fail "sshd -T: ${k,,} is '$eff', sshd_config says '$conf'"; fi
	done
}

# ---- PostgreSQL ---------------------------------------------------------------------------
pg() { runuser -u postgres -- psql -X -A -t -q -d postgres -c "$1"; }

check_postgresql_logins() {
	local pwfile=/etc/ejabberd/sql-password.yml pw
	pw=$(sed -n 's/^sql_password: "\(.*\)"$/\1/p' "$pwfile" 2>/dev/null)
	[ -n "$pw" ] || fail "no password in $pwfile"
	check "ejabberd logs in with its password over 127.0.0.1 (scram)" \
		env PGPASSWORD="$pw" psql -X -h 127.0.0.1 -U ejabberd -d ejabberd -c 'select 1'
	check "ejabberd logs in with its password over ::1 (scram)" \
		env PGPASSWORD="$pw" psql -X -h ::1 -U ejabberd -d ejabberd -c 'select 1'
	check "a wrong password is refused" \
		sh -c "! PGPASSWORD=wrong-$RANDOM psql -X -h 127.0.0.1 -U ejabberd -d ejabberd -c 'select 1'"
	check "no TCP login from the server's own public address" \
		sh -c "! PGPASSWORD='$pw' PGCONNECT_TIMEOUT=3 psql -X -h $(hostname -I | awk '{print $1}') -U ejabberd -d ejabberd -c 'select 1'"
	check "no login over the Unix socket for the ejabberd OS user" \
		sh -c "! runuser -u ejabberd -- psql -X -d ejabberd -c 'select 1'"
}

# The server's settings, apart from the logins above so that both run at once.
check_postgresql_settings() {
	# One psql for all facts: every process start is slow under TCG.
	local facts enc scram attrs hba_bad hba_remote listen
	facts=$(pg "SELECT current_setting('password_encryption'),
		(SELECT rolpassword LIKE 'SCRAM-SHA-256\$%' FROM pg_authid WHERE rolname = 'ejabberd'),
		(SELECT concat_ws(',', rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls) FROM pg_roles WHERE rolname = 'ejabberd'),
		(SELECT count(*) FROM pg_hba_file_rules WHERE auth_method NOT IN ('scram-sha-256', 'peer') OR 'replication' = ANY(database)
			OR (type LIKE 'host%' AND auth_method <> 'scram-sha-256')),
		(SELECT count(*) FROM pg_hba_file_rules WHERE type LIKE 'host%' AND NOT (address IN ('127.0.0.1', '::1')
			AND netmask IN ('255.255.255.255', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'))),
		current_setting('listen_addresses')")
	IFS='|' read -r enc scram attrs hba_bad hba_remote listen <<<"$facts"
	[ "$enc" = scram-sha-256 ] && pass "password_encryption $enc" || fail "password_encryption is $enc"
	[ "$scram" = t ] && pass "the ejabberd role's password is stored as SCRAM-SHA-256" || fail "ejabberd password not SCRAM ($scram)"
	[ "$attrs" = "f,f,f,f,f" ] && pass "role ejabberd: no superuser, createdb, createrole, replication, bypassrls" ||
		fail "role ejabberd attributes super,createdb,createrole,replication,bypassrls = '$attrs'"
	[ "$hba_bad" = 0 ] && pass "pg_hba: TCP only with scram-sha-256, no trust, no replication" || fail "pg_hba has $hba_bad rule(s) other than scram/peer: $(pg 'TABLE pg_hba_file_rules')"
	[ "$hba_remote" = 0 ] && pass "pg_hba: TCP from loopback only" || fail "pg_hba allows $hba_remote non-loopback TCP source(s)"
	[ "$listen" = localhost ] && pass "listen_addresses $listen" || fail "listen_addresses is $listen"
}

# ---- sysctl ---------------------------------------------------------------------------------
check_sysctl() {
	local f=/etc/sysctl.d/99-hardening.conf key val live n=0 bad=0
	while IFS='=' read -r key val; do
		case "$key" in '' | '#'*) continue ;; esac
		key=${key//[[:space:]]/}
		val=${val//[[:space:]]/}
		# Read from /proc/sys, as `sysctl -n` does, without a process per key.
		if { read -r live <"/proc/sys/${key//.//}"; } 2>/dev/null; then
			live=${live//[[:space:]]/}
		else live="absent from /proc/sys"; fi
		n=$((n + 1))
		[ "$live" = "$val" ] || {
			fail "sysctl $key is $live, $f says $val"
			bad=$((bad + 1))
		}
	done <"$f"
	[ "$n" -ge 17 ] || fail "only $n values in $f (the guide has 17)"
	[ "$bad" -gt 0 ] || pass "all $n sysctl values of $f are live"
}

# ---- CrowdSec, TLS files ------------------------------------------------------------------------
check_crowdsec() {
	check "crowdsec is active" systemctl is-active --quiet crowdsec.service
	check "crowdsec-firewall-bouncer is active" systemctl is-active --quiet crowdsec-firewall-bouncer.service
	check "the bouncer is registered with the local API" sh -c "cscli bouncers list -o raw | tail -n +2 | grep -q ."
	check "the bouncer's chain is hooked into INPUT (v4)" sh -c "iptables -S INPUT | grep -qi crowdsec"
	check "the bouncer's chain is hooked into INPUT (v6)" sh -c "ip6tables -S INPUT | grep -qi crowdsec"
	# A parser or scenario whose data file is missing is skipped with only this line to say so.
	check "crowdsec found every data file its parsers and scenarios use" sh -c "test -s /var/log/crowdsec.log && ! grep -q 'unable to init data' /var/log/crowdsec.log"
	check "no CrowdSec central API credentials (offline)" sh -c "! grep -qs '^url:' /etc/crowdsec/online_api_credentials.yaml"
}

check_tls_files() {
	check "private key is root-only 0600" sh -c '[ "$(stat -c %a:%U /etc/hardroot/tls/privkey.pem)" = 600:root ]'
	check "combined PEM is 0640 root:ejabberd" sh -c '[ "$(stat -c %a:%U:%G /etc/hardroot/tls/combined.pem)" = 640:root:ejabberd ]'
}

# ---- CIS Debian 12 modules: what their controls do not cover --------------------------------
# Every CIS control the modules declare is checked by the image's own
# check-controls (module compliance; test.rhai's "benchmark controls"
# subtest). Here: figures for the report that fail nothing ("info"), and the
# behaviour the controls rely on (sudoers parse, root's way into ejabberd,
# the first-boot AIDE database and a check against it).
info() { printf 'info  %s\n' "$*"; }
check_cis() {
	# How fast the audit log grows (keep_logs never deletes; a full
	# /var/log/audit stops the machine), and how much of it AppArmor's
	# complain-mode profiles write.
	info "audit log: $(du -sk /var/log/audit | cut -f1) KiB, $(grep -c 'apparmor="ALLOWED"' /var/log/audit/audit.log 2>/dev/null || true) AppArmor ALLOWED records, $(grep -c 'apparmor="DENIED"' /var/log/audit/audit.log 2>/dev/null || true) DENIED"
	info "AppArmor: $(aa-status 2>/dev/null | grep -E 'profiles are|processes are' | tr -s ' \n' ' ')"
	# timesyncd reaches no server from the test network; timedatectl needs
	# D-Bus, which the image does not carry.
	info "timesyncd: $(systemctl show -P StatusText systemd-timesyncd.service)"
	check "sudoers valid (visudo -c)" visudo -c -q
	# postgres and ejabberd have no login shell (os_hardening.lock_accounts):
	# root's ejabberdctl still reaches ejabberd through `su -s /bin/sh`
	# (logrotate's postrotate).
	check "ejabberdctl status as root (su -s to the nologin account)" timeout 120 ejabberdctl status
	local wide
	wide=$(find /var/log -xdev -path /var/log/journal -prune -o -type f -perm /0137 -print 2>/dev/null | head -n 20)
	[ -z "$wide" ] || info "log files wider than 0640: $wide"
	# 6.3.x: the first-boot AIDE database (made now if its timer has not
	# fired yet), and a check against it.
	if timeout 200 systemctl start hardroot-aide-init.service && [ -s /var/lib/aide/aide.db ]; then
		pass "AIDE database made on this machine"
	else fail "AIDE database missing: $(journalctl -b -u hardroot-aide-init.service -n 8 --no-pager -o cat 2>&1)"; fi
	# The check's script, not its unit: a file changed by the test between
	# the two would leave a failed unit behind for the units section.
	local report
	report=$(AUDIT_DIR=$(mktemp -d) timeout 200 /usr/lib/hardroot/audit-aide 2>&1)
	if grep -q '^result:' <<<"$report" && ! grep -q 'aide failed' <<<"$report"; then
		pass "AIDE check ran, $(grep '^result:' <<<"$report")"
	else fail "AIDE check: $(tail -n 5 <<<"$report")"; fi
}

# The sections run side by side: each mostly waits for process starts, which
# TCG makes slow, and the guest has two vCPUs. Each section's output (and its
# time: the test's figures) is printed in order once all are done.
sections=(sockets firewall sshd postgresql_logins postgresql_settings sysctl crowdsec tls_files cis)
work=$(mktemp -d)
for section in "${sections[@]}"; do
	(
		failures=()
		t0=$(date +%s.%N)
		"check_$section"
		awk -v s="$section" -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "time  %-19s %.1f s\n", s, b - a }'
		[ ${#failures[@]} -eq 0 ] || printf '%s\0' "${failures[@]}" >"$work/$section.failures"
	) >"$work/$section.log" 2>&1 &
done
wait
for section in "${sections[@]}"; do
	cat "$work/$section.log"
	[ -f "$work/$section.failures" ] || continue
	mapfile -d '' -O "${#failures[@]}" failures <"$work/$section.failures"
done
rm -rf "$work"

if [ ${#failures[@]} -gt 0 ]; then
	printf '\n%d check(s) failed:\n' "${#failures[@]}" >&2
	printf -- '- %s\n' "${failures[@]}" >&2
	exit 1
fi
printf '\nall guest checks passed\n'
