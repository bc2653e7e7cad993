# SPDX-License-Identifier: Apache-2.0
# Helpers for tests/bench/run.sh. Source after tests/integration/lib.sh and
# it_init: they build on its free_port, wait_for, hap_cmd and $IT_DIR.

# bench_deps: installs wrk and lego from Debian when missing (apt-get update
# once). wrk is required; lego only for the comparison (BENCH_HAVE_LEGO=0/1).
bench_deps() {
	local missing=() p updated=0
	for p in wrk lego; do command -v "$p" >/dev/null 2>&1 || missing+=("$p"); done
	if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
		export DEBIAN_FRONTEND=noninteractive
		for p in "${missing[@]}"; do
			if [ $updated = 0 ]; then apt-get update -q >/dev/null 2>&1; updated=1; fi
			echo "bench: installing $p (apt-get install -y $p)"
			apt-get install -y -q --no-install-recommends "$p" >/dev/null 2>&1 ||
				echo "bench: could not install $p"
		done
	fi
	BENCH_HAVE_LEGO=0
	command -v lego >/dev/null 2>&1 && BENCH_HAVE_LEGO=1
	command -v wrk >/dev/null 2>&1
}

bench_now() { date +%s.%N; }
# bench_dt T0 T1: T1 - T0 in seconds, 2 decimals.
bench_dt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# bench_ratio A B [DIGITS]: A / B, or "n/a".
bench_ratio() {
	awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN {
		if (a == "" || b == "" || b + 0 == 0 || a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/) print "n/a";
		else printf "%.*f", d, a / b }'
}

# bench_hap_derive NAME MODE SPOA_PORT [CERT_DIR]: writes $IT_DIR/hap-NAME/
# from the config haproxy_config made ($IT_DIR/haproxy/haproxy.cfg) with its
# own ports, runtime socket and certificate directory (default: hap-NAME/certs).
# MODE spoe keeps the example as it is; MODE plain drops the "filter spoe" and
# "send-spoe-group" lines and answers the known challenge path
# ($BENCH_TOKEN) with a static body ($BENCH_KEYAUTH) through http-request
# return. Sets BH_DIR_NAME BH_HTTP_NAME BH_HTTPS_NAME BH_SOCK_NAME BH_CERTS_NAME.
bench_hap_derive() {
	local name=$1 mode=$2 spoa=$3 certs=${4:-} d=$IT_DIR/hap-$1 http https base=$IT_DIR/haproxy
	mkdir -p "$d"
	[ -n "$certs" ] || { certs=$d/certs; mkdir -p "$certs"; }
	http=$(free_port); https=$(free_port)
	cp "$base/default.pem" "$base/spoe-acme.conf" "$d/"
	sed -E -e "s#$base/certs/#@CERTS@/#g" -e "s#$base/#$d/#g" -e "s#@CERTS@/#$certs/#g" \
	    -e "s#127\.0\.0\.1:$HAP_HTTP( |\$)#127.0.0.1:$http\1#" \
	    -e "s#127\.0\.0\.1:$HAP_HTTPS( |\$)#127.0.0.1:$https\1#" \
	    -e "s#127\.0\.0\.1:$SPOA_PORT( |\$)#127.0.0.1:$spoa\1#" \
	    "$base/haproxy.cfg" > "$d/haproxy.cfg"
	if [ "$mode" = plain ]; then
		sed -i -e '/^ *filter spoe /d' -e '/send-spoe-group/d' \
		    -e "s#^\( *\)http-request return status 200 content-type text/plain lf-string .*#\1http-request return status 200 content-type text/plain string \"$BENCH_KEYAUTH\" if acme_challenge { path /.well-known/acme-challenge/$BENCH_TOKEN }#" \
		    "$d/haproxy.cfg"
		grep -q "string \"$BENCH_KEYAUTH\"" "$d/haproxy.cfg" || { echo "bench: plain config not derived"; return 1; }
	fi
	printf -v "BH_DIR_$name" %s "$d"
	printf -v "BH_HTTP_$name" %s "$http"
	printf -v "BH_HTTPS_$name" %s "$https"
	printf -v "BH_SOCK_$name" %s "$d/admin.sock"
	printf -v "BH_CERTS_$name" %s "$certs"
}

