#!/usr/bin/env bash
# The SPOE paths against HAProxy 3.4 LTS, whose SPOE is the engine rewritten in
# 3.1 (a multiplexer over "mode spop" backends, no async capability, an ACK
# must carry an action). Same haproxy-examples/ files as test_e2e.sh (2.6),
# same peers: Pebble + pebble-challtestsrv and the agent with file storage.
#
# The 3.4 binary comes from scripts/haproxy34.sh: cached outside the clone,
# built from ../shared/peers/haproxy-3.4.0.tar.gz on the first run on a machine
# (a few minutes, within tests/run.sh's 600 s per suite). When the tarball is
# absent the suite is one skip (lib.sh skip_peer: counted apart, never a pass,
# and a failure under CI=true, where ../shared/peers/ is part of the checkout).
set -u
source "$(dirname "$0")/lib.sh"
it_init

# its messages (the build's progress on a first run) shown live as comments
bash "$IT_ROOT/scripts/haproxy34.sh" 2>&1 >"$IT_DIR/haproxy34.out" | tee "$IT_DIR/haproxy34.err" | sed 's/^/# /'
rc=${PIPESTATUS[0]}
H34=$(cat "$IT_DIR/haproxy34.out")
if [ "$rc" = 2 ]; then
	skip_peer "the SPOE paths on HAProxy 3.4: no HAProxy 3.4 to test against ($(tail -1 "$IT_DIR/haproxy34.err"))"
	it_summary; exit
fi
if [ "$rc" != 0 ] || [ -z "$H34" ]; then
	not_ok "scripts/haproxy34.sh provides an HAProxy 3.4 binary (status $rc)"
	it_summary; exit 1
fi
export HAPROXY_BIN=$H34
check "scripts/haproxy34.sh gives HAProxy 3.4 ($H34)" sh -c "\"$H34\" -v | grep -q '^HAProxy version 3\.4\.'"
TOOLS=$IT_BUILD/tools
STORE="file:$IT_DIR/store"

SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
# the examples as they are (lib.sh substitutes only ports and paths): 3.4
# accepts them and warns about nothing 2.6 does not warn about (it ignores
# "timeout hello/idle" silently and makes the "mode tcp" agent backend spop)
warnings() {   # BINARY: its "haproxy -c" warnings and alerts, pid and prefix removed
	"$1" -c -f "$IT_DIR/haproxy/haproxy.cfg" 2>&1 | grep -E '^\[(WARNING|ALERT)\]' |
		sed -E 's/^\[([A-Z]+)\] *\([0-9]+\) : (config : )?/\1 /' | sort
}
"$H34" -c -q -f "$IT_DIR/haproxy/haproxy.cfg" >"$IT_DIR/haproxy34-check.log" 2>&1; rc=$?
check "HAProxy 3.4 accepts haproxy-examples/ unchanged (haproxy -c)" test "$rc" = 0
w34=$(warnings "$H34"); w26=$(warnings haproxy)
extra=$(comm -23 <(echo "$w34") <(echo "$w26"))
check "HAProxy 3.4 warns about nothing in the examples that 2.6 does not${extra:+ (}${extra}${extra:+)}" test -z "$extra"
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
start_pebble "$HAP_HTTP" || { not_ok "pebble starts"; it_summary; exit 1; }
agent_config
start_agent || { not_ok "agent starts"; cat "$IT_DIR/agent.log"; it_summary; exit 1; }
start_haproxy || { not_ok "HAProxy 3.4 starts with the example config"; it_summary; exit 1; }
ok "HAProxy 3.4 starts with the example config"
hap_is_34() { hap_cmd 'show info' | grep -q '^Version: 3\.4\.'; }
check "the running HAProxy is 3.4 (show info)" hap_is_34
check "HAProxy 3.4's spop-check sees the agent UP" wait_for 10 agent_up_in_haproxy

# --- http-01 through HAProxy 3.4 ---------------------------------------------
"$TOOLS/storage_tool" "$STORE" put challenges/tok34_1 tok34_1.thumbprint-34 600
known_ok() {
	local r
	r=$(curl -s --max-time 5 -w ' %{http_code}' -H 'Host: ondemand.test' \
		"http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/tok34_1")
	[ "$r" = "tok34_1.thumbprint-34 200" ]
}
check "known token: 200 with the key authorization" known_ok
body=$(curl -s -w ' %{http_code}' -H 'Host: ondemand.test' "http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/nope")
check "unknown token: 404 Not found" test "$body" = "$(printf 'Not found\n 404')"

# --- on-demand issuance through the peek frontend (acme-sni-peek) -------------
# fe_tls_sni is the only TLS entry of the example and the only sender of an
# SNI: a client that refuses the default certificate (and so never sends a
# request) is enough to start issuance.
first=$(served_cert peek34.test)
check "first connection for peek34.test gets the default certificate" grep -q 'haproxy-default' <<<"$first"
echo | timeout 5 openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername browser34.test \
	-verify_return_error >/dev/null 2>&1
