#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Redis for a fleet that outgrows one plain endpoint (issue 12, SPEC §3
# storage_config.redis): (a) TLS against a real `redis-server --tls-port`
# (--port 0, client certificates required) with a test CA: two nodes share
# challenges and certificates over it; a wrong server name and an untrusted
# server certificate are refused at start with a clear error; node 2 names
# the server "localhost" (resolved on a worker thread), and a name that does
# not resolve is refused at start with a clear error. (b) Sentinel:
# one master, one replica, three real redis-sentinel on loopback; two nodes;
# the master is killed -9 during a burst of 10 on-demand orders: every name
# ends up served on both nodes, one order per name, /healthz back to 200
# within 15 s of the promotion.
set -u
source "$(dirname "$0")/lib.sh"
it_init
IT_STORAGE=redis

command -v redis-sentinel >/dev/null || { not_ok "redis-sentinel installed (scripts/deps.sh)"; it_summary; exit 1; }
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }

stop_node() {
	use_node "$1"
	stop_pid "$AGENT_PID" >/dev/null; stop_pid "$HAP_PID" >/dev/null
}
healthz() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$ADMIN_PORT/healthz"; }
healthy() { [ "$(healthz)" = 200 ]; }
orders() { use_node "$1"; metric acme_spoa_orders_started_total; }

# refused_at_start NAME: an agent (config $IT_DIR/agent$NAME.json) does not
# use the server: within 10 s it either exits non-zero, or (a start that
# cannot use its store stays up, memory only: issue 19) it logs that the
# store was not reached and its /healthz answers 503. One that is running
# and healthy, or running without saying so, was not refused.
refused_at_start() {
	local conf=$IT_DIR/agent$1.json log=$IT_DIR/agent$1.log pid rc code
	http_proxy= "$IT_BIN" -c "$conf" -v >>"$log" 2>&1 &
	pid=$!
	IT_PIDS+=($pid)
	not_reached() { grep -q 'not reached at start' "$log"; }
	if ! wait_for 10 eval "pid_ended $pid || not_reached"; then
		echo "# still running 10 s after start without saying the store was not reached$(healthy && echo ', /healthz 200')"
		stop_pid "$pid" >/dev/null
		return 1
	fi
	if ! pid_ended "$pid"; then
		wait_for 5 eval '[ "$(healthz)" != 000 ]'
		code=$(healthz)
		stop_pid "$pid" >/dev/null
		[ "$code" = 503 ] || { echo "# store not reached, but /healthz answered '$code', not 503"; return 1; }
		return 0
	fi
	wait "$pid"; rc=$?
	[ "$rc" -ne 0 ] || { echo "# exited with status 0"; return 1; }
}

# ============================ (a) TLS =======================================
start_redis_tls || { not_ok "redis-server --tls-port starts"; it_summary; exit 1; }
check "plain TCP is off on the TLS redis (--port 0)" sh -c "! redis-cli -p $REDIS_PORT ping 2>/dev/null | grep -q PONG"
start_node 1 || { not_ok "TLS: node 1 starts"; it_summary; exit 1; }
REDIS_HOST=localhost start_node 2 || { not_ok "TLS: node 2 starts"; it_summary; exit 1; }
use_node 1
both_healthy() { use_node 1; healthy && use_node 2 && healthy; }
check "TLS: both nodes connected to redis over TLS with a client certificate (/healthz 200)" \
	wait_for 10 both_healthy
check "TLS: node 2 reached redis by the name localhost" \
	grep -q "storage redis: channel=it:certs subscribed on localhost:$REDIS_PORT" "$IT_DIR/agent2.log"
use_node 1

redis_tls_tool put challenges/tok-tls-0123456789abcdef tok-tls-0123456789abcdef.by-node-2
body=$(curl -s -H 'Host: x.test' "http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/tok-tls-0123456789abcdef")
check "TLS: node 1 answers a challenge only redis holds ($body)" test "$body" = tok-tls-0123456789abcdef.by-node-2

use_node 2
https_get tls.test
check "TLS: node 2 orders tls.test (validated through node 1) and serves it" wait_for 30 served_by_pebble tls.test
use_node 1
check "TLS: node 1 serves tls.test within a second (pub/sub over TLS)" wait_for 1 served_by_pebble tls.test
check "TLS: the certificate is in redis" test "$(redis_tls_tool list certs/)" = certs/tls.test

