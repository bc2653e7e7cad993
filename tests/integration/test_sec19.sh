#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Issue 19 (security review, round three), part A, through the real peers:
# HAProxy 2.6 with haproxy-examples/, Pebble resolving through BIND, the
# agent on file storage.
#  - finding 1: a 256-character http-01 token leaves /healthz at 200 and
#    acme_spoa_storage_up at 1 (it made the file store answer ENAMETOOLONG);
#  - finding 12: tokens shorter than 22 characters are answered from memory,
#    a well-formed unknown token costs one storage look-up per 10 s, a known
#    one is still served;
#  - finding 3: with preload on_demand, 50 SNIs for a stored bundle that fails
#    the check give one read and one log line, and an allowed name whose
#    stored bundle is refused gets a new certificate from Pebble;
#  - finding 11: a 253-character name under "*.test" is issued on its SNI,
#    written to cert_dir under a bounded file name, and served by a HAProxy
#    restarted while the agent is down (so from cert_dir alone);
#  - finding 13: dns01.zone "test" (one label, BIND's zone here) is accepted,
#    and a wildcard certificate is issued through it by dns-01.
set -u
source "$(dirname "$0")/lib.sh"
it_init
TOOLS=$IT_BUILD/tools
STORE="file:$IT_DIR/store"

# Pebble resolves through BIND (zone "test", every name 127.0.0.1): the
# answer for a 253-character name passes 512 bytes, which BIND handles (EDNS,
# TCP) and pebble-challtestsrv does not ("dns: buffer size too small").
start_bind() {
	local d=$IT_DIR/bind
	mkdir -p "$d"
	BIND_PORT=$(free_port)
	TSIG_SECRET=$(openssl rand -base64 32)
	cat > "$d/named.conf" <<CONF
options {
	directory "$d"; listen-on port $BIND_PORT { 127.0.0.1; }; listen-on-v6 { none; };
	pid-file "$d/named.pid"; session-keyfile "$d/session.key"; managed-keys-directory "$d";
	recursion no; dnssec-validation no; notify no;
};
key "acme-key" { algorithm hmac-sha256; secret "$TSIG_SECRET"; };
zone "test" { type primary; file "$d/test.zone"; allow-update { key "acme-key"; }; };
CONF
	printf '%s\n' '$TTL 60' '@ IN SOA ns.test. hostmaster.test. 1 60 60 600 60' '@ IN NS ns.test.' \
		'ns IN A 127.0.0.1' '* IN A 127.0.0.1' > "$d/test.zone"
	named -g -c "$d/named.conf" >"$IT_DIR/named.log" 2>&1 &
	IT_PIDS+=($!)
	wait_for 15 bind_answers
}
bind_answers() { dig +time=1 +tries=1 -p "$BIND_PORT" @127.0.0.1 x.test A | grep -q 'status: NOERROR'; }
command -v named >/dev/null && command -v dig >/dev/null ||
	{ not_ok "named and dig installed (bind9, bind9-dnsutils: scripts/deps.sh)"; it_summary; exit 1; }
start_bind || { not_ok "BIND starts"; cat "$IT_DIR/named.log"; it_summary; exit 1; }
SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
CTS_DNS=$BIND_PORT   # no pebble-challtestsrv: BIND answers Pebble
start_pebble "$HAP_HTTP" || { not_ok "pebble starts"; it_summary; exit 1; }
agent_config
start_agent || { not_ok "agent starts"; tail -5 "$IT_DIR/agent.log"; it_summary; exit 1; }
start_haproxy || { not_ok "haproxy starts"; it_summary; exit 1; }
check "HAProxy's spop-check sees the agent UP" wait_for 10 agent_up_in_haproxy

challenge() {   # TOKEN: "CODE BODY" of the challenge path through HAProxy
	curl -s --max-time 5 -w '%{http_code} ' -o "$IT_DIR/ch.body" -H 'Host: a.test' \
		"http://127.0.0.1:$HAP_HTTP/.well-known/acme-challenge/$1"
	cat "$IT_DIR/ch.body"
}
healthz() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz"; }

