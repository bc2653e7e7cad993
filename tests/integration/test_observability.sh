#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Watching acme-spoa: the Prometheus alert rules (promtool check/test rules,
# and each alert's test fails when its rule is broken), the /healthz facts as
# gauges, multipart/form-data on the admin API answering like the urlencoded
# form, and the Grafana dashboard: a real Prometheus (Debian's) scrapes a
# running agent that issued certificates from Pebble through HAProxy, loads
# the rules, and evaluates every dashboard query through its HTTP API; each
# must parse and return data.
. "$(dirname "$0")/lib.sh"
it_init
RULES=$IT_ROOT/haproxy-examples/prometheus/acme-spoa.rules.yml
RULES_TEST=$IT_ROOT/haproxy-examples/prometheus/acme-spoa.rules.test.yml
DASH=$IT_ROOT/haproxy-examples/grafana/acme-spoa.json

# --- alert rules ----------------------------------------------------------
check "promtool check rules" promtool check rules "$RULES"
check "promtool test rules: every alert fires on its synthetic series" promtool test rules "$RULES_TEST"
# each alert's test must be able to fail: break one rule at a time. The copy
# beside the test passes unbroken first (the setup itself is sound), each
# mutation must apply (the alert's expression replaced, the rules still valid)
# and promtool must then fail naming that alert.
mkdir -p "$IT_DIR/mut"
cp "$RULES_TEST" "$IT_DIR/mut/acme-spoa.rules.test.yml"
cp "$RULES" "$IT_DIR/mut/acme-spoa.rules.yml"
check "promtool test rules passes on the unbroken copy the mutations start from" \
	promtool test rules "$IT_DIR/mut/acme-spoa.rules.test.yml"
alerts=$(awk '$1 == "-" && $2 == "alert:" { print $3 }' "$RULES")
caught=0 missed="" unapplied=""
for a in $alerts; do
	rm -f "$IT_DIR/mut/acme-spoa.rules.yml"
	if ! python3 - "$RULES" "$a" "$IT_DIR/mut/acme-spoa.rules.yml" <<'PY'
import re, sys
src, name, dst = sys.argv[1:]
text = open(src).read()
# replace the expression of alert <name> by one that never fires
pat = re.compile(r'(- alert: %s\n\s+expr: )(\|\n(?:\s{10,}.*\n)+|.*\n)' % re.escape(name))
text, n = pat.subn(lambda m: m.group(1) + 'vector(0) == 1\n', text, count=1)
assert n == 1, name
open(dst, 'w').write(text)
PY
	then
		unapplied="$unapplied $a"; continue
	fi
	if cmp -s "$RULES" "$IT_DIR/mut/acme-spoa.rules.yml" ||
	   ! promtool check rules "$IT_DIR/mut/acme-spoa.rules.yml" >/dev/null 2>&1; then
		unapplied="$unapplied $a"; continue
	fi
	if promtool test rules "$IT_DIR/mut/acme-spoa.rules.test.yml" >"$IT_DIR/mut/$a.out" 2>&1; then
		missed="$missed $a"
	elif grep -q "alertname: $a," "$IT_DIR/mut/$a.out"; then
		caught=$((caught + 1))
	else
		missed="$missed $a(failed, not naming it)"
	fi
done
check "every mutation applied (rule replaced, rules still valid${unapplied:+; not applied:$unapplied})" \
	test -z "$unapplied" -a -n "$alerts"
check "promtool test rules fails when any one alert is broken ($caught alerts${missed:+; not caught:$missed})" \
	test -z "$missed" -a "$caught" -ge 9

# --- the dashboard's shape --------------------------------------------------
python3 - "$DASH" > "$IT_DIR/exprs" 2>"$IT_DIR/dash.err" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))
for p in walk(d["panels"]):
    for t in p.get("targets", []):
        print(p["title"] + "\t" + t["expr"].replace("\n", " "))