# bench_hap_start NAME [NOCHECK]: starts hap-NAME (after "haproxy -c" unless
# NOCHECK), waits until its HTTPS port accepts. Sets BH_PID_NAME.
bench_hap_start() {
	local name=$1 d https pid
	d=$(eval echo "\$BH_DIR_$name"); https=$(eval echo "\$BH_HTTPS_$name")
	if [ -z "${2:-}" ]; then
		haproxy -c -f "$d/haproxy.cfg" >"$IT_DIR/haproxy-$name-check.log" 2>&1 ||
			{ cat "$IT_DIR/haproxy-$name-check.log"; return 1; }
	fi
	haproxy -db -f "$d/haproxy.cfg" >>"$IT_DIR/haproxy-$name.log" 2>&1 &
	pid=$!
	IT_PIDS+=("$pid")
	printf -v "BH_PID_$name" %s "$pid"
	bench_wait_port 60 "$https" && wait_for 10 test -S "$d/admin.sock"
}

# bench_wait_port SECONDS PORT: polls every 20 ms until PORT accepts.
bench_wait_port() {
	local n=$(($1 * 50))
	while [ $n -gt 0 ]; do
		port_open "$2" && return 0
		sleep 0.02
		n=$((n - 1))
	done
	return 1
}

# bench_sock_cmd SOCK CMD: one runtime API command on SOCK.
bench_sock_cmd() { HAP_SOCK=$1 hap_cmd "$2"; }

