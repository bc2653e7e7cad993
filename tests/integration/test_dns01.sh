#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# dns-01 and wildcards against a real BIND 9 (Debian's named, unprivileged
# config in the temp dir, a TSIG key, updatable zones) with Pebble resolving
# through that BIND, so Pebble validates what BIND really serves. SPEC §3
# dns01, wildcard_domains; issue 11.
#   - rfc2136: SNI a.w.test and b.w.test served by one "*.w.test" + "w.test"
#     certificate (one order), listed under its wildcard name, TXT gone after
#   - a wrong TSIG secret: BIND's refusal in the log and the admin API's 500,
#     then failure backoff
#   - exec: the example hook (nsupdate) for POST /acme host=*.x.test
#   - kill -9 between present and validation: the restart removes the TXT
#     and the cut-off order completes; no TXT left behind
set -u
source "$(dirname "$0")/lib.sh"
it_init

ZONES="w.test y.test x.test k.test"
HOOK=$IT_ROOT/haproxy-examples/dns01-nsupdate.sh

# start_bind: named on a free loopback port with every zone of $ZONES
# updatable by the TSIG key acme-key; sets BIND_PORT, TSIG_SECRET.
start_bind() {
	local d=$IT_DIR/bind z
	mkdir -p "$d"
	BIND_PORT=$(free_port)
	TSIG_SECRET=$(openssl rand -base64 32)
	cat > "$d/named.conf" <<EOF
options {
	directory "$d";
	listen-on port $BIND_PORT { 127.0.0.1; };
	listen-on-v6 { none; };
	pid-file "$d/named.pid";
	session-keyfile "$d/session.key";
	managed-keys-directory "$d";
	recursion no;
	dnssec-validation no;
	notify no;
};
key "acme-key" { algorithm hmac-sha256; secret "$TSIG_SECRET"; };
EOF
	for z in $ZONES; do
		cat > "$d/$z.zone" <<EOF
\$TTL 60
@ IN SOA ns.$z. hostmaster.$z. 1 60 60 600 60
@ IN NS ns.$z.
ns IN A 127.0.0.1
@ IN A 127.0.0.1
* IN A 127.0.0.1
EOF
		echo "zone \"$z\" { type primary; file \"$d/$z.zone\"; allow-update { key \"acme-key\"; }; };" >> "$d/named.conf"
	done
	named -g -c "$d/named.conf" >"$IT_DIR/named.log" 2>&1 &
	IT_PIDS+=($!)
	wait_for 15 dig_ok
}
dig_ok() { dig +time=1 +tries=1 -p "$BIND_PORT" @127.0.0.1 w.test SOA | grep -q 'status: NOERROR'; }

# txt NAME: the TXT values BIND serves for NAME, one a line.
txt() { dig +short +time=2 +tries=1 -p "$BIND_PORT" @127.0.0.1 "$1" TXT; }
no_txt() { [ -z "$(txt "$1")" ]; }
has_txt() { [ -n "$(txt "$1")" ]; }

# dns01 JSON for the config: rfc2136 with SECRET, or exec with HOOK_PATH.
dns01_rfc2136() {
	echo "\"dns01\": { \"provider\": \"rfc2136\", \"server\": \"127.0.0.1:$BIND_PORT\",
	  \"tsig_key_name\": \"acme-key\", \"tsig_secret\": \"$1\", \"propagation_timeout\": 20 }"
}
dns01_exec() {
	echo "\"dns01\": { \"provider\": \"exec\", \"exec\": \"$1\", \"server\": \"127.0.0.1:$BIND_PORT\",
	  \"propagation_timeout\": 20,
	  \"exec_env\": [\"NSUPDATE_SERVER\", \"NSUPDATE_PORT\", \"NSUPDATE_TSIG\"] }"
}

