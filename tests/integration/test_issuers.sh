#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# issuers (SPEC §3): two Pebble instances, each with its own roots, as the
# first and second CA of the list, through haproxy-examples/ (the peek
# frontend holds the first handshake):
#   - both up: a new name is issued by the first, the admin API names it;
#   - the first frozen (SIGSTOP): a new name's first handshake still verifies,
#     against the second's root, within hold_timeout; the first is marked
#     down (acme_spoa_issuer_up 0), the fallback counted; the next new name
#     goes straight to the second, without waiting for the first;
#   - the first back (SIGCONT): its probe brings it up, new orders go to it;
#   - a validation failure does not fall back: the second Pebble's log
#     shows no order for that name;
#   - renewals go to the CA of the current certificate while it is up.
set -u
source "$(dirname "$0")/lib.sh"
it_init
export IT_HOLD_TIMEOUT=15
TIMEOUT=2	# issuers[].timeout: seconds one request to a CA may take

# verifies HOST CAFILE: what HAProxy serves HOST now verifies against CAFILE.
verifies() { read -r v _ < <(tls_handshake "$1" "$2"); [ "$v" = 1 ]; }
issuer_of() { admin GET "/acme/certificates/$1" | sed 's/^[0-9]* //' | python3 -c '
import json, sys
d = json.load(sys.stdin)["data"]; print(d.get("issuer_name"), d.get("issuer_url"))'; }

# start_pebble2: a second Pebble (its own roots) validating on the same HAProxy.
start_pebble2() {
	PEBBLE2_PORT=$(free_port); PEBBLE2_MGMT=$(free_port)
	cat > "$IT_DIR/pebble2.json" <<JSON
{ "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE2_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE2_MGMT",
    "certificate": "$IT_DIR/pebble-cert.pem",
    "privateKey": "$IT_DIR/pebble-key.pem",
    "httpPort": $HAP_HTTP, "tlsPort": 5001, "ocspResponderURL": "",
    "certificateValidityPeriod": 2592000
} }
JSON
	PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config "$IT_DIR/pebble2.json" \
		-dnsserver "127.0.0.1:$CTS_DNS" >"$IT_DIR/pebble2.log" 2>&1 &
	PEBBLE2_PID=$!
	IT_PIDS+=($PEBBLE2_PID)
	PEBBLE2_DIR_URL="https://127.0.0.1:$PEBBLE2_PORT/dir"
	wait_for 15 curl -sf --cacert "$IT_DIR/pebble-ca.pem" "$PEBBLE2_DIR_URL"
}

SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_pebble "$HAP_HTTP" '"certificateValidityPeriod": 2592000' || { not_ok "first Pebble starts"; it_summary; exit 1; }
start_pebble2 || { not_ok "second Pebble starts"; it_summary; exit 1; }
curl -sfk "https://127.0.0.1:$PEBBLE_MGMT/roots/0" > "$IT_DIR/root1.pem"
curl -sfk "https://127.0.0.1:$PEBBLE2_MGMT/roots/0" > "$IT_DIR/root2.pem"
check "the two Pebbles have different roots" \
	bash -c "[ -s '$IT_DIR/root1.pem' ] && [ -s '$IT_DIR/root2.pem' ] && ! cmp -s '$IT_DIR/root1.pem' '$IT_DIR/root2.pem'"

agent_config
python3 - "$AGENT_CONF" "$PEBBLE_DIR_URL" "$PEBBLE2_DIR_URL" "$IT_DIR/pebble-ca.pem" "$TIMEOUT" <<'PY'
import json, sys
path, u1, u2, ca, t = sys.argv[1:]
c = json.load(open(path))
del c["api_uri"], c["api_ca_file"]
c["issuers"] = [
    {"name": "first", "api_uri": u1, "api_ca_file": ca, "timeout": int(t)},
    {"name": "second", "api_uri": u2, "api_ca_file": ca, "timeout": int(t)},
]
json.dump(c, open(path, "w"), indent=1)
PY
"$IT_BIN" -c "$AGENT_CONF" --check >"$IT_DIR/check.log" 2>&1
check "--check accepts the issuers list" test $? = 0
start_agent || { not_ok "agent starts"; cat "$IT_DIR/agent.log"; it_summary; exit 1; }
start_haproxy || { not_ok "HAProxy starts"; it_summary; exit 1; }
check "HAProxy's spop-check sees the agent UP" wait_for 10 agent_up_in_haproxy

# --- both up: the first CA ----------------------------------------------------
check "both up: a1.test's first handshake verifies against the first Pebble's root" verifies a1.test "$IT_DIR/root1.pem"
check "the admin API names the first issuer and its directory for a1.test" \
	test "$(issuer_of a1.test)" = "first $PEBBLE_DIR_URL"
