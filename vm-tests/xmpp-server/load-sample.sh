#!/bin/bash
# In the guest: CPU and memory while the load runs (issue 20).
#   load-sample.sh start      note the CPU counters; sample memory each second
#   load-sample.sh stop       one line of JSON: cpu_percent (all CPUs, busy
#                             share since start), memory_used_mb (the highest
#                             MemTotal - MemAvailable seen), memory_total_mb
set -euo pipefail
dir=/run/hardroot-load-sample
script=$(realpath "$0")
cpu() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat; }
used_mb() { awk '/^MemTotal:/ { t = $2 } /^MemAvailable:/ { a = $2 } END { printf "%d\n", (t - a) / 1024 }' /proc/meminfo; }
case $1 in
start)
	rm -rf "$dir" && mkdir -p "$dir"
	cpu >"$dir/cpu"
	used_mb >"$dir/mem"
	systemd-run --quiet --unit=hardroot-load-sample --collect bash "$script" sample
	;;
sample)
	# The highest use seen, once a second, until stopped.
	while :; do
		now=$(used_mb)
		if [ "$now" -gt "$(cat "$dir/mem")" ]; then echo "$now" >"$dir/mem"; fi
		sleep 1
	done
	;;
stop)
	systemctl stop hardroot-load-sample.service 2>/dev/null || true
	read -r busy0 total0 <"$dir/cpu"
	read -r busy1 total1 < <(cpu)
	total_mb=$(awk '/^MemTotal:/ { printf "%d\n", $2 / 1024 }' /proc/meminfo)
	printf '{"cpu_percent":%s,"memory_used_mb":%s,"memory_total_mb":%s}\n' \
		"$(awk -v b="$((busy1 - busy0))" -v t="$((total1 - total0))" 'BEGIN { printf "%.1f", (t > 0 ? 100 * b / t : 0) }')" \
		"$(cat "$dir/mem")" "$total_mb"
	;;
*) echo "usage: load-sample.sh start|stop" >&2; exit 2 ;;
esac
