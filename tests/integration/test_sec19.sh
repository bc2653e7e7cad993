#!/usr/bin/env bash
# Issue 19 (security review, round three), part A, through the real peers:
# HAProxy 2.6 with haproxy-examples/, Pebble + pebble-challtestsrv, the agent
# on file storage.
#  - finding 1: a 256-character http-01 token leaves /healthz at 200 and
#    acme_spoa_storage_up at 1 (it made the file store answer ENAMETOOLONG);
#  - finding 12: tokens shorter than 22 characters are answered from memory,
#    a well-formed unknown token costs one storage look-up per 10 s, a known
#    one is still served;
#  - finding 3: with preload on_demand, 50 SNIs for a stored bundle that fails
#    the check give one read and one log line, and an allowed name whose
#    stored bundle is refused gets a new certificate from Pebble.
set -u
source "$(dirname "$0")/lib.sh"
it_init
TOOLS=$IT_BUILD/tools
STORE="file:$IT_DIR/store"

SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
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
mem0=$(metric acme_spoa_http01_unknown_from_memory_total)
SHORT=abcdefghijklmnopqrstu   # 21 characters: fewer than 128 bits
for i in 1 2 3; do r=$(challenge "$SHORT"); done
check "a 21-character token gets 404" test "$r" = "404 Not found"
check "3 short tokens: no storage look-up" delta_is 0 "$def0" "$(metric acme_spoa_http01_deferred_total)"
UNKNOWN=tok-sec19-unknown-0123456789abcdefghijklmnop   # 43 characters
for i in 1 2 3 4 5; do r=$(challenge "$UNKNOWN"); done
check "an unknown 43-character token gets 404" test "$r" = "404 Not found"
check "5 requests for it: one storage look-up" delta_is 1 "$def0" "$(metric acme_spoa_http01_deferred_total)"
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

agent_stops_cleanly || not_ok "agent stops cleanly"
it_summary
