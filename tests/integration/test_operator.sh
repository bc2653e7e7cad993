#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# What an operator touches, on a real run (HAProxy, Pebble, the agent):
# config errors, SIGHUP, admin token, DELETE and revoke, ask_url, failure
# backoff, health, and hostile admin clients. SPEC §2, §3, §5.
set -u
source "$(dirname "$0")/lib.sh"
it_init

# --- every wrong value is refused at start and by --check, key named -------
PEBBLE_DIR_URL=https://127.0.0.1:1/dir HAP_SOCK=/nonexistent HAP_CERTS=$IT_DIR/c agent_config
good=$(cat "$AGENT_CONF")
bad_case() {   # key, python expression editing d
	local key=$1 expr=$2 out rc
	python3 -c "import json,sys; d=json.loads(sys.argv[1]); $expr; print(json.dumps(d))" "$good" > "$IT_DIR/bad.json"
	out=$("$IT_BIN" -c "$IT_DIR/bad.json" --check 2>&1); rc=$?
	if [ "$rc" != 1 ] || ! grep -q "config: $key" <<<"$out"; then not_ok "--check refuses a bad $key (rc=$rc: $out)"; return; fi
	out=$(timeout 5 "$IT_BIN" -c "$IT_DIR/bad.json" 2>&1); rc=$?
	if [ "$rc" != 1 ] || ! grep -q "config: $key" <<<"$out"; then not_ok "start refuses a bad $key (rc=$rc)"; return; fi
	ok "bad $key refused at start and by --check"
}
bad_case rsa_key_size 'd["rsa_key_size"]=1024'
bad_case cert_type 'd["cert_type"]="dsa"'
bad_case storage 'd["storage"]="mysql"'
bad_case renew_threshold_days 'd["renew_threshold_days"]=-1'
bad_case fail_backoff_minutes 'd["fail_backoff_minutes"]=0'
bad_case 'domains\[0\]' 'd["domains"]=["~^re.*"]'
bad_case api_uri 'd["api_uri"]="ftp://x"'
bad_case spoa.listen 'd["spoa"]["listen"]="nope"'
bad_case admin.listen 'd["admin"]["listen"]="127.0.0.1:99999"'
bad_case tos_accepted 'd["tos_accepted"]="yes"'
bad_case account_email 'del d["account_email"]'
bad_case eab_hmac_key 'd["eab_kid"]="kid-1"'
bad_case renew_treshold_days 'd["renew_treshold_days"]=3'
bad_case storage_config.redis.port 'd["storage_config"]["redis"]={"port":70000}'
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["renew_treshold_days"]=3; print(json.dumps(d))' "$good" > "$IT_DIR/bad.json"
out=$("$IT_BIN" -c "$IT_DIR/bad.json" --check 2>&1)
check "an unknown key gets a suggestion" grep -q 'did you mean renew_threshold_days' <<<"$out"

# --- a real run -------------------------------------------------------------
SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
start_pebble "$HAP_HTTP" || { not_ok "pebble starts"; it_summary; exit 1; }
python3 - "$IT_DIR" <<'PY' &
import http.server, sys, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path.endswith("domain=yes.test")
        self.send_response(200 if ok else 404); self.end_headers()
        open(os.path.join(sys.argv[1], "ask.log"), "a").write(self.path + "\n")
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(os.path.join(sys.argv[1], "ask.port"), "w").write(str(s.server_port))
s.serve_forever()
PY
IT_PIDS+=($!)
wait_for 5 test -s "$IT_DIR/ask.port"
ASK_PORT=$(cat "$IT_DIR/ask.port")
agent_config "\"ask_url\": \"http://127.0.0.1:$ASK_PORT/check\""
start_agent || { not_ok "agent starts"; it_summary; exit 1; }
start_haproxy || { not_ok "haproxy starts"; it_summary; exit 1; }
wait_for 10 agent_up_in_haproxy

# ask_url
https_get yes.test; https_get no.test
check "ask_url allows yes.test: issued" wait_for 30 served_by_pebble yes.test
sleep 1
# 'host=X order' is what the agent logs when it orders X: found for yes.test, its absence for no.test counts
check "ask_url refuses no.test: not issued" sh -c "grep -q 'host=yes.test order' '$IT_DIR/agent.log' && ! grep -q 'host=no.test order' '$IT_DIR/agent.log' && test ! -e '$HAP_CERTS/no.test.pem'"
check "ask_url was asked for both names" sh -c "grep -q 'domain=no.test' '$IT_DIR/ask.log' && grep -q 'domain=yes.test' '$IT_DIR/ask.log'"

# failure backoff: fail.test resolves to an address where nothing listens
curl -s -X POST "http://127.0.0.1:$CTS_MGMT/add-a" -d '{"host":"fail.test","addresses":["127.0.0.2"]}' >/dev/null
r=$(admin POST /acme -d host=fail.test)
check "a failing order: 500 with the CA's error ($(cut -c1-90 <<<"$r"))" grep -q '^500 {"message":.*urn:ietf:params:acme:error' <<<"$r"
before=$(metric acme_spoa_orders_started_total)
https_get fail.test; https_get fail.test; sleep 1
after=$(metric acme_spoa_orders_started_total)
check "fail.test in backoff: on-demand requests make no new order ($before -> $after)" delta_is 0 "$before" "$after"
check "backoff is counted" test "$(metric 'acme_spoa_on_demand_refused_total{reason="backoff"}')" -ge 1

