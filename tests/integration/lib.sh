# SPDX-License-Identifier: Apache-2.0
# Shared set-up for integration tests: real HAProxy, Pebble, pebble-challtestsrv,
# redis-server and a Consul agent on loopback, on free ports, in a temp dir, cleaned up on exit.
# Source it, then call it_init. Every start_* waits for readiness by polling.

IT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IT_BIN=${BIN:-$IT_ROOT/acme-spoa}
case "$IT_BIN" in /*) ;; *) IT_BIN=$IT_ROOT/$IT_BIN ;; esac
IT_BUILD=${BUILD:-build}
case "$IT_BUILD" in /*) ;; *) IT_BUILD=$IT_ROOT/$IT_BUILD ;; esac
IT_PIDS=()
IT_PASS=0
IT_FAIL=0
IT_SKIP=0

it_init() {
	IT_DIR=$(mktemp -d /tmp/acme-it.XXXXXX)
	trap it_cleanup EXIT
	trap 'exit 130' INT TERM
}

it_cleanup() {
	local p
	for p in "${IT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${IT_PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
	done
	[ -n "${IT_KEEP:-}" ] || rm -rf "$IT_DIR"
}

# free_port: prints a TCP port free on 127.0.0.1 right now, below the
# kernel's ephemeral range: a port from that range can be taken at any moment
# by an outgoing connection's source port (or a TCP self-connect of a client
# that retries a port nobody listens on yet), and a listener started later
# then fails to bind. Never the same port twice in one test run.
free_port() {
	python3 - "${IT_DIR:-/tmp}/.ports" <<'PY'
import os, random, socket, sys
used_f = sys.argv[1]
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except Exception:
    lo = 32768
used = set(open(used_f).read().split()) if os.path.exists(used_f) else set()
for _ in range(500):
    p = random.randint(10000, lo - 1) if lo > 11000 else 0
    if str(p) in used:
        continue
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        continue
    p = s.getsockname()[1]
    s.close()
    with open(used_f, "a") as f:
        f.write("%d\n" % p)
    print(p)
    break
PY
}

# it_now_us: wall-clock time in microseconds (bash's EPOCHREALTIME, no fork).
it_now_us() { local t=${EPOCHREALTIME//[!0-9]/}; echo "${t:-$(date +%s%6N)}"; }

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds or
# SECONDS of wall time (fractions allowed) have passed: "within a second" means
# one second however long CMD itself takes. CMD is tried once more at the deadline.
wait_for() {
	# (locals prefixed: CMD sees them, bash scoping is dynamic)
	local _wf_t=$1 _wf_us _wf_frac _wf_end _wf_now; shift
	_wf_us=$(( 10#${_wf_t%%.*} * 1000000 ))
	if [[ $_wf_t == *.* ]]; then _wf_frac=${_wf_t#*.}000000; _wf_us=$(( _wf_us + 10#${_wf_frac:0:6} )); fi
	_wf_end=$(( $(it_now_us) + _wf_us ))
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		_wf_now=$(it_now_us)
		[ "$_wf_now" -lt "$_wf_end" ] || return 1
		if [ $(( _wf_end - _wf_now )) -lt 100000 ]; then
			sleep "0.$(printf '%06d' $(( _wf_end - _wf_now )))"
		else
			sleep 0.1
		fi
	done
}

# pid_ended PID: PID exited (gone, or a zombie not reaped yet).
pid_ended() {
	local st
	st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)
	[ -z "$st" ] || [ "$st" = Z ]
}

port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

ok() { IT_PASS=$((IT_PASS + 1)); echo "ok - $*"; }
not_ok() { IT_FAIL=$((IT_FAIL + 1)); echo "not ok - $*"; }
# it_ci: true under CI (CI=true), where every peer `make test` installs by
# itself is there and must run.
it_ci() { [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; }
# skip REASON: a check that cannot run on this machine. Counted apart in the
# summary line, never as a pass.
skip() { IT_SKIP=$((IT_SKIP + 1)); echo "skip - $*"; }
# skip_peer REASON: a check that needs what `make test` installs by itself
# (Consul from scripts/consul.sh, HAProxy 3.4 from ../shared/peers/, the Debian
# root of scripts/debian12-root.sh, Pebble 2.10 from scripts/pebble-unstable.sh)
# and that is missing: a skip on a developer's machine, a failure under CI.
skip_peer() {
	if it_ci; then
		not_ok "$* (CI=true: make test provides this, so its absence is a failure)"
	else
		skip "$*"
	fi
}
# check NAME CMD...: one test case from a command's exit status. (Its local is
# named so that no caller's variable is hidden from CMD: bash scopes
# dynamically, a "local n" here made a suite's $n read this NAME.)
check() { local _check_name=$1; shift; if "$@"; then ok "$_check_name"; else not_ok "$_check_name"; fi; }

it_summary() {
	it_check_sanitizers
	echo "$IT_PASS passed, $IT_FAIL failed, $IT_SKIP skipped"
	[ "$IT_FAIL" -eq 0 ]
}

# Fails the run on any sanitizer report in a log of ours.
it_check_sanitizers() {
	local f
	for f in "$IT_DIR"/*.log; do
		[ -f "$f" ] || continue
		if grep -qE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$f"; then
			not_ok "sanitizer report in $(basename "$f")"
			grep -m5 -E 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$f" | sed 's/^/#   /'
		fi
	done
}

# gen_pebble_cert: a CA and a localhost certificate for Pebble's listener;
# the agent trusts $IT_DIR/pebble-ca.pem through api_ca_file.
gen_pebble_cert() {
	[ -f "$IT_DIR/pebble-cert.pem" ] && return 0
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=acme-spoa-test-ca -keyout "$IT_DIR/pebble-ca.key" -out "$IT_DIR/pebble-ca.pem" 2>/dev/null || return 1
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
		-keyout "$IT_DIR/pebble-key.pem" -out "$IT_DIR/pebble.csr" 2>/dev/null || return 1
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$IT_DIR/pebble.ext"
	openssl x509 -req -in "$IT_DIR/pebble.csr" -CA "$IT_DIR/pebble-ca.pem" -CAkey "$IT_DIR/pebble-ca.key" \
		-CAcreateserial -days 2 -extfile "$IT_DIR/pebble.ext" -out "$IT_DIR/pebble-cert.pem" 2>/dev/null
}

# start_challtestsrv: DNS answering 127.0.0.1 for every name, plus its own
# http-01 server ($CTS_HTTP) and management API ($CTS_MGMT).
start_challtestsrv() {
	CTS_DNS=$(free_port); CTS_MGMT=$(free_port); CTS_HTTP=$(free_port)
	pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
		-dns01 "127.0.0.1:$CTS_DNS" -management "127.0.0.1:$CTS_MGMT" \
		-http01 "127.0.0.1:$CTS_HTTP" -https01 "" -tlsalpn01 "" \
		>"$IT_DIR/challtestsrv.log" 2>&1 &
	IT_PIDS+=($!)
	wait_for 10 port_open "$CTS_MGMT"
}

# start_pebble HTTP_PORT [CONFIG_EXTRA_JSON] [BINARY]: Pebble validating
# http-01 on 127.0.0.1:HTTP_PORT; sets PEBBLE_DIR_URL. Environment such as
# PEBBLE_WFE_NONCEREJECT passes through (default 0 here). PEBBLE_DNS=host:port
# makes Pebble resolve (and check dns-01 TXT records) there instead of
# pebble-challtestsrv (test_dns01: a real BIND).
start_pebble() {
	local http_port=$1 extra=${2:-} bin=${3:-pebble}
	gen_pebble_cert || return 1
	[ -n "${CTS_DNS:-}" ] || start_challtestsrv || return 1
	PEBBLE_PORT=$(free_port); PEBBLE_MGMT=$(free_port)
	cat > "$IT_DIR/pebble.json" <<JSON
{ "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT",
    "certificate": "$IT_DIR/pebble-cert.pem",
    "privateKey": "$IT_DIR/pebble-key.pem",
    "httpPort": $http_port,
    "tlsPort": 5001,
    "ocspResponderURL": ""${extra:+,
    $extra}
} }
JSON
	PEBBLE_BIN=$bin
	: > "$IT_DIR/pebble.log"
	pebble_launch
}

# pebble_launch: (re)starts Pebble from $IT_DIR/pebble.json, on its ports.
pebble_launch() {
	PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=${PEBBLE_WFE_NONCEREJECT:-0} \
		"$PEBBLE_BIN" -config "$IT_DIR/pebble.json" -dnsserver "${PEBBLE_DNS:-127.0.0.1:$CTS_DNS}" \
		>>"$IT_DIR/pebble.log" 2>&1 &
	PEBBLE_PID=$!
	IT_PIDS+=($PEBBLE_PID)
	PEBBLE_DIR_URL="https://127.0.0.1:$PEBBLE_PORT/dir"
	wait_for 15 curl -sf --cacert "$IT_DIR/pebble-ca.pem" "$PEBBLE_DIR_URL"
}

# pebble_answers: Pebble's database answers: a management query that takes its
# lock (cert-status-by-serial; any HTTP status will do) within 5 s.
pebble_answers() {
	local c
	c=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 \
		"https://127.0.0.1:$PEBBLE_MGMT/cert-status-by-serial/1")
	[ "$c" != 000 ]
}

# pebble_deadlock_dump: Pebble stopped answering. SIGQUIT makes it print every
# goroutine and exit; the blocked ones are shown as comments. Returns 0 when
# the dump is Pebble's own lock-order inversion (2.4 to 2.10 at least): a
# POST-as-GET to an authorization (wfe.Authz) holds that authz's lock and
# waits for the store's read lock (getAcctByKey) behind a writer (a new-order's
# AddOrder/AddChallenge), which waits for a new-order's
# FindValidAuthorization, which holds the store's read lock and waits for that
# authz's lock. Any other hang returns 1: not Pebble's known bug.
pebble_deadlock_dump() {
	local log=$IT_DIR/pebble.log size
	size=$(stat -c %s "$log" 2>/dev/null || echo 0)
	kill -QUIT "$PEBBLE_PID" 2>/dev/null
	wait_for 5 pid_ended "$PEBBLE_PID"
	wait "$PEBBLE_PID" 2>/dev/null
	tail -c +"$((size + 1))" "$log" > "$IT_DIR/pebble-goroutines.txt"
	# one line per goroutine blocked on a lock: its pebble frames, innermost first
	awk '/^goroutine /{ if (g != "" && lock) print g; g = "blocked"; lock = 0; next }
	     /^sync\.\(\*RW?Mutex\)\.R?Lock/ { lock = 1 }
	     /^github.com\/letsencrypt\/pebble/ { f = $0; sub(/\(([0-9{}]|\.\.\.|\)).*$/, "", f); sub(/.*\//, "", f); g = g " < " f }
	     END { if (g != "" && lock) print g }' "$IT_DIR/pebble-goroutines.txt" > "$IT_DIR/pebble-blocked.txt"
	echo "# Pebble's goroutines blocked on a lock ($(wc -l < "$IT_DIR/pebble-blocked.txt")):"
	sort "$IT_DIR/pebble-blocked.txt" | uniq -c | sed 's/^/#   /'
	grep -q 'MemoryStore).FindValidAuthorization' "$IT_DIR/pebble-blocked.txt" &&
		grep -q 'getAcctByKey.* < wfe.(\*WebFrontEndImpl).validPOSTAsGET < wfe.(\*WebFrontEndImpl).Authz' \
			"$IT_DIR/pebble-blocked.txt" &&
		grep -qE 'MemoryStore\)\.Add(Order|Challenge|Authorization)' "$IT_DIR/pebble-blocked.txt"
}

# pebble_deadlocked: after a step against Pebble failed. Returns 0 when Pebble
# had hung by its known deadlock (pebble_deadlock_dump): it is then restarted
# on the same ports (an agent pointed at it goes on; its account is found
# again on the first refused POST) and its new roots are added to
# $IT_DIR/pebble-roots.pem; the caller runs its step once more, with new
# names. Returns 1 when Pebble answers (the failure is ours) or hung otherwise.
pebble_deadlocked() {
	if pebble_answers || pebble_answers; then return 1; fi
	echo "# Pebble's store stopped answering: SIGQUIT for its goroutines"
	pebble_deadlock_dump || { echo "# not Pebble's known deadlock"; return 1; }
	echo "# that is Pebble's own lock-order inversion, not our client: Pebble restarted in place"
	cp "$IT_DIR/pebble-roots.pem" "$IT_DIR/pebble-roots.old"
	pebble_launch && pebble_roots || return 1
	cat "$IT_DIR/pebble-roots.old" >> "$IT_DIR/pebble-roots.pem"
}

# Pebble's issuing roots (to verify the certificates HAProxy serves).
pebble_roots() {
	local i=0
	: > "$IT_DIR/pebble-roots.pem"
	while curl -sf -k "https://127.0.0.1:$PEBBLE_MGMT/roots/$i" >> "$IT_DIR/pebble-roots.pem"; do
		i=$((i + 1))
	done
	[ -s "$IT_DIR/pebble-roots.pem" ]
}

# start_prometheus RULES: a Prometheus on loopback scraping the agent's admin
# port every second and evaluating RULES (copied into $IT_DIR); sets PROM_PORT
# and PROM (its URL). The caller waits for "$PROM/-/ready".
start_prometheus() {
	PROM_PORT=$(free_port)
	cp "$1" "$IT_DIR/acme-spoa.rules.yml"
	cat > "$IT_DIR/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [ "$IT_DIR/acme-spoa.rules.yml" ]
scrape_configs:
  - job_name: acme-spoa
    static_configs:
      - targets: [ "127.0.0.1:$ADMIN_PORT" ]
YML
	prometheus --config.file="$IT_DIR/prometheus.yml" --storage.tsdb.path="$IT_DIR/prom" \
		--web.listen-address="127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time=1h \
		>"$IT_DIR/prometheus.out" 2>&1 &
	IT_PIDS+=($!)
	PROM=http://127.0.0.1:$PROM_PORT
}

# start_redis: redis-server on a free port; sets REDIS_PORT.
start_redis() {
	REDIS_PORT=$(free_port)
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
		--dir "$IT_DIR" >"$IT_DIR/redis.log" 2>&1 &
	REDIS_PID=$!
	IT_PIDS+=($REDIS_PID)
	wait_for 10 redis-cli -p "$REDIS_PORT" ping
}

# --- redis over TLS (the fleet suite's redis-tls store) ----------------------
# gen_redis_tls: a test CA, a server certificate for redis.test and 127.0.0.1,
# and a client certificate, all under $IT_DIR/redis-tls/.
gen_redis_tls() {
	local d=$IT_DIR/redis-tls
	[ -f "$d/server.pem" ] && return 0
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=redis-test-ca -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null || return 1
	printf 'subjectAltName=DNS:redis.test,IP:127.0.0.1\n' > "$d/server.ext"
	printf 'extendedKeyUsage=clientAuth\n' > "$d/client.ext"
	local who
	for who in server client; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$who" \
			-keyout "$d/$who.key" -out "$d/$who.csr" 2>/dev/null || return 1
		openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
			-days 2 -extfile "$d/$who.ext" -out "$d/$who.pem" 2>/dev/null || return 1
	done
}

# start_redis_tls: redis-server speaking TLS only (--port 0) on a free port,
# requiring a client certificate of the test CA; sets REDIS_PORT, REDIS_TLS.
start_redis_tls() {
	gen_redis_tls || return 1
	REDIS_PORT=$(free_port); REDIS_TLS=1
	restart_redis_tls
}

# restart_redis_tls: the TLS redis (again) on $REDIS_PORT, empty.
restart_redis_tls() {
	local d=$IT_DIR/redis-tls
	redis-server --bind 127.0.0.1 --port 0 --tls-port "$REDIS_PORT" --tls-cert-file "$d/server.pem" \
		--tls-key-file "$d/server.key" --tls-ca-cert-file "$d/ca.pem" --tls-auth-clients yes \
		--save '' --appendonly no --dir "$IT_DIR" >>"$IT_DIR/redis.log" 2>&1 &
	REDIS_PID=$!
	IT_PIDS+=($REDIS_PID)
	wait_for 10 redis_cli ping
}

# redis_tls_tool put|get|del|list ARGS: storage_tool's verbs on the TLS redis
# (storage_tool speaks plain TCP only), keys under the agents' namespace.
redis_tls_tool() {
	local ns=${REDIS_NS:-it} verb=$1; shift
	case $verb in
	put) redis_cli set "$ns:$1" "$2" >/dev/null ;;
	get) redis_cli --raw get "$ns:$1" | grep . ;;
	del) redis_cli del "$ns:$1" >/dev/null ;;
	list) redis_cli --scan --pattern "$ns:$1*" | sed "s/^$ns://" | sort ;;
	*) return 2 ;;
	esac
}

# redis_cli ARGS...: redis-cli on the test's redis, over TLS when REDIS_TLS is set.
redis_cli() {
	local d=$IT_DIR/redis-tls
	if [ -n "${REDIS_TLS:-}" ]; then
		redis-cli -p "$REDIS_PORT" --tls --sni redis.test --cacert "$d/ca.pem" \
			--cert "$d/client.pem" --key "$d/client.key" "$@"
	else
		redis-cli -p "$REDIS_PORT" "$@"
	fi
}

# redis_tls_json: the agent's redis TLS members when REDIS_TLS is set.
redis_tls_json() {
	local d=$IT_DIR/redis-tls
	[ -n "${REDIS_TLS:-}" ] || return 0
	printf ', "ssl": true, "ssl_verify": true, "ssl_ca_file": "%s", "server_name": "%s", "ssl_cert": "%s", "ssl_key": "%s"' \
		"${REDIS_TLS_CA:-$d/ca.pem}" "${REDIS_TLS_NAME:-redis.test}" "$d/client.pem" "$d/client.key"
}

# start_consul [PORT]: a Consul agent in -dev mode (scripts/consul.sh's binary:
# Debian 11's consul, unpacked) on free loopback ports, its data in $IT_DIR;
# sets CONSUL_PORT, CONSUL_PID. Returns 2 when there is no consul binary.
start_consul() {
	local bin
	bin=${CONSUL_BIN:-$(bash "$IT_ROOT/scripts/consul.sh" 2>>"$IT_DIR/consul.log")} || return 2
	[ -x "$bin" ] || return 2
	CONSUL_PORT=${1:-$(free_port)}
	rm -rf "$IT_DIR/consul-data"
	"$bin" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -http-port "$CONSUL_PORT" \
		-dns-port -1 -grpc-port -1 -serf-lan-port "$(free_port)" \
		-serf-wan-port "$(free_port)" -server-port "$(free_port)" \
		-data-dir "$IT_DIR/consul-data" >>"$IT_DIR/consul.log" 2>&1 &
	CONSUL_PID=$!
	IT_PIDS+=($CONSUL_PID)
	wait_for 15 consul_leader
}
consul_leader() { curl -sf "http://127.0.0.1:$CONSUL_PORT/v1/status/leader" | grep -q :; }

# The fleet's store, chosen by STORE (redis, redis-tls, consul): one case per backend in
# each of store_start (sets IT_STORAGE; 2 = cannot run here, skip),
# store_stop, store_restart (same port, empty) and store_spec (the
# storage_tool spec of the agents' keys). A new backend adds its four cases.
STORE=${STORE:-redis}
store_start() {
	IT_STORAGE=$STORE
	case $STORE in
	redis) start_redis ;;
	redis-tls) IT_STORAGE=redis; start_redis_tls ;;
	consul) start_consul ;;
	*) echo "# unknown STORE=$STORE" >&2; return 1 ;;
	esac
}
store_stop() {
	case $STORE in
	redis|redis-tls) stop_pid "$REDIS_PID" ;;
	consul) stop_pid "$CONSUL_PID" ;;
	esac
}
store_restart() {
	case $STORE in
	redis)
		redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
			--dir "$IT_DIR" >>"$IT_DIR/redis.log" 2>&1 &
		REDIS_PID=$!
		IT_PIDS+=($REDIS_PID)
		wait_for 10 redis-cli -p "$REDIS_PORT" ping ;;
	redis-tls) restart_redis_tls ;;
	consul) start_consul "$CONSUL_PORT" ;;
	esac
}
store_spec() {
	case $STORE in
	redis) echo "redis:127.0.0.1:$REDIS_PORT:${REDIS_NS:-it}" ;;
	redis-tls) echo "redis-tls:127.0.0.1:$REDIS_PORT:${REDIS_NS:-it}" ;;
	consul) echo "consul:127.0.0.1:$CONSUL_PORT:${CONSUL_KV:-it}" ;;
	esac
}
# store_tool ARGS...: storage_tool on the fleet's store (put, get, del, list).
# (storage_tool speaks no TLS: redis-tls goes through redis-cli)
store_tool() {
	if [ "$STORE" = redis-tls ]; then redis_tls_tool "$@"; return; fi
	"$IT_BUILD/tools/storage_tool" "$(store_spec)" "$@"
}

# haproxy_config SPOA_PORT: writes $IT_DIR/haproxy/ from haproxy-examples/,
# substituting ports and paths; sets HAP_HTTP, HAP_HTTPS, HAP_SOCK, HAP_CERTS.
haproxy_config() {
	local spoa_port=$1 d=$IT_DIR/haproxy${NODE:-}
	mkdir -p "$d/certs"
	HAP_HTTP=${HAP_HTTP:-$(free_port)}; HAP_HTTPS=${HAP_HTTPS:-$(free_port)}
	HAP_SOCK=$d/admin.sock; HAP_CERTS=$d/certs
	if [ ! -f "$d/default.pem" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
			-subj /CN=haproxy-default -keyout "$d/default.key" -out "$d/default.crt" 2>/dev/null
		cat "$d/default.crt" "$d/default.key" > "$d/default.pem"
	fi
	sed -e "s#/run/haproxy/#$d/#g" \
	    -e "s#/etc/haproxy/#$d/#g" \
	    -e "s#0.0.0.0:80\$#127.0.0.1:$HAP_HTTP#" \
	    -e "s#0.0.0.0:443\$#127.0.0.1:$HAP_HTTPS#" \
	    -e "s#127.0.0.1:12345#127.0.0.1:$spoa_port#" \
	    -e "s#^\( *\)log global#\1no log#" \
	    "$IT_ROOT/haproxy-examples/haproxy.cfg" > "$d/haproxy.cfg"
	cp "$IT_ROOT/haproxy-examples/spoe-acme.conf" "$d/spoe-acme.conf"
}

# start_haproxy: runs the config written by haproxy_config; sets HAP_PID.
# HAPROXY_BIN chooses the binary (default: haproxy from PATH, Debian 12's 2.6;
# haproxy_line sets it to another line's). The very same haproxy-examples/
# files serve every line: 3.4's rewritten SPOE ignores "timeout hello/idle"
# and turns the agent's "mode tcp" backend into "mode spop" by itself, and
# "option spop-check" works on all. HAPROXY_MW=1: master-worker mode (HAP_PID
# is the master; kill -USR2 reloads), master CLI at $d/master.sock.
start_haproxy() {
	local d=$IT_DIR/haproxy${NODE:-} hap=${HAPROXY_BIN:-haproxy}
	"$hap" -c -q -f "$d/haproxy.cfg" >"$IT_DIR/haproxy-check.log" 2>&1 || { cat "$IT_DIR/haproxy-check.log"; return 1; }
	"$hap" ${HAPROXY_MW:+-W -S "$d/master.sock"} -db -f "$d/haproxy.cfg" >>"$IT_DIR/haproxy${NODE:-}.log" 2>&1 &
	HAP_PID=$!
	IT_PIDS+=($HAP_PID)
	wait_for 10 port_open "$HAP_HTTPS" && wait_for 10 test -S "$HAP_SOCK"
}

# HAPROXY_LINES: the HAProxy lines the suites that run on every line go
# through (test_lines, test_hold), oldest first: 2.6 is Debian 12's haproxy
# from PATH, the others are built from ../shared/peers/ by scripts/haproxy.sh
# (once per machine, cached). HAPROXY_LINES=2.6 for a quick run.
HAPROXY_LINES=${HAPROXY_LINES:-2.6 3.0 3.4}

# haproxy_line LINE: exports HAPROXY_BIN, an HAProxy of LINE (2.6: Debian's
# haproxy; others: scripts/haproxy.sh LINE, its build messages shown as
# comments), after checking that it says it is of LINE. Returns 0; 2 after
# skip_peer when this machine has no source for LINE; 1 after not_ok on any
# other failure.
haproxy_line() {
	local line=$1 bin rc v
	if [ "$line" = 2.6 ]; then
		bin=$(command -v haproxy); rc=$?
		[ "$rc" = 0 ] || echo "no haproxy in PATH (Debian's package)" >"$IT_DIR/haproxy-$line.err"
	else
		bin=$(bash "$IT_ROOT/scripts/haproxy.sh" "$line" 2>"$IT_DIR/haproxy-$line.err"); rc=$?
		sed 's/^/# /' "$IT_DIR/haproxy-$line.err"
	fi
	if [ "$rc" = 2 ] || { [ "$line" = 2.6 ] && [ "$rc" != 0 ]; }; then
		skip_peer "HAProxy $line: $(tail -1 "$IT_DIR/haproxy-$line.err")"
		return 2
	fi
	if [ "$rc" != 0 ] || [ ! -x "$bin" ]; then
		not_ok "HAProxy $line: scripts/haproxy.sh $line failed (status $rc): $(tail -1 "$IT_DIR/haproxy-$line.err")"
		return 1
	fi
	v=$("$bin" -v 2>&1 | head -1)
	if [[ $v != "HAProxy version $line."* && $v != "HA-Proxy version $line."* ]]; then
		not_ok "HAProxy $line: $bin says \"$v\""
		return 1
	fi
	echo "# HAProxy $line: $bin ($v)"
	export HAPROXY_BIN=$bin
}

# agent_up_in_haproxy: HAProxy's health check sees the agent UP (server
# "agent" listed with operational state 2; no answer or no such line fails).
agent_up_in_haproxy() {
	hap_cmd "show servers state acme-spoa" |
		awk '$4 == "agent" { seen = 1; up = ($6 == 2) } END { exit (seen && up) ? 0 : 1 }'
}

# stop_pid PID [GRACE]: SIGTERM, then up to GRACE seconds (5) for PID (a child
# of this shell) to exit, SIGKILL after that. Returns PID's exit status, or
# 137 when it had to be killed: callers that care check it (agent_stops_cleanly).
stop_pid() {
	local p=$1 grace=${2:-5}
	kill "$p" 2>/dev/null
	for _ in $(seq $((grace * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$p" 2>/dev/null; then
		kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
		echo "# stop_pid: $p still running $grace s after SIGTERM: killed -9"
		return 137
	fi
	wait "$p" 2>/dev/null
}

# agent_stops_cleanly: SIGTERM ends the agent ($AGENT_PID) within 5 s with exit
# status 0 (no kill -9), and it logs no error-level line while shutting down.
# The lines it logged after the signal must include its own "shutting down" and
# "stopped" (so the log read is the right one).
agent_stops_cleanly() {
	local log=$IT_DIR/agent${NODE:-}.log size rc tail_log
	size=$(stat -c %s "$log") || return 1
	stop_pid "$AGENT_PID"; rc=$?
	tail_log=$(tail -c +"$((size + 1))" "$log")
	if [ "$rc" != 0 ]; then
		echo "# agent exit status $rc after SIGTERM"
		return 1
	fi
	if ! grep -qE '^[0-9T:.-]+Z info: signal 15: shutting down$' <<<"$tail_log" ||
	   ! grep -qE '^[0-9T:.-]+Z info: stopped$' <<<"$tail_log"; then
		echo "# the agent did not log its shutdown:"; sed 's/^/#   /' <<<"$tail_log" | tail -5
		return 1
	fi
	if grep -E '^[0-9T:.-]+Z error: ' <<<"$tail_log" | sed 's/^/#   /' | grep .; then
		echo "# (error-level lines logged during shutdown)"
		return 1
	fi
}

# hap_cmd CMD: one runtime API command on HAProxy's socket.
hap_cmd() {
	python3 - "$HAP_SOCK" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
out = b""
while True:
    b = s.recv(65536)
    if not b: break
    out += b
sys.stdout.write(out.decode(errors="replace"))
PY
}

# served_cert HOST: the subject and issuer HAProxy serves for SNI HOST.
served_cert() {
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername "$1" 2>/dev/null |
		openssl x509 -noout -subject -issuer -ext subjectAltName 2>/dev/null
}

# tls_handshake HOST CAFILE: one TLS handshake through HAProxy's HTTPS
# frontend ($HAP_HTTPS, SNI HOST); prints "<verified 0|1> <ms>" (1: the
# chain verifies against CAFILE; ms: connect + handshake, no process start-up).
tls_handshake() {
	python3 - "$HAP_HTTPS" "$1" "$2" <<'PY'
import socket, ssl, sys, time
port, host, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
t0 = time.monotonic()
s = socket.create_connection(("127.0.0.1", port), timeout=30)
ok = 1
try:
    ctx.wrap_socket(s, server_hostname=host).close()
except ssl.SSLError:
    ok = 0
print(ok, "%.0f" % ((time.monotonic() - t0) * 1000))
PY
}

# agent_config [EXTRA_JSON_MEMBERS]: writes $IT_DIR/agent.json for Pebble,
# HAProxy and file storage; sets SPOA_PORT, ADMIN_PORT (once). hold_timeout is
# IT_HOLD_TIMEOUT, 0 unless set: the suites written before the held
# ClientHello check what the first handshake gets without it (test_hold.sh
# sets it). IT_HAPROXY_EXTRA: more members of the "haproxy" object.
# on_demand.max_new_names_per_client is IT_CLIENT_BUDGET, 0 (off) unless set:
# every client of a test is 127.0.0.1, one network (test_client_budget.sh
# sets it).
agent_config() {
	local extra=${1:-} redis=""
	# REDIS_HOST: the redis host as configured (default 127.0.0.1)
	[ -n "${REDIS_PORT:-}" ] && redis=", \"redis\": { ${REDIS_HOST:+\"host\": \"$REDIS_HOST\", }\"port\": $REDIS_PORT, \"namespace\": \"${REDIS_NS:-it}\"$(redis_tls_json) }"
	# REDIS_JSON: the whole redis object (Sentinel)
	[ -n "${REDIS_JSON:-}" ] && redis=", \"redis\": $REDIS_JSON"
	[ -n "${CONSUL_PORT:-}" ] && redis+=", \"consul\": { \"port\": $CONSUL_PORT, \"kv_path\": \"${CONSUL_KV:-it}\" }"
	SPOA_PORT=${SPOA_PORT:-$(free_port)}; ADMIN_PORT=${ADMIN_PORT:-$(free_port)}
	AGENT_CONF=$IT_DIR/agent${NODE:-}.json
	cat > "$AGENT_CONF" <<JSON
{
  "account_email": "it@example.com",
  "api_uri": "$PEBBLE_DIR_URL",
  "api_ca_file": "$IT_DIR/pebble-ca.pem",
  "tos_accepted": true,
  "cert_type": "ecc",
  "domains": ["*.test"],
  "fail_backoff_minutes": 1,
  "hold_timeout": ${IT_HOLD_TIMEOUT:-0},
  "on_demand": { "max_new_names_per_client": ${IT_CLIENT_BUDGET:-0} },
  "storage": "${IT_STORAGE:-file}",
  "storage_config": { "file": { "path": "$IT_DIR/store${NODE:-}" }$redis },
  "spoa": { "listen": "127.0.0.1:$SPOA_PORT" },
  "admin": { "listen": "127.0.0.1:$ADMIN_PORT" },
  "haproxy": { "runtime": ["unix:$HAP_SOCK"], "cert_dir": "$HAP_CERTS"${IT_HAPROXY_EXTRA:+, $IT_HAPROXY_EXTRA} }${extra:+,
  $extra}
}
JSON
}

# start_agent [CONFIG]: runs the agent; the sanity check's requests to
# http://<host>/ reach HAProxy through http_proxy. Sets AGENT_PID.
start_agent() {
	local conf=${1:-$IT_DIR/agent${NODE:-}.json}
	http_proxy=http://127.0.0.1:$HAP_HTTP no_proxy=127.0.0.1,localhost \
		"$IT_BIN" -c "$conf" -v >>"$IT_DIR/agent${NODE:-}.log" 2>&1 &
	AGENT_PID=$!
	IT_PIDS+=($AGENT_PID)
	wait_for 15 admin_answers
}

# restart_agent: start_agent while HAProxy runs, then wait until its
# spop-check sees the agent UP (what reaches the agent through HAProxy, the
# CA's validations among it, needs that first).
restart_agent() {
	start_agent "$@"
	wait_for 10 agent_up_in_haproxy
}

# start_node N [EXTRA]: node N of a fleet, HAProxy + agent (agent_config
# EXTRA, the current REDIS_*/CONSUL_* inputs), its ports and pids kept in the
# global array N<N>; use_node N makes them current again. Node 1 gets the CA's
# validations (Pebble's httpPort): Pebble starts with it, and node 1 started
# again keeps that port.
start_node() {
	local n=$1; shift
	NODE=$n; unset HAP_HTTP HAP_HTTPS ADMIN_PORT; SPOA_PORT=$(free_port)
	[ "$n" = 1 ] && [ -n "${PEBBLE_HTTP:-}" ] && HAP_HTTP=$PEBBLE_HTTP
	haproxy_config "$SPOA_PORT"
	if [ "$n" = 1 ] && [ -z "${PEBBLE_DIR_URL:-}" ]; then
		PEBBLE_HTTP=$HAP_HTTP
		start_pebble "$HAP_HTTP" || return 1
	fi
	agent_config "$@"; start_agent || return 1
	start_haproxy || return 1
	wait_for 10 agent_up_in_haproxy || return 1
	declare -gA "N$n"
	local -n node=N$n
	node=([HTTP]=$HAP_HTTP [HTTPS]=$HAP_HTTPS [SOCK]=$HAP_SOCK [CERTS]=$HAP_CERTS [ADMIN]=$ADMIN_PORT
	      [SPOA]=$SPOA_PORT [PID]=$AGENT_PID [HPID]=$HAP_PID)
}

