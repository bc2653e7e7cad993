#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A node that starts while its store is away (issue 19, "Start while the store
# is away"): STORE=redis (default) or consul (test_start_away_consul.sh).
# Node 1 runs with the real store; node 2 reaches the same store through a
# loopback TCP relay that is not listening when node 2 starts (connection
# refused, as from a store that is down), so node 1 can issue meanwhile. The
# relay is this script's, named as such; the store and both nodes are real.
# Node 2 must stay up all along, answer SNI at once (nothing held, nothing
# ordered), say so in /healthz and /metrics, then read the store when it
# answers and serve the name node 1 issued meanwhile.
set -u
source "$(dirname "$0")/lib.sh"
it_init
AWAY_S=${AWAY_S:-10}	# the store is away this long after node 2 started

store_start; rc=$?
if [ $rc = 2 ]; then echo "skip - no $STORE server here"; it_summary; exit 0; fi
[ $rc = 0 ] || { not_ok "$STORE starts"; it_summary; exit 1; }
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
start_node 1 || { not_ok "node 1 starts"; it_summary; exit 1; }

# relay LISTEN_PORT TARGET_PORT: a byte relay on 127.0.0.1 (the test's own).
relay() {
	python3 - "$1" "$2" >>"$IT_DIR/relay.log" 2>&1 <<'PY' &
import asyncio, sys
lp, tp = int(sys.argv[1]), int(sys.argv[2])
async def pipe(r, w):
    try:
        while True:
            d = await r.read(65536)
            if not d:
                break
            w.write(d)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def handle(r, w):
    try:
        tr, tw = await asyncio.open_connection("127.0.0.1", tp)
    except Exception:
        w.close()
        return
    await asyncio.gather(pipe(r, tw), pipe(tr, w))
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", lp)
    await s.serve_forever()
asyncio.run(main())
PY
	RELAY_PID=$!
	IT_PIDS+=($RELAY_PID)
}

# node 2: the store's address is the relay's port, closed for now
RELAY_PORT=$(free_port)
case $STORE in
consul) STORE_PORT=$CONSUL_PORT; CONSUL_PORT=$RELAY_PORT ;;
*) STORE_PORT=$REDIS_PORT; REDIS_PORT=$RELAY_PORT ;;
esac
t0=$(date +%s)
IT_HOLD_TIMEOUT=8 start_node 2 || { not_ok "node 2 starts without its store"; it_summary; exit 1; }
case $STORE in consul) CONSUL_PORT=$STORE_PORT ;; *) REDIS_PORT=$STORE_PORT ;; esac
N2PID=${N2[PID]}
check "node 2 started and serves SPOE with $STORE away (HAProxy sees it UP)" agent_up_in_haproxy
check "node 2 logged that it started without its store" \
	grep -q "storage=$IT_STORAGE not reached at start: .*starting without it" "$IT_DIR/agent2.log"

# --- meanwhile: node 1 issues a name ---------------------------------------
use_node 1
r=$(admin POST /acme -d host=meanwhile.test)
check "node 1 issues meanwhile.test while node 2's store is away ($r)" grep -q '^201' <<<"$r"

# --- node 2 while away ----------------------------------------------------------
use_node 2
body=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")
check "node 2 /healthz: 503 naming storage ($body)" \
	bash -c '[ "${1##* }" = 503 ] && grep -q "\"storage\":\"storage not reached since start" <<<"$1"' _ "$body"
check "node 2 /metrics: acme_spoa_storage_up 0" test "$(metric acme_spoa_storage_up)" = 0
check "node 2 /metrics: acme_spoa_storage_ready 0" test "$(metric acme_spoa_storage_ready)" = 0
ts=$(date +%s%N)
https_get meanwhile.test
te=$(date +%s%N)
echo "# node 2 answered the ClientHello for meanwhile.test in $(( (te - ts) / 1000000 )) ms (hold_timeout 8 s)"
check "node 2 answers the SNI at once: nothing held for a name it cannot issue" \
	test $(( (te - ts) / 1000000 )) -lt 2000
check "node 2 serves its default certificate for it meanwhile" \
	sh -c "$(declare -f served_cert); HAP_HTTPS=$HAP_HTTPS; served_cert meanwhile.test | grep -q haproxy-default"
check "node 2 ordered nothing" test "$(metric acme_spoa_orders_started_total)" = 0
refused=$(metric 'acme_spoa_on_demand_refused_total{reason="storage"}')
check "node 2 counts the refusal (reason=storage: $refused)" test "${refused:-0}" -ge 1
r=$(admin POST /acme -d host=admin.test)
check "node 2 POST /acme: 503 while the store is away ($r)" grep -q '^503 .*storage not reached' <<<"$r"

# --- the store comes back ------------------------------------------------------
while [ $(( $(date +%s) - t0 )) -lt "$AWAY_S" ]; do sleep 0.5; done
check "node 2 still running after ${AWAY_S} s without its store" kill -0 "$N2PID"
relay "$RELAY_PORT" "$STORE_PORT"
t1=$(date +%s%N)
healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")" = 200 ]; }
check "node 2 reaches $STORE by itself (/healthz 200)" wait_for 15 healthy
t2=$(date +%s%N)
echo "# node 2 healthy $(( (t2 - t1) / 1000000 )) ms after $STORE answered"
check "node 2 /metrics: acme_spoa_storage_up 1, acme_spoa_storage_ready 1" \
	test "$(metric acme_spoa_storage_up) $(metric acme_spoa_storage_ready)" = "1 1"
check "node 2 serves meanwhile.test, issued by node 1 while it was away" wait_for 5 served_by_pebble meanwhile.test
check "node 2 wrote it to its cert_dir" test -s "${N2[CERTS]}/meanwhile.test.pem"
check "node 2 uses the fleet's account (one key in $STORE)" test "$(store_tool list accounts/ | wc -l)" = 1
check "node 2 is the same process all along (pid $N2PID)" kill -0 "$N2PID"
check "node 2 never exited: one start logged" test "$(grep -c 'acme-spoa .* started' "$IT_DIR/agent2.log")" = 1
check "node 2 took meanwhile.test from the store: it ordered nothing" \
	test "$(metric acme_spoa_orders_started_total)" = 0

# --- and follows the change feed from then on -----------------------------------
use_node 1
r=$(admin POST /acme -d host=after.test)
check "node 1 issues after.test ($r)" grep -q '^201' <<<"$r"
use_node 2
check "node 2 serves after.test within 2 s" wait_for 2 served_by_pebble after.test
grep -E 'issuance started|renewal started' "$IT_DIR/agent2.log" | sed 's/^/# node 2: /'

check "node 2 stops cleanly" agent_stops_cleanly
use_node 1
check "node 1 stops cleanly" agent_stops_cleanly
it_summary
