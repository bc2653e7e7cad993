# SPDX-License-Identifier: Apache-2.0
# Sourced by tests/bench/run.sh in a subshell, with its own peers (uses the
# lib, say, fail, bench_row; the rows and failures go back to run.sh through
# $IT_DIR/issuers-rows.tsv and $IT_DIR/issuers-failed.txt).
# 6. issuers: time to a verified first handshake for a new name through
#    haproxy-examples/ (the peek frontend holds the ClientHello) on HAProxy
#    2.6, two Pebbles as the first and second CA (issuers[].timeout
#    BENCH_ISSUERS_TIMEOUT, 2 s):
#    the reference: the first CA up, median of BENCH_ISSUERS_N (5) new
#       names one after another;
#    6a the first CA frozen (SIGSTOP): the first new name (its order at the
#       first times out, then falls through to the second in the same job),
#       beside the first CA up;
#    6b the first CA still frozen and marked down: median of the next
#       BENCH_ISSUERS_N new names (straight to the second), beside it up.
ISS_N=${BENCH_ISSUERS_N:-5}
ISS_TIMEOUT=${BENCH_ISSUERS_TIMEOUT:-2}
iss_npids=${#IT_PIDS[@]}
iss_cleanup() {
	local p
	for p in "${IT_PIDS[@]:$iss_npids}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
	printf '%s\n' "${BENCH_ROWS[@]}" >"$IT_DIR/issuers-rows.tsv"
	[ ${#FAILED[@]} -eq 0 ] || printf '%s\n' "${FAILED[@]}" >"$IT_DIR/issuers-failed.txt"
}
trap iss_cleanup EXIT
BENCH_ROWS=() FAILED=()

# iss_median PREFIX N CAFILE: N new names PREFIX1..N one after another;
# prints the median ms, or nothing when one did not verify.
iss_median() {
	local i ok ms all=()
	for i in $(seq "$2"); do
		read -r ok ms < <(tls_handshake "$1$i.test" "$3")
		[ "$ok" = 1 ] || return 1
		all+=("$ms")
	done
	printf '%s\n' "${all[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

iss_run() {
	local ms_up ms_fb ms_down ok p2 m2 url2
	SPOA_PORT=$(free_port)
	NODE=iss haproxy_config "$SPOA_PORT"
	NODE=iss
	PEBBLE_DIR_URL=
	start_pebble "$HAP_HTTP" || { fail "6: first Pebble did not start"; return; }
	p2=$(free_port); m2=$(free_port)
	sed -e "s#127.0.0.1:$PEBBLE_PORT#127.0.0.1:$p2#" -e "s#127.0.0.1:$PEBBLE_MGMT#127.0.0.1:$m2#" \
		"$IT_DIR/pebble.json" >"$IT_DIR/pebble2.json"
	PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config "$IT_DIR/pebble2.json" \
		-dnsserver "127.0.0.1:$CTS_DNS" >"$IT_DIR/pebble2.log" 2>&1 &
	IT_PIDS+=($!)
	url2="https://127.0.0.1:$p2/dir"
	wait_for 15 curl -sf --cacert "$IT_DIR/pebble-ca.pem" "$url2" || { fail "6: second Pebble did not start"; return; }
	curl -sfk "https://127.0.0.1:$PEBBLE_MGMT/roots/0" >"$IT_DIR/iss-root1.pem"
	curl -sfk "https://127.0.0.1:$m2/roots/0" >"$IT_DIR/iss-root2.pem"
	IT_HOLD_TIMEOUT=15 agent_config
	python3 - "$AGENT_CONF" "$PEBBLE_DIR_URL" "$url2" "$IT_DIR/pebble-ca.pem" "$ISS_TIMEOUT" <<'PY'
import json, sys
path, u1, u2, ca, t = sys.argv[1:]
c = json.load(open(path))
del c["api_uri"], c["api_ca_file"]
c["issuers"] = [{"name": "first", "api_uri": u1, "api_ca_file": ca, "timeout": int(t)},
                {"name": "second", "api_uri": u2, "api_ca_file": ca, "timeout": int(t)}]
json.dump(c, open(path, "w"))
PY
	start_agent || { fail "6: agent did not start"; return; }
	start_haproxy || { fail "6: HAProxy did not start"; return; }
	wait_for 10 agent_up_in_haproxy
	# one name first: both accounts exist before anything is timed
	tls_handshake warm.test "$IT_DIR/iss-root1.pem" >/dev/null
	ms_up=$(iss_median up "$ISS_N" "$IT_DIR/iss-root1.pem") || fail "6: a name did not verify against the first CA"
	kill -STOP "$PEBBLE_PID"
	read -r ok ms_fb < <(tls_handshake fb1.test "$IT_DIR/iss-root2.pem")
	[ "$ok" = 1 ] || { fail "6a: the fallback name did not verify against the second CA"; ms_fb=; }
	ms_down=$(iss_median down "$ISS_N" "$IT_DIR/iss-root2.pem") || fail "6b: a name did not verify against the second CA"
	kill -CONT "$PEBBLE_PID"
	say "issuers: first handshake of a new name: first CA up ${ms_up:-?} ms; first CA frozen ${ms_fb:-?} ms (timeout $ISS_TIMEOUT s, then fallback), then ${ms_down:-?} ms (marked down)"
	bench_row "6a new name, first CA frozen: fallback" "${ms_fb:-FAILED}${ms_fb:+ ms}" "${ms_up:-FAILED}${ms_up:+ ms (first CA up)}" \
		"$(bench_ratio "$ms_fb" "$ms_up") down/up" \
		"time to a verified first handshake through fe_tls_sni (held ClientHello); reference: median of $ISS_N new names one after another issued by the first of two Pebbles; figure: the first new name after SIGSTOP of the first Pebble: its order there times out (issuers[].timeout $ISS_TIMEOUT s), the job falls through to the second within the held handshake"
	bench_row "6b new name, first CA marked down" "${ms_down:-FAILED}${ms_down:+ ms}" "${ms_up:-FAILED}${ms_up:+ ms (first CA up)}" \
		"$(bench_ratio "$ms_down" "$ms_up") down/up" \
		"median of the next $ISS_N new names while the first Pebble is frozen and marked down: straight to the second"
	stop_pid "$AGENT_PID"
}
iss_run
