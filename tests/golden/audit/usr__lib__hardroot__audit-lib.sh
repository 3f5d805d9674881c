# Rendered by hardroot (module audit). Sourced by every audit check: a report
# with a header, one line per finding, a summary; the latest report of each
# check is kept in /var/log/hardroot-audit/<check>.log and also printed (journal).
# AUDIT_DIR may point elsewhere to run a check by hand.
AUDIT_DIR=${AUDIT_DIR:-/var/log/hardroot-audit}

audit_begin() {
	audit_check=$1
	audit_problems=0
	audit_tmp=$(mktemp)
	note "hardroot audit: $2"
	note "host $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	note ""
}

note() {
	printf '%s\n' "$*" >>"$audit_tmp"
}

ok() {
	note "ok       $*"
}

info() {
	note "info     $*"
}

problem() {
	note "PROBLEM  $*"
	audit_problems=$((audit_problems + 1))
}

# Prints and stores the report; the exit status says whether anything was found.
audit_end() {
	note ""
	if [ "$audit_problems" -eq 0 ]; then
		note "result: no problems"
	else
		note "result: $audit_problems problem(s)"
	fi
	cat "$audit_tmp"
	mkdir -p "$AUDIT_DIR"
	chmod 0640 "$audit_tmp"
	mv "$audit_tmp" "$AUDIT_DIR/$audit_check.log"
	[ "$audit_problems" -eq 0 ]
}