PY
check "the dashboard is JSON with queries ($(wc -l < "$IT_DIR/exprs"))" test -s "$IT_DIR/exprs"
vars=$(python3 -c 'import json,sys; print(" ".join(v["name"] for v in json.load(open(sys.argv[1]))["templating"]["list"]))' "$DASH")
check "the dashboard has an instance variable and a per-node row repeated by it ($vars)" \
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert any(p.get("repeat")=="instance" for p in d["panels"])' "$DASH"
want_missing=""
for m in acme_spoa_certificates acme_spoa_orders_started_total acme_spoa_orders_succeeded_total \
	 acme_spoa_orders_failed_total acme_spoa_renewals_total acme_spoa_renewal_failures_total \
	 acme_spoa_orders_in_flight acme_spoa_orders_queued acme_spoa_spoe_messages_total \
	 acme_spoa_spoe_processing_seconds_bucket acme_spoa_runtime_pushes_total acme_spoa_runtime_push_errors_total; do
	grep -q "$m[{[]" "$IT_DIR/exprs" || want_missing="$want_missing $m"
done
check "the dashboard shows certificates, issuance, renewal, failures, orders, SPOE, pushes${want_missing:+ (missing:$want_missing)}" \
	test -z "$want_missing"

# --- a running agent with certificates --------------------------------------
HAP_HTTP=$(free_port)
start_pebble "$HAP_HTTP" || { not_ok "pebble did not start"; it_summary; exit; }
SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_haproxy || { not_ok "haproxy did not start"; it_summary; exit; }
agent_config
restart_agent || { not_ok "agent did not start"; it_summary; exit; }

# multipart/form-data (curl -F) answers like the urlencoded form (curl -d)
r1=$(admin POST /acme -d host=form.test)
r2=$(admin POST /acme -F host=multi.test)
check "curl -d host=form.test: 201 ($r1)" test "$r1" = '201 {"message":"certificate for host form.test is created"}'
check "curl -F host=multi.test: 201 like it ($r2)" test "$r2" = '201 {"message":"certificate for host multi.test is created"}'
r1=$(admin POST /acme -d host=form.test -d test_http_challenge_flow=true)
r2=$(admin POST /acme -F host=form.test -F test_http_challenge_flow=true)
check "sanity test by -d and by -F answer alike ($r2)" test "$r1" = "$r2" -a "${r2%% *}" = 200
r2=$(admin POST /acme -H 'Content-Type:' -d 'host=form.test&test_http_challenge_flow=true')
check "a form body without Content-Type is read as urlencoded ($r2)" test "$r1" = "$r2"
for h in 'bad..name' '1.2.3.4' ''; do
	r1=$(admin POST /acme -d "host=$h")
	r2=$(admin POST /acme -F "host=$h")
	check "host='$h' refused alike by -d and -F ($r2)" test "$r1" = "$r2" -a "${r2%% *}" = 400
done
r2=$(admin POST /acme -H 'Content-Type: multipart/form-data; boundary=xyz' --data-binary $'--xyz\r\nContent-Disposition: form-data; name="host"\r\n\r\ncut.test\r\n')
check "a multipart body cut before its closing boundary: 400 ($r2)" \
	test "$r2" = '400 {"message":"Cannot parse form body"}'
check "HAProxy serves the certificate issued by -F" wait_for 10 served_by_pebble multi.test
https_get spoe.test    # an SPOE message for the SPOE panels

# /healthz facts as gauges
check "acme_spoa_healthy 1, storage_up 1, runtime_sockets_up 1 of 1" \
	test "$(metric acme_spoa_healthy) $(metric acme_spoa_storage_up) $(metric acme_spoa_runtime_sockets_up) $(metric acme_spoa_runtime_sockets)" = "1 1 1 1"
exp=$(metric acme_spoa_certificate_earliest_expiry_timestamp_seconds)
check "the earliest expiry is a time in the future ($exp)" test "${exp%.*}" -gt "$(date +%s)" 2>/dev/null
curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" > "$IT_DIR/metrics.txt"
check "promtool check metrics accepts /metrics" sh -c "promtool check metrics < '$IT_DIR/metrics.txt'"

