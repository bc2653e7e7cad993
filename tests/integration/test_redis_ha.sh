#!/usr/bin/env bash
# Redis for a fleet that outgrows one plain endpoint (issue 12, SPEC §3
# storage_config.redis): (a) TLS against a real `redis-server --tls-port`
# (--port 0, client certificates required) with a test CA: two nodes share
# challenges and certificates over it; a wrong server name and an untrusted
# server certificate are refused at start with a clear error. (b) Sentinel:
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

# node N: HAProxy + agent with the current agent_config inputs; node 1 gets
# the CA's validations (Pebble's httpPort), so Pebble starts with it.
declare -A N1 N2
start_node() {
	local n=$1
	NODE=$n; unset HAP_HTTP HAP_HTTPS ADMIN_PORT; SPOA_PORT=$(free_port)
	haproxy_config "$SPOA_PORT"
	if [ "$n" = 1 ] && [ -z "${PEBBLE_DIR_URL:-}" ]; then
		start_pebble "$HAP_HTTP" || return 1
	fi
	agent_config; start_agent || return 1
	start_haproxy || return 1
	wait_for 10 agent_up_in_haproxy || return 1
	local -n node=N$n
	node=([HTTP]=$HAP_HTTP [HTTPS]=$HAP_HTTPS [SOCK]=$HAP_SOCK [CERTS]=$HAP_CERTS [ADMIN]=$ADMIN_PORT
	      [SPOA]=$SPOA_PORT [PID]=$AGENT_PID [HPID]=$HAP_PID)
}
use_node() {
	local -n n=N$1
	NODE=$1 HAP_HTTP=${n[HTTP]} HAP_HTTPS=${n[HTTPS]} HAP_SOCK=${n[SOCK]} HAP_CERTS=${n[CERTS]}
	ADMIN_PORT=${n[ADMIN]} SPOA_PORT=${n[SPOA]} AGENT_PID=${n[PID]} HAP_PID=${n[HPID]}
}
stop_node() {
	use_node "$1"
	stop_pid "$AGENT_PID" >/dev/null; stop_pid "$HAP_PID" >/dev/null
}
healthz() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$ADMIN_PORT/healthz"; }
healthy() { [ "$(healthz)" = 200 ]; }
orders() { use_node "$1"; metric acme_spoa_orders_started_total; }

# refused_at_start NAME: an agent (config $IT_DIR/agent$NAME.json) does not
# come up: it exits non-zero within 10 s, or its /healthz never says 200.
refused_at_start() {
	local conf=$IT_DIR/agent$1.json log=$IT_DIR/agent$1.log pid
	http_proxy= "$IT_BIN" -c "$conf" -v >>"$log" 2>&1 &
	pid=$!
	IT_PIDS+=($pid)
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; healthy && break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		healthy && { echo "# /healthz 200 with a refused server"; stop_pid "$pid"; return 1; }
		stop_pid "$pid" >/dev/null
		return 0
	fi
	wait "$pid"; [ $? -ne 0 ]
}

# ============================ (a) TLS =======================================
start_redis_tls || { not_ok "redis-server --tls-port starts"; it_summary; exit 1; }
check "plain TCP is off on the TLS redis (--port 0)" sh -c "! redis-cli -p $REDIS_PORT ping 2>/dev/null | grep -q PONG"
start_node 1 || { not_ok "TLS: node 1 starts"; it_summary; exit 1; }
start_node 2 || { not_ok "TLS: node 2 starts"; it_summary; exit 1; }
use_node 1
check "TLS: both nodes connected to redis over TLS with a client certificate (/healthz 200)" \
	sh -c "$(declare -f healthz healthy); ADMIN_PORT=${N1[ADMIN]}; healthy && ADMIN_PORT=${N2[ADMIN]} && healthy"

redis_cli set "it:challenges/tok-tls" "tok-tls.by-node-2" >/dev/null
body=$(curl -s -H 'Host: x.test' "http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/tok-tls")
check "TLS: node 1 answers a challenge only redis holds ($body)" test "$body" = tok-tls.by-node-2

use_node 2
https_get tls.test
check "TLS: node 2 orders tls.test (validated through node 1) and serves it" wait_for 30 served_by_pebble tls.test
use_node 1
check "TLS: node 1 serves tls.test within a second (pub/sub over TLS)" wait_for 1 served_by_pebble tls.test
check "TLS: the certificate is in redis" sh -c "$(declare -f redis_cli); IT_DIR=$IT_DIR REDIS_PORT=$REDIS_PORT REDIS_TLS=1 redis_cli exists it:certs/tls.test | grep -q 1"

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

for n in 1 2; do
	use_node $n
	check "TLS: node $n exits cleanly on SIGTERM" agent_stops_cleanly
	stop_pid "$HAP_PID" >/dev/null
done
stop_pid "$REDIS_PID" >/dev/null
unset REDIS_TLS REDIS_PORT
it_summary