# the TLS redis goes away and comes back (empty): the nodes reconnect by themselves
stop_pid "$REDIS_PID" >/dev/null
check "TLS: redis down: /healthz says 503" wait_for 5 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$ADMIN_PORT/healthz)\" = 503 ]"
restart_redis_tls || not_ok "TLS: redis restarts"
check "TLS: redis back: the node reconnects over TLS by itself (/healthz 200)" wait_for 15 healthy
use_node 2
r=$(admin POST /acme -d host=tls-after.test)
check "TLS: after the restart node 2 issues tls-after.test ($r)" grep -q '^201' <<<"$r"
use_node 1
check "TLS: and node 1 serves it within 2 s (pub/sub resubscribed over TLS)" wait_for 2 served_by_pebble tls-after.test

# refused at start: a name the certificate does not carry, a CA that did not sign it
NODE=wrongname; ADMIN_PORT=$(free_port); SPOA_PORT=$(free_port)
REDIS_TLS_NAME=wrong.test agent_config
check "TLS: a wrong server_name is refused at start" refused_at_start wrongname
check "TLS: ... with a clear error (hostname mismatch)" \
	grep -qE 'error: .*TLS: server certificate refused: hostname mismatch' "$IT_DIR/agentwrongname.log"
grep -m1 -E 'TLS: server certificate refused' "$IT_DIR/agentwrongname.log" | sed 's/^/#   /'

NODE=untrusted; ADMIN_PORT=$(free_port); SPOA_PORT=$(free_port)
REDIS_TLS_CA=$IT_DIR/pebble-ca.pem agent_config
check "TLS: a server certificate of an untrusted CA is refused at start" refused_at_start untrusted
check "TLS: ... with a clear error (the chain does not verify)" \
	grep -qE 'error: .*TLS: server certificate refused: (unable to get local issuer certificate|self-signed certificate in certificate chain)' "$IT_DIR/agentuntrusted.log"
grep -m1 -E 'TLS: server certificate refused' "$IT_DIR/agentuntrusted.log" | sed 's/^/#   /'

# a name that does not resolve: refused at start with a clear error
NODE=noname; ADMIN_PORT=$(free_port); SPOA_PORT=$(free_port)
REDIS_HOST=no-such-host.invalid agent_config
check "TLS: an unresolvable redis host is refused at start" refused_at_start noname
check "TLS: ... with a clear error (cannot resolve)" \
	grep -qE 'storage=redis not reached at start: storage redis: .*no-such-host.invalid:[0-9]+: cannot resolve no-such-host.invalid: ' "$IT_DIR/agentnoname.log"
grep -m1 'cannot resolve' "$IT_DIR/agentnoname.log" | sed 's/^/#   /'

for n in 1 2; do
	use_node $n
	check "TLS: node $n exits cleanly on SIGTERM" agent_stops_cleanly
	stop_pid "$HAP_PID" >/dev/null
done
stop_pid "$REDIS_PID" >/dev/null
unset REDIS_TLS REDIS_PORT

# ============================ (b) Sentinel ==================================
NODE=; unset REDIS_TLS_NAME REDIS_TLS_CA
R_MASTER=$(free_port); R_REPLICA=$(free_port)
# the agents log in as an ACL user; the sentinels ask for a password of their own
ACL_USER=(agent on '>Agent-pw' '~*' '&*' '+@all')
redis-server --bind 127.0.0.1 --port "$R_MASTER" --save '' --appendonly no --dir "$IT_DIR" \
	--user "${ACL_USER[@]}" >"$IT_DIR/redis-master.log" 2>&1 &
MASTER_PID=$!; IT_PIDS+=($MASTER_PID)
redis-server --bind 127.0.0.1 --port "$R_REPLICA" --save '' --appendonly no --dir "$IT_DIR" \
	--user "${ACL_USER[@]}" --replicaof 127.0.0.1 "$R_MASTER" >"$IT_DIR/redis-replica.log" 2>&1 &
IT_PIDS+=($!)
SENTINELS=()
for i in 1 2 3; do
	p=$(free_port); SENTINELS+=("$p")
	cat > "$IT_DIR/sentinel$i.conf" <<CONF
port $p
bind 127.0.0.1
dir $IT_DIR
sentinel monitor mymaster 127.0.0.1 $R_MASTER 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 3000
sentinel parallel-syncs mymaster 1
requirepass Sentinel-pw
CONF
	redis-sentinel "$IT_DIR/sentinel$i.conf" >"$IT_DIR/sentinel$i.log" 2>&1 &
	IT_PIDS+=($!)
