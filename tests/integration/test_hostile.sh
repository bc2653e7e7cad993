#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Hostile clients and hostile data (issue 9), against real HAProxy, Pebble and
# Redis:
#  - kill -9 of the agent during a burst of cert_dir writes, 20 times: the
#    example HAProxy config still loads that cert_dir ("haproxy -c") every
#    time (temp files live in cert_dir/.tmp, which HAProxy skips);
#  - a bundle in storage that fails the check (another name's certificate) is
#    refused: never in cert_dir, never pushed, counted;
#  - a flood of distinct allowed SNI names over SPOP: answers stay fast, memory
#    and stored records stay bounded, and Pebble gets no more orders than
#    max_concurrent_orders + max_queued_orders.
set -u
source "$(dirname "$0")/lib.sh"
it_init
TOOLS=$IT_BUILD/tools
SHIM=$IT_BUILD/tools/slow_fsync.so
HAP=${HAPROXY_BIN:-haproxy}

start_redis || { not_ok "redis starts"; it_summary; exit 1; }
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_pebble "$HAP_HTTP" || { not_ok "pebble starts"; it_summary; exit 1; }
start_haproxy || { not_ok "haproxy starts"; it_summary; exit 1; }
HAPCFG=$IT_DIR/haproxy/haproxy.cfg
REDIS=redis:127.0.0.1:$REDIS_PORT:it

# --- kill -9 during cert_dir writes ------------------------------------------
# Each round stores 40 new certificates (new serials) in Redis and announces
# them; the agent fetches and writes each to cert_dir with an fsync made slow
# (40 ms, LD_PRELOAD shim on cert_dir only), so writes are in progress when
# kill -9 lands at a random moment.
IT_STORAGE=redis
agent_config
hap_check() { "$HAP" -c -q -f "$HAPCFG" >"$IT_DIR/hapcheck.log" 2>&1; }
kills=20 passed=0 caught=0 started=0
for round in $(seq $kills); do
	if [ -f "$SHIM" ]; then
		export LD_PRELOAD=$SHIM SLOW_FSYNC_MS=40 SLOW_FSYNC_PATH=$HAP_CERTS
		[ -n "${SAN:-}" ] && export ASAN_OPTIONS=${ASAN_OPTIONS:-}:verify_asan_link_order=0
	fi
	if start_agent; then started=$((started + 1)); else
		echo "# round $round: the agent did not start:"; tail -5 "$IT_DIR/agent.log" | sed 's/^/#   /'
	fi
	unset LD_PRELOAD SLOW_FSYNC_MS SLOW_FSYNC_PATH
	"$TOOLS/gen_certs" --store "$REDIS" --count 40 --domain kill.test >/dev/null 2>&1
	for i in $(seq 0 39); do echo "PUBLISH it:certs host$i.kill.test"; done |
		redis-cli -p "$REDIS_PORT" >/dev/null
	sleep "0.$((RANDOM % 8 + 1))"
	[ -n "$(ls -A "$HAP_CERTS/.tmp" 2>/dev/null)" ] && caught=$((caught + 1))
	kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
	if hap_check; then passed=$((passed + 1)); else
		echo "# round $round: haproxy -c failed:"; sed 's/^/#   /' "$IT_DIR/hapcheck.log" | head -5
	fi
done
check "the agent started $kills times" [ "$started" -eq "$kills" ]
echo "# kills that landed with a write in progress: $caught of $kills"
check "kill -9 during writes, $kills times: haproxy -c passes every time ($passed of $kills)" \
	[ "$passed" -eq "$kills" ]
check "writes were in progress at some kills ($caught of $kills): the check above could fail" \
	[ "$caught" -ge 1 ]
# leftovers of the killed writers are removed at the next start
start_agent || not_ok "agent starts after the kills"
# (a function: wait_for runs it again each time, a $(...) argument would be read once)
tmp_empty() { [ -z "$(ls -A "$HAP_CERTS/.tmp" 2>/dev/null)" ]; }
check "temp files of killed writers removed at start" wait_for 5 tmp_empty
check "nothing but certificates in cert_dir" \
	test -z "$(ls "$HAP_CERTS" | grep -v '\.pem$')"

# --- a bundle that fails the check -------------------------------------------
# another name's certificate stored under bad.kill.test, then announced
"$TOOLS/gen_certs" --store "$REDIS" --name other.kill.test >/dev/null 2>&1
"$TOOLS/storage_tool" "$REDIS" get certs/other.kill.test >"$IT_DIR/other.pem" 2>/dev/null
refused0=$(metric 'acme_spoa_certificates_refused_total{source="storage"}')
"$TOOLS/storage_tool" "$REDIS" put certs/bad.kill.test "$(cat "$IT_DIR/other.pem")" >/dev/null 2>&1
redis-cli -p "$REDIS_PORT" PUBLISH it:certs bad.kill.test >/dev/null
refused_once() { delta_is 1 "$refused0" "$(metric 'acme_spoa_certificates_refused_total{source="storage"}')"; }
check "a stored bundle for another name is refused and counted" wait_for 5 refused_once
check "it is logged with the reason" \
	grep -q 'host=bad.kill.test certificate from storage refused: bundle: the certificate does not cover host' \
	"$IT_DIR/agent.log"
