#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make bench: figures measured side by side in one run, printed as ratios.
#   0. The SPOA server's own cost: NOTIFY/s answered on one connection with
#      BENCH_SPOA_PIPELINE (20) in flight by the agent's SPOA server vs a
#      do-nothing responder written for the bench, and server CPU per ACK;
#      0d the same load on the whole agent (once it runs, with section 1).
#   1. SPOE overhead: HAProxy request rate with the SPOE filter vs the same
#      config without it (TLS new connection per request, TLS keep-alive,
#      http-01 answered by the agent vs a static http-request return; unknown
#      tokens, one repeated and a new one each request, vs the same static
#      return, beside the SNI path).
#   2. On-demand issuance of BENCH_N_ISSUE names vs lego on the same Pebble.
#   3. Loading BENCH_N_LOAD stored certificates into a fresh HAProxy through
#      the agent vs HAProxy loading the same files from disk; agent memory.
#   4. Work at rest: 20,000 and 100,000 certificates in Redis, nothing
#      changing: Redis commands per minute and SPOE max latency over 65 s.
#   5. Held ClientHello and hot set (tests/bench/hold.sh): first-handshake
#      latency of a stored name not loaded yet and of a new name vs a loaded
#      one; agent start and memory at 100,000 certificates (preload
#      on_demand) beside HAProxy's own start with N in a crt directory.
#   6. issuers (tests/bench/issuers.sh): time to a verified first handshake
#      for a new name with the first of two CAs up, frozen (the fallback
#      within the held handshake), and marked down.
#   7. Import (tests/bench/import.sh): BENCH_N_IMPORT (10000) certificates of
#      a crt directory imported into file storage and into Redis, beside
#      gen_certs writing as many straight into the store.
#   8. fleet1m (tests/bench/fleet1m.sh): three nodes on one Redis holding
#      BENCH_NAMES (1,000,000) certificates, preload on_demand: time to ready,
#      RSS after the background read, renewal shares, first handshake of a
#      stored name not loaded vs loaded, a wave of 3,000 due at once renewed
#      once each, kill -9 of a node (its share renewed by the others within a
#      lease). About 12 minutes on 2 cores with the filled Redis cached
#      (bench_redis_filled), 12 more to fill it the first time.
# Environment: BENCH_SECONDS (wrk seconds per variant, 10), BENCH_ROUNDS (A B B A
# rounds those seconds are spread over, 2), BENCH_N_ISSUE (20),
# BENCH_SPOA_SECONDS (3 per run), BENCH_SPOA_ROUNDS (2 rounds of A B B A),
# BENCH_SPOA_DEFER (0; N also runs the agent deferring one ACK in N),
# BENCH_SPOA_PIN (0; 1 pins servers to CPU 1 and the load generator to CPU 0),
# BENCH_ONLY (all sections; "spoa": section 0 only, no HAProxy, Pebble or wrk
# needed; "spoa,spoe": sections 0 and 1; "rest": section 4 only, Redis;
# "hold": section 5 only; BENCH_HOLD_* in tests/bench/hold.sh; "issuers":
# section 6 only; BENCH_ISSUERS_* in tests/bench/issuers.sh; "import": section 7 only;
# "fleet1m": section 8 only, BENCH_NAMES and BENCH_FLEET_* in tests/bench/fleet1m.sh),
# BENCH_REST_COUNTS ("20000 100000"), BENCH_REST_SECONDS (65),
# BENCH_N_LOAD (3000), BENCH_THREADS (2), BENCH_CONNS (50), IT_KEEP=1 keeps
# the temp dir. Exit 0 when every figure was produced.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../integration/lib.sh"
source "$HERE/bench_lib.sh"
it_init

SECS=${BENCH_SECONDS:-10}
N_ISSUE=${BENCH_N_ISSUE:-20}
N_LOAD=${BENCH_N_LOAD:-3000}
BENCH_THREADS=${BENCH_THREADS:-2}
BENCH_CONNS=${BENCH_CONNS:-50}
BENCH_TOKEN=benchtok_0123456789abcdefghijklmnopqrstuvwxyzABCD
BENCH_KEYAUTH=$BENCH_TOKEN.thumbprint_0123456789abcdefghijklmnopqrstu
TOOLS=$IT_BUILD/tools
FAILED=()
fail() { FAILED+=("$1"); echo "bench: FAILED: $1"; }
say() { echo "bench: $*"; }
T_START=$(bench_now)

