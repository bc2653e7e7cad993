#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The ask endpoint down or slow (SPEC §3 ask_url), through haproxy-examples/
# with preload on_demand and held ClientHellos:
#   - stored names never depend on ask_url: with the endpoint down (a closed
#     port) or slow (a server that accepts and never answers), every stored
#     name is served, pushed on its first SNI, its first handshake verified
#     at once, even while 30 new names wait for the slow endpoint;
#   - a new name is refused (default certificate, no order), after the
#     endpoint's timeout when it is slow;
#   - at most one ask request per name per backoff period: 6 SNIs of one new
#     name reach the slow endpoint once; with it down, one refusal by ask_url,
#     the rest by the backoff.
set -u
source "$(dirname "$0")/lib.sh"
it_init
TOOLS=$IT_BUILD/tools
export IT_HOLD_TIMEOUT=8
export IT_HAPROXY_EXTRA='"preload": "on_demand"'

# handshake HOST: one TLS handshake through HAProxy; prints "<verified 0|1> <ms>".
handshake() {
	python3 - "$HAP_HTTPS" "$1" "$IT_DIR/roots.pem" <<'PY'
import socket, ssl, sys, time
port, host, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
t0 = time.monotonic()
s = socket.create_connection(("127.0.0.1", port), timeout=20)
ok = 1
try:
    ctx.wrap_socket(s, server_hostname=host).close()
except ssl.SSLCertVerificationError:
    ok = 0
print(ok, "%.0f" % ((time.monotonic() - t0) * 1000))
PY
}

# stored_served N: the first handshake of stored host<N>.stored.test verifies
# within 1 s (pushed on its first SNI; nothing asked).
stored_served() {
	local v ms
	read -r v ms < <(handshake "host$1.stored.test")
	echo "# host$1.stored.test first handshake: verified $v in $ms ms"
	[ "$v" = 1 ] && [ "$ms" -lt 1000 ]
}

# set_ask URL: ask_url applied by SIGHUP.
set_ask() {
	local n
	n=$(grep -c 'config reloaded' "$IT_DIR/agent.log")
	python3 - "$AGENT_CONF" "$1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["ask_url"] = sys.argv[2]
json.dump(c, open(sys.argv[1], "w"))
PY
	kill -HUP "$AGENT_PID"
	reloaded() { [ "$(grep -c 'config reloaded' "$IT_DIR/agent.log")" -gt "$n" ]; }
	wait_for 5 reloaded
}

ask_refused() { metric 'acme_spoa_on_demand_refused_total{reason="ask_url"}'; }
backoff_refused() { metric 'acme_spoa_on_demand_refused_total{reason="backoff"}'; }
orders() { metric acme_spoa_orders_started_total; }

SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
start_pebble "$HAP_HTTP" || { not_ok "pebble starts"; it_summary; exit 1; }
pebble_roots || { not_ok "Pebble's roots are read"; it_summary; exit 1; }
"$TOOLS/gen_certs" --store "file:$IT_DIR/store" --count 10 --domain stored.test \
	--ca-out "$IT_DIR/stored-ca.pem" >"$IT_DIR/gen.log" 2>&1
check "gen_certs stores 10 certificates" test $? = 0
cat "$IT_DIR/pebble-roots.pem" "$IT_DIR/stored-ca.pem" > "$IT_DIR/roots.pem"

# --- down: a closed port ------------------------------------------------------
DOWN_PORT=$(free_port)
agent_config "\"ask_url\": \"http://127.0.0.1:$DOWN_PORT/ask\""
start_agent || { not_ok "agent starts"; it_summary; exit 1; }
start_haproxy || { not_ok "HAProxy starts"; it_summary; exit 1; }
check "HAProxy's spop-check sees the agent UP" wait_for 10 agent_up_in_haproxy

check "ask endpoint down: stored host1.stored.test is served on its first handshake" stored_served 1
check "ask endpoint down: stored host2.stored.test too" stored_served 2
a0=$(ask_refused); b0=$(backoff_refused); o0=$(orders)
read -r v ms < <(handshake down1.test)
echo "# ask endpoint down: new down1.test first handshake verified $v in $ms ms"
check "ask endpoint down: a new name gets the default certificate, at once ($ms ms < 2000)" \
	test "$v" = 0 -a "$ms" -lt 2000
for i in 1 2 3 4 5; do handshake down1.test >/dev/null; done
check "ask endpoint down: 6 SNIs of down1.test, one refusal by ask_url ($a0 -> $(ask_refused))" \
	delta_is 1 "$a0" "$(ask_refused)"
check "... the other 5 by its backoff, no new request ($b0 -> $(backoff_refused))" \
	delta_is 5 "$b0" "$(backoff_refused)"
check "... and no order ($o0 -> $(orders))" delta_is 0 "$o0" "$(orders)"

# --- slow: accepts, never answers --------------------------------------------
SLOW_PORT=$(free_port)
python3 - "$SLOW_PORT" "$IT_DIR/slow-ask.requests" >"$IT_DIR/slow-ask.log" 2>&1 <<'PY' &
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(256)
held = []
def serve(c):
    buf = b""
    while b"\r\n" not in buf:
        d = c.recv(4096)
        if not d:
            return
        buf += d
    with open(sys.argv[2], "a") as f:
        f.write(buf.split(b"\r\n")[0].decode() + "\n")
    held.append(c)		# never answered, never closed
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
IT_PIDS+=($!)
wait_for 5 port_open "$SLOW_PORT"
: > "$IT_DIR/slow-ask.requests"
set_ask "http://127.0.0.1:$SLOW_PORT/ask"
asked() { grep -c "domain=$1 " "$IT_DIR/slow-ask.requests"; }

# 30 new names wait for the slow endpoint (they hold 20 order slots and queue)
waiters=()
for i in $(seq 1 30); do handshake "wait$i.test" >/dev/null & waiters+=($!); done
wait_asked() { [ "$(grep -c 'domain=wait' "$IT_DIR/slow-ask.requests")" -ge 20 ]; }
check "ask endpoint slow: 20 new names' requests are in flight at once" wait_for 20 wait_asked
check "ask endpoint slow: stored host3.stored.test is served on its first handshake meanwhile" stored_served 3
check "ask endpoint slow: stored host4.stored.test too" stored_served 4
a0=$(ask_refused); o0=$(orders)
t0=$(date +%s%N)
read -r v ms < <(handshake slow1.test)
echo "# ask endpoint slow: new slow1.test first handshake verified $v in $ms ms"
check "ask endpoint slow: a new name gets the default certificate after hold_timeout" test "$v" = 0
for i in 1 2 3 4 5; do handshake slow1.test >/dev/null; sleep 1; done
refused_after_timeout() { [ "$(ask_refused)" -gt "$a0" ]; }
check "ask endpoint slow: slow1.test is refused once the request times out" wait_for 15 refused_after_timeout
secs=$(( ($(date +%s%N) - t0) / 1000000000 ))
check "... after the endpoint's timeout (refused ${secs} s after the first SNI, >= 9 s)" test "$secs" -ge 9
for i in 1 2 3; do handshake slow1.test >/dev/null; done
check "... 9 SNIs of slow1.test made one ask request ($(asked slow1.test))" test "$(asked slow1.test)" = 1
check "... and no order ($o0 -> $(orders))" delta_is 0 "$o0" "$(orders)"
wait "${waiters[@]}"
check "agent stops cleanly" agent_stops_cleanly
it_summary
