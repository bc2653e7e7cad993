#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# acme-spoa dns01 "exec" hook: publishes and removes the dns-01 TXT record
# with nsupdate (RFC 2136, bind9-dnsutils). acme-spoa runs it as
#     dns01-nsupdate.sh -- present|cleanup FQDN VALUE
# ("--" first: VALUE may start with '-'; FQDN is "_acme-challenge.<name>",
# VALUE the TXT text) and treats exit status 0 as done; anything it prints
# ends up in the error otherwise. The hook gets PATH, HOME, LANG, LC_ALL, TZ,
# TMPDIR and only the variables listed in dns01.exec_env, here:
#     "exec_env": ["NSUPDATE_SERVER", "NSUPDATE_PORT", "NSUPDATE_KEY",
#                  "NSUPDATE_TSIG", "NSUPDATE_ZONE", "NSUPDATE_TTL"]
# Configure it through the agent's environment (e.g. /etc/acme-spoa/env):
#   NSUPDATE_SERVER  the zone's primary server [127.0.0.1]
#   NSUPDATE_PORT    its port [53]
#   NSUPDATE_KEY     a TSIG key file as tsig-keygen writes it, or
#   NSUPDATE_TSIG    "hmac-sha256:keyname:base64secret" (visible in ps: prefer the file)
#   NSUPDATE_ZONE    the zone (else nsupdate finds it by SOA)
#   NSUPDATE_TTL     TTL of the record [60]
# Any other DNS provider works the same way: replace the nsupdate call by
# that provider's API (curl) and exit non-zero on failure.
set -eu

[ "${1:-}" = -- ] && shift
if [ $# -ne 3 ]; then
	echo "usage: $0 -- present|cleanup FQDN VALUE" >&2
	exit 2
fi
action=$1 fqdn=$2 value=$3
case "$action" in
present) line="update add $fqdn. ${NSUPDATE_TTL:-60} IN TXT \"$value\"" ;;
cleanup) line="update delete $fqdn. IN TXT \"$value\"" ;;
*) echo "unknown action \"$action\" (present or cleanup)" >&2; exit 2 ;;
esac

set --
[ -n "${NSUPDATE_KEY:-}" ] && set -- -k "$NSUPDATE_KEY"
[ -n "${NSUPDATE_TSIG:-}" ] && set -- -y "$NSUPDATE_TSIG"

{
	echo "server ${NSUPDATE_SERVER:-127.0.0.1} ${NSUPDATE_PORT:-53}"
	[ -n "${NSUPDATE_ZONE:-}" ] && echo "zone $NSUPDATE_ZONE"
	echo "$line"
	echo "send"
} | nsupdate -t 10 "$@"