# --- a real Prometheus scraping it ------------------------------------------
start_prometheus "$RULES"
check "prometheus is ready" wait_for 30 curl -sf "$PROM/-/ready"
# query EXPR: the JSON answer of an instant query
query() { curl -s --max-time 10 "$PROM/api/v1/query" --data-urlencode "query=$1"; }
scraped() { query 'count_over_time(up{job="acme-spoa"}[1m]) >= 5 and up{job="acme-spoa"} == 1' | grep -q '"result":\[{'; }
check "prometheus scrapes the agent (5 samples, up)" wait_for 30 scraped
INSTANCE=127.0.0.1:$ADMIN_PORT

# the dashboard's variables, as Grafana asks them: label_values(SELECTOR, LABEL)
# -> the label values API, with $job substituted
python3 -c '
import json, re, sys
for v in json.load(open(sys.argv[1]))["templating"]["list"]:
    if v["type"] == "query":
        m = re.fullmatch(r"label_values\((.*), *(\w+)\)", v["definition"])
        print(v["name"] + "\t" + m.group(1) + "\t" + m.group(2))' "$DASH" > "$IT_DIR/vars"
while IFS=$'\t' read -r name sel label; do
	sel=${sel//\$job/acme-spoa}
	vals=$(curl -s -G "$PROM/api/v1/label/$label/values" --data-urlencode "match[]=$sel")
	want=$INSTANCE; [ "$label" = job ] && want=acme-spoa
	check "variable $name: label_values($sel, $label) lists $want ($vals)" grep -qF "\"$want\"" <<<"$vals"
done < "$IT_DIR/vars"
check "the dashboard's variables were evaluated ($(wc -l < "$IT_DIR/vars"))" test "$(wc -l < "$IT_DIR/vars")" -eq 2

# every panel query: Grafana's substitutions, then an instant query
n=0
while IFS=$'\t' read -r title expr; do
	n=$((n + 1))
	q=${expr//\$__rate_interval/1m}
	q=${q//\$job/acme-spoa}
	q=${q//\$instance/$INSTANCE}
	ans=$(query "$q")
	if grep -q '"status":"success"' <<<"$ans" && grep -q '"result":\[{' <<<"$ans"; then
		ok "dashboard query returns data: $title: $q"
	else
		not_ok "dashboard query: $title: $q -> $(head -c 300 <<<"$ans")"
	fi
done < "$IT_DIR/exprs"

# the rules load in the server and evaluate without error; none fires for a healthy agent
rules_ok() {
	curl -s "$PROM/api/v1/rules" | python3 -c '
import json, sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
bad = [r["name"] for r in rules if r.get("health") != "ok"]
print(len(rules), "rules", "unhealthy:", bad)
sys.exit(0 if len(rules) >= 10 and not bad and all(r.get("lastEvaluation", "").startswith("2") for r in rules) else 1)'
}
check "prometheus loads the alert rules and evaluates them cleanly" wait_for 10 rules_ok
# (the API must answer: no answer is not "no alert")
firing=$(curl -s --max-time 10 "$PROM/api/v1/alerts" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["status"] == "success"
print("alerts:", " ".join(a["labels"]["alertname"] for a in d["data"]["alerts"]))' 2>&1 | tail -1)
check "no alert pending or firing for the healthy agent (${firing})" test "$firing" = "alerts: "

# HAProxy goes away: the runtime fact turns 0 in /metrics and in Prometheus
stop_pid "$HAP_PID"
check "HAProxy down: acme_spoa_runtime_sockets_up 0, healthy 0" \
	wait_for 20 sh -c "curl -sf http://127.0.0.1:$ADMIN_PORT/metrics | grep -qx 'acme_spoa_runtime_sockets_up 0' &&
			  curl -sf http://127.0.0.1:$ADMIN_PORT/metrics | grep -qx 'acme_spoa_healthy 0'"
sock_down() { query 'acme_spoa_runtime_sockets_up{job="acme-spoa"} == 0' | grep -q '"result":\[{'; }
check "Prometheus sees the runtime socket down (what AcmeSpoaRuntimeSocketDown watches)" wait_for 10 sock_down
check "/healthz says 503 alike" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")" = 503

check "agent stops cleanly" agent_stops_cleanly
it_summary
