#!/bin/bash
# A test ACME CA (Debian's pebble) on a client host of the VM test.
#   pebble.sh run DIR ACME_IP SERVER_IPV4 SERVER_IPV6    (foreground: start_background)
#   pebble.sh ready DIR ACME_IP                           (waits, then saves the issuing root)
# pebble resolves every name through pebble-challtestsrv's mock DNS, which
# answers with the server's addresses: the domain and its subdomains are
# validated over http-01 against the VM's nginx, and nothing is looked up
# anywhere else. Both stay in the driver's process group, which it kills at
# the end of the test.
set -euo pipefail

run() {
	local dir=$1 ip=$2 v4=$3 v6=$4
	mkdir -p "$dir"
	rm -f "$dir/issuer-root.pem"
	make_tls_cert "$dir" "$ip"
	cat >"$dir/pebble.json" <<JSON
{"pebble": {"listenAddress": "$ip:14000", "managementListenAddress": "$ip:15000",
  "certificate": "$dir/pebble.pem", "privateKey": "$dir/pebble.key",
  "httpPort": 80, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
	pebble-challtestsrv -defaultIPv4 "$v4" -defaultIPv6 "$v6" \
		-dns01 "$ip:8053" -http01 "" -https01 "" -tlsalpn01 "" -management "$ip:8055" \
		</dev/null >"$dir/challtestsrv.log" 2>&1 &
	# No sleeping between validation attempts, and no random nonce rejections:
	# the test measures the server, not pebble's chaos settings. Valid
	# authorizations are always reused, as Let's Encrypt does for 30 days: the
	# renewal then costs an order and a download, not five http-01 rounds
	# (minutes under TCG); the first issuance still validates every name.
	PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=100 exec pebble -config "$dir/pebble.json" -dnsserver "$ip:8053"
}

# A throwaway CA for pebble's own HTTPS endpoint (the guest's curl trusts it).
make_tls_cert() {
	local dir=$1 ip=$2
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=hardroot-test-acme-ca -keyout "$dir/ca.key" -out "$dir/pebble-ca.pem" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=pebble \
		-keyout "$dir/pebble.key" -out "$dir/pebble.csr" 2>/dev/null
	printf 'subjectAltName=IP:%s\n' "$ip" >"$dir/ext"
	openssl x509 -req -in "$dir/pebble.csr" -CA "$dir/pebble-ca.pem" -CAkey "$dir/ca.key" \
		-CAcreateserial -days 1 -extfile "$dir/ext" -out "$dir/pebble.pem" 2>/dev/null
}

ready() {
	local dir=$1 ip=$2 i
	for i in $(seq 150); do
		if [ -f "$dir/pebble-ca.pem" ] &&
			curl -sf -o /dev/null --cacert "$dir/pebble-ca.pem" "https://$ip:14000/dir"; then
			# The root that signs issued certificates: clients verify the server with it.
			curl -sf --cacert "$dir/pebble-ca.pem" "https://$ip:15000/roots/0" >"$dir/issuer-root.pem"
			return 0
		fi
		sleep 0.1
	done
	echo "pebble did not answer on https://$ip:14000/dir within 15 s" >&2
	return 1
}

case "${1:-}" in
run) shift && run "$@" ;;
ready) shift && ready "$@" ;;
*)
	echo "usage: pebble.sh run DIR ACME_IP SERVER_IPV4 SERVER_IPV6 | ready DIR ACME_IP" >&2
	exit 2
	;;
esac
