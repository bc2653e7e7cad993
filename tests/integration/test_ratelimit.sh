#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The CA's rate limits (SPEC §3 rate_limits), against real Pebble with two
# nodes (HAProxy + agent each) on one real redis-server:
#   - orders_per_3h 3 with renewal_reserve 0.34 (1 kept for renewals): node 1
#     spends the 2 orders new names may use; node 2 is refused an on-demand
#     name (counted, logged, no order reaches Pebble) and an admin request
#     (429 with the reason); a renewal still goes through on the reserve, and
#     then nothing is left for anyone; /metrics shows what is left;
#   - after a SIGHUP to certs_per_domain_week 2: two certificates under one
#     registered domain (by the Public Suffix List) spend it for the fleet,
#     another registered domain still gets its certificate;
#   - failures_per_host_hour 2: two orders failing on validation (the CA
#     cannot reach the name) spend it, the third attempt is not placed.
# Pebble's own log is the count of orders the CA saw.
set -u
source "$(dirname "$0")/lib.sh"
it_init
IT_STORAGE=redis

start_redis || { not_ok "redis starts"; it_summary; exit 1; }
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }

LIMITS1='"rate_limits": { "orders_per_3h": 3, "renewal_reserve": 0.34 }'
LIMITS2='"rate_limits": { "orders_per_3h": 0, "certs_per_domain_week": 2, "failures_per_host_hour": 2, "renewal_reserve": 0 }'

start_node 1 "$LIMITS1" || { not_ok "node 1 starts"; it_summary; exit 1; }
start_node 2 "$LIMITS1" || { not_ok "node 2 starts"; it_summary; exit 1; }
pebble_orders() { grep -c 'Added order' "$IT_DIR/pebble.log"; }
orders() { use_node "$1"; metric acme_spoa_orders_started_total; }
left() { metric "acme_spoa_rate_limit_remaining{limit=\"orders_per_3h\",class=\"$1\"}"; }
refused() { metric "acme_spoa_rate_limit_refused_total{limit=\"$1\"}"; }
serial() { admin GET "/acme/certificates/$1" | sed -n 's/.*"serial_number": *"\([^"]*\)".*/\1/p'; }
eq() { [ "$1" = "$2" ]; }

use_node 1
check "node 1 logs the limits it enforces" grep -q 'rate limits: orders_per_3h=3 .*renewal_reserve=0.34' "$IT_DIR/agent1.log"
check "/metrics shows the limits (orders_per_3h 3, 1 reserved)" \
	eval 'eq "$(metric "acme_spoa_rate_limit{limit=\"orders_per_3h\"}")" 3 && eq "$(metric "acme_spoa_rate_limit_reserved{limit=\"orders_per_3h\"}")" 1'

# --- node 1 spends what new names may use -----------------------------------
p0=$(pebble_orders)
r=$(admin POST /acme -d host=r1.test)
check "node 1 issues r1.test ($r)" grep -q '^201' <<<"$r"
r=$(admin POST /acme -d host=r2.test)
check "node 1 issues r2.test ($r)" grep -q '^201' <<<"$r"
check "Pebble saw 2 orders" eq "$(($(pebble_orders) - p0))" 2
check "node 1 /metrics: 1 order left for renewals, 0 for new names" \
	eval 'eq "$(left renewal)" 1 && eq "$(left new)" 0'

# --- node 2 shares the budget: a new name is refused -------------------------
use_node 2
b2=$(orders 2)
https_get r3.test
check "node 2 refuses on-demand r3.test by orders_per_3h (counted)" wait_for 10 eval 'eq "$(refused orders_per_3h)" 1'
check "node 2 /metrics: counted among on-demand refusals too (reason rate_limit)" \
	eval 'eq "$(metric "acme_spoa_on_demand_refused_total{reason=\"rate_limit\"}")" 1'
check "the refusal is logged with its reason" \
	grep -q 'host=r3.test not issued: rate limit orders_per_3h reached for this account: 2 of 3 used (1 kept for renewals)' "$IT_DIR/agent2.log"
r=$(admin POST /acme -d host=r4.test)
check "node 2 admin POST for a new name: 429 with the reason ($r)" \
	eval 'grep -q "^429 .*rate limit orders_per_3h reached" <<<"$r"'
check "no order placed by node 2, none reached Pebble" \
	eval 'delta_is 0 "$b2" "$(orders 2)" && eq "$(($(pebble_orders) - p0))" 2'
check "node 2 /metrics: what node 1 spent (1 left for renewals)" eq "$(left renewal)" 1
check "r3.test is not served" sh -c "$(declare -f served_cert); HAP_HTTPS=$HAP_HTTPS; served_cert r3.test | grep -q haproxy-default"
# refused once: the next handshakes wait for the window, no order, no new check
nref=$(refused orders_per_3h)
for i in 1 2 3; do https_get r3.test; done
sleep 0.5
check "further handshakes for r3.test: no order, no second check" \
	eval 'eq "$(refused orders_per_3h)" "$nref" && delta_is 0 "$b2" "$(orders 2)"'

