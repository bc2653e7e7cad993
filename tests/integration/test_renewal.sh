#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Renewal against a real CA with short lifetimes: Debian unstable's Pebble
# (2.10, profiles with a validity period, ARI) fetched by
# scripts/pebble-unstable.sh. SPEC §1 flow 4.
set -u
source "$(dirname "$0")/lib.sh"
it_init

PEBBLE_BIN=$(bash "$IT_ROOT/scripts/pebble-unstable.sh") || {
	not_ok "Pebble 2.10 (Debian unstable) could be fetched"; it_summary; exit 1; }
SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
start_pebble "$HAP_HTTP" '"profiles": {
      "default": { "description": "one minute", "validityPeriod": 60 },
      "day": { "description": "one day", "validityPeriod": 86400 } }' "$PEBBLE_BIN" ||
	{ not_ok "pebble 2.10 starts"; it_summary; exit 1; }
agent_config '"profile": "default"'
start_agent || { not_ok "agent starts"; it_summary; exit 1; }
start_haproxy || { not_ok "haproxy starts"; it_summary; exit 1; }
wait_for 10 agent_up_in_haproxy
hap_pid() { hap_cmd "show info" | awk -F': ' '$1 == "Pid" { print $2 }'; }
serial_of() { echo | timeout 5 openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername "$1" 2>/dev/null |
	openssl x509 -noout -serial 2>/dev/null; }
pid0=$(hap_pid)

# --- a third of the lifetime left: renewed, served without reload -----------
https_get rn.test
check "rn.test issued with a one-minute certificate" wait_for 30 served_by_pebble rn.test
s1=$(serial_of rn.test)
# (the first serial must have been read: an empty one differs from any)
changed() { local s; s=$(serial_of rn.test); [ -n "$s1" ] && [ -n "$s" ] && [ "$s" != "$s1" ]; }
check "the scheduler renews it when a third of its lifetime is left (within 75 s)" wait_for 75 changed
same_process() { local p; p=$(hap_pid); is_count "$pid0" "$p" && [ "$p" = "$pid0" ]; }
check "the renewed certificate is served by the same HAProxy process (no reload, pid $pid0)" same_process
check "renewals are counted" test "$(metric acme_spoa_renewals_total)" -ge 1
check "the CA's ARI window was read" grep -q 'ARI window' "$IT_DIR/agent.log"
check "renewal orders carry replaces (Pebble marks the old order replaced)" grep -q 'marked as replaced' "$IT_DIR/pebble.log"

# --- renew_threshold_days longer than the lifetime: renewed once, no loop ---
stop_pid "$AGENT_PID"
sed -i 's/"profile": "default"/"profile": "day", "renew_threshold_days": 2/' "$IT_DIR/agent.json"
start_agent || { not_ok "agent restarts"; it_summary; exit 1; }
wait_for 10 agent_up_in_haproxy
https_get th.test
check "th.test issued with a one-day certificate" wait_for 30 served_by_pebble th.test
renewed_once() { [ "$(grep -c 'host=th.test renewal started' "$IT_DIR/agent.log")" -ge 1 ]; }
check "a certificate due by renew_threshold_days is renewed by the scheduler" wait_for 30 renewed_once
sleep 8
n=$(grep -c 'host=th.test renewal started' "$IT_DIR/agent.log")
check "and not again in a loop ($n renewal)" test "$n" = 1
r=$(admin GET /acme/certificates/th.test)
check "the renewed certificate is listed as valid" grep -q '"valid":true' <<<"$r"

check "agent exits cleanly on SIGTERM (status 0 within 5 s, no error logged)" agent_stops_cleanly
it_summary
