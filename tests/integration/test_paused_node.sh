#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A paused node must not undo a newer result (fencing), on two nodes sharing
# a real store (STORE=redis, the default, or consul; test_paused_node_consul.sh):
# node A (2) holds paused.test's issuance lock with its order running and is
# frozen (SIGSTOP) past the lease (lock_lease 4 s); node B (1) takes the lock
# over, orders and stores a certificate; A wakes (SIGCONT). Then:
#   - B's certificate and metadata are still what storage holds (A's writes
#     under its lost lease were refused by the store);
#   - A orders nothing more, even when asked again, and serves B's certificate;
#   - A wrote no failure backoff for the name.
# PAUSE_EXTRA=N keeps A frozen N seconds more (past its CA request timeout).
set -u
source "$(dirname "$0")/lib.sh"
it_init
LEASE=4

store_start; rc=$?
if [ $rc = 2 ]; then echo "skip - no $STORE server here"; it_summary; exit 0; fi
[ $rc = 0 ] || { not_ok "$STORE starts"; it_summary; exit 1; }
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
start_node 1 "\"lock_lease\": $LEASE" || { not_ok "node 1 starts"; it_summary; exit 1; }
start_node 2 "\"lock_lease\": $LEASE" || { not_ok "node 2 starts"; it_summary; exit 1; }
A_PID=${N2[PID]}
orders() { use_node "$1"; metric acme_spoa_orders_started_total; }
stored_sum() { store_tool get "$1" 2>/dev/null | sha256sum | cut -c1-16; }
stored_serial() { store_tool get certs/"$1" 2>/dev/null | openssl x509 -noout -serial 2>/dev/null | cut -d= -f2; }
# served_serial HOST: the serial of the certificate HAProxy (current node) serves for HOST.
served_serial() {
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername "$1" 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}
ok "two nodes share $STORE ($(store_spec)), lock_lease $LEASE s"

# --- A takes the lock, its order runs: frozen at once ------------------------
# (a tight poll of A's log; should A finish first on a slow machine, another
# name is tried: the scenario needs A frozen mid-order)
HOST=
for try in 1 2 3; do
	h=paused$try.test
	o_start=$(orders 2)
	use_node 2
	https_get "$h" & getpid=$!
	frozen=0
	for _ in $(seq 3000); do
		if grep -q "host=$h issuance started" "$IT_DIR/agent2.log"; then
			kill -STOP "$A_PID"; frozen=1; break
		fi
		sleep 0.002
	done
	wait "$getpid"
	[ "$frozen" = 1 ] || { kill -CONT "$A_PID"; continue; }
	if grep -q "host=$h order=.* certificate issued" "$IT_DIR/agent2.log" || [ -n "$(stored_serial "$h")" ]; then
		echo "# try $try: A finished $h before it was frozen; another name"
		kill -CONT "$A_PID"
		continue
	fi
	HOST=$h
	break
done
check "node A is frozen holding $HOST's issuance lock, its order running" test -n "$HOST"
[ -n "$HOST" ] || { it_summary; exit 1; }
a_before=$(grep -c "host=$HOST issuance started" "$IT_DIR/agent2.log")

# --- past the lease, B takes over and stores its certificate ----------------
sleep $((LEASE + 1))
use_node 1
https_get "$HOST"
check "node B orders $HOST once A's lease ran out, and serves it" wait_for 40 served_by_pebble "$HOST"
b_stored() { [ -n "$(stored_serial "$HOST")" ] && [ -n "$(store_tool get "meta/$HOST" 2>/dev/null)" ]; }
check "node B stored certs/$HOST and meta/$HOST" wait_for 10 b_stored
B_SERIAL=$(stored_serial "$HOST"); B_CERT=$(stored_sum "certs/$HOST"); B_META=$(stored_sum "meta/$HOST")
echo "# B's certificate serial $B_SERIAL"

# --- A wakes ------------------------------------------------------------------
# PAUSE_EXTRA seconds more (test_paused_node_timeout.sh): frozen past its CA
# request timeout too, A's order fails on waking, which must not count as
# the CA's or the name's failure either
sleep "${PAUSE_EXTRA:-0}"
kill -CONT "$A_PID"
a_gave_up() { grep -q "host=$HOST .*result is discarded" "$IT_DIR/agent2.log"; }
check "node A wakes, finds its lease lost and discards its result" wait_for 40 a_gave_up
grep -E "host=$HOST .*(lease|lock was lost)" "$IT_DIR/agent2.log" | sed 's/^/#   A: /' | head -3
sleep 2	# any write A would still make
EMPTY=$(printf '' | sha256sum | cut -c1-16)	# what stored_sum reads of an absent key
check "storage still holds B's certificate (serial $(stored_serial "$HOST"))" \
	test "$B_CERT" != "$EMPTY" -a "$(stored_sum "certs/$HOST")" = "$B_CERT"
check "storage still holds B's metadata record" test "$B_META" != "$EMPTY" -a "$(stored_sum "meta/$HOST")" = "$B_META"
no_backoff() { ! store_tool get "backoff/$HOST" >/dev/null 2>&1; }
check "A wrote no failure backoff for $HOST" no_backoff
use_node 2
a_serves_b() { [ "$(served_serial "$HOST")" = "$B_SERIAL" ]; }
check "node A serves B's certificate" wait_for 10 a_serves_b
o2=$(orders 2)
use_node 2
for i in 1 2 3; do https_get "$HOST"; done
sleep 1
check "node A orders nothing more, asked again ($o2 -> $(orders 2))" delta_is 0 "$o2" "$(orders 2)"
check "... its one order in all is the one it was frozen in ($o_start -> $(orders 2))" \
	delta_is 1 "$o_start" "$(orders 2)"
check "... one issuance of $HOST on A in all" \
	test "$(grep -c "host=$HOST issuance started" "$IT_DIR/agent2.log")" = "$a_before"
use_node 2
check "node A stops cleanly" agent_stops_cleanly
it_summary