# DELETE, with and without revocation
admin POST /acme -d host=del.test >/dev/null
admin POST /acme -d host=rev.test >/dev/null
check "del.test served before DELETE" served_by_pebble del.test
meta_of() { "$IT_BUILD/tools/storage_tool" "file:$IT_DIR/store" get "meta/$1" 2>/dev/null; }
meta_stored() { meta_of del.test | grep -q '"v":1,"host":"del.test","serial":"[0-9A-F]'; }
check "del.test: its metadata record is stored beside it" wait_for 5 meta_stored
r=$(admin DELETE /acme/certificates/del.test)
check "DELETE /acme/certificates/del.test: 200 ($r)" grep -q '^200 ' <<<"$r"
check "deleted: GET answers 404" grep -q '^404 ' <<<"$(admin GET /acme/certificates/del.test)"
check "deleted: HAProxy serves the default certificate again" sh -c "$(declare -f served_cert); HAP_HTTPS=$HAP_HTTPS; served_cert del.test | grep -q haproxy-default"
check "deleted: the PEM is gone from cert_dir" test ! -e "$HAP_CERTS/del.test.pem"
check "deleted: its metadata record too" sh -c "! \"$IT_BUILD/tools/storage_tool\" \"file:$IT_DIR/store\" get meta/del.test >/dev/null 2>&1"
r=$(admin DELETE '/acme/certificates/rev.test?revoke=true')
check "DELETE ?revoke=true: revoked at the CA and removed ($r)" grep -q '^200 ' <<<"$r"
check "revocation logged" grep -q 'host=rev.test certificate revoked' "$IT_DIR/agent.log"
check "DELETE unknown host: 404" grep -q '^404 ' <<<"$(admin DELETE /acme/certificates/nothing.test)"

# SIGHUP: domains and admin.token applied live
r=$(admin POST /acme -d host=late.example.org)
check "before SIGHUP late.example.org is refused (400)" grep -q '^400 ' <<<"$r"
python3 - "$AGENT_CONF" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["domains"].append("*.example.org"); d["admin"]["token"] = "s3cret-token"
json.dump(d, open(sys.argv[1], "w"))
PY
kill -HUP "$AGENT_PID"; sleep 1
r=$(admin POST /acme -d host=late.example.org)
check "after SIGHUP the admin token is required (401)" grep -q '^401 ' <<<"$r"
r=$(admin POST /acme -H 'Authorization: Bearer s3cret-token' -d host=late.example.org)
check "after SIGHUP late.example.org is allowed and issued ($r)" grep -q '^201 ' <<<"$r"
check "/healthz needs no token" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")" = 200
check "the token never reaches the log" sh -c "grep -q 'host=late.example.org' '$IT_DIR/agent.log' && ! grep -q s3cret-token '$IT_DIR/agent.log'"
AUTH=(-H 'Authorization: Bearer s3cret-token')

# hostile clients: 50 half requests do not stop a normal one
python3 - "$ADMIN_PORT" <<'PY' &
import socket, sys, time
socks = []
for i in range(50):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"POST /acme HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhost=")
    socks.append(s)
time.sleep(4)
PY
HALF=$!
sleep 0.5
t=$(curl -s -o /dev/null -w '%{time_total}' --max-time 3 "${AUTH[@]}" "http://127.0.0.1:$ADMIN_PORT/acme/certificates")
check "50 half-sent requests: a normal request still answered in ${t}s" python3 -c "import sys; assert 0 < float(sys.argv[1]) < 1" "$t"
wait "$HALF"

# bad storage contents: a corrupt certificate is reported, the rest is served
stop_pid "$AGENT_PID"
"$IT_BUILD/tools/storage_tool" "file:$IT_DIR/store" put certs/garbage.test "-----BEGIN CERTIFICATE-----
bm90IGEgY2VydGlmaWNhdGU=
-----END CERTIFICATE-----"
printf 'ASPA1 garbage' > "$IT_DIR/store/backoff/yes.test"
start_agent
check "corrupt stored data: the agent starts anyway" curl -sf "${AUTH[@]}" "http://127.0.0.1:$ADMIN_PORT/acme/certificates/yes.test" -o /dev/null
check "and names the unreadable certificate in its log" grep -q 'host=garbage.test certificate from storage refused' "$IT_DIR/agent.log"
check "and still serves the others" served_by_pebble yes.test

# health follows HAProxy
stop_pid "$HAP_PID"
unhealthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")" = 503 ]; }
check "HAProxy down: /healthz 503" wait_for 15 unhealthy
check "and says what is down" sh -c "curl -s http://127.0.0.1:$ADMIN_PORT/healthz | grep -q runtime"

check "agent exits cleanly on SIGTERM (status 0 within 5 s, no error logged)" agent_stops_cleanly
it_summary
