#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The sweep (issue 23, redis): a node reads the stored names from the change
# feed at start. A certificate stored without its feed entry (here: two
# entries removed by hand, as a writer cut off between the certificate and
# the feed would leave them) is unknown to a node started then; the fleet's
# sweep (fleet.sweep_interval, 10 s here: first try after 1 s) walks certs/
# a page at a time, gives each such name its entry back, and every node
# knows it; a node started later reads it from the feed. One node sweeps per
# interval (the lock "sweep/certs"). Real Redis, HAProxy, Pebble.
set -u
source "$(dirname "$0")/lib.sh"
it_init

STORE=redis
store_start; rc=$?
if [ $rc = 2 ]; then skip_peer redis-server "no redis-server here"; it_summary; exit $?; fi
[ $rc = 0 ] || { not_ok "redis starts"; it_summary; exit 1; }
NS=${REDIS_NS:-it}
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

"$IT_BUILD/tools/gen_certs" --store "$(store_spec)" --count 40 --domain sweep.test --days 90 \
	--ca-out "$IT_DIR/gen-ca.pem" >"$IT_DIR/gen.log" 2>&1
check "gen_certs stores 40 certificates (with their feed entries)" test $? = 0
check "the feed holds 40 names" test "$(rcli zcard "$NS:feed:certs:log")" = 40
# a writer cut off between the certificate and its feed entry, twice
rcli zrem "$NS:feed:certs:log" host3.sweep.test host7.sweep.test >/dev/null
rcli hdel "$NS:feed:certs:ver" host3.sweep.test host7.sweep.test >/dev/null
check "two stored certificates have no feed entry now" \
	test "$(rcli zcard "$NS:feed:certs:log")/$(rcli exists "$NS:certs/host3.sweep.test")" = 38/1

IT_HAPROXY_EXTRA='"preload": "on_demand"'
EXTRA='"fleet": { "sweep_interval": 10 }'
start_node 1 "$EXTRA" || { not_ok "node 1 starts"; it_summary; exit 1; }
indexed_log() { grep -o ': [0-9]* names indexed in' "$IT_DIR/agent$1.log" | head -1 | tr -dc '0-9'; }
check "node 1 read the 38 names of the feed at start" wait_for 10 sh -c \
	"grep -q ': 38 names indexed in' '$IT_DIR/agent1.log'"
swept() { grep -q "$2 stored without a change feed entry given one" "$IT_DIR/agent$1.log"; }
check "node 1's sweep finds the two names stored without a feed entry" wait_for 15 swept 1 2
check "it says which (host3, host7)" sh -c "grep -q 'host=host3.sweep.test stored without a change feed entry' '$IT_DIR/agent1.log' &&
	grep -q 'host=host7.sweep.test stored without a change feed entry' '$IT_DIR/agent1.log'"
check "their feed entries are back (40 names in the feed)" test "$(rcli zcard "$NS:feed:certs:log")" = 40
indexed() { use_node "$1"; [ "$(metric acme_spoa_certificates_indexed)" = "$2" ]; }
check "node 1 indexes all 40 now" wait_for 5 indexed 1 40

# a node started now reads all 40 from the feed; within the interval it does
# not sweep (node 1 holds the lock)
start_node 2 "$EXTRA" || { not_ok "node 2 starts"; it_summary; exit 1; }
check "node 2 read the 40 names of the feed at start" wait_for 10 sh -c \
	"grep -q ': 40 names indexed in' '$IT_DIR/agent2.log'"
check "node 2 indexes all 40" wait_for 5 indexed 2 40
sleep 3
check "node 2 does not sweep within node 1's interval" \
	sh -c "! grep -q 'sweep of stored certificates started' '$IT_DIR/agent2.log'"
check "node 1 swept once" test "$(grep -c 'sweep of stored certificates started' "$IT_DIR/agent1.log")" = 1
# a stored name served from the feed-read index: its handshake verifies on node 2
use_node 2
served() { [ "$(tls_handshake "$1" "$IT_DIR/gen-ca.pem" | cut -d' ' -f1)" = 1 ]; }
check "host7.sweep.test (swept) is served by node 2" wait_for 10 served host7.sweep.test

it_summary
