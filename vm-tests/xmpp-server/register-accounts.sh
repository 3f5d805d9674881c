#!/bin/bash
# In the guest: the test's XMPP accounts (host-prepare.sh made them), made in
# the running node through erl_call, as ejabberd's reload is: `ejabberdctl
# register` starts an Erlang VM per call (~13 s each under TCG). The whole
# file is one erl_call, one Erlang expression over the list (the load test's
# 200 accounts would otherwise be 200 calls). A known account (a second run
# on the same disk) gets this run's password.
#   register-accounts.sh ACCOUNTS     ("user password" a line; hex passwords)
# Prints "registered USER@DOMAIN" per account; on any failure, what failed on
# stderr and exit 1.
# EJABBERD_DOMAIN and EJABBERDCTL_CFG replace the machine's (the host's live test).
set -euo pipefail
domain=${EJABBERD_DOMAIN:-$(hostname -d)}
port=$(sed -n 's/^ERL_DIST_PORT=//p' "${EJABBERDCTL_CFG:-/etc/ejabberd/ejabberdctl.cfg}")
list=""
users=()
while read -r user password; do
	[ -n "$user" ] || continue
	# Names and passwords go into Erlang binaries as they are: nothing to quote.
	if ! [[ $user =~ ^[a-z0-9._-]+$ && $password =~ ^[A-Za-z0-9]+$ ]]; then
		echo "$1: line for '$user': a user [a-z0-9._-] and a password [A-Za-z0-9] expected" >&2
		exit 1
	fi
	list+="${list:+,}{<<\"$user\">>,<<\"$password\">>}"
	users+=("$user")
done <"$1"
# The accounts that failed, with why: [] when all are there.
expr="H = <<\"$domain\">>,
	R = [{U, case ejabberd_admin:register(U, H, P) of
			{ok, _} -> ok;
			{error, conflict, _, _} -> ejabberd_auth:set_password(U, H, P);
			Other -> Other
		end} || {U, P} <- [$list]],
	[F || {_, E} = F <- R, E =/= ok]."
r=$(printf '%s\n' "$expr" | HOME=/var/lib/ejabberd erl_call -address "127.0.0.1:$port" -timeout 600 -e)
if [ "$r" != "{ok, []}" ]; then
	echo "register on $domain: $r" >&2
	exit 1
fi
for user in "${users[@]}"; do
	echo "registered $user@$domain"
done