# bench_wrk LABEL SECONDS WRK_ARGS...: one wrk run; sets WRK_REQS (requests),
# WRK_SECS (seconds measured) and WRK_BAD (non-2xx + socket errors).
bench_wrk() {
	local label=$1 secs=$2 out; shift 2
	out=$IT_DIR/wrk-$label.txt
	timeout $((secs + 30)) wrk -t"$BENCH_THREADS" -c"$BENCH_CONNS" -d"${secs}s" "$@" >"$out" 2>&1
	WRK_REQS=$(awk '/ requests in / { print $1 }' "$out")
	WRK_SECS=$(awk '/ requests in / { t = $4; sub(/,$/, "", t);
		if (t ~ /ms$/) { sub(/ms$/, "", t); t /= 1000 }
		else if (t ~ /m$/) { sub(/m$/, "", t); t *= 60 }
		else sub(/s$/, "", t);
		print t }' "$out")
	WRK_BAD=$(awk '/Non-2xx or 3xx responses:/ { b += $NF }
		/Socket errors:/ { gsub(/,/, ""); b += $4 + $6 + $8 + $10 }
		END { print b + 0 }' "$out")
	[ -n "$WRK_REQS" ] && [ -n "$WRK_SECS" ]
}

# bench_pair KEY SECONDS ARGS_A -- ARGS_B: measures A and B interleaved,
# BENCH_ROUNDS (2) rounds of A B B A, each variant SECONDS in all, so drift on
# a shared machine hits both alike. ARGS are wrk arguments (the URL last).
# Sets PAIR_A PAIR_B (requests/s over all runs), PAIR_REQS_A PAIR_REQS_B,
# PAIR_BAD_A PAIR_BAD_B (errors), PAIR_ROUNDS (A/B rate ratio of each round).
# Returns 1 if a run failed.
bench_pair() {
	local key=$1 secs=$2 rounds=${BENCH_ROUNDS:-2} run a=() b=() r=0 step k
	local ra=0 sa=0 rb=0 sb=0 bada=0 badb=0 rra rsa rrb rsb
	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do a+=("$1"); shift; done
	shift
	b=("$@")
	run=$(( (secs + rounds) / (2 * rounds) ))
	[ "$run" -ge 1 ] || run=1
	PAIR_ROUNDS=""
	for k in $(seq "$rounds"); do
		rra=0 rsa=0 rrb=0 rsb=0
		for step in A1 B1 B2 A2; do
			if [ "${step:0:1}" = A ]; then
				bench_wrk "$key-r$k-$step" "$run" "${a[@]}" || r=1
				rra=$((rra + ${WRK_REQS:-0})); rsa=$(awk -v x="$rsa" -v y="${WRK_SECS:-0}" 'BEGIN{print x+y}')
				bada=$((bada + ${WRK_BAD:-0}))
			else
				bench_wrk "$key-r$k-$step" "$run" "${b[@]}" || r=1
				rrb=$((rrb + ${WRK_REQS:-0})); rsb=$(awk -v x="$rsb" -v y="${WRK_SECS:-0}" 'BEGIN{print x+y}')
				badb=$((badb + ${WRK_BAD:-0}))
			fi
		done
		PAIR_ROUNDS+="${PAIR_ROUNDS:+ }$(awk -v a="$rra" -v s="$rsa" -v b="$rrb" -v t="$rsb" \
			'BEGIN { if (s > 0 && t > 0 && b > 0) printf "%.2f", (a / s) / (b / t); else print "n/a" }')"
		ra=$((ra + rra)); rb=$((rb + rrb))
		sa=$(awk -v x="$sa" -v y="$rsa" 'BEGIN{print x+y}'); sb=$(awk -v x="$sb" -v y="$rsb" 'BEGIN{print x+y}')
	done
	PAIR_A=$(awk -v r="$ra" -v s="$sa" 'BEGIN { if (s > 0) printf "%.0f", r / s; else print "" }')
	PAIR_B=$(awk -v r="$rb" -v s="$sb" 'BEGIN { if (s > 0) printf "%.0f", r / s; else print "" }')
	PAIR_REQS_A=$ra; PAIR_REQS_B=$rb
	PAIR_BAD_A=$bada; PAIR_BAD_B=$badb
	return $r
}

# bench_wait_served ROOTS PORT TIMEOUT NAME...: polls until HAProxy on PORT
# serves every NAME a certificate that verifies against ROOTS for that name
# (so: issued by that CA, for that host). Prints the names still missing on
# timeout. Returns 0 when all are served.
bench_wait_served() {
	python3 - "$@" <<'PY'
import socket, ssl, sys, time
roots, port, timeout, names = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
ctx = ssl.create_default_context(cafile=roots)
left, deadline = set(names), time.monotonic() + timeout
while left and time.monotonic() < deadline:
    for n in sorted(left):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                with ctx.wrap_socket(s, server_hostname=n):
                    left.discard(n)
        except (OSError, ssl.SSLError):
            pass
    if left:
        time.sleep(0.05)
if left:
    print("not served: " + " ".join(sorted(left)))
sys.exit(1 if left else 0)
PY
}

# bench_count_certs SOCK SUFFIX: how many certificates HAProxy lists whose
# file name ends with SUFFIX (committed ones only).
bench_count_certs() {
	bench_sock_cmd "$1" "show ssl cert" 2>/dev/null | grep -c -- "$2\$"
}

# bench_hwm PID: peak resident memory (VmHWM) of PID in KiB.
bench_hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
bench_rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# bench_agent_json SRC DST KEY=VALUE...: a copy of the agent config SRC with
# members replaced (KEY is a dotted path, VALUE JSON).
bench_agent_json() {
	python3 - "$@" <<'PY'
import json, sys
src, dst, sets = sys.argv[1], sys.argv[2], sys.argv[3:]
conf = json.load(open(src))
for s in sets:
    path, value = s.split("=", 1)
    node, keys = conf, path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = json.loads(value)
json.dump(conf, open(dst, "w"), indent=2)
PY
}

# bench_metric PORT NAME: the value of metric line NAME (with its labels, if
# any) of the agent whose admin API is on PORT, as an integer; "" if absent.
bench_metric() {
	curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
		awk -v n="$2" '$1 == n && !f { printf "%.0f\n", $2; f = 1 }'
}

# bench_handshakes CAFILE HOST...: one TLS handshake per HOST through HAProxy
# on $HAP_HTTPS,
# one after another in one process; prints "HOST OK MS" per line (OK: the
# certificate verified for HOST; MS: connect + handshake).
bench_handshakes() {
	python3 - "$HAP_HTTPS" "$@" <<'PY'
import socket, ssl, sys, time
port, ca, hosts = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
ctx = ssl.create_default_context(cafile=ca)
for h in hosts:
    t0 = time.monotonic()
    ok = 1
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        ctx.wrap_socket(s, server_hostname=h).close()
    except (ssl.SSLError, OSError):
        ok = 0
    print(h, ok, "%.2f" % ((time.monotonic() - t0) * 1000), flush=True)
PY
}
# bench_median_ms FILE: median of column 3 of FILE; fails (printing nothing)
# unless FILE has lines and every one verified.
bench_median_ms() {
	local rows
	rows=$(cat "$1")
	[ -n "$rows" ] && ! printf '%s\n' "$rows" | awk '$2 != 1 { bad = 1 } END { exit !bad }' || return 1
	printf '%s\n' "$rows" | awk '{ print $3 }' | sort -n |
		awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Results, printed as one table at the end.
BENCH_ROWS=()
# bench_row FIGURE AGENT REFERENCE RATIO SETTING
bench_row() { BENCH_ROWS+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"$4"$'\t'"$5"); }

bench_table() {
	local row f a b r s i=0
	printf '\n%-44s | %-24s | %-28s | %s\n' "figure" "acme-spoa" "reference" "ratio"
	printf '%s\n' "---------------------------------------------+--------------------------+------------------------------+--------------------"
	for row in "${BENCH_ROWS[@]}"; do
		IFS=$'\t' read -r f a b r s <<<"$row"
		printf '%-44s | %-24s | %-28s | %s\n' "$f" "$a" "$b" "$r"
	done
	printf '\nsettings:\n'
	for row in "${BENCH_ROWS[@]}"; do
		IFS=$'\t' read -r f a b r s <<<"$row"
		[ -n "$s" ] && printf '  %s: %s\n' "$f" "$s"
	done
	return 0
}

# bench_agent_steps LOG T0: when, after T0, the agent logged its start-up
# steps (stored certificates read, ready to serve), e.g. "read +1.0 s, ready +5.9 s".
bench_agent_steps() {
	python3 - "$@" <<'PY'
import re, sys
from datetime import datetime, timezone
log, t0 = sys.argv[1], float(sys.argv[2])
steps, out = [("certificates loaded", "storage read"), ("ready:", "ready")], []
for line in open(log, errors="replace"):
    for pat, name in steps:
        if pat in line and name not in [o[0] for o in out]:
            m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
            if m:
                t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
                out.append((name, t - t0))
print(", ".join("%s +%.1f s" % o for o in out))
PY
}

# bench_spoa_pins: with BENCH_SPOA_PIN=1 and two CPUs or more, SPOA servers
# the bench starts run on CPU 1 and the load generator on CPU 0 (steadier
# figures, but every batch then costs a wake-up across CPUs: lower rates than
# unpinned, where the two may share a CPU). Sets BENCH_PIN_S and BENCH_PIN_C
# (command prefixes, empty when not pinned).
bench_spoa_pins() {
	BENCH_PIN_S=() BENCH_PIN_C=()
	if [ "${BENCH_SPOA_PIN:-0}" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
		BENCH_PIN_S=(taskset -c 1)
		BENCH_PIN_C=(taskset -c 0)
	fi
}

# bench_spoa_load NAME PORT PID SECS DEPTH [SNI]: keeps DEPTH NOTIFYs
# (acme-sni, sni=SNI, default www.example.com) in flight on one connection to
# the SPOA server on PORT (process PID) with spop_client's bench mode for
# SECS. Sets SR_ACKS SR_SECS (the measured window), SR_CPU_US (server CPU,
# user + system, per ACK). Returns 1 on failure.
bench_spoa_load() {
	local name=$1 port=$2 pid=$3 secs=$4 depth=$5 sni=${6:-www.example.com} line c0 c1 all
	SR_ACKS=0 SR_SECS=0 SR_CPU_US=""
	bench_spoa_pins
	c0=$(bench_cpu_ticks "$pid")
	line=$("${BENCH_PIN_C[@]}" "$IT_BUILD/tools/spop_client" "127.0.0.1:$port" bench --seconds "$secs" \
		--pipeline "$depth" --message acme-sni --arg "sni=str:$sni" 2>>"$IT_DIR/spoa-$name.log")
	c1=$(bench_cpu_ticks "$pid")
	echo "$name $line" >>"$IT_DIR/spoa-runs.log"
	SR_ACKS=$(sed -n 's/.* acks=\([0-9]*\).*/\1/p' <<<"$line")
	SR_SECS=$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' <<<"$line")
	all=$(sed -n 's/.* all_acks=\([0-9]*\).*/\1/p' <<<"$line")
	[ -n "$SR_ACKS" ] && [ "${SR_ACKS:-0}" -gt 0 ] && grep -q ' errors=0' <<<"$line" || return 1
	SR_CPU_US=$(awk -v a="$c0" -v b="$c1" -v n="$all" -v hz="$(getconf CLK_TCK)" \
		'BEGIN { if (n > 0 && a != "" && b != "") printf "%.2f", (b - a) / hz * 1e6 / n }')
	return 0
}

# bench_spoa_run NAME SECS DEPTH CMD...: starts the SPOA server CMD (it prints
# "port=N" once listening), runs bench_spoa_load against it, stops it.
bench_spoa_run() {
	local name=$1 secs=$2 depth=$3 out pid port="" rc
	shift 3
	out=$IT_DIR/spoa-$name.out
	bench_spoa_pins
	"${BENCH_PIN_S[@]}" "$@" >"$out" 2>>"$IT_DIR/spoa-$name.log" &
	pid=$!
	IT_PIDS+=("$pid")
	for _ in $(seq 250); do
		port=$(sed -n 's/^port=//p' "$out")
		[ -n "$port" ] && break
		sleep 0.02
	done
	[ -n "$port" ] || { stop_pid "$pid"; return 1; }
	bench_spoa_load "$name" "$port" "$pid" "$secs" "$depth"
	rc=$?
	stop_pid "$pid"
	return $rc
}

# bench_mean "X Y ...": their mean, 2 decimals (nothing for no value).
bench_mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; if (NF) printf "%.2f", s / NF }' <<<"$1"; }

# bench_cpu_ticks PID: user + system CPU of PID in clock ticks.
bench_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null; }