# --- finding 1: a long token is unknown, storage stays up --------------------
KNOWN=tok-sec19-known-0123456789abcdefghijkl   # 40 characters
"$TOOLS/storage_tool" "$STORE" put "challenges/$KNOWN" "$KNOWN.thumbprint" 600
LONG=$(head -c 256 /dev/zero | tr '\0' 'A')
check "a 256-character token gets 404" test "$(challenge "$LONG")" = "404 Not found"
sleep 0.3
check "/healthz stays 200 after it" test "$(healthz)" = 200
check "acme_spoa_storage_up stays 1" test "$(metric acme_spoa_storage_up)" = 1
for n in 129 200 255; do challenge "$(head -c $n /dev/zero | tr '\0' 'B')" >/dev/null; done
check "and after 129, 200 and 255 characters too" test "$(healthz) $(metric acme_spoa_storage_up)" = "200 1"
check "nothing logged at error level about it" bash -c "! grep -q 'error: .*AAAAAAAA' '$IT_DIR/agent.log'"

# --- finding 12: what needs no storage read gets none ------------------------
def0=$(metric acme_spoa_http01_deferred_total)
reads0=$(metric acme_spoa_http01_storage_reads_total)
mem0=$(metric acme_spoa_http01_unknown_from_memory_total)
SHORT=abcdefghijklmnopqrstu   # 21 characters: fewer than 128 bits
for i in 1 2 3; do r=$(challenge "$SHORT"); done
check "a 21-character token gets 404" test "$r" = "404 Not found"
check "3 short tokens: no storage look-up" delta_is 0 "$def0" "$(metric acme_spoa_http01_deferred_total)"
UNKNOWN=tok-sec19-unknown-0123456789abcdefghijklmnop   # 43 characters
for i in 1 2 3 4 5; do r=$(challenge "$UNKNOWN"); done
check "an unknown 43-character token gets 404" test "$r" = "404 Not found"
check "5 requests for it: one storage look-up" delta_is 1 "$def0" "$(metric acme_spoa_http01_deferred_total)"
check "... one storage read" delta_is 1 "$reads0" "$(metric acme_spoa_http01_storage_reads_total)"
check "the others answered from memory (3 short + 4)" \
	delta_is 7 "$mem0" "$(metric acme_spoa_http01_unknown_from_memory_total)"
check "a known token (stored by another process) is still served" \
	test "$(challenge "$KNOWN")" = "200 $KNOWN.thumbprint"
check "/healthz 200 at the end" test "$(healthz)" = 200

# --- finding 3: a refused stored bundle, preload on_demand -------------------
stop_pid "$AGENT_PID"
"$TOOLS/gen_certs" --store "$STORE" --name good.test >/dev/null 2>&1
"$TOOLS/storage_tool" "$STORE" get certs/good.test >"$IT_DIR/good.pem" 2>/dev/null
# another name's certificate stored as a name outside "domains", and as one inside
"$TOOLS/storage_tool" "$STORE" put certs/refused.example "$(cat "$IT_DIR/good.pem")" >/dev/null 2>&1
"$TOOLS/storage_tool" "$STORE" put certs/reissue.test "$(cat "$IT_DIR/good.pem")" >/dev/null 2>&1
IT_HAPROXY_EXTRA='"preload": "on_demand"' agent_config
restart_agent || { not_ok "agent restarts with preload on_demand"; it_summary; exit 1; }
refused0=$(metric 'acme_spoa_certificates_refused_total{source="storage"}')
lines0=$(grep -c 'host=refused.example certificate from storage refused' "$IT_DIR/agent.log")
for i in $(seq 50); do https_get refused.example; done
refused_lines=$(( $(grep -c 'host=refused.example certificate from storage refused' "$IT_DIR/agent.log") - lines0 ))
check "50 SNIs for a refused stored bundle: one refusal counted" \
	delta_is 1 "$refused0" "$(metric 'acme_spoa_certificates_refused_total{source="storage"}')"