check "it never reaches cert_dir" test ! -e "$HAP_CERTS/bad.kill.test.pem"
hap_lacks_bad() { hap_cmd "show ssl cert" | grep -q 'kill.test' && ! hap_cmd "show ssl cert" | grep -q 'bad.kill.test'; }
check "it never reaches HAProxy (which holds the others)" hap_lacks_bad
stop_pid "$AGENT_PID"

# --- SIGTERM with pushes in flight ---------------------------------------------
# 300 stored certificates preloaded at start, HAProxy frozen (SIGSTOP) while the
# agent pushes them: the pushes shutdown cuts off are no error (logged at
# info, not counted), the stop is clean.
IT_STORAGE=file
unset ADMIN_PORT
"$TOOLS/gen_certs" --store "file:$IT_DIR/store" --count 300 --domain cut.test >/dev/null 2>&1
agent_config
start_agent || not_ok "agent starts with 300 stored certificates"
first_pushed() { ls "$HAP_CERTS" | grep -q 'cut\.test\.pem$'; }
wait_for 10 first_pushed
kill -STOP "$HAP_PID"
sleep 0.5
check "SIGTERM with pushes in flight: the agent stops cleanly (no error logged)" agent_stops_cleanly
kill -CONT "$HAP_PID"
check "... and pushes were indeed cut off (logged at info)" \
	grep -q 'info: push not finished: cut off: the agent is shutting down' "$IT_DIR/agent.log"

# --- a flood of distinct allowed names ------------------------------------------
# 4 probes of N names each, one NOTIFY every 2 ms (100,000 names in 50 s), no
# ask_url: the queue bound refuses what the cap cannot take.
IT_STORAGE=file
unset ADMIN_PORT
CAP=2 QUEUE=50
agent_config "\"max_concurrent_orders\": $CAP, \"max_queued_orders\": $QUEUE"
restart_agent || { not_ok "agent starts for the flood"; tail -5 "$IT_DIR/agent.log" | sed 's/^/#   /'; }
if [ -n "${SAN:-}" ]; then PER=2500; else PER=25000; fi
SECS=$((PER * 2 / 1000))
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$AGENT_PID/status" 2>/dev/null; }
# the baseline of the SPOE latency bound, measured on this agent in this run
# (same machine, same load from the other suites): 2 s of a known name, no flood
"$TOOLS/spoe_probe" "127.0.0.1:$SPOA_PORT" --seconds 2 --interval-ms 2 \
	--message acme-sni-peek --arg sni=str:base.flood.test >"$IT_DIR/flood-base.out" 2>&1
base_p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' "$IT_DIR/flood-base.out")
echo "# before the flood: $(cat "$IT_DIR/flood-base.out")"
rss0=$(rss)
probes=()
for p in 1 2 3 4; do
	"$TOOLS/spoe_probe" "127.0.0.1:$SPOA_PORT" --seconds "$SECS" --interval-ms 2 \
		--message acme-sni-peek "--arg" "sni=str:f{n}.p$p.flood.test" \
		>"$IT_DIR/flood-$p.out" 2>&1 &
	probes+=($!)
done
# samples of both gauges during the flood; a sample /metrics did not answer
# counts as missed (a bound checked on no reading proves nothing)
max_flight=0 max_queued=0 samples=0 missed=0
while kill -0 "${probes[0]}" 2>/dev/null; do
	f=$(metric acme_spoa_orders_in_flight); f=${f%%.*}
	q=$(metric acme_spoa_orders_queued); q=${q%%.*}
	if is_count "$f" "$q" >/dev/null; then
		samples=$((samples + 1))
		[ "$f" -gt "$max_flight" ] && max_flight=$f
		[ "$q" -gt "$max_queued" ] && max_queued=$q
	else
		missed=$((missed + 1))
	fi
	sleep 0.5
done
wait "${probes[@]}"
rss1=$(rss)
agent_alive=0; kill -0 "$AGENT_PID" 2>/dev/null && agent_alive=1
sent=0 total=0 worst=0
for p in 1 2 3 4; do
	out=$(cat "$IT_DIR/flood-$p.out"); echo "# probe $p: $out"
	n=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' <<<"$out"); sent=$((sent + ${n:-0}))
	n=$(sed -n 's/.*acks=\([0-9]*\).*/\1/p' <<<"$out"); total=$((total + ${n:-0}))
	check "flood probe $p: every NOTIFY answered" grep -q 'errors=0' <<<"$out"
	p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$out")
	worst=$(awk -v a="$worst" -v b="${p99:-999}" 'BEGIN { print (b > a) ? b : a }')