# bench_only_has NAME: BENCH_ONLY is unset or lists NAME.
# bench_only_ends NEXT: when BENCH_ONLY does not list NEXT, prints the table
# of what ran and exits.
bench_only_has() { [ -z "${BENCH_ONLY:-}" ] || case ",$BENCH_ONLY," in *",$1,"*) true ;; *) false ;; esac; }
bench_only_ends() {
	bench_only_has "$1" && return 0
	say "total bench time $(bench_dt "$T_START" "$(bench_now)") s (BENCH_ONLY=$BENCH_ONLY)"
	bench_table
	[ ${#FAILED[@]} -eq 0 ] || { printf '\nmissing or failed:\n'; printf '  - %s\n' "${FAILED[@]}"; exit 1; }
	exit 0
}

# ---- 0. the SPOA server's own cost -------------------------------------------
spoa_section() {
	local t secs=${BENCH_SPOA_SECONDS:-3} rounds=${BENCH_SPOA_ROUNDS:-2} depth=${BENCH_SPOA_PIPELINE:-20}
	local defer=${BENCH_SPOA_DEFER:-0} how ratio
	for t in spop_client spoa_bench spop_null; do
		[ -x "$TOOLS/$t" ] || { fail "0 SPOA server: $TOOLS/$t missing (make all)"; return; }
	done
	say "0. SPOA server: one connection, $depth NOTIFYs in flight, ${secs}s per run, $rounds rounds of A B B A"
	if ! bench_spoa "$secs" "$rounds" "$depth" "$defer"; then
		fail "0 SPOA server bench: a run failed (see $IT_DIR/spoa-*.log)"
		return
	fi
	ratio=$(bench_ratio "$SPOA_RATE_A" "$SPOA_RATE_B")
	say "SPOA server: agent $SPOA_RATE_A NOTIFY/s ($SPOA_CPU_A µs CPU per ACK)," \
		"do-nothing responder $SPOA_RATE_B NOTIFY/s ($SPOA_CPU_B µs), ratio $ratio; runs: $SPOA_RUNS"
	how="tests/tools/spop_client bench --pipeline $depth (acme-sni, sni=www.example.com; blocking send and recv of whole batches, ACKs matched by stream-id/frame-id) against tests/tools/spoa_bench (spoa/ linked from libacmespoa.a, a handler setting sess.seen like acme-sni) and tests/tools/spop_null (libev loop, frame headers only, one set-var ACK per NOTIFY, one send per batch)"
	bench_spoa_pins
	[ ${#BENCH_PIN_S[@]} -gt 0 ] && how+="; server pinned to CPU 1, load generator to CPU 0 (BENCH_SPOA_PIN=1)"
	bench_row "0a SPOA server, 1 conn, $depth in flight" "$SPOA_RATE_A NOTIFY/s" \
		"$SPOA_RATE_B NOTIFY/s do-nothing" "$ratio agent/do-nothing" \
		"$how; ${secs}s per run after a tenth of warm-up, $rounds rounds of A B B A; each run: $SPOA_RUNS"
	bench_row "0b SPOA server CPU per ACK" "$SPOA_CPU_A us" "$SPOA_CPU_B us do-nothing" \
		"$(bench_ratio "$SPOA_CPU_A" "$SPOA_CPU_B") agent/do-nothing" \
		"user + system CPU of the server process (/proc/PID/stat) over each run divided by its ACKs (warm-up included), mean of the runs of 0a: the figure least moved by other load on the machine"
	[ -n "$SPOA_RATE_D" ] || return
	say "SPOA server deferring 1 ACK in $defer: $SPOA_RATE_D NOTIFY/s ($SPOA_CPU_D µs CPU per ACK)"
	bench_row "0c SPOA server, 1 ACK in $defer deferred" "$SPOA_RATE_D NOTIFY/s" \
		"$SPOA_RATE_A NOTIFY/s none deferred" "$(bench_ratio "$SPOA_RATE_D" "$SPOA_RATE_A") deferred/not" \
		"spoa_bench --defer $defer: the handler defers one message in $defer and completes it on the next loop turn (ev_idle); $SPOA_CPU_D µs CPU per ACK"
}
bench_only_has spoa && spoa_section
# ---- 4. work at rest: N certificates in Redis (no HAProxy needed) -------------
bench_only_has rest && source "$HERE/rest.sh"
# ---- 5. held ClientHello and hot set: own peers, in a subshell -----------------
if bench_only_has hold; then
	( source "$HERE/hold.sh" )
	while IFS= read -r row; do [ -n "$row" ] && BENCH_ROWS+=("$row"); done <"$IT_DIR/hold-rows.tsv"
	if [ -f "$IT_DIR/hold-failed.txt" ]; then
		while IFS= read -r f; do FAILED+=("$f"); done <"$IT_DIR/hold-failed.txt"
	fi
fi
# ---- 6. issuers: fallback to a second CA, own peers, in a subshell ----------
if bench_only_has issuers; then
	( source "$HERE/issuers.sh" )
	while IFS= read -r row; do [ -n "$row" ] && BENCH_ROWS+=("$row"); done <"$IT_DIR/issuers-rows.tsv"
	if [ -f "$IT_DIR/issuers-failed.txt" ]; then
		while IFS= read -r f; do FAILED+=("$f"); done <"$IT_DIR/issuers-failed.txt"
	fi
fi
# ---- 7. import from a crt directory (no HAProxy needed) ------------------------
bench_only_has import && source "$HERE/import.sh"
# ---- 8. a fleet at a million names: own peers, in a subshell ---------------
if bench_only_has fleet1m; then
	( source "$HERE/fleet1m.sh" )
	while IFS= read -r row; do [ -n "$row" ] && BENCH_ROWS+=("$row"); done <"$IT_DIR/fleet1m-rows.tsv"
	if [ -f "$IT_DIR/fleet1m-failed.txt" ]; then
		while IFS= read -r f; do FAILED+=("$f"); done <"$IT_DIR/fleet1m-failed.txt"
	fi
fi
bench_only_ends spoe

bench_deps || { echo "bench: wrk is missing and could not be installed"; exit 1; }
for t in gen_certs storage_tool; do
	[ -x "$TOOLS/$t" ] || { echo "bench: $TOOLS/$t missing (make all)"; exit 1; }
done
[ -x "$IT_BIN" ] || { echo "bench: $IT_BIN missing (make)"; exit 1; }
say "$(nproc) CPUs, $(haproxy -v | head -1 | cut -d' ' -f1-3), wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null)," \
	"lego $([ "$BENCH_HAVE_LEGO" = 1 ] && dpkg-query -W -f='${Version}' lego 2>/dev/null || echo none); temp dir $IT_DIR"

# ---- set-up: CA, DNS, HAProxy with and without SPOE, the agent -------------
SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_challtestsrv || { echo "bench: pebble-challtestsrv does not start"; exit 1; }
start_pebble "$HAP_HTTP" || { echo "bench: pebble does not start"; exit 1; }
pebble_roots || { echo "bench: cannot read Pebble's roots"; exit 1; }
cp "$IT_DIR/pebble-roots.pem" "$IT_DIR/roots-agent.pem"
agent_config
# names for on-demand issuance: a zone of their own (two labels after "*.")
bench_agent_json "$IT_DIR/agent.json" "$IT_DIR/agent.json" 'domains=["*.bench.test"]'
STORE=$IT_DIR/store
# the host the SPOE runs hit: it already has a certificate (storage + cert_dir)
"$TOOLS/gen_certs" --store "file:$STORE" --cert-dir "$HAP_CERTS" --name localhost 2>/dev/null ||
	{ echo "bench: gen_certs failed"; exit 1; }
"$TOOLS/storage_tool" "file:$STORE" put "challenges/$BENCH_TOKEN" "$BENCH_KEYAUTH" 3600 ||
	{ echo "bench: storage_tool failed"; exit 1; }
start_haproxy || { echo "bench: HAProxy does not start with the example config"; exit 1; }
bench_hap_derive plain plain "$SPOA_PORT" "$HAP_CERTS" || exit 1
bench_hap_start plain || { echo "bench: HAProxy without SPOE does not start"; exit 1; }
# an identical second copy: A/A control run showing the machine's noise floor
bench_hap_derive plain2 plain "$SPOA_PORT" "$HAP_CERTS" || exit 1
bench_hap_start plain2 || { echo "bench: second HAProxy without SPOE does not start"; exit 1; }

AGENT_OK=1
if ! start_agent; then
	AGENT_OK=0
	fail "the agent does not start (see below); agent figures missing"
	tail -5 "$IT_DIR/agent.log" | sed 's/^/#   /'
fi
AGENT_BASE_KB=""
[ "$AGENT_OK" = 1 ] && AGENT_BASE_KB=$(bench_hwm "$AGENT_PID")
# the SPOE variant must really talk to the agent: the known token answers
# (HAProxy marked it down while it was not started yet: its health check
# brings it up within seconds; "health up" only saves that wait)
challenge_answered() {
	[ "$(curl -s --max-time 5 -H 'Host: localhost' "http://127.0.0.1:$1/.well-known/acme-challenge/$BENCH_TOKEN")" = "$BENCH_KEYAUTH" ]
}
if [ "$AGENT_OK" = 1 ]; then
	hap_cmd "set server acme-spoa/agent health up" >/dev/null
	wait_for 30 challenge_answered "$HAP_HTTP" ||
		{ AGENT_OK=0; fail "the agent does not answer http-01 through HAProxy within 30 s"; }
fi
body=$(curl -s --max-time 5 -H 'Host: localhost' "http://127.0.0.1:$BH_HTTP_plain/.well-known/acme-challenge/$BENCH_TOKEN")
[ "$body" = "$BENCH_KEYAUTH" ] || fail "HAProxy without SPOE does not answer the static challenge (got '$body')"

# ---- 0d. the whole agent on the same load ------------------------------------
# acme-spoa itself (its acme-sni handler: name normalized, certificate found in
# memory) against the do-nothing responder, A B B A as in 0a (with
# BENCH_SPOA_PIN=1 the agent, all its threads, is pinned as the servers of 0a
# for the time of it).
whole_agent_section() {
	local secs=${BENCH_SPOA_SECONDS:-3} rounds=${BENCH_SPOA_ROUNDS:-2} depth=${BENCH_SPOA_PIPELINE:-20}
	local k step acks_a=0 secs_a=0 acks_b=0 secs_b=0 runs="" cpu_a="" ra rb pinned=0 ok=1
	bench_spoa_pins
	if [ ${#BENCH_PIN_S[@]} -gt 0 ] && taskset -a -p -c 1 "$AGENT_PID" >/dev/null 2>&1; then
		pinned=1
	fi
	for k in $(seq "$rounds"); do
		for step in A B B A; do
			if [ "$step" = A ]; then
				bench_spoa_load whole "$SPOA_PORT" "$AGENT_PID" "$secs" "$depth" localhost ||
					{ fail "0d whole agent: a run failed (see $IT_DIR/spoa-whole.log)"; ok=0; break 2; }
				acks_a=$((acks_a + SR_ACKS)); secs_a=$(awk -v a="$secs_a" -v b="$SR_SECS" 'BEGIN { print a + b }')
				cpu_a+=" $SR_CPU_US"
				runs+="${runs:+ }agent=$(awk -v a="$SR_ACKS" -v s="$SR_SECS" 'BEGIN { printf "%.0f", a / s }')"
			else
				bench_spoa_run null "$secs" "$depth" "$TOOLS/spop_null" ||
					{ fail "0d whole agent: a do-nothing run failed"; ok=0; break 2; }
				acks_b=$((acks_b + SR_ACKS)); secs_b=$(awk -v a="$secs_b" -v b="$SR_SECS" 'BEGIN { print a + b }')
				runs+="${runs:+ }null=$(awk -v a="$SR_ACKS" -v s="$SR_SECS" 'BEGIN { printf "%.0f", a / s }')"
			fi
		done
	done
	[ "$pinned" = 1 ] && taskset -a -p -c "0-$(( $(nproc) - 1 ))" "$AGENT_PID" >/dev/null 2>&1
	[ "$ok" = 1 ] || return
	ra=$(awk -v a="$acks_a" -v s="$secs_a" 'BEGIN { printf "%.0f", a / s }')
	rb=$(awk -v a="$acks_b" -v s="$secs_b" 'BEGIN { printf "%.0f", a / s }')
	say "whole agent (acme-sni): $ra NOTIFY/s ($(bench_mean "$cpu_a") µs CPU per ACK), do-nothing $rb NOTIFY/s; runs: $runs"
	bench_row "0d whole agent, acme-sni, $depth in flight" "$ra NOTIFY/s" "$rb NOTIFY/s do-nothing" \
		"$(bench_ratio "$ra" "$rb") agent/do-nothing" \
		"as 0a, but against acme-spoa itself on its SPOA port (acme-sni handler, sni=localhost which has a certificate: answered from memory; $(bench_mean "$cpu_a") us agent CPU per ACK); each run: $runs"
}
[ "$AGENT_OK" = 1 ] && bench_only_has spoa && whole_agent_section

# ---- 1. SPOE overhead ---------------------------------------------------------
W="wrk -t$BENCH_THREADS -c$BENCH_CONNS, about ${SECS}s per variant in ${BENCH_ROUNDS:-2} rounds of A B B A"
spoe_pair() {   # key, figure, setting, wrk args (URL with PORT_HTTP/PORT_HTTPS placeholders)
	local key=$1 fig=$2 set=$3 a=() b=() x; shift 3
	for x in "$@"; do
		a+=("$(sed -e "s/PORT_HTTPS/$HAP_HTTPS/; s/PORT_HTTP/$HAP_HTTP/" <<<"$x")")
		b+=("$(sed -e "s/PORT_HTTPS/$BH_HTTPS_plain/; s/PORT_HTTP/$BH_HTTP_plain/" <<<"$x")")
	done
	if [ "$AGENT_OK" != 1 ]; then
		bench_wrk "$key-plain" "$SECS" "${b[@]}"
		bench_row "$fig" "FAILED (agent not running)" \
			"$(awk -v r="$WRK_REQS" -v s="$WRK_SECS" 'BEGIN{printf "%.0f", r/s}') req/s no SPOE" "n/a" "$set"
		return
	fi
	local sni0 h0 sni1 h1
	sni0=$(metric 'acme_spoa_spoe_messages_total{message="acme-sni"}')
	h0=$(metric 'acme_spoa_spoe_messages_total{message="acme-http01"}')
	if ! bench_pair "$key" "$SECS" "${a[@]}" -- "${b[@]}"; then
		fail "$fig: a wrk run failed"
	fi
	sni1=$(metric 'acme_spoa_spoe_messages_total{message="acme-sni"}')
	h1=$(metric 'acme_spoa_spoe_messages_total{message="acme-http01"}')
	# an unread counter must not read as 0 (a delta from 0 would pass the check below)
	is_count "$sni0" "$sni1" "$h0" "$h1" >/dev/null ||
		fail "$fig: the agent's SPOE message counters could not be read ('$sni0' '$sni1' '$h0' '$h1')"
	if [ "$PAIR_BAD_A" != 0 ] || [ "$PAIR_BAD_B" != 0 ]; then
		fail "$fig: errors or non-2xx answers (with SPOE $PAIR_BAD_A, without $PAIR_BAD_B)"
	fi
	# with a new connection per request, each connection must have reached the agent
	if [ "$key" = tls-close ] && [ $(( ${sni1:-0} - ${sni0:-0} )) -lt $(( PAIR_REQS_A * 95 / 100 )) ]; then
		fail "$fig: the agent handled $(( ${sni1:-0} - ${sni0:-0} )) SNI messages for $PAIR_REQS_A connections"
	fi
	say "$fig: with SPOE $PAIR_A req/s ($PAIR_REQS_A requests; agent handled" \
		"$(( ${sni1:-0} - ${sni0:-0} )) SNI, $(( ${h1:-0} - ${h0:-0} )) http-01 messages)," \
		"without $PAIR_B req/s ($PAIR_REQS_B requests)"
	bench_row "$fig" "$PAIR_A req/s with SPOE" "$PAIR_B req/s without SPOE" \
		"$(bench_ratio "$PAIR_A" "$PAIR_B") with/without (rounds: $PAIR_ROUNDS)" \
		"$set; $W; agent handled $(( ${sni1:-0} - ${sni0:-0} )) SNI + $(( ${h1:-0} - ${h0:-0} )) http-01 SPOE messages"
}
say "1. SPOE overhead ($W)"
spoe_pair tls-close "1a SPOE, TLS new connection per request" \
	"wrk -H 'Connection: close' https://localhost:PORT/ (SNI localhost, which has a stored certificate; the example config sends the SNI to the agent once per connection); reference = the same config without its filter spoe / send-spoe-group lines" \
	-H 'Connection: close' "https://localhost:PORT_HTTPS/"
spoe_pair tls-keepalive "1b SPOE, TLS keep-alive" \
	"wrk https://localhost:PORT/ keep-alive (one SNI message per connection, then none)" \
	"https://localhost:PORT_HTTPS/"
spoe_pair http01 "1c http-01 answer: agent vs static return" \
	"wrk -H 'Host: localhost' http://127.0.0.1:PORT/.well-known/acme-challenge/<token> keep-alive; agent answers from memory/storage vs http-request return of the same static body" \
	-H 'Host: localhost' "http://127.0.0.1:PORT_HTTP/.well-known/acme-challenge/$BENCH_TOKEN"
# 1e/1f: unknown http-01 tokens (scanners), beside the SNI path of 1a/1b: a
# 404 answered by the agent vs the plain config's static answer. 1e repeats
# one well-formed unknown token (cached absent after one storage read); 1f
# sends a new random 43-character token each request (one file-store read
# each: the store may be shared by other agents on the box, so it is asked).
unknown_pair() {   # key, figure, setting, wrk args for the SPOE side
	local key=$1 fig=$2 set=$3 m0 m1 d0 d1; shift 3
	[ "$AGENT_OK" = 1 ] || return
	m0=$(metric acme_spoa_http01_unknown_from_memory_total)
	d0=$(metric acme_spoa_http01_storage_reads_total)
	bench_pair "$key" "$SECS" -H 'Host: localhost' "$@" -- \
		-H 'Host: localhost' "http://127.0.0.1:$BH_HTTP_plain/.well-known/acme-challenge/$BENCH_TOKEN" ||
		fail "$fig: a wrk run failed"
	m1=$(metric acme_spoa_http01_unknown_from_memory_total)
	d1=$(metric acme_spoa_http01_storage_reads_total)
	is_count "$m0" "$m1" "$d0" "$d1" >/dev/null || fail "$fig: the agent's http-01 counters could not be read"
	# every answer with SPOE is the 404 of an unknown token (counted as bad by wrk)
	[ "$PAIR_BAD_A" -ge $((PAIR_REQS_A * 99 / 100)) ] || fail "$fig: $PAIR_BAD_A of $PAIR_REQS_A answers were 404"
	[ "$PAIR_BAD_B" = 0 ] || fail "$fig: errors without SPOE ($PAIR_BAD_B)"
	say "$fig: with SPOE $PAIR_A req/s ($(( ${m1:-0} - ${m0:-0} )) answered from memory," \
		"$(( ${d1:-0} - ${d0:-0} )) storage reads), plain $PAIR_B req/s"
	bench_row "$fig" "$PAIR_A req/s unknown token" "$PAIR_B req/s no SPOE, static" \
		"$(bench_ratio "$PAIR_A" "$PAIR_B") unknown/plain (rounds: $PAIR_ROUNDS)" \
		"$set; $W; $(( ${m1:-0} - ${m0:-0} )) answered from memory, $(( ${d1:-0} - ${d0:-0} )) storage reads; compare 1b (SNI path) and 1c (known token)"
}
unknown_pair http01-unknown "1e http-01, one unknown token repeated" \
	"wrk http://127.0.0.1:PORT/.well-known/acme-challenge/<43-char unknown token> keep-alive" \
	"http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/bench-unknown_0123456789abcdefghijklmnopq"
cat > "$IT_DIR/random-token.lua" <<'LUA'
-- a new well-formed 43-character token each request, as a scanner sends
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local seeded = false
request = function()
	if not seeded then math.randomseed(os.time() + math.floor(os.clock() * 1e6)); seeded = true end
	local t = {}
	for i = 1, 43 do local n = math.random(1, 64); t[i] = chars:sub(n, n) end
	return wrk.format("GET", "/.well-known/acme-challenge/" .. table.concat(t))
end
LUA
unknown_pair http01-random "1f http-01, a new unknown token each request" \
	"wrk -s random-token.lua http://127.0.0.1:PORT/ keep-alive (43 random base64url characters a request)" \
	-s "$IT_DIR/random-token.lua" "http://127.0.0.1:$HAP_HTTP/"
if bench_pair control "$SECS" "https://localhost:$BH_HTTPS_plain2/" -- "https://localhost:$BH_HTTPS_plain/" &&
	[ "$PAIR_BAD_A" = 0 ] && [ "$PAIR_BAD_B" = 0 ]; then
	say "1d control: two identical HAProxy configs without SPOE: $PAIR_A vs $PAIR_B req/s"
	bench_row "1d control, same config twice (A/A)" "$PAIR_A req/s copy 1" "$PAIR_B req/s copy 2" \
		"$(bench_ratio "$PAIR_A" "$PAIR_B") copy1/copy2 (rounds: $PAIR_ROUNDS)" \
		"two HAProxy processes with the same no-SPOE config, TLS keep-alive as in 1b, $W: any ratio away from 1.00 here is the machine's noise, not SPOE"
else
	fail "1d control run failed"
fi
stop_pid "$BH_PID_plain"
stop_pid "$BH_PID_plain2"
bench_only_ends issue

# ---- 2. on-demand issuance vs lego ------------------------------------------
zone=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])).get("domains") or ["*.test"]
w=[x for x in d if x.startswith("*.")]; print(w[0][2:] if w else "test")' "$IT_DIR/agent.json")
NAMES=()
for i in $(seq 0 $((N_ISSUE - 1))); do NAMES+=("iss$i.$zone"); done
say "2. on-demand issuance of $N_ISSUE names (iss0..iss$((N_ISSUE - 1)).$zone)"
T_AGENT=""
if [ "$AGENT_OK" = 1 ]; then
	o0=$(metric acme_spoa_orders_started_total)
	t0=$(bench_now)
	cpids=()
	for n in "${NAMES[@]}"; do https_get "$n" & cpids+=($!); done
	if bench_wait_served "$IT_DIR/roots-agent.pem" "$HAP_HTTPS" 180 "${NAMES[@]}"; then
		t1=$(bench_now)
		T_AGENT=$(bench_dt "$t0" "$t1")
	else
		fail "on-demand issuance: not all $N_ISSUE names served within 180 s"
	fi
	wait "${cpids[@]}" 2>/dev/null
	o1=$(metric acme_spoa_orders_started_total)
	say "agent: $N_ISSUE names served with Pebble certificates after ${T_AGENT:-?} s ($(( ${o1:-0} - ${o0:-0} )) orders)"
fi
T_LEGO=""
LEGO_SET="lego not installed"
if [ "$BENCH_HAVE_LEGO" = 1 ]; then
	A_PEBBLE_PORT=$PEBBLE_PORT A_PEBBLE_MGMT=$PEBBLE_MGMT A_PEBBLE_DIR_URL=$PEBBLE_DIR_URL A_PEBBLE_PID=$PEBBLE_PID
	cp "$IT_DIR/pebble.log" "$IT_DIR/pebble-agent.log" 2>/dev/null
	LEGO_PORT=$(free_port)
	# lego's own http-01 server binds one port per process; with a webroot
	# served by one static server on Pebble's httpPort, N runs go in parallel
	mkdir -p "$IT_DIR/lego-webroot"
	python3 -m http.server "$LEGO_PORT" --bind 127.0.0.1 --directory "$IT_DIR/lego-webroot" \
		>"$IT_DIR/lego-webroot.log" 2>&1 &
	IT_PIDS+=($!)
	if bench_wait_port 10 "$LEGO_PORT" && start_pebble "$LEGO_PORT"; then
		LEGO_DIR_URL=$PEBBLE_DIR_URL LEGO_PEBBLE_PID=$PEBBLE_PID
		lego_run() {
			LEGO_CA_CERTIFICATES=$IT_DIR/pebble-ca.pem timeout 120 lego --server "$LEGO_DIR_URL" \
				--accept-tos --email bench@example.com --path "$IT_DIR/lego" --key-type ec256 \
				--http --http.webroot "$IT_DIR/lego-webroot" -d "$1" run >>"$IT_DIR/lego-$1.log" 2>&1
		}
		# account registration before the clock, as the agent's was at its start
		if lego_run "warmup.$zone"; then
			t0=$(bench_now); ok=1 lpids=()
			for n in "${NAMES[@]}"; do lego_run "$n" & lpids+=($!); done
			for p in "${lpids[@]}"; do wait "$p" || ok=0; done
			t1=$(bench_now)
			got=$(ls "$IT_DIR"/lego/certificates/iss*."$zone".crt 2>/dev/null | wc -l)
			if [ "$ok" = 1 ] && [ "$got" = "$N_ISSUE" ]; then
				T_LEGO=$(bench_dt "$t0" "$t1")
				say "lego: $N_ISSUE certificates in $T_LEGO s ($N_ISSUE processes in parallel)"
			else
				fail "lego did not issue all $N_ISSUE certificates ($got); see $IT_DIR/lego-*.log"
				cat "$IT_DIR"/lego-iss*.log | grep -iE 'error|fail' | head -5 | sed 's/^/#   /'
			fi
		else
			fail "lego cannot register/issue on Pebble"; tail -5 "$IT_DIR/lego-warmup.$zone.log" | sed 's/^/#   /'
		fi
		stop_pid "$LEGO_PEBBLE_PID"
		LEGO_SET="lego $(dpkg-query -W -f='${Version}' lego 2>/dev/null) --http --http.webroot DIR --key-type ec256 run -d <name>: $N_ISSUE processes at once, one certificate each, DIR served on Pebble's httpPort by python3 -m http.server; a second Pebble on the same machine; account registered before the clock; ends when every certificate file is written (no HAProxy install). Most of lego's time is its wait between polls of a pending authorization (timestamps in lego-<name>.log)"
	else
		fail "second Pebble or the webroot server for lego does not start"
	fi
	PEBBLE_PORT=$A_PEBBLE_PORT PEBBLE_MGMT=$A_PEBBLE_MGMT PEBBLE_DIR_URL=$A_PEBBLE_DIR_URL PEBBLE_PID=$A_PEBBLE_PID
fi
[ "$BENCH_HAVE_LEGO" = 1 ] || say "no comparison client: lego could not be installed"
bench_row "2  on-demand issuance, $N_ISSUE names" \
	"${T_AGENT:-FAILED}${T_AGENT:+ s}" "${T_LEGO:-n/a}${T_LEGO:+ s lego}" \
	"$(bench_ratio "$T_AGENT" "$T_LEGO") (agent/lego time)" \
	"agent: first HTTPS request for $N_ISSUE new names at once (curl, SNI) until HAProxy serves each a Pebble certificate verified for its name (polled every 50 ms), ECDSA P-256, Pebble PEBBLE_VA_NOSLEEP=1; reference: $LEGO_SET"

# ---- 3. loading N stored certificates into a fresh HAProxy ------------------
say "3. loading $N_LOAD stored certificates into a fresh HAProxy"
[ "$AGENT_OK" = 1 ] && stop_pid "$AGENT_PID"
stop_pid "$HAP_PID"
LOAD_STORE=$IT_DIR/load-store
mkdir -p "$IT_DIR/disk-certs"
t0=$(bench_now)
if ! "$TOOLS/gen_certs" --store "file:$LOAD_STORE" --cert-dir "$IT_DIR/disk-certs" --count "$N_LOAD" \
	--ca-out "$IT_DIR/bench-ca.pem" 2>>"$IT_DIR/gen_certs.log"; then
	fail "gen_certs could not write $N_LOAD certificates"
fi
say "gen_certs: $N_LOAD certificates into file storage and a directory in $(bench_dt "$t0" "$(bench_now)") s"
LOAD_SPOA=$(free_port); LOAD_ADMIN=$(free_port)
last="host$((N_LOAD - 1)).bench.test"
# a) HAProxy reads the same certificates from its crt directory at start
T_DISK=""
bench_hap_derive disk spoe "$LOAD_SPOA" "$IT_DIR/disk-certs"
t0=$(bench_now)
if bench_hap_start disk nocheck; then
	t1=$(bench_now)
	n=$(bench_count_certs "$BH_SOCK_disk" .bench.test.pem)
	if [ "$n" = "$N_LOAD" ] && HAP_HTTPS=$BH_HTTPS_disk served_cert "$last" | grep -q "CN = $last"; then
		T_DISK=$(bench_dt "$t0" "$t1")
		say "HAProxy from disk: answers after $T_DISK s with $n certificates"
	else
		fail "HAProxy from disk lists $n of $N_LOAD certificates"
	fi
	stop_pid "$BH_PID_disk"
else
	fail "HAProxy does not start with $N_LOAD certificates in its crt directory"
fi
# b) HAProxy starts with an empty directory; the agent pushes from storage
T_LOAD="" HWM=""
bench_hap_derive load spoe "$LOAD_SPOA"
t0=$(bench_now)
bench_hap_start load nocheck || fail "HAProxy with an empty crt directory does not start"
T_EMPTY=$(bench_dt "$t0" "$(bench_now)")
if [ "$AGENT_OK" = 1 ]; then
	bench_agent_json "$IT_DIR/agent.json" "$IT_DIR/agent-load.json" \
		"storage=\"file\"" "storage_config.file.path=\"$LOAD_STORE\"" \
		"spoa.listen=\"127.0.0.1:$LOAD_SPOA\"" "admin.listen=\"127.0.0.1:$LOAD_ADMIN\"" \
		"haproxy.runtime=[\"unix:$BH_SOCK_load\"]" "haproxy.cert_dir=\"$BH_CERTS_load\""
	t0=$(bench_now)
	http_proxy=http://127.0.0.1:$BH_HTTP_load no_proxy=127.0.0.1,localhost \
		"$IT_BIN" -c "$IT_DIR/agent-load.json" >>"$IT_DIR/agent-load.log" 2>&1 &
	LOAD_PID=$!
	IT_PIDS+=("$LOAD_PID")
	# progress from the agent's counters: polling "show ssl cert" meanwhile
	# would take HAProxy's certificate lock and make pushes fail
	n=0 ok_n=0 err_n=0 deadline=$(( $(date +%s) + 240 ))
	while [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$LOAD_PID" 2>/dev/null; do
		ok_n=$(bench_metric "$LOAD_ADMIN" acme_spoa_runtime_pushes_total)
		err_n=$(bench_metric "$LOAD_ADMIN" acme_spoa_runtime_push_errors_total)
		[ "${ok_n:-0}" -ge "$N_LOAD" ] && break
		[ $(( ${ok_n:-0} + ${err_n:-0} )) -ge "$N_LOAD" ] && break
		sleep 0.1
	done
	t1=$(bench_now)
	n=$(bench_count_certs "$BH_SOCK_load" .bench.test.pem)
	# some pushes failed: give the agent time to retry, checked every second
	while [ "${n:-0}" -lt "$N_LOAD" ] && [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$LOAD_PID" 2>/dev/null; do
		sleep 1
		n=$(bench_count_certs "$BH_SOCK_load" .bench.test.pem)
		t1=$(bench_now)
	done
	HWM=$(bench_hwm "$LOAD_PID")
	if [ "${n:-0}" -ge "$N_LOAD" ] && HAP_HTTPS=$BH_HTTPS_load served_cert "$last" | grep -q "CN = $last"; then
		T_LOAD=$(bench_dt "$t0" "$t1")
		LOAD_STEPS=$(bench_agent_steps "$IT_DIR/agent-load.log" "$t0")
		say "agent: HAProxy lists all $N_LOAD certificates $T_LOAD s after the agent started ($LOAD_STEPS); agent VmHWM $HWM KiB"
	else
		fail "agent push: HAProxy lists ${n:-0} of $N_LOAD certificates (agent counted ${ok_n:-?} pushes, ${err_n:-?} push errors)"
		grep -m3 -E 'error:' "$IT_DIR/agent-load.log" | cut -c1-300 | sed 's/^/#   /'
	fi
	stop_pid "$LOAD_PID"
fi
bench_row "3a load $N_LOAD stored certificates" \
	"${T_LOAD:-FAILED}${T_LOAD:+ s (agent push)}" "${T_DISK:-FAILED}${T_DISK:+ s (HAProxy from disk)}" \
	"$(bench_ratio "$T_LOAD" "$T_DISK") (agent/disk time)" \
	"agent: HAProxy started with an empty crt directory (ready in $T_EMPTY s), then the agent on file storage holding $N_LOAD certs (gen_certs: EC P-256 leaf + test CA + key); time from agent start until it has pushed all $N_LOAD (its counters, polled every 0.1 s) and 'show ssl cert' lists all of them${LOAD_STEPS:+; agent log: $LOAD_STEPS}; reference: HAProxy started with the same $N_LOAD PEM files in its crt directory, time until it accepts connections"
if [ -n "$HWM" ]; then
	MIB=$(awk -v k="$HWM" 'BEGIN { printf "%.1f", k / 1024 }')
	PER=$(awk -v k="$HWM" -v n="$N_LOAD" 'BEGIN { printf "%.1f", k / n }')
	MARG=$(awk -v k="$HWM" -v b="${AGENT_BASE_KB:-0}" -v n="$N_LOAD" 'BEGIN { if (b > 0) printf "%.1f", (k - b) / n; else print "n/a" }')
	BASE_MIB=$(awk -v k="${AGENT_BASE_KB:-0}" 'BEGIN { printf "%.1f", k / 1024 }')
	bench_row "3b agent peak memory, $N_LOAD certificates" "$MIB MiB VmHWM" "$BASE_MIB MiB (agent, 1 cert)" \
		"$PER KiB/cert ($MARG marginal)" \
		"VmHWM from /proc/<pid>/status of the agent after the load in 3a; reference: VmHWM of the agent just after start with one certificate; marginal = (peak - reference) / $N_LOAD"
else
	bench_row "3b agent peak memory, $N_LOAD certificates" "FAILED" "" "n/a" ""
fi

# ---- table -------------------------------------------------------------------
say "total bench time $(bench_dt "$T_START" "$(bench_now)") s"
bench_table
if [ ${#FAILED[@]} -gt 0 ]; then
	printf '\nmissing or failed:\n'
	printf '  - %s\n' "${FAILED[@]}"
	exit 1
fi
exit 0
