#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make demo: Pebble + pebble-challtestsrv + HAProxy (haproxy-examples/) + the
# agent on loopback. The very first HTTPS request for demo.test is held while
# the agent orders its certificate from Pebble and pushes it into HAProxy, so
# it already verifies; then HAProxy keeps serving it, with no reload.
# Everything started here is stopped at exit.
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

IT_HOLD_TIMEOUT=8 agent_config
say "starting acme-spoa (SPOA :$SPOA_PORT, admin :$ADMIN_PORT, storage $IT_DIR/store)"
start_agent || die "the agent did not start"
grep -E 'ready:' "$IT_DIR/agent.log" | tail -1

say "starting HAProxy with haproxy-examples/haproxy.cfg (http :$HAP_HTTP, https :$HAP_HTTPS)"
start_haproxy || die "haproxy did not start"
wait_for 10 agent_up_in_haproxy || die "HAProxy does not see the agent"
echo "HAProxy's spop-check sees the agent UP"

pebble_roots || die "cannot read Pebble's roots"
say "first HTTPS request for demo.test, verified against Pebble's root (HAProxy holds the ClientHello while the agent orders and pushes the certificate)"
t0=$(date +%s.%N)
echo | openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername demo.test -verify_return_error \
	-verify_hostname demo.test -CAfile "$IT_DIR/pebble-roots.pem" >"$IT_DIR/first.out" 2>&1 ||
	die "the first handshake did not verify: $(grep -i verif "$IT_DIR/first.out" | head -3)"
t1=$(date +%s.%N)
printf 'verified; the handshake took %.2f s (ordered, validated and pushed meanwhile)\n' \
	"$(python3 -c "print($t1-$t0)")"
openssl x509 -noout -subject -issuer -dates <"$IT_DIR/first.out"
grep -E 'info: .*host=demo.test' "$IT_DIR/agent.log" | sed 's/^/  agent: /' | head -8

say "HAProxy keeps serving it (no reload); a plain HTTPS request"
curl -s --cacert "$IT_DIR/pebble-roots.pem" --resolve "demo.test:$HAP_HTTPS:127.0.0.1" \
	"https://demo.test:$HAP_HTTPS/" || die "curl with Pebble's root failed"

say "GET /acme/certificates"
curl -s "http://127.0.0.1:$ADMIN_PORT/acme/certificates" | python3 -m json.tool

say "done; stopping everything the demo started"
