#!/bin/bash
# In the guest: a crash of UNIT's main process, as `kill -9` makes it, and
# what systemd made of it (issue 20).
#   fault-kill.sh UNIT LIMIT         wait up to LIMIT s until systemd restarted it
#   fault-kill.sh --hold UNIT        kill, then cancel the pending restart: the
#                                    unit stays down as the crash left it (no
#                                    stop command of its own ran) until
#                                    `systemctl start UNIT`
# Prints one line of JSON: unit, old and new main PID, restarts, and the
# seconds from the kill to the unit being active again (systemd's own
# ActiveEnterTimestampMonotonic against the kill's CLOCK_MONOTONIC time).
set -euo pipefail
hold=no
if [ "$1" = --hold ]; then hold=yes; shift; fi
unit=$1
limit=${2:-300}
show() { systemctl show -P "$1" "$unit"; }
# CLOCK_MONOTONIC in µs, the clock of systemd's *Monotonic timestamps.
now_us() { awk '{ printf "%d\n", $1 * 1000000 }' /proc/uptime; }

pid=$(show MainPID)
restarts=$(show NRestarts)
if [ "$pid" -le 0 ] || [ "$(show ActiveState)" != active ]; then
	echo "$unit is not running (MainPID $pid, $(show ActiveState)): nothing to kill" >&2
	exit 1
fi
killed_us=$(now_us)
kill -9 "$pid"
if [ "$hold" = yes ]; then
	# Until systemd has seen the death, then cancel its restart.
	while [ "$(show MainPID)" = "$pid" ]; do sleep 0.2; done
	systemctl stop "$unit"
	printf '{"unit":"%s","killed_pid":%s,"state":"%s"}\n' "$unit" "$pid" "$(show ActiveState)"
	exit 0
fi
deadline=$((SECONDS + limit))
until [ "$(show ActiveState)" = active ] && [ "$(show NRestarts)" -gt "$restarts" ] && [ "$(show MainPID)" != "$pid" ]; do
	if [ "$SECONDS" -ge "$deadline" ]; then
		echo "$unit not back within ${limit}s: $(show ActiveState)/$(show SubState), NRestarts $(show NRestarts), Result $(show Result)" >&2
		journalctl -b -u "$unit" -n 20 --no-pager -o cat >&2
		exit 1
	fi
	sleep 0.5
done
back_us=$(show ActiveEnterTimestampMonotonic)
printf '{"unit":"%s","killed_pid":%s,"new_pid":%s,"restarts":%s,"seconds":%s}\n' \
	"$unit" "$pid" "$(show MainPID)" "$(show NRestarts)" \
	"$(awk -v a="$back_us" -v b="$killed_us" 'BEGIN { printf "%.1f", (a - b) / 1000000 }')"
