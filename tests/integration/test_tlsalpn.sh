#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# tls-alpn-01 (RFC 8737) with only 443 open: haproxy-examples/haproxy-443only.cfg
# (no fe_http, nothing listens on Pebble's httpPort), Pebble validating on
# HAProxy's 443 (its tlsPort), on HAProxy 2.6 and, when built, 3.0 and 3.4:
#   - a new name's first handshake through the peek frontend verifies
#     against Pebble's root (issued by tls-alpn-01 meanwhile);
#   - the validation certificate is gone from HAProxy afterwards (show ssl cert);
#   - a ClientHello offering acme-tls/1 for a name no order knows gets the
#     default certificate at once.
# Then a two-node fleet on Redis: the CA connects to the node that did not
# place the order; that node fetches the challenge from storage, holding the
# ClientHello, and the validation succeeds.
set -u
source "$(dirname "$0")/lib.sh"
it_init
export IT_HOLD_TIMEOUT=15

# haproxy443_config SPOA_PORT: $IT_DIR/haproxy$NODE/ from haproxy-443only.cfg.
haproxy443_config() {
	haproxy_config "$1"
	local d=$IT_DIR/haproxy${NODE:-}
	: > "$d/acme-alpn.crtlist"
	sed -e "s#/run/haproxy/#$d/#g" -e "s#/etc/haproxy/#$d/#g" \
	    -e "s#0.0.0.0:443\$#127.0.0.1:$HAP_HTTPS#" \
	    -e "s#127.0.0.1:12345#127.0.0.1:$1#" \
	    -e "s#^\( *\)log global#\1no log#" \
	    "$IT_ROOT/haproxy-examples/haproxy-443only.cfg" > "$d/haproxy.cfg"
	ALPN_LIST=$d/acme-alpn.crtlist
}
alpn_extra() { echo "\"challenges\": [\"tls-alpn-01\"]"; }

# handshake HOST CAFILE [ALPN]: one TLS handshake through the peek frontend;
# prints "<verified 0|1> <ms>".
handshake() {
	python3 - "$HAP_HTTPS" "$1" "$2" "${3:-}" <<'PY'
import socket, ssl, sys, time
port, host, ca, alpn = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
if alpn:
    ctx.set_alpn_protocols([alpn])
t0 = time.monotonic()
s = socket.create_connection(("127.0.0.1", port), timeout=30)
ok = 1
try:
    ctx.wrap_socket(s, server_hostname=host).close()
except (ssl.SSLError, OSError):
    ok = 0
print(ok, "%.0f" % ((time.monotonic() - t0) * 1000))
PY
}
alpn_certs_in_haproxy() { hap_cmd 'show ssl cert' | grep -c '/acme-alpn/'; }
no_alpn_cert() { [ "$(alpn_certs_in_haproxy)" = 0 ]; }

# single_node LABEL: the whole single-node story on HAPROXY_BIN.
single_node() {
	local L=$1 v ms http_port
	SPOA_PORT=$(free_port); unset HAP_HTTP HAP_HTTPS ADMIN_PORT
	NODE=$L haproxy443_config "$SPOA_PORT"
	NODE=$L
	http_port=$(free_port)	# Pebble's httpPort: nothing listens there
	PEBBLE_DIR_URL=
	start_pebble "$http_port" "\"tlsPort\": $HAP_HTTPS" || { not_ok "$L: Pebble starts"; return 1; }
	# (start_pebble wrote "tlsPort": 5001 before the extra key: Pebble keeps the last)
	pebble_roots
	agent_config "$(alpn_extra), \"haproxy\": { \"runtime\": [\"unix:$HAP_SOCK\"], \"cert_dir\": \"$HAP_CERTS\", \"alpn_crt_list\": \"$ALPN_LIST\" }"
	python3 - "$AGENT_CONF" <<'PY'
import json, sys
# agent_config wrote "haproxy" twice: json keeps the last (with alpn_crt_list)
c = json.load(open(sys.argv[1])); json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
	start_agent || { not_ok "$L: agent starts"; return 1; }
	start_haproxy || { not_ok "$L: HAProxy starts with haproxy-443only.cfg"; return 1; }
	check "$L: HAProxy's spop-check sees the agent UP" wait_for 10 agent_up_in_haproxy
	check "$L: nothing listens on an HTTP port (Pebble's httpPort $http_port)" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$http_port) 2>/dev/null"
	read -r v ms < <(handshake "new1-$L.test" "$IT_DIR/pebble-roots.pem")
	echo "# $L: first handshake of new1-$L.test (issued by tls-alpn-01 meanwhile): $ms ms"
	check "$L: new1-$L.test's first handshake verifies against Pebble's root" test "$v" = 1
	check "$L: the agent answered tls-alpn-01 (Pebble's log names no challenge type)" \
		grep -q "host=new1-$L.test answering tls-alpn-01" "$IT_DIR/agent$L.log"
	check "$L: the validation certificate was pushed" grep -q "host=new1-$L.test tls-alpn-01 certificate in HAProxy" "$IT_DIR/agent$L.log"
	check "$L: it is gone from HAProxy afterwards (show ssl cert)" wait_for 10 no_alpn_cert
	read -r v ms < <(handshake "nobody-$L.test" "$IT_DIR/pebble-roots.pem" acme-tls/1)
	check "$L: acme-tls/1 for a name no order knows: answered at once, default certificate ($ms ms)" \
		test "$v" = 0 -a "$ms" -lt 2000
	check "$L: agent stops cleanly" agent_stops_cleanly
	stop_pid "$HAP_PID"; stop_pid "$PEBBLE_PID"
}