# bench_spoa SECS ROUNDS DEPTH [DEFER]: the SPOA server's own cost. The
# agent's server (spoa_bench: spoa/ with a handler that sets one variable,
# as acme-sni does) and a do-nothing responder (spop_null) answer the same
# load in A B B A order, ROUNDS times. Sets SPOA_RATE_A SPOA_RATE_B (NOTIFY/s
# over all runs), SPOA_CPU_A SPOA_CPU_B (µs of server CPU per ACK, mean of
# the runs), SPOA_RUNS (each run's rate); with DEFER, SPOA_RATE_D and
# SPOA_CPU_D for the agent deferring one ACK in DEFER. Returns 1 on failure.
bench_spoa() {
	local secs=$1 rounds=$2 depth=$3 defer=${4:-0} k step name
	local acks_a=0 secs_a=0 acks_b=0 secs_b=0 acks_d=0 secs_d=0 cpu_a="" cpu_b="" cpu_d=""
	local steps=(A B B A)
	[ "$defer" -gt 0 ] 2>/dev/null && steps=(A B D D B A)
	SPOA_RUNS=""
	for k in $(seq "$rounds"); do
		for step in "${steps[@]}"; do
			case $step in
			A) name=agent; bench_spoa_run agent "$secs" "$depth" "$IT_BUILD/tools/spoa_bench" || return 1 ;;
			B) name=null; bench_spoa_run null "$secs" "$depth" "$IT_BUILD/tools/spop_null" || return 1 ;;
			D) name=defer; bench_spoa_run defer "$secs" "$depth" "$IT_BUILD/tools/spoa_bench" --defer "$defer" || return 1 ;;
			esac
			SPOA_RUNS+="${SPOA_RUNS:+ }$name=$(awk -v a="$SR_ACKS" -v s="$SR_SECS" 'BEGIN { printf "%.0f", a / s }')"
			case $step in
			A) acks_a=$((acks_a + SR_ACKS)); secs_a=$(awk -v a="$secs_a" -v b="$SR_SECS" 'BEGIN { print a + b }'); cpu_a+=" $SR_CPU_US" ;;
			B) acks_b=$((acks_b + SR_ACKS)); secs_b=$(awk -v a="$secs_b" -v b="$SR_SECS" 'BEGIN { print a + b }'); cpu_b+=" $SR_CPU_US" ;;
			D) acks_d=$((acks_d + SR_ACKS)); secs_d=$(awk -v a="$secs_d" -v b="$SR_SECS" 'BEGIN { print a + b }'); cpu_d+=" $SR_CPU_US" ;;
			esac
		done
	done
	SPOA_RATE_A=$(awk -v a="$acks_a" -v s="$secs_a" 'BEGIN { printf "%.0f", a / s }')
	SPOA_RATE_B=$(awk -v a="$acks_b" -v s="$secs_b" 'BEGIN { printf "%.0f", a / s }')
	SPOA_CPU_A=$(bench_mean "$cpu_a")
	SPOA_CPU_B=$(bench_mean "$cpu_b")
	SPOA_RATE_D="" SPOA_CPU_D=""
	if [ "$acks_d" -gt 0 ]; then
		SPOA_RATE_D=$(awk -v a="$acks_d" -v s="$secs_d" 'BEGIN { printf "%.0f", a / s }')
		SPOA_CPU_D=$(bench_mean "$cpu_d")
	fi
	return 0
}

