# SPDX-License-Identifier: Apache-2.0
# Sourced by tests/bench/run.sh in a subshell, with its own peers (uses the
# lib, say, fail, bench_row; the rows and failures go back to run.sh through
# $IT_DIR/fleet1m-rows.tsv and $IT_DIR/fleet1m-failed.txt).
# 8. A fleet at BENCH_NAMES (1,000,000) names (issue 23): three nodes (HAProxy
#    2.6 + agent, haproxy.preload on_demand, fleet.member_lease
#    BENCH_FLEET_LEASE, 10 s) on one Redis filled by gen_certs with metadata
#    records (bench_redis_filled: filled once, then loaded from its cached
#    dump), against Pebble (Debian's, default validity: a renewed certificate
#    is not due again):
#    8a the three agents started at once: time from exec to the "ready" log
#       line (serving), RSS then, and to "names indexed" (every stored name in
#       the index, read in the background); a stored name asked of node 1 as
#       soon as it is ready verifies; RSS, peak and CPU once the background
#       read of every certificate's metadata ended ("metadata of N stored
#       certificates known");
#    8b renewal shares (acme_spoa_renewal_share) against a third of the names;
#    8c first handshake through node 1's HAProxy for a stored name not loaded
#       vs the same names once loaded (medians over BENCH_FLEET_HANDSHAKES, 20);
#    8d a wave of BENCH_FLEET_WAVE (3000) certificates due at once (gen_certs
#       --days 1, under the default 14-day threshold) written while the fleet
#       runs: renewed exactly once each, Pebble's orders counted;
#    8e kill -9 of node 3, then BENCH_FLEET_KILL (300) more due certificates:
#       nodes 1 and 2 count 2 members, take on (queue) node 3's due ones, and
#       renew every one once, timed from the kill against the lease.
# BENCH_NAMES=100000 for a quick run. On the 2-core machine the whole section
# takes about 12 minutes at 1,000,000 when the dump is cached (filling it
# first takes about 12 minutes more).
FLEET_N=${BENCH_NAMES:-1000000}
FLEET_WAVE=${BENCH_FLEET_WAVE:-3000}
FLEET_KILL=${BENCH_FLEET_KILL:-300}
FLEET_LEASE=${BENCH_FLEET_LEASE:-10}
FLEET_HS=${BENCH_FLEET_HANDSHAKES:-20}
# orders in flight per node: Pebble 2.4 can deadlock under many at once (lib.sh
# pebble_deadlocked): 3 nodes x 4 deadlocked it once in a 3,000 wave, x 2 is the default
FLEET_ORDERS=${BENCH_FLEET_ORDERS:-2}
fleet_npids=${#IT_PIDS[@]}
fleet_cleanup() {
	local p
	for p in "${IT_PIDS[@]:$fleet_npids}"; do kill "$p" 2>/dev/null; done
	printf '%s\n' "${BENCH_ROWS[@]}" >"$IT_DIR/fleet1m-rows.tsv"
	[ ${#FAILED[@]} -eq 0 ] || printf '%s\n' "${FAILED[@]}" >"$IT_DIR/fleet1m-failed.txt"
}
trap fleet_cleanup EXIT
BENCH_ROWS=() FAILED=()
FD=$IT_DIR/fleet
mkdir -p "$FD"
# fleet_log_secs LOG PATTERN T0 [last]: seconds from T0 (epoch) to the
# timestamp of the first (last) line of LOG (a file or a glob in quotes)
# holding PATTERN; nothing when none does.
fleet_log_secs() {
	python3 - "$@" <<'PY'
import glob, re, sys
from datetime import datetime, timezone
logs, pat, t0 = glob.glob(sys.argv[1]), sys.argv[2], float(sys.argv[3])
last = len(sys.argv) > 4 and sys.argv[4] == "last"
found = []
for log in logs:
    for line in open(log, errors="replace"):
        if pat in line:
            m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
            if m:
                found.append(datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp())
                if not last:
                    break
if found:
    print("%.2f" % ((max(found) if last else min(found)) - t0))
PY
}
fleet_mib() { awk -v k="$1" 'BEGIN { if (k != "") printf "%.0f", k / 1024 }'; }
# fleet_renewed DOMAIN: hosts of DOMAIN whose renewal was issued, over the
# agents' logs, one line each: "HOST COUNT NODES" (COUNT: issued renewals;
# NODES: the nodes whose log says so).
fleet_renewed() {
	grep -H -o "host=[^ ]*\.$1 issuer=[^ ]* order=[^ ]* certificate issued" "$FD"/agent[123].log 2>/dev/null |
		awk '{ split($1, a, ":"); n = a[1]; sub(/.*agent/, "", n); sub(/\.log$/, "", n)
		       h = a[2]; sub(/^host=/, "", h); c[h]++; w[h] = w[h] n }
		     END { for (h in c) print h, c[h], w[h] }'
}
fleet_started() { cat "$FD"/agent[123].log | grep -c "\.$1 renewal started"; }
# fleet_pebble_orders: orders Pebble holds ("There are now N orders in the db").
fleet_pebble_orders() {
	grep -o 'There are now [0-9]* orders' "$IT_DIR/pebble.log" | tail -1 | awk '{ print $4 + 0 }'
}
# fleet_wait_renewed DOMAIN COUNT TIMEOUT: polls every 2 s until COUNT hosts
# of DOMAIN were renewed; on 60 s without progress, asks whether Pebble hung
# (its known deadlock: FLEET_DEADLOCK=1). Sets FLEET_GOT.
fleet_wait_renewed() {
	local dom=$1 want=$2 end=$(( $(date +%s) + $3 )) last=-1 since
	since=$(date +%s)
	FLEET_DEADLOCK=0
	while :; do
		FLEET_GOT=$(fleet_renewed "$dom" | wc -l)
		[ "$FLEET_GOT" -ge "$want" ] && return 0
		[ "$(date +%s)" -lt "$end" ] || return 1
		if [ "$FLEET_GOT" != "$last" ]; then
			last=$FLEET_GOT since=$(date +%s)
		elif [ $(( $(date +%s) - since )) -ge 60 ]; then
			pebble_deadlocked && FLEET_DEADLOCK=1
			return 1
		fi
		sleep 2
	done
}

say "8. fleet of 3 nodes at $FLEET_N names (Redis), preload on_demand, lease $FLEET_LEASE s"
t0=$(bench_now)
if ! bench_redis_filled "$FD/redis" "$FLEET_N" fleet fleet.test; then
	fail "8: Redis could not be filled with $FLEET_N certificates (see $FD/redis)"
	exit 0
fi
say "8: Redis with $FLEET_N certificates: $FILL_HOW"
REDIS_USED=$(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory_human:/ { sub(/\r/, "", $2); print $2 }')
t0=$(bench_now)
SCAN_N=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'fleet:certs/*' | wc -l)
T_SCAN=$(bench_dt "$t0" "$(bench_now)")
say "8: redis-cli --scan (its default COUNT 10 a call) lists $SCAN_N names (certs/) in $T_SCAN s, alone"
IT_STORAGE=redis REDIS_NS=fleet
PEBBLE_HTTP=$(free_port)
if ! start_challtestsrv || ! start_pebble "$PEBBLE_HTTP" || ! pebble_roots; then
	fail "8: Pebble does not start"
	exit 0
fi
# the three nodes: HAProxy first (nothing to load), then the agents at once
EXTRA="\"max_concurrent_orders\": $FLEET_ORDERS, \"max_queued_orders\": 100000, \"fleet\": { \"member_lease\": $FLEET_LEASE }"
for n in 1 2 3; do
	NODE=$n; unset HAP_HTTP HAP_HTTPS ADMIN_PORT; SPOA_PORT=$(free_port)
	[ "$n" = 1 ] && HAP_HTTP=$PEBBLE_HTTP
	haproxy_config "$SPOA_PORT"
	IT_HOLD_TIMEOUT=8 IT_HAPROXY_EXTRA='"preload": "on_demand"' agent_config "$EXTRA"
	start_haproxy || { fail "8: HAProxy of node $n does not start"; exit 0; }
	declare -gA "N$n"
	declare -n node=N$n
	node=([HTTP]=$HAP_HTTP [HTTPS]=$HAP_HTTPS [SOCK]=$HAP_SOCK [CERTS]=$HAP_CERTS [ADMIN]=$ADMIN_PORT
	      [SPOA]=$SPOA_PORT [PID]="" [HPID]=$HAP_PID)
	unset -n node
done
declare -A T0 READY RSS_READY BG RSS_BG HWM_BG CPU_BG
for n in 1 2 3; do
	use_node $n
	T0[$n]=$(bench_now)
	http_proxy=http://127.0.0.1:$HAP_HTTP no_proxy=127.0.0.1,localhost \
		"$IT_BIN" -c "$IT_DIR/agent$n.json" >"$FD/agent$n.log" 2>&1 &
	declare -n node=N$n; node[PID]=$!; unset -n node
	IT_PIDS+=($!)
done
# RSS at ready, as soon as each logs it
for _ in $(seq 1200); do
	left=0
	for n in 1 2 3; do
		[ -n "${RSS_READY[$n]:-}" ] && continue
		use_node $n
		if grep -q ' ready: ' "$FD/agent$n.log"; then RSS_READY[$n]=$(bench_rss "$AGENT_PID"); else left=1; fi
	done
	[ $left = 0 ] && break
	sleep 0.05
done
# ready = serving: the names go into the index in the background meanwhile
# (an SNI of a stored name not indexed yet is looked up in storage). The
# first stored name asked of node 1 as soon as it is ready (its HAProxy told
# the agent is up) must verify; the index's end ("names indexed") is timed
# and counted apart.
use_node 1
HS_EARLY_NAME="host$((FLEET_N / 2 + 3)).fleet.test"
# HAProxy's check of the agent (inter 2s) would mark it up only later, and
# a handshake meanwhile skips SPOE: it is told the agent is up, as its check
# of an agent that restarted while HAProxy ran soon would
hap_cmd "set server acme-spoa/agent health up" >/dev/null
HS_EARLY=$(bench_handshakes "$FILL_CAS" "$HS_EARLY_NAME")
T_HS_EARLY=$(bench_dt "${T0[1]}" "$(bench_now)")
declare -A LISTED INDEXED
LOADED=1
for _ in $(seq 600); do
	grep -q 'names indexed in' "$FD"/agent1.log "$FD"/agent2.log "$FD"/agent3.log 2>/dev/null &&
		[ "$(grep -l 'names indexed in' "$FD"/agent[123].log | wc -l)" = 3 ] && break
	sleep 0.1
done
for n in 1 2 3; do
	READY[$n]=$(fleet_log_secs "$FD/agent$n.log" ' ready: ' "${T0[$n]}")
	[ -n "${READY[$n]}" ] || fail "8a: node $n is not ready within 60 s (see $FD/agent$n.log)"
	INDEXED[$n]=$(fleet_log_secs "$FD/agent$n.log" 'names indexed in' "${T0[$n]}")
	LISTED[$n]=$(grep -m1 -o ': [0-9]* names indexed in' "$FD/agent$n.log" | tr -dc '0-9')
	if [ "${LISTED[$n]:-0}" -lt "$FLEET_N" ]; then
		LOADED=0 BG[$n]=never
		fail "8a: node $n indexed ${LISTED[$n]:-?} of $FLEET_N certificates ($(grep -m1 -o 'cannot list stored certificates.*' "$FD/agent$n.log" | cut -c1-160))"
	fi
done
HS_EARLY_MS=$(printf '%s\n' "$HS_EARLY" | bench_median_ms /dev/stdin) ||
	fail "8a: $HS_EARLY_NAME, stored, did not verify through node 1 asked as soon as it was ready (${HS_EARLY:-no answer})"
HS_EARLY_WHEN=$(awk -v h="$T_HS_EARLY" -v i="${INDEXED[1]:-}" 'BEGIN { print (i != "" && h + 0 < i + 0) ? "before its index was read" : "after its index was read" }')
say "8a: $HS_EARLY_NAME asked of node 1 as soon as it was ready: ${HS_EARLY_MS:-FAILED} ms, done at +$T_HS_EARLY s, $HS_EARLY_WHEN (+${INDEXED[1]:-?} s)"
# the background read of the metadata: its end is logged; RSS then
end=$(( $(date +%s) + 900 ))
while [ "$(date +%s)" -lt "$end" ]; do
	left=0
	for n in 1 2 3; do
		[ -n "${BG[$n]:-}" ] && continue
		use_node $n
		if grep -q 'stored certificates known in' "$FD/agent$n.log"; then
			BG[$n]=$(fleet_log_secs "$FD/agent$n.log" 'stored certificates known in' "${T0[$n]}")
			RSS_BG[$n]=$(bench_rss "$AGENT_PID"); HWM_BG[$n]=$(bench_hwm "$AGENT_PID")
			CPU_BG[$n]=$(awk -v t="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / t }' "/proc/$AGENT_PID/stat")
		else
			left=1
		fi
	done
	[ $left = 0 ] && break
	sleep 0.2
done
READY_TXT="" BG_TXT="" READY_MAX="" RSS_MAX=""
for n in 1 2 3; do
	[ -n "${BG[$n]:-}" ] || fail "8a: node $n: the metadata read has not ended within 900 s"
	READY_TXT+="${READY_TXT:+; }node $n ${READY[$n]:-?} s, $(fleet_mib "${RSS_READY[$n]:-}") MiB, all ${LISTED[$n]:-?} names indexed at ${INDEXED[$n]:-?} s"
	READY_MAX=$(awk -v a="$READY_MAX" -v b="${READY[$n]:-}" 'BEGIN { print (a == "" || b + 0 > a + 0) ? b : a }')
	[ "${BG[$n]:-}" = never ] && continue
	BG_TXT+="${BG_TXT:+; }node $n ${BG[$n]:-?} s, RSS $(fleet_mib "${RSS_BG[$n]:-}") MiB, peak $(fleet_mib "${HWM_BG[$n]:-}") MiB, CPU ${CPU_BG[$n]:-?} s"
	RSS_MAX=$(awk -v a="$RSS_MAX" -v b="${RSS_BG[$n]:-}" 'BEGIN { print (a == "" || b + 0 > a + 0) ? b : a }')
done
say "8a: ready, serving (from exec, RSS then): $READY_TXT"
say "8a: metadata of all known (from exec): $BG_TXT"
bench_row "8a 3 nodes ready, $FLEET_N names" "${READY_MAX:-FAILED}${READY_MAX:+ s slowest}" "2 s target" \
	"$(bench_ratio "$READY_MAX" 2) (slowest/target)" \
	"three agents on one Redis holding $FLEET_N certificates (gen_certs, metadata records; $FILL_HOW; Redis $REDIS_USED; redis-cli --scan of the names alone, COUNT 10 a call: $T_SCAN s), preload on_demand, started at once: exec to the 'ready' log line (its timestamp: serving; the names go into the index in the background, an SNI of a stored name not indexed yet looked up in storage), VmRSS when it appeared, and when the index held every name: $READY_TXT; $HS_EARLY_NAME asked of node 1 as soon as it was ready verified in ${HS_EARLY_MS:-?} ms, $HS_EARLY_WHEN"
RSS_TXT=FAILED
[ -n "$RSS_MAX" ] && RSS_TXT="$(fleet_mib "$RSS_MAX") MiB largest"
bench_row "8a RSS after the background read" "$RSS_TXT" \
	"256 MiB target" "$(bench_ratio "$(fleet_mib "$RSS_MAX")" 256) (largest/target)" \
	"VmRSS of each agent once it logged 'metadata of N stored certificates known' (timed from exec), VmHWM and CPU then: $BG_TXT"

if [ "$LOADED" = 0 ]; then
	say "8: a node started without the store: shares, handshakes, the wave and the kill would measure empty agents; not run"
	{
		echo "fleet1m, $(date -u +%F), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $FLEET_N names in Redis ($REDIS_USED; $FILL_HOW)"
		echo "  redis-cli --scan of the names:    $SCAN_N in $T_SCAN s"
		echo "  ready, serving (exec to 'ready'): $READY_TXT"
		echo "  NOT LOADED: $(grep -h -m1 -o 'cannot list stored certificates.*' "$FD"/agent[123].log | head -1)"
	} | tee "$IT_DIR/fleet1m-summary.txt"
	exit 0
fi
# ---- 8b shares --------------------------------------------------------------
members_are() { local n; for n in $2; do use_node $n; [ "$(metric acme_spoa_fleet_members)" = "$1" ] || return 1; done; }
shares_sum() { local want=$1 s sum=0 n; shift
	for n in "$@"; do use_node "$n"; s=$(metric acme_spoa_renewal_share); is_count "$s" >/dev/null || return 1; sum=$((sum + s)); done
	[ "$sum" -ge "$want" ]; }
wait_for $((FLEET_LEASE * 2)) members_are 3 "1 2 3" || fail "8b: the nodes do not all count 3 members"
wait_for 60 shares_sum "$FLEET_N" 1 2 3 || fail "8b: the shares do not add up to $FLEET_N within 60 s"
SHARE_TXT="" SHARE_WORST=""
for n in 1 2 3; do
	use_node $n
	s=$(metric acme_spoa_renewal_share)
	r=$(awk -v s="${s:-0}" -v n="$FLEET_N" 'BEGIN { printf "%.3f", s * 3 / n }')
	SHARE_TXT+="${SHARE_TXT:+, }node $n ${s:-?} ($r)"
	SHARE_WORST=$(awk -v a="$SHARE_WORST" -v r="$r" 'BEGIN { d = r - 1; if (d < 0) d = -d; e = a - 1; if (e < 0) e = -e
		print (a == "" || d > e) ? r : a }')
	awk -v r="$r" 'BEGIN { exit (r >= 0.9 && r <= 1.1) ? 0 : 1 }' || fail "8b: node $n's share $s is not within 10 % of a third of $FLEET_N"
done
say "8b: renewal shares (of a third): $SHARE_TXT"
bench_row "8b renewal shares, 3 nodes" "$SHARE_WORST farthest from 1" "1.000 (a third: $((FLEET_N / 3)))" \
	"$SHARE_WORST (share/third, target 0.9 to 1.1)" \
	"acme_spoa_renewal_share of each node once the metadata of all is known, over a third of $FLEET_N: $SHARE_TXT"

# ---- 8c first handshake at N names ------------------------------------------
use_node 1
wait_for 15 agent_up_in_haproxy || fail "8c: node 1's agent is not UP in its HAProxy"
names=()
for i in $(seq 0 $((FLEET_HS - 1))); do names+=("host$(( (i * FLEET_N / FLEET_HS + 7) % FLEET_N )).fleet.test"); done
bench_handshakes "$FILL_CAS" "${names[@]}" >"$FD/hs-first.txt"
bench_handshakes "$FILL_CAS" "${names[@]}" >"$FD/hs-loaded.txt"
HS_FIRST=$(bench_median_ms "$FD/hs-first.txt") || { fail "8c: a first handshake did not verify"; HS_FIRST=""; }
HS_LOADED=$(bench_median_ms "$FD/hs-loaded.txt") || { fail "8c: a handshake of a loaded name did not verify"; HS_LOADED=""; }
HS_DIFF=$(awk -v a="${HS_FIRST:-0}" -v b="${HS_LOADED:-0}" 'BEGIN { printf "%+.1f", a - b }')
say "8c: first handshake of a stored name not loaded, median $HS_FIRST ms; loaded $HS_LOADED ms ($HS_DIFF ms)"
bench_row "8c first handshake at $FLEET_N names" "${HS_FIRST:-FAILED}${HS_FIRST:+ ms (pushed, held)}" \
	"${HS_LOADED:-FAILED}${HS_LOADED:+ ms loaded}" "$(bench_ratio "$HS_FIRST" "$HS_LOADED") ($HS_DIFF ms; target < +20 ms)" \
	"as 5a, through node 1's HAProxy 2.6 (example config, hold_timeout 8) with $FLEET_N names in Redis: medians over $FLEET_HS names spread over the range, each verified against the gen_certs CAs; then the same names again (loaded)"

# ---- 8d a wave of due certificates ------------------------------------------
o0=$(fleet_pebble_orders)
t0=$(bench_now)
"$IT_BUILD/tools/gen_certs" --store "redis:127.0.0.1:$REDIS_PORT:fleet" --count "$FLEET_WAVE" \
	--domain wave.test --days 1 --shared-key --window 256 --publish >"$FD/gen-wave.log" 2>&1 ||
	fail "8d: gen_certs could not write the wave"
T_WRITE=$(bench_dt "$t0" "$(bench_now)")
WAVE_OK=0
if fleet_wait_renewed wave.test "$FLEET_WAVE" "${BENCH_FLEET_WAVE_TIMEOUT:-900}"; then
	T_WAVE=$(bench_dt "$t0" "$(bench_now)")
	WAVE_OK=1
fi
sleep 3	# a second renewal of one, if any, would start now
o1=$(fleet_pebble_orders)
W_ORDERS=$(( ${o1:-0} - ${o0:-0} ))
W_ONCE=$(fleet_renewed wave.test | awk '$2 == 1' | wc -l)
W_STARTED=$(fleet_started wave.test)
W_BY=$(fleet_renewed wave.test | awk '{ c[$3]++ } END { for (n in c) printf "%snode %s %d", (s++ ? ", " : ""), n, c[n] }')
if [ "$WAVE_OK" = 1 ]; then
	say "8d: $FLEET_WAVE due certificates renewed in $T_WAVE s (written in $T_WRITE s): $W_ORDERS Pebble orders, $W_STARTED renewals started, $W_ONCE renewed once; by $W_BY"
	[ "$W_ORDERS" = "$FLEET_WAVE" ] || fail "8d: Pebble holds $W_ORDERS orders for the $FLEET_WAVE certificates of the wave"
	[ "$W_STARTED" = "$FLEET_WAVE" ] && [ "$W_ONCE" = "$FLEET_WAVE" ] ||
		fail "8d: $W_STARTED renewals started, $W_ONCE of $FLEET_WAVE renewed exactly once"
elif [ "$FLEET_DEADLOCK" = 1 ]; then
	fail "8d: Pebble deadlocked (its known lock-order inversion) after $FLEET_GOT of $FLEET_WAVE renewals; restarted"
else
	fail "8d: $FLEET_GOT of $FLEET_WAVE renewed within ${BENCH_FLEET_WAVE_TIMEOUT:-900} s ($W_ORDERS Pebble orders)"
fi
bench_row "8d wave of $FLEET_WAVE due at once" "${T_WAVE:-FAILED}${T_WAVE:+ s, $W_ORDERS orders}" \
	"$FLEET_WAVE orders (once each)" "$(bench_ratio "$W_ORDERS" "$FLEET_WAVE") (orders/certificates)" \
	"gen_certs writes $FLEET_WAVE one-day certificates (due under the 14-day threshold) into the running fleet's Redis in $T_WRITE s; time from then until every one was renewed (agents' 'certificate issued' lines), by $W_BY; Pebble's orders counted from its log ('There are now N orders'); $W_STARTED renewals started in all; max_concurrent_orders $FLEET_ORDERS per node, http-01 through node 1's HAProxy"

# ---- 8e kill -9 of node 3 ----------------------------------------------------
node_id() { local -n nd=N$1; printf '%s|127.0.0.1:%s' "$(hostname)" "${nd[SPOA]}" | sha256sum | cut -c1-32; }
ID3=$(node_id 3)
use_node 3
kill -9 "$AGENT_PID"
tk=$(bench_now)
"$IT_BUILD/tools/gen_certs" --store "redis:127.0.0.1:$REDIS_PORT:fleet" --count "$FLEET_KILL" \
	--domain kill.test --days 1 --shared-key --publish >"$FD/gen-kill.log" 2>&1 ||
	fail "8e: gen_certs could not write the certificates due after the kill"
# whose they are while node 1 still counts node 3 (its lease runs on)
use_node 1
OF3=$(python3 - "$ADMIN_PORT" "$FLEET_KILL" "$ID3" "$FD/kill-of3.txt" <<'PY'
import re, sys, urllib.request
port, n, id3 = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = open(sys.argv[4], "w")
import time
c, deadline = 0, time.monotonic() + 5
for i in range(n):
    while True:   # node 1 learns each from the channel, within moments
        try:
            with urllib.request.urlopen("http://127.0.0.1:%s/acme/certificates/host%d.kill.test" % (port, i), timeout=5) as r:
                m = re.search(r'"renewal_owner": *"([0-9a-f]*)"', r.read().decode())
                if m and m.group(1) == id3:
                    c += 1
                    out.write("host%d.kill.test\n" % i)
            break
        except Exception:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
print(c)
PY
)
T_MOVE="" T_KILL_ALL=""
# when the survivors saw it: their log lines (a poll here would add its own delay)
if wait_for $((FLEET_LEASE * 3)) members_are 2 "1 2"; then
	T_MOVE=$(fleet_log_secs "$FD/agent[12].log" "fleet: 2 live member(s)" "$tk" last)
fi
if fleet_wait_renewed kill.test "$FLEET_KILL" $((FLEET_LEASE * 6 + 60)); then
	T_KILL_ALL=$(bench_dt "$tk" "$(bench_now)")
fi
sleep 2
# the take-over: when nodes 1 and 2 took node 3's due ones on ("renewal due:
# queued", first and last) and started their orders (behind their own
# renewals and max_concurrent_orders), from the kill, from their logs
read -r T_QFIRST T_QLAST T_TAKE T_KILL_LAST <<<"$(python3 - "$FD/kill-of3.txt" "$tk" "$FD"/agent1.log "$FD"/agent2.log <<'PY'
import re, sys
from datetime import datetime, timezone
of3, t0 = set(open(sys.argv[1]).read().split()), float(sys.argv[2])
q, st = {}, []
for log in sys.argv[3:]:
    for line in open(log, errors="replace"):
        m = re.match(r"(\S+)Z info: host=(\S+) renewal (due: queued|started)", line)
        if m and m.group(2) in of3:
            t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp() - t0
            if m.group(3) == "started":
                st.append(t)
            else:
                q.setdefault(m.group(2), t)
if q and st and len(q) == len(of3):
    print("%.2f %.2f %.2f %.2f" % (min(q.values()), max(q.values()), min(st), max(st)))
PY
)"
K_ONCE=$(fleet_renewed kill.test | awk '$2 == 1 && ($3 == "1" || $3 == "2")' | wc -l)
say "8e: kill -9 of node 3: 2 members after ${T_MOVE:-?} s; $FLEET_KILL due certificates written after it (node 3's: $OF3): node 3's taken on (queued) by nodes 1 and 2 from ${T_QFIRST:-?} s to ${T_QLAST:-?} s, their orders started from ${T_TAKE:-?} s to ${T_KILL_LAST:-?} s, all renewed ${T_KILL_ALL:-?} s after the kill, $K_ONCE once each by nodes 1 and 2 (lease $FLEET_LEASE s)"
[ -n "$T_MOVE" ] || fail "8e: nodes 1 and 2 do not count 2 members within $((FLEET_LEASE * 3)) s of the kill"
awk -v t="${T_MOVE:-}" -v l="$FLEET_LEASE" 'BEGIN { exit (t != "" && t + 0 <= l + 0) ? 0 : 1 }' ||
	fail "8e: nodes 1 and 2 counted 2 members ${T_MOVE:-never} s after the kill, more than a lease ($FLEET_LEASE s)"
[ -n "$T_KILL_ALL" ] || fail "8e: $FLEET_GOT of $FLEET_KILL renewed after the kill"
[ "$K_ONCE" = "$FLEET_KILL" ] || fail "8e: $K_ONCE of $FLEET_KILL renewed exactly once by nodes 1 and 2"
[ "${OF3:-0}" -gt 0 ] || fail "8e: none of the $FLEET_KILL was node 3's while its lease ran: the check shows nothing"
[ -n "$T_QLAST" ] || fail "8e: not every one of node 3's $OF3 was queued by node 1 or 2 (their logs)"
awk -v t="${T_QLAST:-}" -v l="$FLEET_LEASE" 'BEGIN { exit (t != "" && t + 0 <= l + 0) ? 0 : 1 }' ||
	fail "8e: node 3's due certificates were all taken on (queued by node 1 or 2) ${T_QLAST:-never} s after the kill, more than a lease ($FLEET_LEASE s)"
bench_row "8e kill -9 of node 3" "${T_QLAST:-FAILED}${T_QLAST:+ s to its due ones all taken on}" "$FLEET_LEASE s lease" \
	"$(bench_ratio "$T_QLAST" "$FLEET_LEASE") (time/lease)" \
	"kill -9 of node 3, then gen_certs writes $FLEET_KILL one-day certificates ($OF3 of them node 3's while its lease runs on, GET /acme/certificates/{host} on node 1); nodes 1 and 2 count 2 members ${T_MOVE:-?} s after the kill; they queued node 3's renewals from ${T_QFIRST:-?} s to ${T_QLAST:-?} s after it ('renewal due: queued'), and started their orders from ${T_TAKE:-?} s to ${T_KILL_LAST:-?} s (behind their own $((FLEET_KILL - ${OF3:-0})) at max_concurrent_orders $FLEET_ORDERS a node); every one renewed (once, by nodes 1 and 2: $K_ONCE) ${T_KILL_ALL:-?} s after it"

# ---- a block the README can quote --------------------------------------------
{
	echo "fleet1m, $(date -u +%F), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $FLEET_N names in Redis ($REDIS_USED; $FILL_HOW)"
	echo "  redis-cli --scan of the names:    $SCAN_N in $T_SCAN s"
	echo "  ready, serving (exec to 'ready'): $READY_TXT"
	echo "  metadata of all known:            $BG_TXT"
	echo "  renewal shares (of a third):      $SHARE_TXT"
	echo "  first handshake, stored/loaded:   ${HS_FIRST:-?} ms / ${HS_LOADED:-?} ms ($HS_DIFF ms)"
	echo "  wave of $FLEET_WAVE due at once:        ${T_WAVE:-FAILED} s, $W_ORDERS Pebble orders, $W_ONCE renewed once ($W_BY)"
	echo "  kill -9 of node 3 (lease $FLEET_LEASE s):   2 members after ${T_MOVE:-?} s, node 3's due ones queued by the others after ${T_QFIRST:-?}..${T_QLAST:-?} s, their orders started after ${T_TAKE:-?}..${T_KILL_LAST:-?} s, all $FLEET_KILL renewed after ${T_KILL_ALL:-?} s ($OF3 were node 3's)"
} | tee "$IT_DIR/fleet1m-summary.txt"
exit 0
