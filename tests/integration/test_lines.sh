#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The SPOE and runtime paths on every HAProxy line operators run (HAPROXY_LINES,
# default 2.6 3.0 3.4: Debian 12's, Debian 13's and the 3.4 LTS), each with the
# very same haproxy-examples/ files, against Pebble + pebble-challtestsrv, the
# agent with file storage. 3.1 rewrote the SPOE engine (a multiplexer over
# "mode spop" backends, no async capability, an ACK must carry an action) and
# the runtime API's replies differ between lines (runtime/rt_line.c).
# For each line:
#   - haproxy -c accepts the examples unchanged, with no warning 2.6 does not
#     give; show info names the line;
#   - the runtime client's unit suite (test_runtime) against that binary;
#   - http-01 through HAProxy, 2000 challenge requests, on-demand issuance
#     through the peek frontend, a disallowed name refused;
#   - the agent stopped, restarted, killed -9 while HAProxy runs;
#   - an HAProxy reload (master-worker, SIGUSR2) that lost a certificate from
#     cert_dir: the agent sees the new process and pushes it again;
#   - a renewal pushed into the running HAProxy (no reload).
# The hot set and its eviction run on every line in test_hold.sh.
#
# 2.6 is Debian's haproxy; 3.0 and 3.4 come from scripts/haproxy.sh (built
# once per machine from ../shared/peers/, a few minutes each, cached in
# /var/cache/acme-spoa). A line that cannot be had here is skipped (a failure
# under CI=true). Renewal needs Pebble 2.10 (profiles), from
# scripts/pebble-unstable.sh, as test_renewal.sh.
set -u
source "$(dirname "$0")/lib.sh"
it_init
TOOLS=$IT_BUILD/tools
export HAPROXY_MW=1

PEBBLE_BIN=$(bash "$IT_ROOT/scripts/pebble-unstable.sh") || {
	not_ok "Pebble 2.10 (Debian unstable) could be fetched"; it_summary; exit 1; }
HAP_HTTP=$(free_port); HAP_HTTPS=$(free_port)	# every line's HAProxy listens there in turn
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
# "default" for the rounds before renewal; "day" lasts one day, shorter than
# renew_threshold_days 2: renewed as soon as issued
start_pebble "$HAP_HTTP" '"profiles": {
      "default": { "description": "ninety days", "validityPeriod": 7776000 },
      "day": { "description": "one day", "validityPeriod": 86400 } }' "$PEBBLE_BIN" ||
	{ not_ok "pebble 2.10 starts"; it_summary; exit 1; }

# warnings BINARY: its "haproxy -c" warnings and alerts on the line's config,
# pid and prefix removed
warnings() {
	"$1" -c -f "$IT_DIR/haproxy$NODE/haproxy.cfg" 2>&1 | grep -E '^\[(WARNING|ALERT)\]' |
		sed -E 's/^\[([A-Z]+)\] *\([0-9]+\) : (config : )?/\1 /' | sort
}
known_ok() {
	local r
	r=$(curl -s --max-time 5 -w ' %{http_code}' -H 'Host: ondemand.test' \
		"http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/tokl_1-0123456789abcdef")
	[ "$r" = "tokl_1-0123456789abcdef.thumbprint-l 200" ]
}
hap_stat() {   # FIELD of backend acme-spoa, from "show stat"
	hap_cmd "show stat" | awk -F, -v f="$1" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == f || $i == "# " f) c = i; next }
		$1 == "acme-spoa" && $2 == "BACKEND" { print $c; exit }'
}
hap_info() { hap_cmd "show info" | awk -F': ' -v k="$1" '$1 == k { print $2 }'; }
serial_of() { echo | timeout 5 openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername "$1" 2>/dev/null |
	openssl x509 -noout -serial 2>/dev/null; }
agent_down_in_haproxy() { ! agent_up_in_haproxy && hap_cmd "show servers state acme-spoa" | grep -q ' agent '; }
peek() { echo | timeout 5 openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername "$1" >/dev/null 2>&1; }

