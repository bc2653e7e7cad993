#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A fleet of two nodes (HAProxy + agent each) sharing one real store (STORE=
# redis, the default, or consul: lib.sh's store_* helpers; test_cluster_<store>.sh
# runs it on the others): any node answers any challenge, a certificate issued
# on one node reaches the other within a second, one order per name for the
# whole fleet, and the store going away stops nothing that HAProxy already
# serves. SPEC §1 flow 5.
set -u
source "$(dirname "$0")/lib.sh"
it_init

store_start; rc=$?
if [ $rc = 2 ]; then skip_peer "the fleet on $STORE: no $STORE server here"; it_summary; exit; fi
[ $rc = 0 ] || { not_ok "$STORE starts"; it_summary; exit 1; }
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }

start_node 1 || { not_ok "node 1 starts"; it_summary; exit 1; }
start_node 2 || { not_ok "node 2 starts"; it_summary; exit 1; }
orders() { use_node "$1"; metric acme_spoa_orders_started_total; }
ok "two nodes share $STORE ($(store_spec))"
two_members() { local n; for n in 1 2; do use_node $n; [ "$(metric acme_spoa_fleet_members)" = 2 ] || return 1; done; }
check "each node counts 2 live members (leases in $STORE, read every 7.5 s)" wait_for 10 two_members

# --- a challenge stored by one node is answered by the other ---------------
store_tool put challenges/tok-fleet-0123456789abcdef tok-fleet-0123456789abcdef.by-node-2
use_node 1
body=$(curl -s -H 'Host: x.test' "http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/tok-fleet-0123456789abcdef")
check "node 1 answers a challenge that only $STORE holds ($body)" test "$body" = tok-fleet-0123456789abcdef.by-node-2

# --- issued on node 2 (validated through node 1), served by both -----------
use_node 2
https_get fleet.test
check "node 2 orders fleet.test; the CA validates through node 1; node 2 serves it" wait_for 30 served_by_pebble fleet.test
t0=$(date +%s%N)
use_node 1
check "node 1 serves fleet.test within a second (pub/sub)" wait_for 1 served_by_pebble fleet.test
t1=$(date +%s%N)
echo "# reached node 1 $(( (t1 - t0) / 1000000 )) ms after node 2 served it"
check "node 1 wrote fleet.test.pem to its own cert_dir" test -s "${N1[CERTS]}/fleet.test.pem"

# --- both nodes asked for one new name at once: one order in the fleet ------
b1=$(orders 1); b2=$(orders 2)
for i in $(seq 10); do use_node 1; https_get both.test & use_node 2; https_get both.test & done
wait_both() { use_node 1; served_by_pebble both.test && use_node 2 && served_by_pebble both.test; }
check "both.test served by both nodes" wait_for 40 wait_both
a1=$(orders 1); a2=$(orders 2)
one_fleet_order() { is_count "$b1" "$a1" "$b2" "$a2" && [ $((a1 - b1 + a2 - b2)) -eq 1 ]; }
check "one order for the whole fleet (node1 $b1->$a1, node2 $b2->$a2)" one_fleet_order

# --- deleted on one node: removed from the other ---------------------------
use_node 2
r=$(admin DELETE /acme/certificates/both.test)
check "node 2 deletes both.test ($r)" grep -q '^200 ' <<<"$r"
use_node 1
gone() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/acme/certificates/both.test")" = 404 ]; }
check "node 1 drops both.test too (pub/sub)" wait_for 2 gone
sleep 2.5   # a node still waiting for the lock would retry within 2 s
n=$(cat "$IT_DIR/agent1.log" "$IT_DIR/agent2.log" | grep -ac 'host=both.test issuance started')
check "the node that waited took the other's certificate: one issuance in all ($n)" test "$n" = 1
check "node 1 no longer serves it" sh -c "$(declare -f served_cert); HAP_HTTPS=$HAP_HTTPS; served_cert both.test | grep -q haproxy-default"

use_node 1
check "the account key is shared: one key in $STORE" test "$(store_tool list accounts/ | wc -l)" = 1

# --- the store goes away ----------------------------------------------------
store_stop
use_node 1
check "$STORE down: HAProxy still serves fleet.test" served_by_pebble fleet.test
out=$("$IT_BUILD/tools/spop_client" "127.0.0.1:$SPOA_PORT" notify --count 200 --pipeline 8 \
	--message acme-sni --arg sni=str:fleet.test 2>&1)
check "$STORE down: the agent still answers SPOE ($out)" grep -q 'acks=200 errors=0' <<<"$out"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")
check "$STORE down: /healthz says 503" test "$code" = 503
store_restart || not_ok "$STORE restarts"
healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")" = 200 ]; }
check "$STORE back: the agent reconnects by itself (/healthz 200)" wait_for 15 healthy
# the restarted store is empty: a certificate issued now on node 2 still reaches node 1
use_node 2
r=$(admin POST /acme -d host=after.test)
check "after the $STORE restart node 2 issues after.test ($r)" grep -q '^201' <<<"$r"
use_node 1
check "and node 1 serves it within 2 s (pub/sub resubscribed)" wait_for 2 served_by_pebble after.test

for n in 1 2; do
	use_node $n
	check "node $n agent exits cleanly on SIGTERM (status 0 within 5 s, no error logged)" agent_stops_cleanly
done
it_summary
