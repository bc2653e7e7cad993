#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The per-client budget of new names (SPEC §3
# on_demand.max_new_names_per_client), through haproxy-examples/ (which send
# `src`) against Pebble:
#   - 500 new names from one address (127.0.0.2) give at most 20 orders; the
#     rest are answered at once, counted as client_budget refusals;
#   - another client network (127.0.1.3) still gets its new name issued, and
#     its very first handshake verifies (held while it is issued);
#   - the same /24 (127.0.0.9) is refused too.
set -u
source "$(dirname "$0")/lib.sh"
it_init
LIMIT=20
N_SCAN=500
export IT_HOLD_TIMEOUT=8

# scan FIRST_IP N: N ClientHellos with new names scan1.test..scanN.test from
# source address FIRST_IP, 50 at a time; prints how many got the answer
# within 3 s, and the slowest in ms.
scan() {
	python3 - "$HAP_HTTPS" "$1" "$2" <<'PY'
import concurrent.futures, socket, ssl, sys, time
port, src, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def one(i):
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(src, 0))
    try:
        ctx.wrap_socket(s, server_hostname="scan%d.test" % i).close()
    except OSError:
        pass
    return time.monotonic() - t0
with concurrent.futures.ThreadPoolExecutor(50) as ex:
    times = list(ex.map(one, range(1, n + 1)))
print(sum(1 for t in times if t < 3), "%.0f" % (max(times) * 1000))
PY
}

# verifies_from SRC HOST: one handshake from source address SRC, the
# certificate and name verified against Pebble's roots.
verifies_from() {
	python3 - "$HAP_HTTPS" "$1" "$2" "$IT_DIR/pebble-roots.pem" <<'PY'
import socket, ssl, sys
port, src, host, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
s = socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(src, 0))
ctx.wrap_socket(s, server_hostname=host).close()
PY
}

orders() { metric acme_spoa_orders_started_total; }
refused() { metric 'acme_spoa_on_demand_refused_total{reason="client_budget"}'; }

SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
start_pebble "$HAP_HTTP" || { not_ok "pebble starts"; it_summary; exit 1; }
pebble_roots || { not_ok "Pebble's roots are read"; it_summary; exit 1; }
export IT_CLIENT_BUDGET=$LIMIT
agent_config "\"max_concurrent_orders\": 40"
start_agent || { not_ok "agent starts"; it_summary; exit 1; }
start_haproxy || { not_ok "HAProxy starts with the example config"; it_summary; exit 1; }
check "HAProxy's spop-check sees the agent UP" wait_for 10 agent_up_in_haproxy

o0=$(orders); r0=$(refused)
read -r fast slowest < <(scan 127.0.0.2 "$N_SCAN")
echo "# $N_SCAN new names from 127.0.0.2: $fast answered within 3 s, slowest $slowest ms"
settled() { [ "$(metric acme_spoa_orders_in_flight)" = 0 ] && [ "$(metric acme_spoa_orders_queued)" = 0 ]; }
wait_for 60 settled
o1=$(orders); r1=$(refused)
echo "# orders started $o0 -> $o1, client_budget refusals $r0 -> $r1"
at_most_limit() { is_count "$o0" "$o1" && [ $((o1 - o0)) -ge 1 ] && [ $((o1 - o0)) -le $LIMIT ]; }
check "$N_SCAN new names from one address start at most $LIMIT orders ($o0 -> $o1)" at_most_limit
check "the other $((N_SCAN - LIMIT)) are refused as client_budget ($r0 -> $r1)" \
	delta_is $((N_SCAN - LIMIT)) "$r0" "$r1"
check "the refused ClientHellos are answered at once (at least $((N_SCAN - LIMIT)) within 3 s: $fast)" \
	test "$fast" -ge $((N_SCAN - LIMIT))

check "another network's (127.0.1.3) new name: its first handshake verifies" \
	verifies_from 127.0.1.3 other.test
o2=$(orders)
check "... by an order of its own ($o1 -> $o2)" delta_is 1 "$o1" "$o2"
before=$(refused)
verifies_from 127.0.0.9 next.test 2>/dev/null
check "the scanner's /24 (127.0.0.9): a new name is refused as client_budget" \
	delta_is 1 "$before" "$(refused)"
check "... and starts no order" delta_is 0 "$o2" "$(orders)"
check "agent stops cleanly" agent_stops_cleanly
it_summary