check "within 30 s HAProxy 3.4 serves a Pebble certificate for peek34.test" wait_for 30 served_by_pebble peek34.test
check "a client refusing the default certificate still gets browser34.test issued" wait_for 30 served_by_pebble browser34.test
orders=$(metric acme_spoa_orders_started_total)
check "two new names made two orders ($orders)" test "$orders" = 2

# --- a disallowed name makes no order ------------------------------------------
before=$(metric acme_spoa_orders_started_total)
refused=$(metric 'acme_spoa_on_demand_refused_total{reason="name"}')
https_get not.allowed.example
refused_rose() { delta_ge 1 "$refused" "$(metric 'acme_spoa_on_demand_refused_total{reason="name"}')"; }
check "the disallowed name reached the agent through 3.4 and was refused" wait_for 5 refused_rose
sleep 1
after=$(metric acme_spoa_orders_started_total)
check "a disallowed name makes no order ($before -> $after)" delta_is 0 "$before" "$after"

# --- 2000 challenge requests through HAProxy 3.4 -------------------------------
# 4 clients at once, 500 keep-alive requests each; every answer must be the key
# authorization (an SPOE error sets txn.acme.err and would give a 404).
hap_stat() {   # FIELD of backend acme-spoa, from "show stat"
	hap_cmd "show stat" | awk -F, -v f="$1" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == f || $i == "# " f) c = i; next }
		$1 == "acme-spoa" && $2 == "BACKEND" { print $c; exit }'
}
frames=$(metric acme_spoa_spoe_frames_total)
econ=$(hap_stat econ); eresp=$(hap_stat eresp)
for c in 1 2 3 4; do
	: > "$IT_DIR/load$c.cfg"
	for i in $(seq 500); do
		printf 'url = "http://127.0.0.1:%s/.well-known/acme-challenge/tok34_1"\n' "$HAP_HTTP" >> "$IT_DIR/load$c.cfg"
	done
done
pids=()
for c in 1 2 3 4; do
	curl -s --max-time 120 -H 'Host: ondemand.test' -w ' %{http_code}\n' -K "$IT_DIR/load$c.cfg" \
		> "$IT_DIR/load$c.out" 2>&1 & pids+=($!)
done
wait "${pids[@]}"
good=$(cat "$IT_DIR"/load[1-4].out | grep -c '^tok34_1.thumbprint-34 200$')
check "2000 challenge requests through HAProxy 3.4: all 200 with the key authorization ($good)" test "$good" = 2000
frames_after=$(metric acme_spoa_spoe_frames_total)
check "the agent received a NOTIFY for each of them ($frames -> $frames_after)" delta_ge 2000 "$frames" "$frames_after"
econ_after=$(hap_stat econ); eresp_after=$(hap_stat eresp)
check "HAProxy counted no connection or response error towards the agent (econ $econ -> $econ_after, eresp $eresp -> $eresp_after)" \
	test "${econ:-x}/${eresp:-x}" = "${econ_after:-y}/${eresp_after:-y}"

# --- agent restarts while HAProxy 3.4 runs -------------------------------------
agent_down_in_haproxy() { ! agent_up_in_haproxy && hap_cmd "show servers state acme-spoa" | grep -q ' agent '; }
stop_pid "$AGENT_PID"
check "agent stopped: HAProxy 3.4 marks it DOWN" wait_for 10 agent_down_in_haproxy
body=$(curl -s --max-time 5 -w ' %{http_code}' -H 'Host: ondemand.test' "http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/tok34_1")
check "agent stopped: challenges get 404, HAProxy goes on (set-on-error)" test "$body" = "$(printf 'Not found\n 404')"
start_agent || not_ok "agent restarts"
check "agent restarted: HAProxy 3.4 sees it UP again" wait_for 10 agent_up_in_haproxy
check "agent restarted: the known token is answered again" wait_for 10 known_ok
n=0; for i in $(seq 50); do known_ok && n=$((n + 1)); done
check "agent restarted: 50 requests in a row all answered ($n)" test "$n" = 50

# kill -9: connections HAProxy 3.4 holds idle in its SPOP mux die under it
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
start_agent || not_ok "agent restarts after kill -9"
check "agent killed -9 and restarted: HAProxy 3.4 sees it UP" wait_for 10 agent_up_in_haproxy
check "agent killed -9 and restarted: the known token is answered again" wait_for 10 known_ok
n=0; for i in $(seq 50); do known_ok && n=$((n + 1)); done
check "agent killed -9 and restarted: 50 requests in a row all answered ($n)" test "$n" = 50
issue_after() {
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername after34.test >/dev/null 2>&1
	wait_for 30 served_by_pebble after34.test
}
check "agent killed -9 and restarted: a new name through the peek frontend is issued" issue_after

check "HAProxy 3.4 is still running" kill -0 "$HAP_PID"
check "agent exits cleanly on SIGTERM with HAProxy 3.4 connected" agent_stops_cleanly
it_summary