# --- a renewal still goes through on the reserve ------------------------------
check "node 2 has r1.test from node 1 (fleet)" wait_for 5 eval 'test -n "$(serial r1.test)"'
s0=$(serial r1.test)
r=$(admin POST /acme -d host=r1.test)
check "node 2 renews r1.test on the reserve ($r)" grep -q '^201' <<<"$r"
s1=$(serial r1.test)
check "r1.test has a new serial ($s0 -> $s1)" eval 'test -n "$s1" && ! eq "$s0" "$s1"'
check "Pebble saw 3 orders in all" eq "$(($(pebble_orders) - p0))" 3
check "node 2 /metrics: nothing left" eval 'eq "$(left renewal)" 0 && eq "$(left new)" 0'

# --- then nothing is left, for renewals either, on either node ---------------
use_node 1
b1=$(orders 1)
r=$(admin POST /acme -d host=r2.test)
check "node 1: a renewal of r2.test finds nothing left: 429 ($r)" \
	eval 'grep -q "^429 .*rate limit orders_per_3h reached for this account: 3 of 3 used" <<<"$r"'
check "no order placed, none reached Pebble" eval 'delta_is 0 "$b1" "$(orders 1)" && eq "$(($(pebble_orders) - p0))" 3'
check "node 1 /metrics: nothing left, one refusal" \
	eval 'eq "$(left renewal)" 0 && eq "$(refused orders_per_3h)" 1'

# --- certs_per_domain_week, applied at SIGHUP ---------------------------------
for n in 1 2; do
	use_node $n
	agent_config "$LIMITS2"
	kill -HUP "$AGENT_PID"
	check "node $n applies the new limits at SIGHUP" wait_for 5 eval 'eq "$(metric "acme_spoa_rate_limit{limit=\"certs_per_domain_week\"}")" 2'
done
use_node 1
p1=$(pebble_orders)
r=$(admin POST /acme -d host=a.shop.test)
check "node 1 issues a.shop.test ($r)" grep -q '^201' <<<"$r"
r=$(admin POST /acme -d host=b.x.shop.test)
check "node 1 issues b.x.shop.test, same registered domain shop.test ($r)" grep -q '^201' <<<"$r"
use_node 2
https_get c.shop.test
check "node 2 refuses on-demand c.shop.test by certs_per_domain_week" wait_for 10 eval 'eq "$(refused certs_per_domain_week)" 1'
check "the reason names the registered domain" \
	grep -q 'host=c.shop.test not issued: rate limit certs_per_domain_week reached for shop.test: 2 of 2 used' "$IT_DIR/agent2.log"
https_get d.other.test
check "node 2 still issues on demand under another registered domain (d.other.test)" wait_for 30 served_by_pebble d.other.test
check "Pebble saw 3 orders for these (none for c.shop.test)" eq "$(($(pebble_orders) - p1))" 3
check "the budgets live in redis, with a TTL" \
	eval 'k=$(redis-cli -p "$REDIS_PORT" --scan --pattern "it:rl/*/domain/shop.test"); test -n "$k" && test "$(redis-cli -p "$REDIS_PORT" ttl "$k")" -gt 600000'

# --- failures_per_host_hour: validations that fail -----------------------------
# the CA resolves bad.test to an address where nothing answers
curl -s -X POST "http://127.0.0.1:$CTS_MGMT/add-a" -d '{"host":"bad.test","addresses":["127.0.0.2"]}' >/dev/null
use_node 1
p2=$(pebble_orders)
for i in 1 2; do
	r=$(admin POST /acme -d host=bad.test)
	check "node 1: bad.test attempt $i fails on validation ($r)" grep -q '^500 .*error:connection' <<<"$r"
done
# the failures are recorded in the background: the shared record holds both
two_failures() {
	local k
	k=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'it:rl/*/fail/bad.test')
	[ -n "$k" ] && redis-cli -p "$REDIS_PORT" get "$k" | grep -qE '^\{"v":1,"t":\[[0-9]+,[0-9]+\]\}$'
}
check "the fleet's record holds the 2 failed validations" wait_for 5 two_failures
use_node 2
r=$(admin POST /acme -d host=bad.test)
check "node 2: a third attempt is refused by failures_per_host_hour (${r:0:120})" \
	eval 'grep -q "^429 .*rate limit failures_per_host_hour reached for bad.test: 2 of 2 used" <<<"$r"'
check "Pebble saw only the 2 failing orders" eq "$(($(pebble_orders) - p2))" 2

for n in 1 2; do
	use_node $n
	check "node $n agent exits cleanly on SIGTERM" agent_stops_cleanly
done
it_summary
