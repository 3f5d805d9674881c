# Rendered by hardroot (module tls). Read by dehydrated after /etc/dehydrated/config.
CA="https://acme-v02.api.letsencrypt.org/directory"
CHALLENGETYPE="http-01"
WELLKNOWN="/var/lib/dehydrated/acme-challenges"
KEY_ALGO="secp384r1"
RENEW_DAYS="30"
PRIVATE_KEY_RENEW="yes"
CONTACT_EMAIL="hostmaster@example.org"
HOOK="/usr/lib/hardroot/dehydrated-hook"
