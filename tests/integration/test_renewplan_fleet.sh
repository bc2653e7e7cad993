#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The renewal plan in a fleet (issue 23): the orders budget is the account's,
# shared by two nodes on one Redis; each node plans its own share at half of
# it. 100 certificates expiring in 8 hours, due at once, against
# orders_per_3h 30 with renewal_reserve 0.2 (24 for renewals): each node
# starts 12 now, so Pebble sees 24 orders and the agents refuse none; each
# node plans 12 per 3 hours, so of its share S, 36 start in time (now, +3 h,
# +6 h, before expiry - 1 h) and S - 36 are its shortfall.
# Real Pebble, HAProxy, Redis.
set -u
source "$(dirname "$0")/lib.sh"
it_init
STORE=redis

store_start || { not_ok "redis starts"; it_summary; exit 1; }
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
EXTRA='"renew_threshold_days": 1, "fleet": { "member_lease": 5 }, "rate_limits": { "orders_per_3h": 30, "renewal_reserve": 0.2 }'
for n in 1 2; do
	start_node $n "$EXTRA" || { not_ok "node $n starts"; it_summary; exit 1; }
done
members2() { local n; for n in 1 2; do use_node $n; [ "$(metric acme_spoa_fleet_members)" = 2 ] || return 1; done; }
check "both nodes count 2 live members" wait_for 15 members2

"$IT_BUILD/tools/gen_certs" --store "$(store_spec)" --count 100 --domain fleet.plan.test --hours 8 \
	>"$IT_DIR/gen.log" 2>&1
check "gen_certs stores 100 certificates expiring in 8 h" test $? = 0
# each is announced as a node that stores one does (the feed alone is
# reconciled once a minute)
for i in $(seq 0 99); do echo "PUBLISH it:certs host$i.fleet.plan.test"; done |
	redis-cli -p "$REDIS_PORT" >/dev/null

started() { grep -c 'renewal started' "$IT_DIR/agent$1.log"; }
both_started() { [ $(($(started 1) + $(started 2))) -ge 24 ]; }
check "24 renewals start across the fleet" wait_for 30 both_started
sleep 3
check "Pebble saw 24 orders, no more" test "$(grep -c 'Added order' "$IT_DIR/pebble.log")" = 24
total=0
for n in 1 2; do
	use_node $n
	s=$(metric acme_spoa_renewal_share)
	total=$((total + ${s:-0}))
	check "node $n started 12, half the budget ($(started $n))" test "$(started $n)" = 12
	check "node $n: its budget check refused none" \
		test "$(metric 'acme_spoa_rate_limit_refused_total{limit="orders_per_3h"}')" = 0
	check "node $n: the rest of its share waits for the plan ($s - 12)" \
		test "$(metric acme_spoa_renewal_planned)" = $((s - 12))
	short=$(( s > 36 ? s - 36 : 0 ))
	check "node $n: its shortfall is its share beyond 36 ($short)" \
		test "$(metric acme_spoa_renewal_shortfall)" = "$short"
	fx=$(metric acme_spoa_renewal_shortfall_first_expiry_timestamp_seconds)
	check "node $n: the first unrenewed expiry is some 8 hours on ($fx)" \
		test "$short" = 0 -a "$fx" = 0 -o "${fx:-0}" -gt $(($(date +%s) + 6 * 3600))
done
check "the shares add up to the 100 certificates ($total)" test "$total" = 100

for n in 1 2; do
	use_node $n
	check "node $n agent exits cleanly" agent_stops_cleanly
done
it_summary
