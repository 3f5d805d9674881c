#!/bin/bash
# In the guest: the facts the acceptance report shows (docs/testing.md, "What
# the report reads"), written to DIR. test.rhai runs this as a unit of its own
# while the first checks run, and copies DIR out afterwards.
#   guest-facts.sh DIR
set -euo pipefail
mkdir -p "$1"
cd "$1"
systemd-analyze plot >boot-plot.svg
systemd-analyze blame >boot-blame.txt
systemd-analyze time >boot-time.txt
sshd -T >sshd-T.txt
sysctl -a >sysctl.txt 2>/dev/null || true
iptables-save >iptables-v4.txt
ip6tables-save >iptables-v6.txt
ss -H -tulnp >ss.txt