done
replica_synced() { redis-cli -p "$R_REPLICA" info replication | grep -q 'master_link_status:up'; }
# every sentinel knows the replica and the two other sentinels: a failover can be voted
scli() { local p=$1; shift; redis-cli -p "$p" --user default --pass Sentinel-pw --no-auth-warning "$@"; }
sentinels_ready() {
	local p
	for p in "${SENTINELS[@]}"; do
		scli "$p" sentinel master mymaster | tr -d '\r' | grep -A1 -x 'num-other-sentinels' | tail -1 | grep -qx 2 || return 1
		scli "$p" sentinel master mymaster | tr -d '\r' | grep -A1 -x 'num-slaves' | tail -1 | grep -qx 1 || return 1
	done
}
sentinel_up() { wait_for 20 replica_synced && wait_for 20 sentinels_ready; }
check "sentinel: master, replica in sync, three sentinels that know each other" sentinel_up
master_port() { scli "${SENTINELS[0]}" sentinel get-master-addr-by-name mymaster | sed -n 2p; }

unset REDIS_PORT
REDIS_JSON="{ \"namespace\": \"it\", \"username\": \"agent\", \"password\": \"Agent-pw\",
	\"sentinel_password\": \"Sentinel-pw\", \"sentinel_master\": \"mymaster\", \"sentinel_nodes\": [
	{ \"host\": \"localhost\", \"port\": ${SENTINELS[0]} }, { \"host\": \"127.0.0.1\", \"port\": ${SENTINELS[1]} },
	\"127.0.0.1:${SENTINELS[2]}\" ] }"
start_node 1 || { not_ok "sentinel: node 1 starts"; it_summary; exit 1; }
start_node 2 || { not_ok "sentinel: node 2 starts"; it_summary; exit 1; }
check "sentinel: AUTH is required on the sentinels" sh -c "redis-cli -p ${SENTINELS[0]} sentinel masters 2>&1 | grep -q NOAUTH"
check "sentinel: node 1 found the master through the sentinels" \
	grep -q "sentinel: master mymaster is 127.0.0.1:$R_MASTER" "$IT_DIR/agent1.log"
check "sentinel: ... the first one named localhost (resolved on a worker thread)" wait_for 5 \
	grep -q "sentinel localhost:${SENTINELS[0]}: watching +switch-master" "$IT_DIR/agent1.log"

use_node 2
https_get pre.test
check "sentinel: node 2 orders pre.test through the master" wait_for 30 served_by_pebble pre.test
use_node 1
check "sentinel: node 1 serves pre.test within a second (pub/sub on the master)" wait_for 1 served_by_pebble pre.test

b1=$(orders 1); b2=$(orders 2)
NAMES=()
for i in $(seq 10); do NAMES+=("burst$i.test"); done
# the burst: each name asked on both nodes at once; the master dies under it
for h in "${NAMES[@]}"; do
	use_node 1; https_get "$h" & use_node 2; https_get "$h" &
	sleep 0.05
done
sleep 0.1
done1=$(use_node 1; metric acme_spoa_orders_succeeded_total); done2=$(use_node 2; metric acme_spoa_orders_succeeded_total)
e1=$(use_node 1; metric acme_spoa_storage_errors_total); e2=$(use_node 2; metric acme_spoa_storage_errors_total)
kill -9 "$MASTER_PID"
t_kill=$(date +%s%N)
# (both counters read: an unread one would make any sum pass)
burst_running() { is_count "$done1" "$done2" && [ $((done1 + done2 - 1)) -lt 10 ]; }
echo "# master 127.0.0.1:$R_MASTER killed -9 during the burst, $((${done1:-0} + ${done2:-0} - 1)) of 10 names issued by then (counters read: '$done1' '$done2')"
check "sentinel: the master died with names of the burst still being ordered" burst_running
promoted() { [ "$(master_port)" = "$R_REPLICA" ]; }
check "sentinel: the replica is promoted" wait_for 20 promoted
t_promo=$(date +%s%N)
echo "# promotion seen $(( (t_promo - t_kill) / 1000000 )) ms after the kill"
wait_for 15 both_healthy; rc=$?
t_ok=$(date +%s%N)
check "sentinel: /healthz 200 on both nodes within 15 s of the promotion ($(( (t_ok - t_promo) / 1000000 )) ms)" test $rc = 0

# every name ends up served on both nodes
served_both() {
	local h=$1
	use_node 1; served_by_pebble "$h" || return 1
	use_node 2; served_by_pebble "$h"
}
missing=()
for h in "${NAMES[@]}"; do wait_for 40 served_both "$h" || missing+=("$h"); done
check "sentinel: every name of the burst served on both nodes (missing: ${missing[*]:-none})" test ${#missing[@]} = 0
a1=$(orders 1); a2=$(orders 2)
ten_orders() { is_count "$b1" "$a1" "$b2" "$a2" && [ $((a1 - b1 + a2 - b2)) -eq 10 ]; }
check "sentinel: 10 orders for 10 names in the fleet (node1 $b1->$a1, node2 $b2->$a2)" ten_orders
dups=""
for h in "${NAMES[@]}"; do
	n=$(cat "$IT_DIR/agent1.log" "$IT_DIR/agent2.log" | grep -ac "host=$h issuance started")
	[ "$n" = 1 ] || dups+=" $h:$n"
done
check "sentinel: no name ordered twice (${dups:-each once})" test -z "$dups"
n=$(cat "$IT_DIR/agent1.log" "$IT_DIR/agent2.log" | grep -acE 'host=burst[0-9]+\.test issuance failed')
check "sentinel: no issuance of the burst failed over the failover ($n failed)" test "$n" = 0
echo "# storage operations that failed over the failover: node1 $e1->$(use_node 1; metric acme_spoa_storage_errors_total), node2 $e2->$(use_node 2; metric acme_spoa_storage_errors_total)"
n=$(grep -ac 'switched to 127.0.0.1:'"$R_REPLICA" "$IT_DIR/agent1.log")
echo "# node 1 saw +switch-master $n time(s); failover lines:"
grep -hE 'storage redis' "$IT_DIR/agent1.log" | grep -vE 'debug' | tail -8 | sed 's/^/#   /'
check "sentinel: node 1 now uses the promoted master" \
	grep -q "master mymaster is now 127.0.0.1:$R_REPLICA" "$IT_DIR/agent1.log"
redis-cli -p "$R_REPLICA" set it:challenges/tok-after-0123456789abcdef "tok-after-0123456789abcdef.ok" >/dev/null
use_node 2
body=$(curl -s -H 'Host: x.test' "http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/tok-after-0123456789abcdef")
check "sentinel: node 2 reads the new master ($body)" test "$body" = tok-after-0123456789abcdef.ok

# the old master comes back as a replica; a manual failover makes it the
# master again: the nodes follow (+switch-master; their connections to the
# demoted one are killed by the sentinels) and keep issuing
redis-server --bind 127.0.0.1 --port "$R_MASTER" --save '' --appendonly no --dir "$IT_DIR" \
	--user "${ACL_USER[@]}" --replicaof 127.0.0.1 "$R_REPLICA" >>"$IT_DIR/redis-master.log" 2>&1 &
IT_PIDS+=($!)
old_back() { redis-cli -p "$R_MASTER" info replication | grep -q 'master_link_status:up' &&
	scli "${SENTINELS[0]}" sentinel replicas mymaster | tr -d '\r' | grep -A1 -x flags | tail -1 | grep -qx slave; }
check "sentinel: the old master is back as a replica" wait_for 20 old_back
scli "${SENTINELS[0]}" sentinel failover mymaster >/dev/null
back() { [ "$(master_port)" = "$R_MASTER" ]; }
check "sentinel: a manual failover makes it the master again" wait_for 20 back
use_node 1
check "sentinel: node 1 follows the switch back" wait_for 10 grep -q "master mymaster is now 127.0.0.1:$R_MASTER" "$IT_DIR/agent1.log"
r=$(admin POST /acme -d host=switched.test)
check "sentinel: node 1 issues switched.test on the new master ($r)" grep -q '^201' <<<"$r"
use_node 2
check "sentinel: node 2 serves it within 2 s" wait_for 2 served_by_pebble switched.test
check "sentinel: both nodes healthy" both_healthy

# the master turns replica under the nodes' feet (REPLICAOF, no sentinel
# involved, connections kept): writes answer -READONLY; the nodes ask the
# sentinels again, ROLE refuses the stale answer, operations wait; once it is
# a master again they go through
use_node 1
size1=$(stat -c %s "$IT_DIR/agent1.log")
redis-cli -p "$R_MASTER" replicaof 127.0.0.1 "$R_REPLICA" >/dev/null
admin POST /acme -d host=readonly.test > "$IT_DIR/ro.out" &
ro_pid=$!
sleep 1
redis-cli -p "$R_MASTER" replicaof no one >/dev/null
wait $ro_pid
r=$(cat "$IT_DIR/ro.out")
check "sentinel: an order started while the master was read-only completes ($r)" grep -q '^201' <<<"$r"
tail_log=$(tail -c +"$((size1 + 1))" "$IT_DIR/agent1.log")
check "sentinel: node 1 saw READONLY and asked the sentinels again" grep -q 'no longer the master (READONLY), asking the sentinels' <<<"$tail_log"
check "sentinel: ... and ROLE refused the stale answer" grep -q 'not a master (ROLE slave)' <<<"$tail_log"
grep -E 'READONLY|ROLE|connected' <<<"$tail_log" | head -4 | sed 's/^/#   /'

for n in 1 2; do
	use_node $n
	check "sentinel: node $n exits cleanly on SIGTERM" agent_stops_cleanly
done
it_summary