# served_san HOST: the subjectAltName line HAProxy serves for SNI HOST.
served_san() { served_cert "$1" | grep -o 'DNS:.*'; }
served_serial() {
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername "$1" 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null
}
wildcard_served() { served_cert "$1" | grep -q 'issuer=.*Pebble' && served_san "$1" | grep -q "DNS:\*\.$2"; }

command -v named >/dev/null && command -v nsupdate >/dev/null ||
	{ not_ok "named and nsupdate installed (bind9, bind9-dnsutils: scripts/deps.sh)"; it_summary; exit 1; }
start_bind || { not_ok "BIND starts"; cat "$IT_DIR/named.log"; it_summary; exit 1; }
ok "BIND 9 serves the test zones on 127.0.0.1:$BIND_PORT"

SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
PEBBLE_DNS=127.0.0.1:$BIND_PORT start_pebble "$HAP_HTTP" || { not_ok "pebble starts"; it_summary; exit 1; }
start_haproxy || { not_ok "haproxy starts"; it_summary; exit 1; }

# --- config ------------------------------------------------------------------
agent_config "$(dns01_rfc2136 "$TSIG_SECRET"), \"wildcard_domains\": [\"w.test\", \"y.test\"]"
GOOD_CONF=$IT_DIR/agent-good.json
cp "$AGENT_CONF" "$GOOD_CONF"
check "config --check accepts dns01 + wildcard_domains" "$IT_BIN" -c "$GOOD_CONF" --check
sed 's/"provider": "rfc2136"/"provider": "rfc2136", "tsig_algorithm": "hmac-md5"/; s/"tsig_key_name": "acme-key", //' \
	"$GOOD_CONF" > "$IT_DIR/bad.json"
out=$("$IT_BIN" -c "$IT_DIR/bad.json" --check 2>&1)
check "--check names a bad tsig_algorithm and the missing tsig_key_name" \
	bash -c 'grep -q "dns01.tsig_algorithm: \"hmac-md5\" is not one of" <<<"$1" && grep -q "dns01.tsig_key_name: missing" <<<"$1"' _ "$out"

# --- rfc2136: one wildcard certificate for every name of w.test ---------------
restart_agent "$GOOD_CONF" || { not_ok "agent starts"; cat "$IT_DIR/agent.log"; it_summary; exit 1; }
before=$(metric acme_spoa_orders_started_total)
https_get a.w.test
check "within 30 s HAProxy serves a Pebble *.w.test certificate for a.w.test" \
	wait_for 30 wildcard_served a.w.test w.test
https_get b.w.test
check "b.w.test gets the same certificate at once" \
	bash -c '[ -n "$1" ] && [ "$1" = "$2" ]' _ "$(served_serial a.w.test)" "$(served_serial b.w.test)"
check "the certificate names *.w.test and w.test" \
	bash -c 'grep -q "DNS:\*\.w\.test" <<<"$1" && grep -qE "DNS:w\.test(,|$)" <<<"$1"' _ "$(served_san b.w.test)"
sleep 1
after=$(metric acme_spoa_orders_started_total)
check "one order for a.w.test and b.w.test ($before -> $after)" delta_is 1 "$before" "$after"
list=$(admin GET /acme/certificates)
check "GET /acme/certificates lists it as *.w.test, not per name" \
	bash -c 'grep -q "\"host\": *\"\*\.w\.test\"" <<<"$1" && ! grep -q "a\.w\.test" <<<"$1"' _ "$list"
check "GET /acme/certificates/*.w.test answers 200" test "$(admin GET '/acme/certificates/*.w.test' | cut -d' ' -f1)" = 200
check "cert_dir holds _wildcard_.w.test.pem (0600)" \
	test "$(stat -c %a "$HAP_CERTS/_wildcard_.w.test.pem" 2>/dev/null)" = 600
check "the TXT records of _acme-challenge.w.test are gone after the order" wait_for 10 no_txt _acme-challenge.w.test
check "the agent logged publish, visibility and removal" \
	bash -c 'grep -q "TXT _acme-challenge.w.test published" "$1" && grep -q "TXT _acme-challenge.w.test visible" "$1" && grep -q "TXT _acme-challenge.w.test removed" "$1"' _ "$IT_DIR/agent.log"