# run_line L: every round against the HAProxy of HAPROXY_BIN, line L.
run_line() {
	local L=$1 n=${1//./} rc w26 wl extra first orders before after refused frames econ eresp c i pids good
	local pid0 pid1 resyncs body
	NODE=$n; unset ADMIN_PORT; SPOA_PORT=$(free_port)
	haproxy_config "$SPOA_PORT"
	"$HAPROXY_BIN" -c -q -f "$IT_DIR/haproxy$NODE/haproxy.cfg" >"$IT_DIR/check$NODE.log" 2>&1; rc=$?
	check "$L: HAProxy accepts haproxy-examples/ unchanged (haproxy -c)" test "$rc" = 0
	if [ "$L" != 2.6 ]; then
		wl=$(warnings "$HAPROXY_BIN"); w26=$(warnings haproxy)
		extra=$(comm -23 <(echo "$wl") <(echo "$w26"))
		check "$L: warns about nothing in the examples that 2.6 does not${extra:+ (}${extra}${extra:+)}" test -z "$extra"
	fi
	HAPROXY_BIN=$HAPROXY_BIN timeout 120 "$IT_BUILD/tests/test_runtime" >"$IT_DIR/test_runtime$NODE.log" 2>&1; rc=$?
	check "$L: the runtime client's suite passes against it ($(grep -E '^\[  (PASSED|FAILED)  \]' "$IT_DIR/test_runtime$NODE.log" | tr '\n' ' '))" test "$rc" = 0
	[ "$rc" = 0 ] || grep -E 'FAILED|ERROR|error' "$IT_DIR/test_runtime$NODE.log" | head -5 | sed 's/^/#   /'

	agent_config '"profile": "default"'	# Pebble's own default is not "default"
	start_agent || { not_ok "$L: agent starts"; tail -5 "$IT_DIR/agent$NODE.log"; return 1; }
	start_haproxy || { not_ok "$L: HAProxy starts with the example config"; return 1; }
	check "$L: show info says $L.x ($(hap_info Version))" sh -c "case '$(hap_info Version)' in $L.*) ;; *) exit 1 ;; esac"
	check "$L: spop-check sees the agent UP" wait_for 10 agent_up_in_haproxy
	check "$L: the agent's runtime client read the line from show info" \
		wait_for 5 grep -q "HAProxy $(hap_info Version) (runtime line" "$IT_DIR/agent$NODE.log"

	# --- http-01 ---------------------------------------------------------------
	"$TOOLS/storage_tool" "file:$IT_DIR/store$NODE" put challenges/tokl_1-0123456789abcdef tokl_1-0123456789abcdef.thumbprint-l 600
	check "$L: known token: 200 with the key authorization" known_ok
	body=$(curl -s -w ' %{http_code}' -H 'Host: ondemand.test' "http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/nope")
	check "$L: unknown token: 404 Not found" test "$body" = "$(printf 'Not found\n 404')"

	# --- on demand through the peek frontend (acme-sni-peek) ----------------------
	first=$(served_cert "peek$n.test")
	check "$L: first connection for peek$n.test gets the default certificate" grep -q 'haproxy-default' <<<"$first"
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername "browser$n.test" \
		-verify_return_error >/dev/null 2>&1
	check "$L: within 30 s HAProxy serves a Pebble certificate for peek$n.test" wait_for 30 served_by_pebble "peek$n.test"
	check "$L: a client refusing the default certificate still gets browser$n.test issued" \
		wait_for 30 served_by_pebble "browser$n.test"
	orders=$(metric acme_spoa_orders_started_total)
	check "$L: two new names made two orders ($orders)" test "$orders" = 2

	before=$(metric acme_spoa_orders_started_total)
	refused=$(metric 'acme_spoa_on_demand_refused_total{reason="name"}')
	https_get not.allowed.example
	refused_rose() { delta_ge 1 "$refused" "$(metric 'acme_spoa_on_demand_refused_total{reason="name"}')"; }
	check "$L: the disallowed name reached the agent and was refused" wait_for 5 refused_rose
	sleep 1
	after=$(metric acme_spoa_orders_started_total)
	check "$L: a disallowed name makes no order ($before -> $after)" delta_is 0 "$before" "$after"

	# --- 2000 challenge requests, 4 clients x 500 keep-alive ---------------------
	frames=$(metric acme_spoa_spoe_frames_total)
	econ=$(hap_stat econ); eresp=$(hap_stat eresp)
	for c in 1 2 3 4; do
		: > "$IT_DIR/load$c.cfg"
		for i in $(seq 500); do
			printf 'url = "http://127.0.0.1:%s/.well-known/acme-challenge/tokl_1-0123456789abcdef"\n' "$HAP_HTTP" >> "$IT_DIR/load$c.cfg"
		done
	done
	pids=()
	for c in 1 2 3 4; do
		curl -s --max-time 120 -H 'Host: ondemand.test' -w ' %{http_code}\n' -K "$IT_DIR/load$c.cfg" \
			> "$IT_DIR/load$c.out" 2>&1 & pids+=($!)
	done
	wait "${pids[@]}"
	good=$(cat "$IT_DIR"/load[1-4].out | grep -c '^tokl_1-0123456789abcdef.thumbprint-l 200$')
	check "$L: 2000 challenge requests: all 200 with the key authorization ($good)" test "$good" = 2000
	check "$L: the agent received a NOTIFY for each ($frames -> $(metric acme_spoa_spoe_frames_total))" \
		delta_ge 2000 "$frames" "$(metric acme_spoa_spoe_frames_total)"
	check "$L: no connection or response error towards the agent (econ $econ -> $(hap_stat econ), eresp $eresp -> $(hap_stat eresp))" \
		test "${econ:-x}/${eresp:-x}" = "$(hap_stat econ)/$(hap_stat eresp)"

	# --- the agent stops, restarts, is killed while HAProxy runs --------------------
	stop_pid "$AGENT_PID"
	check "$L: agent stopped: HAProxy marks it DOWN" wait_for 10 agent_down_in_haproxy
	body=$(curl -s --max-time 5 -w ' %{http_code}' -H 'Host: ondemand.test' "http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/tokl_1-0123456789abcdef")
	check "$L: agent stopped: challenges get 404, HAProxy goes on (set-on-error)" test "$body" = "$(printf 'Not found\n 404')"
	start_agent || not_ok "$L: agent restarts"
	check "$L: agent restarted: HAProxy sees it UP again" wait_for 10 agent_up_in_haproxy
	check "$L: agent restarted: the known token is answered again" wait_for 10 known_ok
	kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
	start_agent || not_ok "$L: agent restarts after kill -9"
	check "$L: agent killed -9 and restarted: HAProxy sees it UP" wait_for 10 agent_up_in_haproxy
	good=0; for i in $(seq 50); do known_ok && good=$((good + 1)); done
	check "$L: agent killed -9 and restarted: 50 requests in a row all answered ($good)" test "$good" = 50
	peek "after$n.test"
	check "$L: agent killed -9 and restarted: a new name is issued" wait_for 30 served_by_pebble "after$n.test"

	# --- HAProxy reload: what it lost is pushed again ------------------------------
	# the new worker loads cert_dir, from which peek<n>.test was removed: the
	# agent sees another process behind the socket and pushes what it lacks
	pid0=$(hap_info Pid)
	resyncs=$(grep -c 're-syncing certificates' "$IT_DIR/agent$NODE.log")
	rm -f "$HAP_CERTS/peek$n.test.pem"
	kill -USR2 "$HAP_PID"
	new_worker() { pid1=$(hap_info Pid); [ -n "$pid1" ] && [ "$pid1" != "$pid0" ]; }
	check "$L: reload (SIGUSR2 to the master): a new worker answers the socket" wait_for 15 new_worker
	resynced() { [ "$(grep -c 're-syncing certificates' "$IT_DIR/agent$NODE.log")" -gt "$resyncs" ]; }
	check "$L: the agent notices the reload" wait_for 15 resynced
	check "$L: peek$n.test, lost by the reload, is pushed again and served" wait_for 15 served_by_pebble "peek$n.test"
	check "$L: the agent logged the missing certificate it pushed" \
		grep -qE 'HAProxy holds [0-9]+ certificates, pushed 1 missing' "$IT_DIR/agent$NODE.log"
	check "$L: browser$n.test, in cert_dir, is served by the new worker" served_by_pebble "browser$n.test"

	# --- renewal pushed into the running HAProxy ------------------------------------
	stop_pid "$AGENT_PID"
	python3 - "$AGENT_CONF" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["profile"] = "day"; c["renew_threshold_days"] = 2
json.dump(c, open(sys.argv[1], "w"))
PY
	restart_agent || { not_ok "$L: agent restarts (profile day)"; return 1; }
	pid0=$(hap_info Pid)
	before=$(metric acme_spoa_renewals_total)
	peek "rn$n.test"
	check "$L: rn$n.test issued with a one-day certificate" wait_for 30 served_by_pebble "rn$n.test"
	renewed() { delta_ge 1 "$before" "$(metric acme_spoa_renewals_total)" &&
		grep -q "host=rn$n.test renewal started" "$IT_DIR/agent$NODE.log"; }
	check "$L: it is renewed at once (renew_threshold_days 2 > its lifetime)" wait_for 30 renewed
	# the serials the agent issued for the name, in order: the last is the renewal's
	issued() { grep -oE "host=rn$n.test (issuer=[^ ]* )?order=[^ ]* certificate issued serial=[0-9A-F]+" \
		"$IT_DIR/agent$NODE.log" | sed 's/.*serial=//'; }
	renewed_served() { [ "$(issued | wc -l)" -ge 2 ] && [ "$(serial_of "rn$n.test")" = "serial=$(issued | tail -1)" ]; }
	check "$L: HAProxy serves the renewed certificate ($(issued | tr '\n' ' ')-> $(serial_of "rn$n.test"))" \
		wait_for 15 renewed_served
	check "$L: ... pushed into the same process, no reload (pid $pid0 -> $(hap_info Pid))" test "$(hap_info Pid)" = "$pid0"

	check "$L: agent exits cleanly on SIGTERM" agent_stops_cleanly
	stop_pid "$HAP_PID"
}

for L in $HAPROXY_LINES; do
	haproxy_line "$L" || continue
	echo "# --- HAProxy $L"
	run_line "$L"
done
it_summary
