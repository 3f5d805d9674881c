#!/bin/bash
# In the guest: the test's XMPP accounts (host-prepare.sh made them), made in
# the running node through erl_call, as ejabberd's reload is: `ejabberdctl
# register` starts an Erlang VM per call (~13 s each under TCG). A known
# account (a second run on the same disk) gets this run's password.
#   register-accounts.sh ACCOUNTS     ("user password" a line; hex passwords)
set -euo pipefail
domain=$(hostname -d)
port=$(sed -n 's/^ERL_DIST_PORT=//p' /etc/ejabberd/ejabberdctl.cfg)
while read -r user password; do
	expr="U = <<\"$user\">>, H = <<\"$domain\">>, P = <<\"$password\">>,
		case ejabberd_admin:register(U, H, P) of
			{ok, _} -> ok;
			{error, conflict, _, _} -> ejabberd_auth:set_password(U, H, P);
			Other -> Other
		end."
	r=$(printf '%s\n' "$expr" | HOME=/var/lib/ejabberd erl_call -address "127.0.0.1:$port" -timeout 60 -e)
	if [ "$r" != "{ok, ok}" ]; then
		echo "register $user@$domain: $r" >&2
		exit 1
	fi
	echo "registered $user@$domain"
done <"$1"
