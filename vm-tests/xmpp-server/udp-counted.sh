#!/bin/bash
# Runs in the guest after the client probes. Every public single UDP port of
# the exposure table is STUN, and the probes already demand its answer
# (probe.py); the firewall's own ACCEPT counters say in addition that each
# client's requests went through the rule meant for them, v4 and v6 (a
# retransmitted request counts more than once).
#   udp-counted.sh MIN OUT.tsv    (MIN packets per family: one per probing client)
# OUT.tsv: "port<TAB>v4 packets<TAB>v6 packets" for the exposure matrix.
set -uo pipefail
min=$1
out=$2
: >"$out"
bad=0
while IFS=$'\t' read -r service proto port port_end exposure _; do
	case "$service" in '#'*) continue ;; esac
	[ "$proto" = udp ] && [ "$exposure" = public ] && [ "$port_end" = 0 ] || continue
	counts=()
	for t in iptables ip6tables; do
		# iptables-save -c: "[packets:bytes] -A INPUT -p udp -m udp --dport N ... -j ACCEPT"
		n=$($t-save -c -t filter | awk -v p="$port" '
			/-A INPUT / && / -p udp / && / -j ACCEPT/ && $0 ~ ("--dport " p "( |$)") {
				split(substr($1, 2), c, ":"); s += c[1]
			} END { print s + 0 }')
		counts+=("$n")
		if [ "$n" -ge "$min" ]; then
			echo "ok    $service $port/udp: $t ACCEPT rule counted $n packet(s)"
		else
			echo "FAIL  $service $port/udp: $t ACCEPT rule counted $n packet(s), expected at least $min"
			bad=1
		fi
	done
	printf '%s\t%s\t%s\n' "$port" "${counts[0]}" "${counts[1]}" >>"$out"
done </etc/hardroot/exposure.tsv
exit $bad
