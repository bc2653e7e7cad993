#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The renewal plan (issue 23), with the real agent, HAProxy, Pebble and
# Prometheus on loopback. The judged case is 1,000 certificates due within
# 3 hours against orders_per_3h 300; here it is scaled down 10 times: 100
# certificates due now (gen_certs), orders_per_3h 30 with renewal_reserve
# 0.2, so renewals are planned 24 per 3 hours, earliest expiry first:
#   group A, 50 certificates expiring in 5 hours: 24 now, 24 at
#     +3 h (before expiry - 1 h), the last 2 at +6 h: too late;
#   group B, 50 expiring in 8 hours: 22 at +6 h in time, 28 later: too late.
# So Pebble sees 24 orders and no more (the plan's next window is 3 hours
# away: the test checks the first window and the published plan), the
# agent's own budget check never refuses one (nothing reaches the CA to be
# refused), /metrics shows 76 waiting, a shortfall of 30 and the first
# unrenewed expiry (the 49th of group A by expiry, then name), and a real
# Prometheus fires AcmeSpoaRenewalShortfall with that date. Without the
# plan the agent starts all 100 at once: 30 orders, 70 refused.
set -u
source "$(dirname "$0")/lib.sh"
it_init
TOOLS=$IT_BUILD/tools
RULES=$IT_ROOT/haproxy-examples/prometheus/acme-spoa.rules.yml

start_redis || { not_ok "redis starts"; it_summary; exit 1; }
IT_STORAGE=redis
SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
start_pebble "$HAP_HTTP" || { not_ok "pebble starts"; it_summary; exit 1; }
# an ARI renewal is exempt (not counted, not planned): this Pebble must not
# offer ARI for the renewals to draw on the budget
check "this Pebble has no renewalInfo (the renewals are counted)" \
	sh -c "! curl -sf --cacert '$IT_DIR/pebble-ca.pem' '$PEBBLE_DIR_URL' | grep -q renewalInfo"

agent_config '"renew_threshold_days": 1, "rate_limits": { "orders_per_3h": 30, "renewal_reserve": 0.2 }'
start_agent || { not_ok "agent starts"; it_summary; exit 1; }
start_haproxy || { not_ok "HAProxy starts"; it_summary; exit 1; }
check "HAProxy's spop-check sees the agent UP" wait_for 10 agent_up_in_haproxy

# a mass import into the shared store while the agent runs (it learns them
# from the change feed), so that Pebble's validations find HAProxy serving
mkdir -p "$IT_DIR/gen-a"
STORE="redis:127.0.0.1:$REDIS_PORT:it"
"$TOOLS/gen_certs" --store "$STORE" --count 50 --domain a.plan.test --hours 5 \
	--cert-dir "$IT_DIR/gen-a" >"$IT_DIR/gen.log" 2>&1 &&
"$TOOLS/gen_certs" --store "$STORE" --count 50 --domain b.plan.test --hours 8 \
	>>"$IT_DIR/gen.log" 2>&1
check "gen_certs stores 50 certificates expiring in 5 h and 50 in 8 h" test $? = 0
# what a node that stores a certificate publishes (gen_certs writes the
# change feed, which the agent reconciles only once a minute)
for g in a b; do for i in $(seq 0 49); do echo "PUBLISH it:certs host$i.$g.plan.test"; done; done |
	redis-cli -p "$REDIS_PORT" >/dev/null
# the 49th of group A by (expiry, name): the first the plan cannot renew in time
first_late=$(for f in "$IT_DIR"/gen-a/*.pem; do
	printf '%s %s\n' "$(date -u -d "$(openssl x509 -in "$f" -noout -enddate | cut -d= -f2)" +%s)" \
		"$(basename "$f" .pem)"
done | sort -k1,1n -k2,2 | sed -n 49p | cut -d' ' -f1)
check "the expected first unrenewed expiry is read from group A ($first_late)" \
	test -n "$first_late"

pebble_orders() { grep -c 'Added order' "$IT_DIR/pebble.log"; }
refused() { metric 'acme_spoa_rate_limit_refused_total{limit="orders_per_3h"}'; }
eq() { [ "$1" = "$2" ]; }
renewed() { test "$(metric acme_spoa_orders_succeeded_total)" = 24; }

check "the agent indexes the 100 certificates" wait_for 15 eval 'eq "$(metric acme_spoa_renewal_share)" 100'
check "24 renewals are ordered and issued: the first window" wait_for 60 renewed
sleep 3
n1=$(pebble_orders)
check "Pebble saw 24 orders, no more ($n1)" eq "$n1" 24
check "the agent's budget check refused none (nothing reached the CA to be refused)" eq "$(refused)" 0
check "the plan logs that it spreads the renewals" grep -q 'renewal plan: more renewals due than the CA.s orders budget admits: 76 spread until' "$IT_DIR/agent.log"
check "/metrics: 76 renewals wait for their planned time" eq "$(metric acme_spoa_renewal_planned)" 76
end=$(metric acme_spoa_renewal_plan_end_timestamp_seconds)
now=$(date +%s)
# the last 4 start in the fifth window: 4 windows of 3 hours after the first
check "/metrics: the plan ends 12 hours on ($end)" \
	test "${end:-0}" -ge $((now + 12 * 3600 - 120)) -a "${end:-0}" -le $((now + 12 * 3600 + 60))
check "/metrics: 30 certificates would expire unrenewed" eq "$(metric acme_spoa_renewal_shortfall)" 30
fx=$(metric acme_spoa_renewal_shortfall_first_expiry_timestamp_seconds)
check "/metrics: the first would expire unrenewed at the 49th of group A's expiry ($fx, $first_late)" \
	eq "$fx" "$first_late"
when=$(date -u -d "@$first_late" '+%Y-%m-%dT%H:%M:%SZ')
check "the shortfall is logged with its count and date" \
	grep -q "renewal plan: 30 certificate(s) would expire unrenewed: .* the first expires $when" "$IT_DIR/agent.log"
check "the shortfall is logged once" test "$(grep -c 'would expire unrenewed' "$IT_DIR/agent.log")" = 1
sleep 2
check "still 24 orders a few seconds on (the next window is 3 hours away)" eq "$(pebble_orders)" 24

# --- a real Prometheus fires the alert with that date ------------------------
start_prometheus "$RULES"
check "prometheus is ready" wait_for 30 curl -sf "$PROM/-/ready"
want=$(date -u -d "@$first_late" '+%Y-%m-%d %H:%M:%S +0000 UTC')
alert() {
	curl -s --max-time 5 "$PROM/api/v1/alerts" | python3 -c '
import json, sys
for a in json.load(sys.stdin)["data"]["alerts"]:
    if a["labels"]["alertname"] == "AcmeSpoaRenewalShortfall" and a["state"] == "firing":
        print(a["annotations"]["summary"])' 2>/dev/null
}
check "AcmeSpoaRenewalShortfall fires" wait_for 30 eval 'test -n "$(alert)"'
check "its summary gives the date the first certificate expires unrenewed ($(alert); want $want)" \
	grep -qF "would expire unrenewed from $want" <<<"$(alert)"

check "the agent stops cleanly" agent_stops_cleanly
it_summary