check "... and one log line ($refused_lines)" test "$refused_lines" = 1
check "... never in cert_dir" test ! -e "$HAP_CERTS/refused.example.pem"
reissued() { https_get reissue.test; served_by_pebble reissue.test; }
check "an allowed name whose stored bundle is refused is issued anew by Pebble" wait_for 30 reissued

# --- finding 11: a 253-character name survives a HAProxy restart -------------
LONGHOST=$(printf '%063d.%063d.%063d.%056d.test' 0 0 0 0 | tr 0 l)
check "the long name has 253 characters" test "${#LONGHOST}" = 253
long_issued() { https_get "$LONGHOST"; served_by_pebble "$LONGHOST"; }
check "a 253-character name is issued on its SNI and served" wait_for 60 long_issued
longfile=$(ls "$HAP_CERTS" | grep '^_long_[0-9a-f]\{64\}\.pem$')
check "its cert_dir file has a bounded name ($longfile)" test -n "$longfile"
check "written 0600" test "$(stat -c %a "$HAP_CERTS/$longfile" 2>/dev/null)" = 600
hap_holds() { [ -n "$longfile" ] && hap_cmd 'show ssl cert' | grep -qxF "$HAP_CERTS/$longfile"; }
check "HAProxy holds it under that name" hap_holds
stop_pid "$AGENT_PID"
stop_pid "$HAP_PID"
start_haproxy || not_ok "haproxy restarts"
check "after a HAProxy restart (agent down) it is still served, from cert_dir" served_by_pebble "$LONGHOST"
restart_agent || not_ok "agent restarts"
synced() { grep -q 'HAProxy holds' "$IT_DIR/agent.log"; }
wait_for 10 synced
check "the agent's sync finds it in HAProxy: one entry, nothing pushed again" \
	test "$(hap_cmd 'show ssl cert' | grep -c '_long_')" = 1
check "served after the agent's return" served_by_pebble "$LONGHOST"
check "GET /acme/certificates/<long name> finds it" \
	bash -c '[ "${1%% *}" = 200 ]' _ "$(admin GET "/acme/certificates/$LONGHOST")"
check "DELETE /acme/certificates/<long name> answers 200" \
	bash -c '[ "${1%% *}" = 200 ]' _ "$(admin DELETE "/acme/certificates/$LONGHOST")"
long_gone() { [ ! -e "$HAP_CERTS/$longfile" ] && ! hap_cmd 'show ssl cert' | grep -q '_long_'; }
check "... its file and HAProxy's entry are gone" wait_for 10 long_gone

# --- finding 13: a one-label dns01.zone ---------------------------------------
stop_pid "$AGENT_PID"
agent_config "\"wildcard_domains\": [\"w.test\"], \"dns01\": { \"provider\": \"rfc2136\",
  \"server\": \"127.0.0.1:$BIND_PORT\", \"tsig_key_name\": \"acme-key\", \"tsig_secret\": \"$TSIG_SECRET\",
  \"zone\": \"test\", \"propagation_timeout\": 20 }"
check "--check accepts dns01.zone \"test\"" bash -c "\"\$1\" -c \"\$2\" --check >/dev/null" _ "$IT_BIN" "$AGENT_CONF"
restart_agent || { not_ok "agent starts with dns01.zone \"test\""; tail -3 "$IT_DIR/agent.log"; }
wildcard_served() { https_get x.w.test; served_cert x.w.test | grep -q 'issuer=.*Pebble' && served_cert x.w.test | grep -q 'DNS:\*\.w\.test'; }
check "*.w.test issued by dns-01 through the one-label zone test and served" wait_for 60 wildcard_served
check "the record was published in zone test" grep -q "TXT _acme-challenge.w.test published (rfc2136) in zone test$" "$IT_DIR/agent.log"

agent_stops_cleanly || not_ok "agent stops cleanly"
it_summary
