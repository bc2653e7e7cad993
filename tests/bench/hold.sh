# SPDX-License-Identifier: Apache-2.0
# Sourced by tests/bench/run.sh in a subshell, with its own peers (uses the
# lib, say, fail, bench_row; the rows and failures go back to run.sh through
# $IT_DIR/hold-rows.tsv and $IT_DIR/hold-failed.txt).
# 5. The held ClientHello and the hot set (haproxy.preload on_demand), through
#    haproxy-examples/ on HAProxy 2.6 against Pebble:
#    5a first handshake of a stored name not in HAProxy yet (the agent pushes
#       it while it holds the ClientHello) vs the same names once loaded:
#       medians over BENCH_HOLD_NAMES (20) names of BENCH_HOLD_STORED (1000);
#    5b first handshake of a new name (issued by Pebble while held), median
#       of BENCH_HOLD_NEW (5) one after another, vs a loaded name;
#    5e the hot set: haproxy.max_loaded BENCH_HOLD_MAX_LOADED (1000) while
#       all BENCH_HOLD_STORED (5000) stored names are visited one after
#       another: what HAProxy holds then, and the first handshakes' p50/p99;
#    5c the agent's start with BENCH_HOLD_BIG (100000) certificates in Redis,
#       preload on_demand: time to ready, RSS then, and the time, CPU and peak
#       memory once the metadata of all is known (read in the background from
#       the meta/<host> records gen_certs writes);
#    5d beside it, HAProxy's own start-up with N of the same certificates in
#       its crt directory, for N in BENCH_HOLD_DISK_COUNTS ("0 1000 10000": what
#       fits the bench's time; 100000 would take minutes).
HOLD_NAMES=${BENCH_HOLD_NAMES:-20}
HOLD_STORED=${BENCH_HOLD_STORED:-5000}
HOLD_MAX_LOADED=${BENCH_HOLD_MAX_LOADED:-1000}
HOLD_NEW=${BENCH_HOLD_NEW:-5}
HOLD_BIG=${BENCH_HOLD_BIG:-100000}
HOLD_DISK=${BENCH_HOLD_DISK_COUNTS:-0 1000 10000}
hold_npids=${#IT_PIDS[@]}
hold_cleanup() {
	local p
	for p in "${IT_PIDS[@]:$hold_npids}"; do kill "$p" 2>/dev/null; done
	printf '%s\n' "${BENCH_ROWS[@]}" >"$IT_DIR/hold-rows.tsv"
	[ ${#FAILED[@]} -eq 0 ] || printf '%s\n' "${FAILED[@]}" >"$IT_DIR/hold-failed.txt"
}
trap hold_cleanup EXIT
BENCH_ROWS=() FAILED=()

say "5. held ClientHello and hot set: $HOLD_STORED stored certificates, preload on_demand"
SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
if ! start_challtestsrv || ! start_pebble "$HAP_HTTP" || ! pebble_roots; then
	fail "5 hold: Pebble does not start"
	exit 0
fi
HOLD_STORE=$IT_DIR/hold-store
"$TOOLS/gen_certs" --store "file:$HOLD_STORE" --count "$HOLD_STORED" --domain hold.test \
	--ca-out "$IT_DIR/hold-ca.pem" >"$IT_DIR/hold-gen.log" 2>&1 || fail "5 hold: gen_certs failed"
cat "$IT_DIR/pebble-roots.pem" "$IT_DIR/hold-ca.pem" >"$IT_DIR/hold-roots.pem"
IT_HOLD_TIMEOUT=8 IT_HAPROXY_EXTRA="\"preload\": \"on_demand\", \"max_loaded\": $HOLD_MAX_LOADED" agent_config
bench_agent_json "$IT_DIR/agent.json" "$IT_DIR/agent.json" "storage_config.file.path=\"$HOLD_STORE\""
if ! start_agent || ! start_haproxy || ! wait_for 15 agent_up_in_haproxy; then
	fail "5 hold: the agent or HAProxy does not start"
	exit 0
fi
names=(); for i in $(seq 1 "$HOLD_NAMES"); do names+=("host$i.hold.test"); done
bench_handshakes "$IT_DIR/hold-roots.pem" "${names[@]}" >"$IT_DIR/hold-first.txt"
bench_handshakes "$IT_DIR/hold-roots.pem" "${names[@]}" >"$IT_DIR/hold-loaded.txt"
T_FIRST=$(bench_median_ms "$IT_DIR/hold-first.txt") || { fail "5a: a first handshake did not verify"; T_FIRST=""; }
T_LOADED=$(bench_median_ms "$IT_DIR/hold-loaded.txt") || { fail "5a: a handshake of a loaded name did not verify"; T_LOADED=""; }
say "5a: stored, not loaded: first handshake median $T_FIRST ms; loaded: $T_LOADED ms"
bench_row "5a first handshake, stored not loaded" "${T_FIRST:-FAILED}${T_FIRST:+ ms (pushed, held)}" \
	"${T_LOADED:-FAILED}${T_LOADED:+ ms loaded}" \
	"$(bench_ratio "$T_FIRST" "$T_LOADED") ($(awk -v a="${T_FIRST:-0}" -v b="${T_LOADED:-0}" 'BEGIN { printf "%+.1f ms", a - b }'))" \
	"medians over $HOLD_NAMES names of $HOLD_STORED stored (file storage, gen_certs EC P-256), preload on_demand, hold_timeout 8: python ssl connect + handshake through fe_tls_sni (acme-sni-peek held until the agent read the PEM from storage, checked it, wrote it to cert_dir with fsync and pushed it: new/set/commit ssl cert, add ssl crt-list), every certificate verified for its name; then the same names again (loaded)"
new=(); for i in $(seq 1 "$HOLD_NEW"); do new+=("new$i.hold-new.test"); done
bench_handshakes "$IT_DIR/hold-roots.pem" "${new[@]}" >"$IT_DIR/hold-new.txt"
T_NEW=$(bench_median_ms "$IT_DIR/hold-new.txt") || { fail "5b: a new name's first handshake did not verify"; T_NEW=""; }
say "5b: new name: first handshake median $T_NEW ms (issued meanwhile)"
bench_row "5b first handshake, new name" "${T_NEW:-FAILED}${T_NEW:+ ms (issued, held)}" \
	"${T_LOADED:-FAILED}${T_LOADED:+ ms loaded}" "$(bench_ratio "$T_NEW" "$T_LOADED")" \
	"median of $HOLD_NEW new names one after another: the first handshake waits while Pebble (PEBBLE_VA_NOSLEEP=1, local) issues (http-01 through the same HAProxy), ECDSA P-256; verified against Pebble's root; without the hold that first handshake gets the default certificate"

# 5e: every stored name visited once, one after another
visit=(); for i in $(seq 0 $((HOLD_STORED - 1))); do visit+=("host$i.hold.test"); done
t0=$(bench_now)
bench_handshakes "$IT_DIR/hold-roots.pem" "${visit[@]}" >"$IT_DIR/hold-visit.txt"
T_VISIT=$(bench_dt "$t0" "$(bench_now)")
V_OK=$(awk '$2 == 1' "$IT_DIR/hold-visit.txt" | wc -l)
V_P50=$(awk '{ print $3 }' "$IT_DIR/hold-visit.txt" | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int(NR * 0.5) + 1] }')
V_P99=$(awk '{ print $3 }' "$IT_DIR/hold-visit.txt" | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int(NR * 0.99) + 1] }')
settled_hot() { V_HAP=$(bench_count_certs "$HAP_SOCK" .hold.test.pem); [ "$V_HAP" -le $((HOLD_MAX_LOADED + 5)) ]; }
wait_for 30 settled_hot
V_HAP=$(bench_count_certs "$HAP_SOCK" .hold.test.pem)
V_DIR=$(find "$HAP_CERTS" -name '*.hold.test.pem' | wc -l)
say "5e: $HOLD_STORED names visited in $T_VISIT s ($V_OK verified, first handshake p50 $V_P50 ms, p99 $V_P99 ms); HAProxy holds $V_HAP, cert_dir $V_DIR (max_loaded $HOLD_MAX_LOADED)"
[ "$V_OK" = "$HOLD_STORED" ] || fail "5e: $((HOLD_STORED - V_OK)) of $HOLD_STORED first handshakes did not verify"
bench_row "5e hot set, $HOLD_STORED names visited" "HAProxy holds $V_HAP, cert_dir $V_DIR" \
	"max_loaded $HOLD_MAX_LOADED" "$(bench_ratio "$V_HAP" "$HOLD_MAX_LOADED") (held/max_loaded)" \
	"the agent of 5a (preload on_demand, max_loaded $HOLD_MAX_LOADED): every one of the $HOLD_STORED stored names visited once, one after another ($T_VISIT s, $V_OK verified; first handshake p50 $V_P50 ms, p99 $V_P99 ms, each pushed while held, the idle longest removed: del ssl crt-list + del ssl cert); then HAProxy's 'show ssl cert' count of them and the files in cert_dir"
stop_pid "$AGENT_PID"
stop_pid "$HAP_PID"

# ---- 5c/5d: 100,000 certificates ---------------------------------------------
BIG=$IT_DIR/hold-big
mkdir -p "$BIG/certs" "$BIG/disk"
rport=$(free_port)
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$BIG" >"$BIG/redis.log" 2>&1 &
IT_PIDS+=($!)
wait_for 10 redis-cli -p "$rport" ping || { fail "5c: redis does not start"; exit 0; }
t0=$(bench_now)
"$TOOLS/gen_certs" --store "redis:127.0.0.1:$rport:big" --count "$HOLD_BIG" --domain big.test \
	--cert-dir "$BIG/disk" >"$BIG/gen.log" 2>&1 || { fail "5c: gen_certs failed"; exit 0; }
say "5c: gen_certs wrote $HOLD_BIG certificates into Redis and a directory in $(bench_dt "$t0" "$(bench_now)") s"
bspoa=$(free_port); badmin=$(free_port)
bench_agent_json "$IT_DIR/agent.json" "$BIG/agent.json" 'storage="redis"' \
	"storage_config.redis={\"port\": $rport, \"namespace\": \"big\"}" \
	"spoa.listen=\"127.0.0.1:$bspoa\"" "admin.listen=\"127.0.0.1:$badmin\"" \
	"haproxy.runtime=[\"unix:$BIG/no-haproxy.sock\"]" "haproxy.cert_dir=\"$BIG/certs\""
t0=$(bench_now)
"$IT_BIN" -c "$BIG/agent.json" >"$BIG/agent.log" 2>&1 &
bpid=$!
IT_PIDS+=($bpid)
for _ in $(seq 1200); do grep -q ' ready: ' "$BIG/agent.log" && break; sleep 0.05; done
t1=$(bench_now)
T_READY="" RSS_READY="" HWM_BG="" T_BG="" CPU_BG="" BG_TXT=""
if grep -q ' ready: ' "$BIG/agent.log"; then
	T_READY=$(bench_dt "$t0" "$t1")
	RSS_READY=$(awk -v k="$(bench_rss "$bpid")" 'BEGIN { printf "%.1f", k / 1024 }')
	# the metadata comes from the "meta/<host>" records gen_certs wrote
	# (no PEM parsed); the agent logs when all is known
	for _ in $(seq 3000); do grep -q 'stored certificates known in' "$BIG/agent.log" && break; sleep 0.05; done
	if grep -q 'stored certificates known in' "$BIG/agent.log"; then
		T_BG=$(bench_dt "$t0" "$(bench_now)")
		HWM_BG=$(awk -v k="$(bench_hwm "$bpid")" 'BEGIN { printf "%.1f", k / 1024 }')
		CPU_BG=$(awk -v t="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / t }' "/proc/$bpid/stat")
		BG_TXT=$(grep -o 'metadata of .*' "$BIG/agent.log" | tail -1)
	fi
	say "5c: agent ready in $T_READY s with $HOLD_BIG certificates (RSS $RSS_READY MiB); metadata of all known after $T_BG s (agent CPU $CPU_BG s, VmHWM $HWM_BG MiB; agent: $BG_TXT)"
else
	fail "5c: the agent is not ready within 60 s with $HOLD_BIG certificates"
fi
stop_pid "$bpid"

# HAProxy's own start-up with N of the same certificates in its crt directory
T_DISK_LAST="" N_DISK_LAST="" DISK_TXT=""
for n in $HOLD_DISK; do
	dd=$BIG/disk-$n
	mkdir -p "$dd"
	find "$BIG/disk" -name '*.pem' | head -n "$n" | xargs -r ln -t "$dd"
	bench_hap_derive "disk$n" spoe "$SPOA_PORT" "$dd" || continue
	t0=$(bench_now)
	if bench_hap_start "disk$n" nocheck; then
		t1=$(bench_now)
		pid=$(eval echo "\$BH_PID_disk$n")
		rss=$(awk -v k="$(bench_rss "$pid")" 'BEGIN { printf "%.0f", k / 1024 }')
		T_DISK_LAST=$(bench_dt "$t0" "$t1"); N_DISK_LAST=$n
		DISK_TXT+="${DISK_TXT:+, }$n: $T_DISK_LAST s ($rss MiB)"
		say "5d: HAProxy with $n certificates in its crt directory answers after $T_DISK_LAST s, RSS $rss MiB"
		stop_pid "$pid"
	else
		fail "5d: HAProxy does not start within 60 s with $n certificates in its crt directory"
		stop_pid "$(eval echo "\$BH_PID_disk$n")"
		break
	fi
done
bench_row "5c agent start, $HOLD_BIG certs, on_demand" \
	"${T_READY:-FAILED}${T_READY:+ s to ready, $RSS_READY MiB}" \
	"${T_DISK_LAST:-FAILED}${T_DISK_LAST:+ s HAProxy, $N_DISK_LAST from disk}" \
	"$(bench_ratio "$T_READY" "$T_DISK_LAST") (agent at $HOLD_BIG / HAProxy at ${N_DISK_LAST:-?})" \
	"agent on Redis (gen_certs), haproxy.preload on_demand, no HAProxy: from exec to its 'ready' log line (reads the index of names, pushes nothing), VmRSS then; the metadata (dates, serials, ARI ids) of all $HOLD_BIG is read in the background afterwards from their meta/<host> records (no PEM parsed): all known after ${T_BG:-?} s from exec, agent CPU ${CPU_BG:-?} s, VmHWM ${HWM_BG:-?} MiB (targets: ready < 10 s, < 128 MiB). Reference: HAProxy 2.6 started with the example config and N of the same PEM files in its crt directory, until it accepts connections (RSS then): $DISK_TXT; $HOLD_BIG from disk was not measured (minutes: HAProxy issue #2073 reports 50,000 in 501 s)"
exit 0
