#!/bin/bash
# In the guest: the test's XMPP accounts (host-prepare.sh made them), all at
# once. Run as a unit of its own while ACME works, because every ejabberdctl
# call starts an Erlang node (~10 s under TCG).
#   register-accounts.sh ACCOUNTS     ("user password" a line)
set -euo pipefail
domain=$(hostname -d)
pids=()
while read -r user password; do
	# A new account, or a known one (a second run on the same disk) gets this run's password.
	{ ejabberdctl register "$user" "$domain" "$password" ||
		ejabberdctl change_password "$user" "$domain" "$password"; } </dev/null &
	pids+=($!)
done <"$1"
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