check "no dns01/ record left in storage" bash -c '! find "$1/store/dns01" -type f 2>/dev/null | grep -q .' _ "$IT_DIR"
dns_metric() { metric "acme_spoa_dns01_records_total{op=\"$1\",result=\"$2\"}"; }
two_removed() { [ "$(dns_metric cleanup ok)" = 2 ]; }
check "/metrics: 2 TXT records published and seen, none failed ($(dns_metric present ok), $(dns_metric present error))" \
	test "$(dns_metric present ok)" = 2 -a "$(dns_metric present error)" = 0
check "/metrics: both removed ($(dns_metric cleanup ok))" wait_for 10 two_removed

# restart: served from disk and storage under the same wildcard name
agent_stops_cleanly; check "the agent stops cleanly" test $? = 0
restart_agent "$GOOD_CONF"
serial=$(served_serial a.w.test)
https_get c.w.test
sleep 1
check "after a restart c.w.test is served the stored wildcard certificate" \
	bash -c '[ -n "$1" ] && [ "$1" = "$2" ]' _ "$(served_serial c.w.test)" "$serial"
check "... and no order was started" test "$(metric acme_spoa_orders_started_total)" = 0

# --- a wrong TSIG secret ---------------------------------------------------------
agent_stops_cleanly
WRONG=$(openssl rand -base64 32)
sed "s#$TSIG_SECRET#$WRONG#" "$GOOD_CONF" > "$IT_DIR/agent-wrong.json"
restart_agent "$IT_DIR/agent-wrong.json"
size=$(stat -c %s "$IT_DIR/agent.log")
resp=$(admin POST /acme --data 'host=*.y.test')
check "POST *.y.test with a wrong TSIG secret: 500 naming BIND's refusal (NOTAUTH, BADSIG)" \
	bash -c '[ "${1%% *}" = 500 ] && grep -q "NOTAUTH" <<<"$1" && grep -q "BADSIG" <<<"$1"' _ "$resp"
echo "# $resp"
check "/metrics counts the refused publication ($(dns_metric present error))" \
	test "$(dns_metric present error)" -ge 1
check "BIND logged the bad signature" grep -qiE 'tsig verify failure|BADSIG|invalid signature' "$IT_DIR/named.log"
newlog=$(tail -c +"$((size + 1))" "$IT_DIR/agent.log")
check "the agent logged the refusal and the failure backoff" \
	bash -c 'grep -q "NOTAUTH, TSIG error BADSIG" <<<"$1" && grep -q "next attempt not before" <<<"$1"' _ "$newlog"
refused=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1 == "acme_spoa_on_demand_refused_total{reason=\"backoff\"}" { print $2 }')
https_get a.y.test; sleep 0.5
refused2=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1 == "acme_spoa_on_demand_refused_total{reason=\"backoff\"}" { print $2 }')
check "SNI a.y.test is then refused by the backoff ($refused -> $refused2)" delta_is 1 "$refused" "$refused2"
check "nothing published in y.test" no_txt _acme-challenge.y.test
check "no dns01/ record left after the refused update" \
	wait_for 5 bash -c '! find "$1/store/dns01" -type f 2>/dev/null | grep -q .' _ "$IT_DIR"