done
check "flood: $sent distinct names sent, every one answered ($total)" \
	[ "$sent" -ge $((PER * 4)) ] && [ "$total" -eq "$sent" ]
check "the agent is still running after the flood" test "$agent_alive" = 1
# A name that blocked the loop (a storage or disk call on it) would hold every
# ACK behind it: at 2000 names a second the backlog grows to seconds. The
# flood's p99 stays within 250 ms of the baseline measured above: room for one
# pause of the shared machine, which all four probes see at once and which,
# under SAN=1's 2500 names a probe, is more than 1% of the samples. (Fine
# figures: make bench.)
P99_SLACK=${FLOOD_P99_SLACK_MS:-250}
p99_ok() {
	[[ $base_p99 =~ ^[0-9.]+$ ]] || { echo "# no baseline reading: '$base_p99'"; return 1; }
	awk -v w="$worst" -v b="$base_p99" -v s="$P99_SLACK" 'BEGIN { exit !(w < b + s) }'
}
check "flood: SPOE p99 within $P99_SLACK ms of the baseline (worst probe $worst ms, baseline ${base_p99:-none} ms)" p99_ok
# ASan's quarantine holds freed memory (ASAN_OPTIONS quarantine_size_mb, 256 MiB
# by default): the same bound plus that much under SAN=1
RSS_MAX_KB=$((32 * 1024))
[ -n "${SAN:-}" ] && RSS_MAX_KB=$((RSS_MAX_KB + 256 * 1024))
rss_ok() { is_count "$rss0" "$rss1" && [ "$agent_alive" = 1 ] && [ $((rss1 - rss0)) -lt "$RSS_MAX_KB" ]; }
check "flood: RSS grew by less than $((RSS_MAX_KB / 1024)) MiB ($rss0 -> $rss1 kB)" rss_ok
refused=$(metric 'acme_spoa_on_demand_refused_total{reason="queue_full"}')
started_orders=$(metric acme_spoa_orders_started_total)
ok_orders=$(metric acme_spoa_orders_succeeded_total)
failed_orders=$(curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" |
	awk '$1 ~ /^acme_spoa_orders_failed_total/ { s += $2 } END { print s + 0 }')
ended=
is_count "${ok_orders%%.*}" "${failed_orders%%.*}" >/dev/null && ended=$(( ${ok_orders%%.*} + ${failed_orders%%.*} ))
echo "# orders: started $started_orders, succeeded $ok_orders, failed $failed_orders; refused $refused"
refused_ok() { is_count "$refused" "$started_orders" && [ "$refused" -ge $((sent - started_orders - CAP - QUEUE)) ]; }
check "flood: names beyond the queue refused ($refused of $sent)" refused_ok
check "flood: /metrics answered during the flood ($samples samples, $missed missed)" \
	test "$samples" -ge $((SECS / 2)) -a "$missed" -eq 0
check "flood: the queue was used: some sample saw names queued ($max_queued)" test "$max_queued" -ge 1
check "flood: at most $QUEUE names queued at any sample ($max_queued)" test "$samples" -gt 0 -a "$max_queued" -le "$QUEUE"
check "flood: at most $CAP orders in flight at any sample ($max_flight)" test "$samples" -gt 0 -a "$max_flight" -le "$CAP"
# a new name enters only when one leaves: started <= cap + queue + ended
started_ok() { is_count "$started_orders" "$ended" && [ "$started_orders" -le $((CAP + QUEUE + ended)) ]; }
check "flood: orders started at most cap + queue + orders ended ($started_orders <= $CAP + $QUEUE + $ended)" started_ok
# Pebble's count first: the agent counts an order before it sends it
pebble_orders=$(grep -c 'POST /order-plz' "$IT_DIR/pebble.log")
started_now=$(metric acme_spoa_orders_started_total)
pebble_ok() { is_count "$pebble_orders" "$started_now" && [ "$pebble_orders" -le "$started_now" ]; }
check "flood: Pebble received no order the agent did not start ($pebble_orders <= $started_now)" pebble_ok
records=$(find "$IT_DIR/store" -type f ! -path '*/#locks/*' ! -path '*/certs/*' ! -path '*/meta/*' ! -path '*/account*' | wc -l)
check "flood: records other than certificates bounded ($records <= $((2 * (CAP + QUEUE) + 10)))" \
	[ "$records" -le $((2 * (CAP + QUEUE) + 10)) ]
check "flood: 'queue full' logged at most once a minute ($(grep -c 'max_queued_orders' "$IT_DIR/agent.log"))" \
	[ "$(grep -c 'max_queued_orders' "$IT_DIR/agent.log")" -le $((SECS / 60 + 1)) ]
check "agent stops cleanly after the flood" agent_stops_cleanly
it_summary