# every HAProxy line operators run (lib.sh haproxy_line: 2.6 is Debian's,
# 3.0 and 3.4 built once per machine by scripts/haproxy.sh)
for L in $HAPROXY_LINES; do
	haproxy_line "$L" || continue
	single_node "h${L//./}"
done
unset HAPROXY_BIN

# --- a fleet of two: the CA reaches the node that did not order ----------------
NODE=
store_start || { not_ok "redis starts"; it_summary; exit 1; }
fleet_node() {	# N [HTTPS_PORT]: HAProxy (443 only) + agent of node N on the shared store
	local n=$1
	NODE=f$n; unset HAP_HTTP HAP_HTTPS ADMIN_PORT; SPOA_PORT=$(free_port)
	[ -n "${2:-}" ] && HAP_HTTPS=$2
	haproxy443_config "$SPOA_PORT"
	agent_config "$(alpn_extra), \"haproxy\": { \"runtime\": [\"unix:$HAP_SOCK\"], \"cert_dir\": \"$HAP_CERTS\", \"alpn_crt_list\": \"$ALPN_LIST\" }"
	python3 - "$AGENT_CONF" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
	start_agent || return 1
	start_haproxy || return 1
	wait_for 10 agent_up_in_haproxy || return 1
	declare -gA "F$n"
	local -n node=F$n
	node=([HTTPS]=$HAP_HTTPS [SOCK]=$HAP_SOCK [ADMIN]=$ADMIN_PORT [PID]=$AGENT_PID)
}
use_f() { local -n n=F$1; NODE=f$1 HAP_HTTPS=${n[HTTPS]} HAP_SOCK=${n[SOCK]} ADMIN_PORT=${n[ADMIN]} AGENT_PID=${n[PID]}; }
# Pebble's tlsPort is node 2's 443: node 1 orders, the CA reaches node 2
F2_HTTPS=$(free_port)
PEBBLE_DIR_URL=
start_pebble "$(free_port)" "\"tlsPort\": $F2_HTTPS" || { not_ok "fleet: Pebble starts"; it_summary; exit 1; }
pebble_roots
HAPROXY_BIN=haproxy
fleet_node 1 || { not_ok "fleet: node 1 starts"; it_summary; exit 1; }
fleet_node 2 "$F2_HTTPS" || { not_ok "fleet: node 2 starts"; it_summary; exit 1; }
check "fleet: node 2's 443 is Pebble's tlsPort" test "${F2[HTTPS]}" = "$F2_HTTPS"
use_f 1
read -r v ms < <(handshake fleet1.test "$IT_DIR/pebble-roots.pem")
echo "# fleet: fleet1.test ordered by node 1, validated through node 2: $ms ms"
check "fleet: fleet1.test's first handshake on node 1 verifies" test "$v" = 1
check "fleet: node 1 placed the order" grep -q "host=fleet1.test issuance started" "$IT_DIR/agentf1.log"
check "fleet: node 2 did not order" bash -c "! grep -q 'host=fleet1.test issuance started' '$IT_DIR/agentf2.log'"
check "fleet: node 2 fetched the challenge from storage and pushed its certificate" \
	grep -q "host=fleet1.test tls-alpn-01 challenge of another node" "$IT_DIR/agentf2.log"
use_f 2
check "fleet: node 2's validation certificate is gone from its HAProxy afterwards" wait_for 15 no_alpn_cert
use_f 1
check "fleet: node 1's own validation certificate (pushed when it stored the challenge) is gone too" wait_for 10 no_alpn_cert

it_summary
