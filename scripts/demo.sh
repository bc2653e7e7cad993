#!/usr/bin/env bash
# make demo: Pebble + pebble-challtestsrv + HAProxy (haproxy-examples/) + the
# agent on loopback; one HTTPS request for demo.test, then HAProxy serves the
# certificate Pebble issued for it. Everything started here is stopped at exit.
set -u
cd "$(dirname "$0")/.."
source tests/integration/lib.sh
it_init
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; for f in "$IT_DIR"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }

say "starting pebble-challtestsrv (DNS: every name -> 127.0.0.1) and Pebble (ACME CA)"
SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_challtestsrv || die "pebble-challtestsrv did not start"
start_pebble "$HAP_HTTP" || die "pebble did not start"
echo "Pebble directory: $PEBBLE_DIR_URL"

agent_config
say "starting acme-spoa (SPOA :$SPOA_PORT, admin :$ADMIN_PORT, storage $IT_DIR/store)"
start_agent || die "the agent did not start"
grep -E 'ready:' "$IT_DIR/agent.log" | tail -1

say "starting HAProxy with haproxy-examples/haproxy.cfg (http :$HAP_HTTP, https :$HAP_HTTPS)"
start_haproxy || die "haproxy did not start"
wait_for 10 agent_up_in_haproxy || die "HAProxy does not see the agent"
echo "HAProxy's spop-check sees the agent UP"

say "first HTTPS request for demo.test: HAProxy serves its default certificate"
https_get demo.test
served_cert demo.test

say "the agent heard the SNI over SPOE and orders a certificate from Pebble"
t0=$(date +%s.%N)
wait_for 60 served_by_pebble demo.test || die "demo.test was not issued within 60 s"
t1=$(date +%s.%N)
printf 'served after %.2f s\n' "$(echo "$t1 - $t0" | bc 2>/dev/null || python3 -c "print($t1-$t0)")"
grep -E 'info: .*host=demo.test' "$IT_DIR/agent.log" | sed 's/^/  agent: /' | head -8

say "HAProxy now serves the Pebble certificate for demo.test (no reload)"
echo | openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername demo.test 2>/dev/null |
	openssl x509 -noout -subject -issuer -dates
curl -s --resolve "demo.test:$HAP_HTTPS:127.0.0.1" -k "https://demo.test:$HAP_HTTPS/"

say "GET /acme/certificates"
curl -s "http://127.0.0.1:$ADMIN_PORT/acme/certificates" | python3 -m json.tool

say "done; stopping everything the demo started"