# use_node N: node N's ports and pids (start_node) become the current ones.
use_node() {
	local -n n=N$1
	NODE=$1 HAP_HTTP=${n[HTTP]} HAP_HTTPS=${n[HTTPS]} HAP_SOCK=${n[SOCK]} HAP_CERTS=${n[CERTS]}
	ADMIN_PORT=${n[ADMIN]} SPOA_PORT=${n[SPOA]} AGENT_PID=${n[PID]} HAP_PID=${n[HPID]}
}

# admin_answers: the admin API answers (/healthz is 503 until HAProxy is up).
admin_answers() {
	local c
	c=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")
	[ "$c" = 200 ] || [ "$c" = 503 ]
}

# admin METHOD PATH [CURL ARGS...]: prints "STATUS BODY".
admin() {
	local method=$1 path=$2; shift 2
	curl -s -o "$IT_DIR/admin.body" -w '%{http_code}' -X "$method" "$@" \
		"http://127.0.0.1:$ADMIN_PORT$path"
	printf ' '; cat "$IT_DIR/admin.body"
}

# metric NAME[{LABELS}]: the value of one metric line of the agent. Prints
# nothing and fails when /metrics does not answer or has no such line.
metric() {
	local v
	v=$(curl -sf --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
		awk -v n="$1" '$1 == n { print $2; exit }')
	[ -n "$v" ] && echo "$v"
}

# is_count VALUE...: every VALUE is a non-negative integer (an unread metric,
# empty, is not).
is_count() {
	local v
	for v in "$@"; do [[ $v =~ ^[0-9]+$ ]] || { echo "# not a counter reading: '$v'"; return 1; }; done
}

# delta_is N BEFORE AFTER: two readings of a counter, both read, AFTER - BEFORE = N.
delta_is() { is_count "$2" "$3" && [ $(($3 - $2)) -eq "$1" ]; }
# delta_ge N BEFORE AFTER: the same, AFTER - BEFORE >= N.
delta_ge() { is_count "$2" "$3" && [ $(($3 - $2)) -ge "$1" ]; }

# https_get HOST: one HTTPS request through HAProxy with SNI HOST (any certificate accepted).
https_get() {
	curl -sk --max-time 5 --resolve "$1:$HAP_HTTPS:127.0.0.1" "https://$1:$HAP_HTTPS/" -o /dev/null
}

# served_by_pebble HOST: HAProxy serves HOST a certificate issued by Pebble.
served_by_pebble() {
	local c
	c=$(served_cert "$1")
	grep -q 'issuer=.*Pebble' <<<"$c" && grep -qE "DNS:$1(,|\$)" <<<"$c"
}
