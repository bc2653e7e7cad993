# SPDX-License-Identifier: Apache-2.0
# Sourced by tests/bench/run.sh (uses its lib, say, fail, bench_row).
# 4. Work at rest: N certificates stored in Redis, nothing changing. For each N
#    (BENCH_REST_COUNTS, default "20000 100000"): the agent starts on them, then
#    for BENCH_REST_SECONDS (65) redis-cli MONITOR counts the commands the
#    agent sends while a probe sends one SPOE NOTIFY every 10 ms and times
#    every ACK. Printed side by side: commands per minute and the SPOE max
#    latency at each N, and the ratio of the largest N to the smallest (work
#    at rest independent of the number of certificates: ~1).
REST_COUNTS=${BENCH_REST_COUNTS:-20000 100000}
REST_SECS=${BENCH_REST_SECONDS:-65}
rest_one() {   # N: sets REST_CMDS REST_MAX REST_START REST_HWM
	local n=$1 d=$IT_DIR/rest-$1 port spoa admin pid t0 t1 mon
	REST_CMDS="" REST_MAX="" REST_START="" REST_HWM=""
	mkdir -p "$d/certs"
	port=$(free_port); spoa=$(free_port); admin=$(free_port)
	redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$d" \
		>"$d/redis.log" 2>&1 &
	local rpid=$!
	IT_PIDS+=($rpid)
	wait_for 10 redis-cli -p "$port" ping || { fail "rest $n: redis does not start"; return; }
	t0=$(bench_now)
	"$TOOLS/gen_certs" --store "redis:127.0.0.1:$port:rest" --count "$n" --domain rest.test \
		>"$d/gen.log" 2>&1 || { fail "rest $n: gen_certs failed"; stop_pid "$rpid"; return; }
	say "rest $n: gen_certs wrote $n certificates into Redis in $(bench_dt "$t0" "$(bench_now)") s"
	cat >"$d/agent.json" <<JSON
{
  "account_email": "bench@example.com",
  "api_uri": "https://127.0.0.1:9/directory",
  "tos_accepted": true,
  "cert_type": "ecc",
  "domains": ["*.rest.test"],
  "storage": "redis",
  "storage_config": { "redis": { "port": $port, "namespace": "rest" } },
  "spoa": { "listen": "127.0.0.1:$spoa" },
  "admin": { "listen": "127.0.0.1:$admin" },
  "haproxy": { "runtime": ["unix:$d/no-haproxy.sock"], "cert_dir": "$d/certs" }
}
JSON
	t0=$(bench_now)
	"$IT_BIN" -c "$d/agent.json" >"$d/agent.log" 2>&1 &
	pid=$!
	IT_PIDS+=($pid)
	local i
	for i in $(seq 1200); do grep -q ' ready: ' "$d/agent.log" && break; sleep 0.1; done
	t1=$(bench_now)
	grep -q ' ready: ' "$d/agent.log" || { fail "rest $n: agent not ready"; stop_pid "$pid"; stop_pid "$rpid"; return; }
	REST_START=$(bench_dt "$t0" "$t1")
	sleep 2	# let start-up's last writes settle
	timeout "$REST_SECS" redis-cli -p "$port" monitor >"$d/monitor.txt" 2>/dev/null &
	mon=$!
	"$TOOLS/spoe_probe" "127.0.0.1:$spoa" --seconds "$REST_SECS" --interval-ms 10 \
		--message acme-sni-peek --arg sni=str:host1.rest.test >"$d/probe.out" 2>&1
	wait "$mon" 2>/dev/null
	REST_HWM=$(bench_hwm "$pid")
	# commands the agent sent (those run inside its Lua scripts say "lua]")
	REST_CMDS=$(grep -v 'lua\]' "$d/monitor.txt" | grep -c '^[0-9]')
	REST_CMDS=$(awk -v c="$REST_CMDS" -v s="$REST_SECS" 'BEGIN { printf "%.1f", c * 60 / s }')
	REST_MAX=$(sed -n 's/.*max_ms=\([0-9.]*\).*/\1/p' "$d/probe.out")
	grep -q 'errors=0' "$d/probe.out" || fail "rest $n: probe: $(cat "$d/probe.out")"
	say "rest $n: ready in $REST_START s, $REST_CMDS Redis commands/min at rest, SPOE max ${REST_MAX:-?} ms over $REST_SECS s ($(cat "$d/probe.out")), agent VmHWM $REST_HWM KiB"
	stop_pid "$pid"
	stop_pid "$rpid"
}
REST_FIRST="" REST_FIRST_N=""
for n in $REST_COUNTS; do
	rest_one "$n"
	bench_row "4 at rest, $n certs in Redis" "${REST_CMDS:-FAILED} cmds/min, SPOE max ${REST_MAX:-?} ms" \
		"${REST_START:-?} s to ready, ${REST_HWM:-?} KiB" \
		"$(if [ -z "$REST_FIRST" ]; then echo "1 (first count)"; else echo "$(bench_ratio "$REST_CMDS" "$REST_FIRST") (cmds vs $REST_FIRST_N certs)"; fi)" \
		"redis-cli MONITOR over $REST_SECS s after the agent is ready (commands run inside its Lua scripts not counted), while spoe_probe sends one acme-sni-peek every 10 ms; bars: < 60 commands/min, SPOE max < 50 ms"
	if [ -z "$REST_FIRST" ]; then REST_FIRST=$REST_CMDS REST_FIRST_N=$n; fi
done