# bench_redis_filled DIR N NS DOMAIN: a redis-server on a free port (REDIS_PORT,
# REDIS_PID; its files in DIR) holding N certificates host0..host<N-1>.DOMAIN
# under namespace NS, as gen_certs writes them (bundle, "meta/<host>" record,
# change feed; 90 days, one leaf key shared, one gen_certs process per CPU
# over disjoint ranges, each with its own CA). The filled store is kept as an
# RDB dump in $BENCH_CACHE (/var/cache/acme-spoa/bench, else ~/.cache/...)
# under the generator's version (gen_certs --version) and N, so a second run
# loads it instead of filling again; a dump older than 30 days is filled
# again (its certificates would near their end). The CAs' PEMs are in
# FILL_CAS (a file: all of them). Sets FILL_HOW ("filled in S s" or "loaded
# from the cache, filled in S s on DATE") and FILL_SECS. Returns 1 on failure.
bench_redis_filled() {
	local dir=$1 n=$2 ns=$3 domain=$4 ver cache key procs i per start cnt pids=() t0 ok=1
	ver=$("$IT_BUILD/tools/gen_certs" --version | awk '{ print $2 }') || return 1
	cache=${BENCH_CACHE:-/var/cache/acme-spoa/bench}
	mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache=${XDG_CACHE_HOME:-$HOME/.cache}/acme-spoa-bench
	mkdir -p "$cache" "$dir" || return 1
	key=$cache/redis-g$ver-n$n-$ns-$domain
	FILL_CAS=$dir/fill-cas.pem
	REDIS_PORT=$(free_port)
	if [ -f "$key/dump.rdb" ] && [ -n "$(find "$key/dump.rdb" -mtime -30)" ]; then
		# a hard link: Redis never writes it (no save), and a copy of GiBs costs seconds
		ln -f "$key/dump.rdb" "$dir/dump.rdb" 2>/dev/null || cp "$key/dump.rdb" "$dir/dump.rdb" || return 1
		cp "$key/cas.pem" "$FILL_CAS" || return 1
		t0=$(bench_now)
		redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
			--dir "$dir" >"$dir/redis.log" 2>&1 &
		REDIS_PID=$!
		IT_PIDS+=("$REDIS_PID")
		# Redis answers PING with -LOADING while it reads the dump
		wait_for 300 sh -c "redis-cli -p $REDIS_PORT ping | grep -qx PONG" || return 1
		FILL_SECS=$(cat "$key/fill-secs")
		FILL_HOW="loaded from the cache ($key, $(bench_dt "$t0" "$(bench_now)") s), filled in $FILL_SECS s on $(date -u -r "$key/dump.rdb" +%F)"
		return 0
	fi
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
		--dir "$dir" >"$dir/redis.log" 2>&1 &
	REDIS_PID=$!
	IT_PIDS+=("$REDIS_PID")
	wait_for 10 redis-cli -p "$REDIS_PORT" ping >/dev/null || return 1
	procs=$(nproc)
	per=$(( (n + procs - 1) / procs ))
	t0=$(bench_now)
	for i in $(seq 0 $((procs - 1))); do
		start=$((i * per)); cnt=$per
		[ $((start + cnt)) -le "$n" ] || cnt=$((n - start))
		[ "$cnt" -gt 0 ] || continue
		"$IT_BUILD/tools/gen_certs" --store "redis:127.0.0.1:$REDIS_PORT:$ns" --start "$start" \
			--count "$cnt" --domain "$domain" --shared-key --window 1024 \
			--ca-out "$dir/fill-ca$i.pem" >"$dir/fill-gen$i.log" 2>&1 &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || ok=0; done
	FILL_SECS=$(bench_dt "$t0" "$(bench_now)")
	[ "$ok" = 1 ] || { tail -3 "$dir"/fill-gen*.log; return 1; }
	cat "$dir"/fill-ca*.pem >"$FILL_CAS"
	FILL_HOW="filled in $FILL_SECS s ($procs gen_certs processes)"
	# keep it: SAVE writes dir/dump.rdb; moved into the cache as a whole
	if redis-cli -p "$REDIS_PORT" save >/dev/null && mkdir -p "$key.tmp" &&
	   cp "$FILL_CAS" "$key.tmp/cas.pem" && echo "$FILL_SECS" >"$key.tmp/fill-secs" &&
	   { ln -f "$dir/dump.rdb" "$key.tmp/dump.rdb" 2>/dev/null || cp "$dir/dump.rdb" "$key.tmp/dump.rdb"; }; then
		rm -rf "$key" && mv "$key.tmp" "$key" && FILL_HOW+="; kept in $key"
	fi
	return 0
}