# --- exec provider: the example hook with nsupdate ------------------------------
agent_stops_cleanly
export NSUPDATE_SERVER=127.0.0.1 NSUPDATE_PORT=$BIND_PORT NSUPDATE_TSIG="hmac-sha256:acme-key:$TSIG_SECRET"
agent_config "$(dns01_exec "$HOOK"), \"wildcard_domains\": [\"w.test\", \"y.test\"]"
cp "$AGENT_CONF" "$IT_DIR/agent-exec.json"
check "exec config is valid" "$IT_BIN" -c "$IT_DIR/agent-exec.json" --check
restart_agent "$IT_DIR/agent-exec.json"
resp=$(admin POST /acme --data 'host=*.x.test')
check "POST /acme host=*.x.test through the exec hook: 201 ($resp)" test "${resp%% *}" = 201
check "HAProxy serves the *.x.test certificate for c.x.test" wait_for 10 wildcard_served c.x.test x.test
check "the hook removed the TXT records afterwards" wait_for 10 no_txt _acme-challenge.x.test
check "the agent logged the hook's publish and removal" \
	bash -c 'grep -q "TXT _acme-challenge.x.test published (exec)" "$1" && grep -q "TXT _acme-challenge.x.test removed" "$1"' _ "$IT_DIR/agent.log"

# a failing hook: its output reaches the error
cat > "$IT_DIR/failhook.sh" <<'EOF'
#!/bin/sh
echo "provider says: zone not managed here"
exit 3
EOF
chmod +x "$IT_DIR/failhook.sh"
agent_stops_cleanly
sed "s#$HOOK#$IT_DIR/failhook.sh#" "$IT_DIR/agent-exec.json" > "$IT_DIR/agent-fail.json"
restart_agent "$IT_DIR/agent-fail.json"
# (not k.test: the failure puts the name in backoff, which the resumed order
# below obeys; a zone BIND has, so the next start's clean-up of the record
# the failing hook could not remove succeeds)
resp=$(admin POST /acme --data 'host=*.y.test')
check "a failing hook: 500 with its exit status and output" \
	bash -c '[ "${1%% *}" = 500 ] && grep -q "exit status 3: provider says: zone not managed here" <<<"$1"' _ "$resp"

# --- kill -9 between present and validation ----------------------------------------
cat > "$IT_DIR/slowhook.sh" <<EOF
#!/bin/sh
"$HOOK" "\$@" || exit \$?
[ "\$1" = present ] && sleep 30
exit 0
EOF
chmod +x "$IT_DIR/slowhook.sh"
agent_stops_cleanly
sed "s#$HOOK#$IT_DIR/slowhook.sh#" "$IT_DIR/agent-exec.json" > "$IT_DIR/agent-slow.json"
restart_agent "$IT_DIR/agent-slow.json"
admin POST /acme --data 'host=*.k.test' >/dev/null 2>&1 &
check "the slow hook published the TXT of _acme-challenge.k.test" wait_for 15 has_txt _acme-challenge.k.test
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "after kill -9 the TXT is still there (the order was cut off)" has_txt _acme-challenge.k.test
check "storage remembers it (dns01/ record) and the pending order" \
	bash -c 'find "$1/store/dns01" -type f | grep -q "k.test" && find "$1/store/pending" -type f | grep -q "k.test"' _ "$IT_DIR"
size=$(stat -c %s "$IT_DIR/agent.log")
restart_agent "$IT_DIR/agent-exec.json"
check "after the restart the cut-off *.k.test order completes" \
	wait_for 30 bash -c 'curl -sf "http://127.0.0.1:$1/acme/certificates/*.k.test" >/dev/null' _ "$ADMIN_PORT"
check "no TXT left at _acme-challenge.k.test" wait_for 10 no_txt _acme-challenge.k.test
newlog=$(tail -c +"$((size + 1))" "$IT_DIR/agent.log")
check "the restart removed the record the stop left" grep -q "removing TXT _acme-challenge.k.test left by a stop" <<<"$newlog"
check "no dns01/ record left in storage" wait_for 10 bash -c '! find "$1/store/dns01" -type f 2>/dev/null | grep -q .' _ "$IT_DIR"
check "no TXT left in any test zone" bash -c 'for z in w y x k; do [ -z "$(dig +short -p '"$BIND_PORT"' @127.0.0.1 _acme-challenge.$z.test TXT)" ] || exit 1; done'

agent_stops_cleanly; check "the agent stops cleanly" test $? = 0
it_summary