check "acme_spoa_issuer_up{issuer=\"first\"} is 1" test "$(metric 'acme_spoa_issuer_up{issuer="first"}')" = 1

# --- the first frozen: fall through within the held handshake ------------------
kill -STOP "$PEBBLE_PID"
read -r v ms < <(tls_handshake b1.test "$IT_DIR/root2.pem")
echo "# first CA frozen: b1.test's first handshake after $ms ms (verified against the second root: $v)"
check "first CA frozen: b1.test's first handshake verifies against the second Pebble's root" test "$v" = 1
check "... within hold_timeout (${ms} ms < ${IT_HOLD_TIMEOUT}000)" test "$ms" -lt $((IT_HOLD_TIMEOUT * 1000))
check "the admin API names the second issuer for b1.test" test "$(issuer_of b1.test)" = "second $PEBBLE2_DIR_URL"
check "acme_spoa_issuer_up{issuer=\"first\"} is 0" test "$(metric 'acme_spoa_issuer_up{issuer="first"}')" = 0
check "the fallback is counted (acme_spoa_issuer_fallbacks_total{issuer=\"second\"} 1)" \
	test "$(metric 'acme_spoa_issuer_fallbacks_total{issuer="second"}')" = 1
check "the first's failure is counted as the CA's (result=\"ca_error\")" \
	test "$(metric 'acme_spoa_issuer_orders_total{issuer="first",result="ca_error"}')" -ge 1
read -r v ms < <(tls_handshake b2.test "$IT_DIR/root2.pem")
echo "# first CA marked down: b2.test's first handshake after $ms ms"
check "first CA marked down: b2.test goes straight to the second (verified, $ms ms < ${TIMEOUT}000)" \
	test "$v" = 1 -a "$ms" -lt $((TIMEOUT * 1000))
check "no order for b2.test was started at the first" \
	bash -c "! grep -q 'host=b2.test issuance started issuer=first' '$IT_DIR/agent.log'"

# --- the first back ------------------------------------------------------------
kill -CONT "$PEBBLE_PID"
first_up() { [ "$(metric 'acme_spoa_issuer_up{issuer="first"}')" = 1 ]; }
check "first CA back: its probe brings it up (within 40 s)" wait_for 40 first_up
check "new orders go to the first again: c1.test verifies against the first root" verifies c1.test "$IT_DIR/root1.pem"
check "the admin API names the first issuer for c1.test" test "$(issuer_of c1.test)" = "first $PEBBLE_DIR_URL"

# --- a validation failure does not fall back ------------------------------------
# bad.test resolves (for Pebble) to 127.0.0.2, where nothing answers port 80
curl -sf -X POST -d '{"host":"bad.test.","addresses":["127.0.0.2"]}' \
	"http://127.0.0.1:$CTS_MGMT/add-a" >/dev/null
before2=$(metric 'acme_spoa_issuer_orders_total{issuer="second",result="issued"}')
https_get bad.test
failed_bad() { grep -q 'host=bad.test issuer=first order=.* failed' "$IT_DIR/agent.log"; }
check "bad.test: the first CA's validation fails" wait_for 20 failed_bad
sleep 1
check "no fallback for a validation failure (no order for bad.test at the second)" \
	bash -c "! grep -q 'host=bad.test issuance started issuer=second' '$IT_DIR/agent.log'"
check "the second Pebble's log shows no order for bad.test" bash -c "! grep -q 'bad.test' '$IT_DIR/pebble2.log'"
check "the first Pebble's log shows the order for bad.test (the check can see one)" grep -q 'bad.test' "$IT_DIR/pebble.log"
check "the first is still up (a validation failure is the name's fault)" first_up
check "the second issued nothing meanwhile" \
	test "$(metric 'acme_spoa_issuer_orders_total{issuer="second",result="issued"}')" = "$before2"

# --- renewals: to the CA of the current certificate --------------------------------
python3 - "$AGENT_CONF" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["renew_threshold_days"] = 60
json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
kill -HUP "$AGENT_PID"
renewed() { grep -q "host=$1 renewal started issuer=$2" "$IT_DIR/agent.log"; }
check "b1.test (issued by the second) is renewed at the second while the first is up" wait_for 30 renewed b1.test second
check "a1.test (issued by the first) is renewed at the first" wait_for 30 renewed a1.test first
check "b1.test's renewal did not go to the first" \
	bash -c "! grep -q 'host=b1.test renewal started issuer=first' '$IT_DIR/agent.log'"
check "the admin API still names the second for b1.test after its renewal" \
	wait_for 10 bash -c "[ \"\$(curl -s http://127.0.0.1:$ADMIN_PORT/acme/certificates/b1.test | grep -o '\"issuer_name\":\"[a-z]*\"')\" = '\"issuer_name\":\"second\"' ]"

check "agent stops cleanly" agent_stops_cleanly
it_summary
